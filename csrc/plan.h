// A plan: the tensor table of one parameter set (see [NOTE: table layout] in csrc/table.h), kept on the
// host and, for CUDA, once on the device; found again by content, so a training loop that updates
// the same tensors reuses it: no host-to-device copy and one launch per update in steady state.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "table.h"

namespace lookahead_fused {

struct Plan {
  std::vector<int64_t> words;  // the whole table on the host
  at::Tensor device_words;     // the same on the CUDA device (undefined for CPU plans)
  EntryRoles roles{2, 1};      // tensors per entry, and which have the fast dtype
  int64_t num_entries = 0;
  int64_t num_chunks = 0;
  int64_t num_elements = 0;  // over every entry
  int64_t chunk_elems = 0;   // elements of a chunk (chunking.h)
  at::Device device{at::kCPU};

  TableView host_view() const { return {words.data(), num_entries, num_chunks, chunk_elems, roles.depth}; }
  TableView device_view() const {
    return {device_words.const_data_ptr<int64_t>(), num_entries, num_chunks, chunk_elems, roles.depth};
  }
};

struct PlanCacheStats {
  int64_t builds = 0;  // tables built (and, for CUDA, uploaded)
  int64_t hits = 0;    // calls that reused a cached table
};

// The tensor lists of one call: lists[0] the fast tensors, then the state lists, entry i taking the
// i-th tensor of each (the checks of contract.h have accepted them), in the roles of the op
// (roles_of in table.h).
using TensorLists = std::vector<at::TensorList>;

// The plan for `lists`; on a miss, `check_before_build` runs (the overlap check) and then the plan is
// built and cached.
std::shared_ptr<const Plan> find_or_build_plan(const TensorLists& lists, EntryRoles roles,
                                               const std::function<void()>& check_before_build);

// [NOTE: a cached plan vouches] A plan enters the cache only after its lists passed the op's whole
// check (csrc/ops.cpp). Lists whose every entry holds the addresses, size and pair code of a cached
// plan's entry, with its tensors plainly alike (see [NOTE: plainly valid pairs] in csrc/contract.cpp)
// and each of its role's dtype, pass that check too: what it reads is the same, and the overlap check
// depends only on addresses, sizes and dtypes. So a sync's check looks for such a plan first, in one
// walk over the tensors that checks and compares at once, and runs the full checks (which name what
// is wrong) and the general lookup only when none is found. With `for_launch` a found plan counts as
// a hit and becomes the most recently used.
std::shared_ptr<const Plan> find_vouching_plan(const TensorLists& lists, EntryRoles roles, bool for_launch);

// Whether a plan for `lists` is cached, so their overlap check has passed (a lookup that neither
// counts in the statistics nor changes the cache's order).
bool is_plan_cached(const TensorLists& lists, EntryRoles roles);

// The plan for `lists`, always newly built (the pybind SyncPlan class holds one).
std::shared_ptr<const Plan> build_plan(const TensorLists& lists, EntryRoles roles);

PlanCacheStats plan_cache_stats();
void clear_plan_cache();

}  // namespace lookahead_fused
