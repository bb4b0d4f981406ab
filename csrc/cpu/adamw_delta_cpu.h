#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

// LookaheadAdamW's step with int8-delta slow weights (see [NOTE: int8-delta] in csrc/adamw.h) for
// every entry on the CPU, in one parallel region over all blocks of all tensors: `lists` {params, grads,
// exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales}, the last two empty without an outer
// momentum (see [NOTE: int8-delta outer momentum] in csrc/adamw.h), the last one empty beside a float
// one (see [NOTE: int8-delta float momentum] in csrc/adamw.h). The lists must have passed
// check_adamw_delta_args (contract.h) and be on the CPU.
void run_adamw_delta_cpu(const std::vector<at::TensorList>& lists, const at::Tensor& hyper, const at::Tensor& rows,
                         float mu, bool nesterov);

}  // namespace lookahead_fused
