// The ops of the extension, once for C++ (see [NOTE: op list] in lookahead_fused/op_list.py, the
// same list for Python, which a test compares with this one through build_info()["ops"]).
//
// X(name, schema, parameters): the torch.library name; its schema after the name; the C++ parameters
// of its kernel `name` and of its Meta kernel `name##meta` (ops.h). From this list follow the
// declarations (ops.h), the schemas and the CPU, CUDA and Meta registrations, and the eager pybind11
// entry points (module.cpp). Each kernel checks its own call (contract.h) before it writes.
#pragma once

#include <ATen/core/Tensor.h>

#define LOOKAHEAD_OPS(X)                                                                                        \
  X(sync_, "(Tensor(a!)[] fast, Tensor(b!)[] slow, float alpha) -> ()",                                         \
    (at::TensorList fast, at::TensorList slow, double alpha))                                                   \
  X(sync_on_step_, "(Tensor(a!)[] fast, Tensor(b!)[] slow, Tensor alpha, Tensor step, int k) -> ()",            \
    (at::TensorList fast, at::TensorList slow, const at::Tensor& alpha, const at::Tensor& step, int64_t k))     \
  X(swap_, "(Tensor(a!)[] first, Tensor(b!)[] second) -> ()", (at::TensorList first, at::TensorList second))    \
  X(momentum_sync_,                                                                                             \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow, Tensor(c!)[] momentum, float alpha, float mu, bool nesterov) -> ()", \
    (at::TensorList fast, at::TensorList slow, at::TensorList momentum, double alpha, double mu, bool nesterov)) \
  X(momentum_sync_on_step_,                                                                                     \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow, Tensor(c!)[] momentum, Tensor alpha, Tensor step, int k, float mu, " \
    "bool nesterov) -> ()",                                                                                     \
    (at::TensorList fast, at::TensorList slow, at::TensorList momentum, const at::Tensor& alpha,                \
     const at::Tensor& step, int64_t k, double mu, bool nesterov))                                              \
  X(adamw_step_,                                                                                                \
    "(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, Tensor(d!)[] slow, " \
    "Tensor(e!)[] momentum, Tensor hyper, Tensor rows, float mu, bool nesterov) -> ()",                         \
    (at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,          \
     at::TensorList slow, at::TensorList momentum, const at::Tensor& hyper, const at::Tensor& rows, double mu,  \
     bool nesterov))                                                                                            \
  X(compact_sync_, "(Tensor(a!)[] fast, Tensor(b!)[] slow_high, Tensor(c!)[] slow_low, float alpha) -> ()",     \
    (at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, double alpha))                     \
  X(compact_sync_on_step_,                                                                                      \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow_high, Tensor(c!)[] slow_low, Tensor alpha, Tensor step, int k) -> ()", \
    (at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, const at::Tensor& alpha,           \
     const at::Tensor& step, int64_t k))                                                                        \
  X(int8_momentum_sync_,                                                                                        \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow, Tensor(c!)[] momentum, Tensor(d!)[] scales, float alpha, float mu, " \
    "bool nesterov) -> ()",                                                                                     \
    (at::TensorList fast, at::TensorList slow, at::TensorList momentum, at::TensorList scales, double alpha,    \
     double mu, bool nesterov))                                                                                 \
  X(int8_momentum_sync_on_step_,                                                                                \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow, Tensor(c!)[] momentum, Tensor(d!)[] scales, Tensor alpha, "         \
    "Tensor step, int k, float mu, bool nesterov) -> ()",                                                       \
    (at::TensorList fast, at::TensorList slow, at::TensorList momentum, at::TensorList scales,                  \
     const at::Tensor& alpha, const at::Tensor& step, int64_t k, double mu, bool nesterov))                     \
  X(pseudo_gradient_, "(Tensor[] fast, Tensor[] slow, Tensor(a!)[] out) -> ()",                                 \
    (at::TensorList fast, at::TensorList slow, at::TensorList out))                                             \
  X(compact_momentum_sync_,                                                                                     \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow_high, Tensor(c!)[] slow_low, Tensor(d!)[] momentum, float alpha, "   \
    "float mu, bool nesterov) -> ()",                                                                           \
    (at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, at::TensorList momentum,           \
     double alpha, double mu, bool nesterov))                                                                   \
  X(compact_momentum_sync_on_step_,                                                                             \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow_high, Tensor(c!)[] slow_low, Tensor(d!)[] momentum, Tensor alpha, "  \
    "Tensor step, int k, float mu, bool nesterov) -> ()",                                                       \
    (at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, at::TensorList momentum,           \
     const at::Tensor& alpha, const at::Tensor& step, int64_t k, double mu, bool nesterov))                     \
  X(adamw_delta_step_,                                                                                          \
    "(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, Tensor(d!)[] delta, " \
    "Tensor(e!)[] scales, Tensor(f!)[] momentum, Tensor(g!)[] momentum_scales, Tensor hyper, Tensor rows, "     \
    "float mu, bool nesterov) -> ()",                                                                           \
    (at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,          \
     at::TensorList delta, at::TensorList scales, at::TensorList momentum, at::TensorList momentum_scales,      \
     const at::Tensor& hyper, const at::Tensor& rows, double mu, bool nesterov))                                \
  X(compact_int8_momentum_sync_,                                                                                \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow_high, Tensor(c!)[] slow_low, Tensor(d!)[] momentum, "                \
    "Tensor(e!)[] scales, float alpha, float mu, bool nesterov) -> ()",                                         \
    (at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, at::TensorList momentum,           \
     at::TensorList scales, double alpha, double mu, bool nesterov))                                            \
  X(compact_int8_momentum_sync_on_step_,                                                                        \
    "(Tensor(a!)[] fast, Tensor(b!)[] slow_high, Tensor(c!)[] slow_low, Tensor(d!)[] momentum, "                \
    "Tensor(e!)[] scales, Tensor alpha, Tensor step, int k, float mu, bool nesterov) -> ()",                    \
    (at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, at::TensorList momentum,           \
     at::TensorList scales, const at::Tensor& alpha, const at::Tensor& step, int64_t k, double mu,              \
     bool nesterov))                                                                                            \
  X(adamw_compact_step_,                                                                                        \
    "(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "                   \
    "Tensor(d!)[] slow_high, Tensor(e!)[] slow_low, Tensor(f!)[] momentum, Tensor hyper, Tensor rows, "         \
    "float mu, bool nesterov) -> ()",                                                                           \
    (at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,          \
     at::TensorList slow_high, at::TensorList slow_low, at::TensorList momentum, const at::Tensor& hyper,       \
     const at::Tensor& rows, double mu, bool nesterov))                                                         \
  X(adamw_int8_momentum_step_,                                                                                  \
    "(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "                   \
    "Tensor(d!)[] slow, Tensor(e!)[] slow_low, Tensor(f!)[] momentum, Tensor(g!)[] scales, Tensor hyper, "      \
    "Tensor rows, float mu, bool nesterov) -> ()",                                                              \
    (at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,          \
     at::TensorList slow, at::TensorList slow_low, at::TensorList momentum, at::TensorList scales,              \
     const at::Tensor& hyper, const at::Tensor& rows, double mu, bool nesterov))
