#include "held_sync.h"

#include <torch/csrc/autograd/variable.h>

#include <algorithm>

#include "contract.h"
#include "message.h"
#include "ops.h"
#include "prefetch.h"

namespace lookahead_fused {

HeldSync::HeldSync(TableOp op, const TensorLists& lists) : op_(op) {
  LOOKAHEAD_CHECK(op == TableOp::kSync || op == TableOp::kMomentumSync || op == TableOp::kCompactSync ||
                      op == TableOp::kCompactMomentumSync,
                  "lookahead_fused: a held sync runs the sync ops only");
  LOOKAHEAD_CHECK_VALUE(
      static_cast<int>(lists.size()) == depth_of(op),
      message("lookahead_fused: a held sync of this op takes ", depth_of(op), " lists, got ", lists.size()));
  LOOKAHEAD_CHECK_VALUE(!lists[0].empty(), "lookahead_fused: a held sync needs at least one entry");
  plan_ = checked_sync_plan(op, lists);
  const at::TensorList fast = lists[0];
  fast_dtypes_.reserve(fast.size());
  fast_dims_.reserve(fast.size());
  for (const at::Tensor& t : fast) {
    fast_dtypes_.push_back(t.scalar_type());
    fast_dims_.push_back(static_cast<uint8_t>(t.dim()));
    fast_sizes_.insert(fast_sizes_.end(), t.sizes().begin(), t.sizes().end());
  }
  state_.reserve(fast.size() * (lists.size() - 1));
  for (size_t l = 1; l < lists.size(); ++l) {
    for (const at::Tensor& t : lists[l]) {
      state_.push_back(t);
      storages_.push_back(t.storage());
      if (!t.is_inference()) versions_.push_back(torch::autograd::impl::version_counter(t));
    }
  }
  record_versions();
}

std::vector<at::TensorList> HeldSync::state_lists() const {
  std::vector<at::TensorList> lists;
  const size_t entries = static_cast<size_t>(plan_->num_entries);
  for (size_t start = 0; start < state_.size(); start += entries) lists.emplace_back(state_.data() + start, entries);
  return lists;
}

void HeldSync::record_versions() {
  expected_versions_.resize(versions_.size());
  for (size_t i = 0; i < versions_.size(); ++i) expected_versions_[i] = versions_[i].current_version();
}

bool HeldSync::matches(at::TensorList fast) const {
  const int depth = plan_->roles.depth;
  if (static_cast<int64_t>(fast.size()) != plan_->num_entries) return false;
  const at::Device device = plan_->device;
  const int64_t* words = plan_->words.data();
  const int64_t* sizes = fast_sizes_.data();
  for (size_t i = 0; i < fast.size(); ++i, words += entry_words(depth)) {
    prefetch_ahead(fast, i, /*storage=*/true);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    const at::Tensor& t = fast[i];
    if (!plainly_valid(t, device) || words[0] != reinterpret_cast<intptr_t>(t.data_ptr()) ||
        t.scalar_type() != fast_dtypes_[i]) {
      return false;
    }
    const c10::IntArrayRef shape = t.sizes();
    if (shape.size() != fast_dims_[i] || !std::equal(shape.begin(), shape.end(), sizes)) return false;
    sizes += fast_dims_[i];
  }
  for (size_t i = 0; i < versions_.size(); ++i) {
    if (i + kPrefetchAhead < versions_.size()) prefetch_counter(versions_[i + kPrefetchAhead]);
    if (versions_[i].current_version() != expected_versions_[i]) return false;
  }
  return true;
}

bool HeldSync::run(at::TensorList fast, const UpdateArgs& args) {
  if (!matches(fast)) return false;
  TensorLists lists{fast};
  for (at::TensorList list : state_lists()) lists.push_back(list);
  launch_sync_on_plan(op_, lists, args, plan_);
  bump_versions({fast});
  for (c10::VariableVersion& version : versions_) version.bump();
  record_versions();  // a counter shared by two state tensors has moved twice
  return true;
}

}  // namespace lookahead_fused
