#pragma once

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

// The int8 momentum sync (see [NOTE: int8 momentum sync] in csrc/element_math.h) of every entry on
// the CPU, in one parallel region over all blocks of all tensors. The lists must have passed
// check_int8_momentum_lists (contract.h) and be on the CPU.
void run_int8_momentum_cpu(at::TensorList fast, at::TensorList slow, at::TensorList momentum, at::TensorList scales,
                           double alpha, double mu, bool nesterov);

}  // namespace lookahead_fused
