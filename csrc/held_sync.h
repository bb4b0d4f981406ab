// A sync whose state tensors C++ holds between calls, so that the checks of a call walk only the
// fast tensors.
//
// [NOTE: held sync] The host work of a sync on thousands of small tensors is the walk over their
// objects (Python tensor, TensorImpl, StorageImpl, version counter), from a cache the inner step
// has just flushed. The slow weights, outer momenta and compact parts of Lookahead's sync are the
// optimizer's own state: nothing but the optimizer writes them (its syncs, slow_weights(), a load).
// A HeldSync is built once, after the op's whole check of its lists: it holds the plan, a reference
// to every state tensor and to its storage, its version counter and the version it had after our
// last write, and the fast tensors' dtypes and shapes. A call then walks the fast tensors only:
// each must be plainly valid (see [NOTE: plainly valid pairs] in csrc/contract.cpp) at its address
// in the plan, with its dtype and shape, and each state tensor's version must be the one it had
// after our last write. Then every entry is what the whole check accepted, and the plan vouches for
// the lists (see [NOTE: a cached plan vouches] in csrc/plan.h). Anything else (a param replaced or
// moved, a state tensor written in place or resized by someone else, set_() included, as each bumps
// its version) makes the call answer false, having written nothing: the caller then runs the op,
// whose whole check names what is wrong. Two changes are not seen, since they touch the state
// tensors' objects and not their versions: a state tensor replaced in the optimizer's state dict
// (its owner drops the HeldSync then: see [NOTE: launches held] in lookahead_fused/sync.py), and
// `tensor.data = other` on a state tensor, after which the held sync goes on writing the memory it
// holds. The storages held keep every address of the plan valid whatever happens to the tensors, so
// a call never writes freed memory.
#pragma once

#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Storage.h>

#include "plan.h"

namespace lookahead_fused {

class HeldSync {
 public:
  // `op`: kSync, kMomentumSync, kCompactSync or kCompactMomentumSync; `lists`: the fast tensors, then
  // the op's state lists. Checks them as the op does (raising as it would) and holds them.
  HeldSync(TableOp op, const TensorLists& lists);

  // Whether a call with `fast` would launch: see [NOTE: held sync] in csrc/held_sync.h.
  bool matches(at::TensorList fast) const;

  // The op on `fast` and the held state with `args` (alpha, and mu and nesterov for a momentum op,
  // checked as the op checks them), and the versions of every tensor written; false, writing nothing,
  // when !matches(fast).
  bool run(at::TensorList fast, const UpdateArgs& args);

  int64_t size() const { return plan_->num_entries; }

 private:
  TableOp op_;
  std::shared_ptr<const Plan> plan_;
  std::vector<at::Tensor> state_;               // list after list, entries in order
  std::vector<c10::Storage> storages_;          // theirs, held as the plan's addresses were taken
  std::vector<c10::VariableVersion> versions_;  // those of the state tensors outside inference mode
  std::vector<uint32_t> expected_versions_;     // each one's value after our last write
  std::vector<at::ScalarType> fast_dtypes_;
  std::vector<int64_t> fast_sizes_;  // each entry's sizes, one after another
  std::vector<uint8_t> fast_dims_;

  std::vector<at::TensorList> state_lists() const;
  void record_versions();
};

}  // namespace lookahead_fused
