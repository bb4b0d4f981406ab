#include "plan.h"

#include "chunking.h"

#include <list>
#include <mutex>

#include <ATen/ops/from_blob.h>
#include <c10/util/Exception.h>

namespace lookahead_fused {
namespace {

constexpr size_t kCachedPlans = 8;

int64_t pair_code(at::ScalarType fast, at::ScalarType slow) {
  if (fast == slow) {
    switch (fast) {
      case at::kFloat: return kF32F32;
      case at::kDouble: return kF64F64;
      case at::kHalf: return kF16F16;
      case at::kBFloat16: return kBF16BF16;
      default: break;
    }
  } else if (slow == at::kFloat) {
    if (fast == at::kHalf) return kF16F32;
    if (fast == at::kBFloat16) return kBF16F32;
  }
  TORCH_CHECK(false, "lookahead_fused: no kernel for fast ", fast, " with slow ", slow);
}

// The per-pair part of the table: all that a plan depends on, so it is also the cache key.
std::vector<int64_t> pair_words(at::TensorList first, at::TensorList second) {
  std::vector<int64_t> words;
  words.reserve(first.size() * kEntryWords);
  for (size_t i = 0; i < first.size(); ++i) {
    const at::Tensor& f = first[i];
    const at::Tensor& s = second[i];
    auto fast_address = reinterpret_cast<uintptr_t>(f.data_ptr());
    auto slow_address = reinterpret_cast<uintptr_t>(s.data_ptr());
    int64_t head = common_head(fast_address, f.element_size(), slow_address, s.element_size());
    words.push_back(static_cast<int64_t>(fast_address));
    words.push_back(static_cast<int64_t>(slow_address));
    words.push_back(f.numel());
    words.push_back(pair_code(f.scalar_type(), s.scalar_type()) | ((head + 1) << 8));
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

std::shared_ptr<Plan> plan_from_words(std::vector<int64_t> words, at::Device device) {
  auto plan = std::make_shared<Plan>();
  plan->device = device;
  plan->num_pairs = static_cast<int64_t>(words.size() / kEntryWords);
  TORCH_CHECK(plan->num_pairs < (int64_t(1) << (63 - kChunkBits)), "lookahead_fused: too many tensors in one call (",
              plan->num_pairs, ")");
  plan->chunk_elems = choose_chunk_elements(words.data(), plan->num_pairs, resident_lanes(device));
  for (int64_t t = 0; t < plan->num_pairs; ++t) {
    int64_t numel = words[t * kEntryWords + 2];
    plan->num_elements += numel;
    for (int64_t c = 0; c * plan->chunk_elems < numel; ++c) words.push_back((t << kChunkBits) | c);
  }
  plan->num_chunks = static_cast<int64_t>(words.size()) - plan->num_pairs * kEntryWords;
  plan->words = std::move(words);
  if (device.is_cuda()) {
    auto host = at::from_blob(plan->words.data(), {static_cast<int64_t>(plan->words.size())}, at::kLong);
    plan->device_words = host.to(device);  // a build, not the steady state: a blocking copy is fine
  }
  return plan;
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

}  // namespace

std::shared_ptr<const Plan> build_plan(at::TensorList first, at::TensorList second) {
  at::Device device = first.empty() ? at::Device(at::kCPU) : first[0].device();
  return plan_from_words(pair_words(first, second), device);
}

std::shared_ptr<const Plan> find_or_build_plan(at::TensorList first, at::TensorList second,
                                               const std::function<void()>& check_before_build) {
  at::Device device = first.empty() ? at::Device(at::kCPU) : first[0].device();
  std::vector<int64_t> key = pair_words(first, second);
  auto& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto it = c.plans.begin(); it != c.plans.end(); ++it) {
      const Plan& plan = **it;
      if (plan.device == device && plan.num_pairs * kEntryWords == static_cast<int64_t>(key.size()) &&
          std::equal(key.begin(), key.end(), plan.words.begin())) {
        c.plans.splice(c.plans.begin(), c.plans, it);
        ++c.stats.hits;
        return c.plans.front();
      }
    }
  }
  check_before_build();
  std::shared_ptr<const Plan> plan = plan_from_words(std::move(key), device);
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
