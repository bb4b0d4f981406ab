#pragma once

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

// The int8 momentum sync (see [NOTE: int8 momentum sync] in csrc/element_math.h) of every entry on
// the CPU, in one parallel region over all blocks of all tensors; with `slow_low` (not empty) the
// compact int8 momentum sync, `slow` the bfloat16 high parts and `slow_low` the residuals
// (see [NOTE: compact int8 momentum sync] in csrc/element_math.h). The lists must have passed
// check_int8_momentum_lists (or check_compact_int8_momentum_lists; contract.h) and be on the CPU.
void run_int8_momentum_cpu(at::TensorList fast, at::TensorList slow, at::TensorList slow_low, at::TensorList momentum,
                           at::TensorList scales, double alpha, double mu, bool nesterov);

}  // namespace lookahead_fused
