// The fused sync/swap kernel: one launch walks the whole tensor table (see [NOTE: table layout]).
// Light includes only (no torch/extension.h): this translation unit is compiled once per arch.
#include <array>
#include <atomic>

#include <c10/cuda/CUDAException.h>

#include "table_kernel.cuh"

namespace lookahead_fused {
namespace {

template <typename Gate>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM) table_kernel(const int64_t* __restrict__ words,
                                                                          int64_t num_pairs, int64_t num_chunks,
                                                                          Gate gate) {
  table_thread<DeviceMemory>(words, num_pairs, num_chunks, gate, blockIdx.x, gridDim.x, threadIdx.x);
}

// Enough blocks to fill every SM at full occupancy; more chunks than that are grid-strided.
template <typename Op>
int64_t grid_size(int device_index, int64_t num_chunks) {
  static std::array<std::atomic<int>, 64> blocks_per_device{};  // 0: not measured yet
  int blocks = device_index < 64 ? blocks_per_device[device_index].load() : 0;
  if (blocks == 0) {
    int sms = 0, per_sm = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_index));
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, table_kernel<Op>, kThreads, 0));
    blocks = sms * (per_sm > 0 ? per_sm : 1);
    if (device_index < 64) blocks_per_device[device_index].store(blocks);
  }
  return num_chunks < blocks ? num_chunks : blocks;
}

template <typename Op>
void launch(TableView table, Op op, cudaStream_t stream, int device_index) {
  int64_t grid = grid_size<Op>(device_index, table.num_chunks);
  table_kernel<Op><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(table.words, table.num_pairs,
                                                                          table.num_chunks, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void launch_cuda_on_step(TableView table, StepGate gate, void* stream, int device_index) {
  if (table.num_chunks == 0) return;
  launch(table, GatedSyncOp{gate}, static_cast<cudaStream_t>(stream), device_index);
}

void launch_cuda(TableView table, TableOp op, double alpha, void* stream, int device_index) {
  if (table.num_chunks == 0) return;
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  if (op == TableOp::kSync) {
    launch(table, SyncOp{alpha}, cuda_stream, device_index);
  } else {
    launch(table, SwapOp{}, cuda_stream, device_index);
  }
}

}  // namespace lookahead_fused
