#include "plan.h"

#include <algorithm>
#include <list>
#include <mutex>

#include <ATen/ops/from_blob.h>
#include <c10/util/Exception.h>

#include "chunking.h"
#include "contract.h"
#include "dtypes.h"
#include "message.h"
#include "prefetch.h"

namespace lookahead_fused {
namespace {

// Room for the plans a step cycles through: with replicas and F fragments, each fragment's sync and
// its pack (the pseudo-gradient) have plans of their own, 2F of them beside the optimizer's others.
constexpr size_t kCachedPlans = 16;

// The per-entry part of the table: all that a plan depends on, so it is also the cache key.
std::vector<int64_t> entry_words_of(const TensorLists& lists, EntryRoles roles) {
  const int depth = static_cast<int>(lists.size());
  LOOKAHEAD_CHECK(depth >= 2 && depth <= kMaxDepth,
                  message("lookahead_fused: a table entry holds 2 to ", kMaxDepth, " tensors, got ", depth));
  LOOKAHEAD_CHECK(depth == roles.depth && roles.fast >= 1 && roles.fast <= depth,
                  message("lookahead_fused: ", depth, " lists for an op whose entries hold ", roles.depth, " tensors, ",
                          roles.fast, " of the fast dtype"));
  const size_t entries = lists[0].size();
  std::vector<int64_t> words;
  words.reserve(entries * entry_words(depth));
  uintptr_t addresses[kMaxDepth];
  int64_t element_sizes[kMaxDepth];
  for (size_t i = 0; i < entries; ++i) {
    for (int t = 0; t < depth; ++t) {
      const at::Tensor& tensor = lists[t][i];
      addresses[t] = reinterpret_cast<uintptr_t>(tensor.data_ptr());
      element_sizes[t] = static_cast<int64_t>(tensor.element_size());
      words.push_back(static_cast<int64_t>(addresses[t]));
    }
    const at::ScalarType state = state_dtype_of(roles, lists, i);  // see [NOTE: entry dtypes] in csrc/table.h
    const at::ScalarType momentum = momentum_dtype_of(roles, lists, i);
    const int64_t code = entry_code(roles, lists[0][i].scalar_type(), state, momentum);
    LOOKAHEAD_CHECK(code >= 0, message("lookahead_fused: no kernel for fast ", lists[0][i].scalar_type(), " with slow ",
                                       state, " and momentum ", momentum));
    words.push_back(lists[0][i].numel());
    words.push_back(code | ((common_head(addresses, element_sizes, depth) + 1) << 8));
  }
  return words;
}

// The workers that take the chunks of one launch round-robin (chunking.h); 0 for the CPU, whose
// threads take contiguous runs of chunks instead.
int64_t resident_lanes(at::Device device) {
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
  if (device.is_cuda()) return cuda_resident_blocks(device.index());
#endif
  return 0;
}

std::shared_ptr<Plan> plan_from_words(std::vector<int64_t> words, EntryRoles roles, at::Device device) {
  auto plan = std::make_shared<Plan>();
  plan->device = device;
  plan->roles = roles;
  const int depth = roles.depth;
  const int64_t stride = entry_words(depth);
  plan->num_entries = static_cast<int64_t>(words.size()) / stride;
  LOOKAHEAD_CHECK(plan->num_entries < (int64_t(1) << (63 - kChunkBits)),
                  message("lookahead_fused: too many tensors in one call (", plan->num_entries, ")"));
  plan->chunk_elems = choose_chunk_elements(words.data(), plan->num_entries, roles, resident_lanes(device));
  for (int64_t t = 0; t < plan->num_entries; ++t) {
    int64_t numel = words[t * stride + depth];
    plan->num_elements += numel;
    for (int64_t c = 0; c * plan->chunk_elems < numel; ++c) words.push_back((t << kChunkBits) | c);
  }
  plan->num_chunks = static_cast<int64_t>(words.size()) - plan->num_entries * stride;
  plan->words = std::move(words);
  if (device.is_cuda()) {
    auto host = at::from_blob(plan->words.data(), {static_cast<int64_t>(plan->words.size())}, at::kLong);
    plan->device_words = host.to(device);  // a build, not the steady state: a blocking copy is fine
  }
  return plan;
}

at::Device device_of(const TensorLists& lists) {
  return lists[0].empty() ? at::Device(at::kCPU) : lists[0][0].device();
}

struct PlanCache {
  std::mutex mutex;
  std::list<std::shared_ptr<const Plan>> plans;  // most recently used first
  PlanCacheStats stats;
};

PlanCache& cache() {
  static PlanCache instance;
  return instance;
}

// Whether `plan` is the plan of `lists`: each entry's addresses, size and pair code as in its words.
// They are all that the rest of its words follow from, since the contract gives every tensor the
// dtype of its role (see [NOTE: entry dtypes] in csrc/table.h). Cheaper than computing the words.
bool plan_is_for(const Plan& plan, const TensorLists& lists, EntryRoles roles, at::Device device) {
  const int depth = roles.depth;
  if (static_cast<int>(lists.size()) != depth || plan.device != device || !(plan.roles == roles) ||
      plan.num_entries != static_cast<int64_t>(lists[0].size())) {
    return false;
  }
  const int64_t* words = plan.words.data();
  for (size_t i = 0; i < lists[0].size(); ++i, words += entry_words(depth)) {
    // see [NOTE: prefetch ahead] in csrc/prefetch.h
    for (int t = 0; t < depth; ++t) prefetch_ahead(lists[t], i, /*storage=*/true);
    for (int t = 0; t < depth; ++t) {
      if (words[t] != reinterpret_cast<intptr_t>(lists[t][i].data_ptr())) return false;
    }
    const at::Tensor& fast = lists[0][i];
    if (words[depth] != fast.numel() ||
        pair_code_of(words[depth + 1]) != entry_code(roles, fast.scalar_type(), state_dtype_of(roles, lists, i),
                                                     momentum_dtype_of(roles, lists, i))) {
      return false;
    }
  }
  return true;
}

// Whether `lists` plainly match `plan`, entry by entry (see [NOTE: a cached plan vouches] in csrc/plan.h).
bool plainly_matches(const Plan& plan, const TensorLists& lists, EntryRoles roles, at::Device device) {
  const int depth = roles.depth;
  if (static_cast<int>(lists.size()) != depth || plan.device != device || !(plan.roles == roles)) {
    return false;
  }
  const auto entries = static_cast<size_t>(plan.num_entries);
  for (at::TensorList list : lists) {
    if (list.size() != entries) return false;
  }
  const int64_t* words = plan.words.data();
  for (size_t i = 0; i < entries; ++i, words += entry_words(depth)) {
    // see [NOTE: prefetch ahead] in csrc/prefetch.h
    for (int t = 0; t < depth; ++t) prefetch_ahead(lists[t], i, /*storage=*/true);
    const at::Tensor& fast = lists[0][i];
    if (!plainly_valid(fast, device) || words[0] != reinterpret_cast<intptr_t>(fast.data_ptr())) return false;
    const c10::IntArrayRef shape = fast.sizes();
    const at::ScalarType fast_type = fast.scalar_type();
    const at::ScalarType state_type = state_dtype_of(roles, lists, i);
    const at::ScalarType momentum_type = momentum_dtype_of(roles, lists, i);
    for (int t = 1; t < depth; ++t) {
      const at::Tensor& tensor = lists[t][i];
      if (!plainly_valid(tensor, device) || tensor.sizes() != shape ||
          tensor.scalar_type() != role_dtype(roles, t, fast_type, state_type, momentum_type) ||
          words[t] != reinterpret_cast<intptr_t>(tensor.data_ptr())) {
        return false;
      }
    }
    if (words[depth] != fast.numel() ||
        pair_code_of(words[depth + 1]) != entry_code(roles, fast_type, state_type, momentum_type)) {
      return false;
    }
  }
  return true;
}

// The cached plan of `lists`, or the cache's end; the caller holds the cache's mutex.
std::list<std::shared_ptr<const Plan>>::iterator cached_plan(PlanCache& c, const TensorLists& lists, EntryRoles roles,
                                                             at::Device device) {
  for (auto it = c.plans.begin(); it != c.plans.end(); ++it) {
    if (plan_is_for(**it, lists, roles, device)) return it;
  }
  return c.plans.end();
}

}  // namespace

std::shared_ptr<const Plan> build_plan(const TensorLists& lists, EntryRoles roles) {
  return plan_from_words(entry_words_of(lists, roles), roles, device_of(lists));
}

std::shared_ptr<const Plan> find_vouching_plan(const TensorLists& lists, EntryRoles roles, bool for_launch) {
  if (lists.empty() || lists[0].empty()) return nullptr;
  const at::Tensor& first = lists[0][0];
  if (!first.defined() || first.is_meta() || !plainly_valid(first, first.device())) return nullptr;
  const auto first_address = reinterpret_cast<intptr_t>(first.data_ptr());
  auto& c = cache();
  std::shared_ptr<const Plan> candidate;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    for (const auto& plan : c.plans) {
      if (plan->num_entries == static_cast<int64_t>(lists[0].size()) && plan->roles.depth == roles.depth &&
          plan->words[0] == first_address) {
        candidate = plan;
        break;
      }
    }
  }
  if (!candidate || !plainly_matches(*candidate, lists, roles, first.device())) return nullptr;
  if (for_launch) {
    std::lock_guard<std::mutex> lock(c.mutex);
    ++c.stats.hits;
    auto it = std::find(c.plans.begin(), c.plans.end(), candidate);
    if (it != c.plans.end()) c.plans.splice(c.plans.begin(), c.plans, it);
  }
  return candidate;
}

bool is_plan_cached(const TensorLists& lists, EntryRoles roles) {
  auto& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return cached_plan(c, lists, roles, device_of(lists)) != c.plans.end();
}

std::shared_ptr<const Plan> find_or_build_plan(const TensorLists& lists, EntryRoles roles,
                                               const std::function<void()>& check_before_build) {
  const at::Device device = device_of(lists);
  auto& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = cached_plan(c, lists, roles, device);
    if (it != c.plans.end()) {
      c.plans.splice(c.plans.begin(), c.plans, it);
      ++c.stats.hits;
      return c.plans.front();
    }
  }
  check_before_build();
  std::shared_ptr<const Plan> plan = plan_from_words(entry_words_of(lists, roles), roles, device);
  std::lock_guard<std::mutex> lock(c.mutex);
  ++c.stats.builds;
  c.plans.push_front(plan);
  if (c.plans.size() > kCachedPlans) c.plans.pop_back();
  return plan;
}

PlanCacheStats plan_cache_stats() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().stats;
}

void clear_plan_cache() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  cache().plans.clear();
  cache().stats = {};
}

}  // namespace lookahead_fused
