#pragma once

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

// LookaheadAdamW's step with int8-delta slow weights (see [NOTE: int8-delta] in csrc/adamw.h) for
// every entry on the CPU, in one parallel region over all blocks of all tensors. The lists must have
// passed check_adamw_delta_args (contract.h) and be on the CPU.
void run_adamw_delta_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                         at::TensorList exp_avg_sqs, at::TensorList delta, at::TensorList scales,
                         const at::Tensor& hyper, const at::Tensor& rows);

}  // namespace lookahead_fused
