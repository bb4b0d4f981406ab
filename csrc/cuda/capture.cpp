#include "capture.h"

#include <atomic>
#include <mutex>
#include <vector>

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

namespace lookahead_fused {

// [NOTE: plans under capture] A captured kernel keeps the raw address of its plan's device table,
// so the plan must outlive the graph: evicting it from the cache (a 9th parameter set,
// clear_plan_cache()) would leave replays reading freed memory. The graph itself holds a reference,
// a CUDA user object that the driver releases when the graph and all its executable instances are
// destroyed. CUDA forbids CUDA calls in that release callback, and freeing a table that was
// record_stream()ed makes one, so the callback only hands the plan to `retired`, which the next op
// call frees. A plan cannot be built during capture (the upload is a blocking copy): module.cpp
// raises an error that says to warm up first.
namespace {

std::mutex retired_mutex;
std::vector<std::shared_ptr<const Plan>> retired;
std::atomic<bool> any_retired{false};

void retire(void* held) {
  auto* plan = static_cast<std::shared_ptr<const Plan>*>(held);
  std::lock_guard<std::mutex> lock(retired_mutex);
  retired.push_back(std::move(*plan));
  any_retired = true;
  delete plan;
}

}  // namespace

bool is_capturing(void* stream) {
  cudaStreamCaptureStatus status;
  C10_CUDA_CHECK(cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &status));
  return status == cudaStreamCaptureStatusActive;
}

void keep_alive_with_captured_graph(std::shared_ptr<const Plan> plan, void* stream) {
  cudaStreamCaptureStatus status;
  unsigned long long id = 0;
  cudaGraph_t graph = nullptr;
  C10_CUDA_CHECK(cudaStreamGetCaptureInfo(static_cast<cudaStream_t>(stream), &status, &id, &graph));
  auto* held = new std::shared_ptr<const Plan>(std::move(plan));
  cudaUserObject_t object;
  cudaError_t error = cudaUserObjectCreate(&object, held, &retire, 1, cudaUserObjectNoDestructorSync);
  if (error != cudaSuccess) delete held;
  C10_CUDA_CHECK(error);
  C10_CUDA_CHECK(cudaGraphRetainUserObject(graph, object, 1, cudaGraphUserObjectMove));
}

void release_plans_of_destroyed_graphs() {
  if (!any_retired.load(std::memory_order_relaxed)) return;
  std::vector<std::shared_ptr<const Plan>> freed;
  {
    std::lock_guard<std::mutex> lock(retired_mutex);
    freed.swap(retired);
    any_retired = false;
  }
}

}  // namespace lookahead_fused
