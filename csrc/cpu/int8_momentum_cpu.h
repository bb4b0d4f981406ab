#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

// The int8 momentum sync (see [NOTE: int8 momentum sync] in csrc/element_math.h) of every entry on
// the CPU, in one parallel region over all blocks of all tensors; with `slow_low` (not empty) the
// compact int8 momentum sync, `slow` the bfloat16 high parts and `slow_low` the residuals
// (see [NOTE: compact int8 momentum sync] in csrc/element_math.h). The lists must have passed
// check_int8_momentum_lists (or check_compact_int8_momentum_lists; contract.h) and be on the CPU.
void run_int8_momentum_cpu(at::TensorList fast, at::TensorList slow, at::TensorList slow_low, at::TensorList momentum,
                           at::TensorList scales, double alpha, double mu, bool nesterov);

// AdamW's step with the int8 momentum sync on the sync rows of `lists` {params, grads, exp_avgs,
// exp_avg_sqs, slow, slow_low, momentum, scales} on the CPU, in one parallel region over all blocks;
// `slow_low` empty for float32 slow weights (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h). The
// lists must have passed check_adamw_int8_momentum_args (contract.h).
void run_adamw_int8_momentum_cpu(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                                 const at::Tensor& rows, float mu, bool nesterov);

}  // namespace lookahead_fused
