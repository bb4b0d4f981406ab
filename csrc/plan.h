// A plan: the tensor table of one parameter set (see [NOTE: table layout] in table.h), kept on the
// host and, for CUDA, once on the device; found again by content, so a training loop that syncs
// the same tensors reuses it: no host-to-device copy and one launch per sync in steady state.
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
  int64_t num_pairs = 0;
  int64_t num_chunks = 0;
  int64_t num_elements = 0;  // over every pair
  int64_t chunk_elems = 0;    // elements of a chunk (chunking.h)
  at::Device device{at::kCPU};

  TableView host_view() const { return {words.data(), num_pairs, num_chunks, chunk_elems}; }
  TableView device_view() const {
    return {device_words.const_data_ptr<int64_t>(), num_pairs, num_chunks, chunk_elems};
  }
};

struct PlanCacheStats {
  int64_t builds = 0;  // tables built (and, for CUDA, uploaded)
  int64_t hits = 0;    // calls that reused a cached table
};

// The plan for (first[i], second[i]) pairs that check_*_pairs has accepted; on a miss,
// `check_before_build` runs (the overlap check) and then the plan is built and cached.
std::shared_ptr<const Plan> find_or_build_plan(at::TensorList first, at::TensorList second,
                                               const std::function<void()>& check_before_build);

// The plan for the given pairs, always newly built (the pybind SyncPlan class holds one).
std::shared_ptr<const Plan> build_plan(at::TensorList first, at::TensorList second);

PlanCacheStats plan_cache_stats();
void clear_plan_cache();

}  // namespace lookahead_fused
