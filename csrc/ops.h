// The ops' kernels for the dispatcher (CPU, CUDA, Meta) and the eager pybind entry points, declared
// from the op list (op_list.h): each checks its call (contract.h), finds or builds its plan,
// launches one fused update, and bumps the versions of what it may write. Its Meta twin, for
// torch.compile's fake tensors, makes the checks that need no sizes and writes nothing.
//   sync_: slow <- lerp(slow, fast, alpha); fast <- slow.
//   sync_on_step_, momentum_sync_on_step_ (and compact_sync_on_step_, below): the same when step % k == 0,
//     decided where step lives
//     (see [NOTE: step gate] in csrc/table.h).
//   swap_: exchange the contents of each pair.
//   momentum_sync_: the sync with outer momentum (docs/design.md, "The momentum sync").
//   adamw_step_: AdamW's step for every param and, where the hyper table's sync flag is set, the
//     sync (the momentum sync when `momentum` is not empty) of the new params, in one pass (adamw.h);
//     grads are read only.
//   compact_sync_: the sync of slow weights kept as bf16+int8, a bfloat16 and an int8 tensor per param
//     (see [NOTE: compact sync] in csrc/element_math.h); compact_sync_on_step_: the same, step-gated.
//   int8_momentum_sync_: the momentum sync with the outer momentum kept as int8 blocks, an int8 tensor of
//     codes and a float32 tensor of block scales per param (see [NOTE: int8 momentum sync] in csrc/element_math.h);
//     int8_momentum_sync_on_step_: the same, step-gated.
//   compact_momentum_sync_: the momentum sync of slow weights kept as bf16+int8, the outer momentum
//     float32 or bfloat16 (see [NOTE: compact momentum sync] in csrc/element_math.h);
//     compact_momentum_sync_on_step_: the same, step-gated.
//   adamw_delta_step_: AdamW's step for every param with its slow weight kept as an int8 offset from the
//     param, written again in the same pass (and moved on a sync step); see [NOTE: int8-delta] in csrc/adamw.h.
//   adamw_compact_step_: adamw_step_ with the slow weights kept as bf16+int8, synced by the compact sync (or
//     compact momentum sync) on a sync row; see [NOTE: AdamW compact step] in csrc/adamw.h.
//   pseudo_gradient_: out <- fast - slow in the slow dtype or bfloat16, fast and slow read only (a replica's
//     pseudo-gradient, see [NOTE: pseudo-gradient] in csrc/element_math.h).
#pragma once

#include <memory>

#include "op_list.h"
#include "plan.h"

namespace lookahead_fused {

#define LOOKAHEAD_DECLARE_OP(name, schema, parameters) \
  void name parameters;                                \
  void name##meta parameters;
LOOKAHEAD_OPS(LOOKAHEAD_DECLARE_OP)
#undef LOOKAHEAD_DECLARE_OP

// The steps of a sync op (kSync, kMomentumSync, kCompactSync, kCompactMomentumSync) for a caller that
// holds its lists between calls (csrc/held_sync.h):
// the op's whole check of `lists` and their plan, found or built as the op's call would;
std::shared_ptr<const Plan> checked_sync_plan(TableOp op, const TensorLists& lists);
// the op's check of its scalars and its launch on `plan`, without the version bumps;
void launch_sync_on_plan(TableOp op, const TensorLists& lists, const UpdateArgs& args,
                         std::shared_ptr<const Plan> plan);
// the versions of `lists`' tensors bumped (see [NOTE: versions] in csrc/ops.cpp).
void bump_versions(const TensorLists& lists);

}  // namespace lookahead_fused
