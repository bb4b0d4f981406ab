// The ops' kernels for the dispatcher (CPU, CUDA, Meta) and the eager pybind entry points: each
// checks the call (contract.h), finds or builds its plan, launches one fused update, and bumps the
// versions of what it may write. Registered in module.cpp.
#pragma once

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

void sync_(at::TensorList fast, at::TensorList slow, double alpha);
void sync_on_step_(at::TensorList fast, at::TensorList slow, const at::Tensor& alpha, const at::Tensor& step,
                   int64_t k);
void swap_(at::TensorList first, at::TensorList second);
void momentum_sync_(at::TensorList fast, at::TensorList slow, at::TensorList momentum, double alpha, double mu,
                    bool nesterov);
void momentum_sync_on_step_(at::TensorList fast, at::TensorList slow, at::TensorList momentum, const at::Tensor& alpha,
                            const at::Tensor& step, int64_t k, double mu, bool nesterov);
// AdamW's step for every param and, where the hyper table's sync flag is set, the sync (the momentum
// sync when `momentum` is not empty) of the new params, in one pass (adamw.h). grads are read only.
void adamw_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                 at::TensorList slow, at::TensorList momentum, const at::Tensor& hyper, const at::Tensor& rows, double mu,
                 bool nesterov);

// Under torch.compile's fake tensors (meta tensors): the checks that need no sizes, and no writes.
void sync_meta(at::TensorList fast, at::TensorList slow, double alpha);
void sync_on_step_meta(at::TensorList fast, at::TensorList slow, const at::Tensor& alpha, const at::Tensor& step,
                       int64_t k);
void swap_meta(at::TensorList first, at::TensorList second);
void momentum_sync_meta(at::TensorList fast, at::TensorList slow, at::TensorList momentum, double alpha, double mu,
                        bool nesterov);
void momentum_sync_on_step_meta(at::TensorList fast, at::TensorList slow, at::TensorList momentum,
                                const at::Tensor& alpha, const at::Tensor& step, int64_t k, double mu, bool nesterov);
void adamw_step_meta(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                     at::TensorList slow, at::TensorList momentum, const at::Tensor& hyper, const at::Tensor& rows,
                     double mu, bool nesterov);

}  // namespace lookahead_fused
