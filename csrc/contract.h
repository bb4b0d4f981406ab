// The op contract of docs/design.md checked in C++, before anything is written. The messages match
// lookahead_fused/contract.py word for word, so one set of tests covers every backend.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "table.h"

namespace lookahead_fused {

constexpr const char* kCompactOp = "lookahead_compact_sync_";  // the compact sync, as the messages name it
constexpr const char* kCompactGatedOp = "lookahead_compact_sync_on_step_";  // and its step-gated form
constexpr const char* kInt8MomentumOp = "lookahead_int8_momentum_sync_";  // the int8 momentum sync
constexpr const char* kInt8MomentumGatedOp = "lookahead_int8_momentum_sync_on_step_";  // and its step-gated form
constexpr const char* kPseudoGradientOp = "lookahead_pseudo_gradient_";  // the replicas' pseudo-gradient
constexpr const char* kAdamWDeltaOp = "lookahead_adamw_delta_step_";  // AdamW's step with int8-delta slow weights
constexpr const char* kAdamWCompactOp = "lookahead_adamw_compact_step_";      // AdamW's step with bf16+int8 ones
constexpr const char* kAdamWInt8MomentumOp = "lookahead_adamw_int8_momentum_step_";  // with an int8 outer momentum
constexpr const char* kInt8DeltaSyncOp = "LookaheadAdamW's int8-delta sync";  // their sync without AdamW's step

// Whether `t` is plainly valid: defined, strided and contiguous, on `device`; and whether `a` and `b`
// are plainly alike: both plainly valid, of one shape. Their dtypes are the caller's test
// (see [NOTE: plainly valid pairs] in csrc/contract.cpp).
inline bool plainly_valid(const at::Tensor& t, const at::Device& device) {
  return t.defined() && t.layout() == at::kStrided && t.device() == device && t.is_contiguous();
}
bool plainly_alike(const at::Tensor& a, const at::Tensor& b, const at::Device& device);

// Each raises c10::ValueError naming the pair and the problem, or c10::NotImplementedError when the
// tensors are not all on one device (one call of a fused kernel runs on one device).
//
// The per-pair checks: dtypes, shapes, strides, density, device.
void check_sync_pairs(at::TensorList fast, at::TensorList slow, const char* op = "lookahead_sync_");
void check_swap_pairs(at::TensorList first, at::TensorList second);
// The pairs, and a momentum list beside them: slow's dtype (or bfloat16 beside float32 slow weights,
// see [NOTE: entry dtypes] in csrc/table.h), shape and strides, the same device.
void check_momentum_triples(at::TensorList fast, at::TensorList slow, at::TensorList momentum,
                            const char* op = "lookahead_sync_");
// [NOTE: overlap once per plan] No two tensors share memory. Its outcome depends only on addresses,
// sizes and dtypes, which a cached plan's key holds, so a plan found in the cache has passed it
// already, and neither the ops nor check_sync_lists repeat it for one.
// The lists are named as `names` says (list_names).
void check_no_overlap(const char* op, const std::vector<at::TensorList>& lists, const char* const* names);
// The names of an op's lists in the messages.
const char* const* list_names(TableOp op);
// The compact sync's triples (see [NOTE: compact sync] in csrc/element_math.h): fast in float32,
// float16 or bfloat16; slow_high bfloat16 and slow_low int8 beside it, of its shape and strides, on
// its device. `op` and `fast_name` as the messages name the op and the fast list.
void check_compact_triples(at::TensorList fast, at::TensorList high, at::TensorList low, const char* op = kCompactOp,
                           const char* fast_name = "fast", const char* high_name = "slow_high");
// The compact momentum sync's quads (see [NOTE: compact momentum sync] in csrc/element_math.h): the
// compact triples, and beside them the outer momentum in float32 or bfloat16, of fast's shape and
// strides, on its device.
void check_compact_momentum_quads(at::TensorList fast, at::TensorList high, at::TensorList low, at::TensorList momentum,
                                  const char* op = kCompactOp, const char* fast_name = "fast");
// The pseudo-gradient's triples (see [NOTE: pseudo-gradient] in csrc/element_math.h): fast and slow as
// a sync's pairs; out of slow's dtype, shape and strides, on its device.
void check_pseudo_gradient_triples(at::TensorList fast, at::TensorList slow, at::TensorList out);
// The per-entry checks of a table op's lists before it writes: the pairs (kSync), the triples
// (kMomentumSync), the compact triples (kCompactSync) or quads (kCompactMomentumSync), or the
// pseudo-gradient's (kPseudoGradient).
void check_sync_entries(TableOp op, const std::vector<at::TensorList>& lists);
// What lookahead_compact_sync_ checks before it writes, with or without outer momentum (`momentum`
// empty): the triples (or quads), and their overlap unless a plan for them is cached; with `scales`
// (the momentum int8 blocks), check_compact_int8_momentum_lists. The pybind check_compact_lists runs it.
void check_compact_lists(at::TensorList fast, at::TensorList high, at::TensorList low, at::TensorList momentum = {},
                         at::TensorList scales = {});
// The int8 momentum sync's quads (see [NOTE: int8 momentum sync] in csrc/element_math.h): fast in
// float32, float16 or bfloat16; float32 slow weights and int8 momentum codes beside it, of its shape
// and strides, on its device; its block scales a dense 1-D float32 tensor of ceil(numel / 256)
// elements on its device.
void check_int8_momentum_quads(at::TensorList fast, at::TensorList slow, at::TensorList momentum, at::TensorList scales,
                               const char* op = kInt8MomentumOp, const char* fast_name = "fast");
// What lookahead_int8_momentum_sync_ checks before it writes: the quads and their overlap (it keeps
// no plan, so the overlap is checked on every call). The pybind check_int8_momentum_lists runs it.
void check_int8_momentum_lists(at::TensorList fast, at::TensorList slow, at::TensorList momentum,
                               at::TensorList scales);
// The names of the int8 momentum sync's lists in the messages: fast, slow, momentum, scales.
const char* const* int8_momentum_list_names();
// The compact int8 momentum sync's lists (see [NOTE: compact int8 momentum sync] in csrc/element_math.h):
// the compact triples, and beside them the int8 momentum codes of fast's shape and strides and their
// block scales as check_int8_momentum_quads takes them; nothing shared (it keeps no plan, so the
// overlap is checked on every call). check_compact_lists runs it when given scales.
void check_compact_int8_momentum_lists(at::TensorList fast, at::TensorList high, at::TensorList low,
                                       at::TensorList momentum, at::TensorList scales);
// The names of its lists in the messages: fast, slow_high, slow_low, momentum, scales.
const char* const* compact_int8_momentum_list_names();
// AdamW's step with the sync (ops.h adamw_step_): grads, exp_avgs and exp_avg_sqs beside the params
// (their dtype, shape, strides and device), the slow weights and outer momenta as for the momentum
// sync (momentum may be empty), the hyper table a contiguous float64 [rows, kAdamWColumns] tensor
// and `rows` an int64 tensor of one row index per param, both on the params' device; on the CPU
// (where reading them is free) every index is in range and every row holds valid values.
void check_adamw_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper, const at::Tensor& rows);
// AdamW's step with bf16+int8 slow weights (see [NOTE: AdamW compact step] in csrc/adamw.h), its lists
// {params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum}: the moments and grads as for
// check_adamw_args; the params and slow weights as the compact sync's triples (the momentum, when not
// empty, as its quads), with the params named "param"; the hyper table and rows as for check_adamw_args.
// Their overlap is checked when their plan is built (see [NOTE: overlap once per plan] in csrc/contract.h).
void check_adamw_compact_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                              const at::Tensor& rows);
// AdamW's step with an int8 outer momentum (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h), its lists
// {params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales}: the moments and grads as for
// check_adamw_args; with `slow_low` empty the params, float32 slow weights, momentum codes and scales as the
// int8 momentum sync's quads, else the params and bf16+int8 slow weights (`slow` their high parts) as the
// compact sync's triples and the codes and scales beside the params; the params named "param"; the hyper
// table and rows as for check_adamw_args; nothing shared (checked on every call: it keeps no plan).
void check_adamw_int8_momentum_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                                    const at::Tensor& rows);
// The names of its lists in the messages: param, grad, exp_avg, exp_avg_sq, slow, slow_low, momentum, scales.
const char* const* adamw_int8_momentum_list_names();
// AdamW's step with int8-delta slow weights (see [NOTE: int8-delta] in csrc/adamw.h), its lists
// {params, grads, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales}: params in float32,
// float16 or bfloat16; the moments and grads as for check_adamw_args; beside each param its int8 offset
// codes (its shape and strides) and its block scales, a dense 1-D float32 tensor of ceil(numel / 256)
// elements; the outer momentum's codes and scales alike, or its float32 or bfloat16 values with no
// scales, or both lists empty; the hyper table and rows as for check_adamw_args; nothing shared
// (checked on every call: it keeps no plan).
void check_adamw_delta_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                            const at::Tensor& rows);
// How entry i of lists that check_adamw_delta_args passed keeps its outer momentum (the enum is adamw.h's).
enum class DeltaMomentumDtype : uint8_t;
DeltaMomentumDtype delta_momentum_dtype_of(at::TensorList momentum, at::TensorList momentum_scales, size_t i);
// The names of its lists in the messages: param, grad, exp_avg, exp_avg_sq, delta, scales, momentum,
// momentum_scales.
const char* const* adamw_delta_list_names();
// The lists of a sync of int8-delta slow weights without AdamW's step (LookaheadAdamW's params without a
// grad, sync_lookahead(); reference.int8_delta_sync_ runs it): the params and the entries of
// check_adamw_delta_args, and their overlap. The pybind check_int8_delta_lists runs it.
void check_int8_delta_lists(at::TensorList params, at::TensorList delta, at::TensorList scales,
                            at::TensorList momentum = {}, at::TensorList momentum_scales = {});
// What lookahead_sync_ checks before it writes, with or without outer momentum (`momentum` empty):
// the pairs (or triples), and their overlap unless a plan for them is cached. The pybind
// check_sync_lists runs it.
void check_sync_lists(at::TensorList fast, at::TensorList slow, at::TensorList momentum = {});
// The step gate of sync_on_step_: alpha a one-element float32/float64 tensor, step a one-element
// int64 tensor, both on the pairs' device (when there are pairs); k >= 1.
void check_step_gate(at::TensorList fast, const at::Tensor& alpha, const at::Tensor& step, int64_t k,
                     const char* op = "lookahead_sync_on_step_");

}  // namespace lookahead_fused
