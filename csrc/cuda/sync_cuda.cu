// The fused sync/swap kernel: one launch walks the whole tensor table (see [NOTE: table layout]).
// Light includes only (no torch/extension.h): this translation unit is compiled once per arch.
#include <algorithm>
#include <array>
#include <atomic>

#include <c10/cuda/CUDAException.h>

#include "table_kernel.cuh"

namespace lookahead_fused {
namespace {

template <typename Gate>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM) table_kernel(const int64_t* __restrict__ words,
                                                                          int64_t num_pairs, int64_t num_chunks,
                                                                          int64_t chunk_elems, Gate gate) {
  table_thread<DeviceMemory>(words, num_pairs, num_chunks, chunk_elems, gate, blockIdx.x, gridDim.x, threadIdx.x);
}

template <typename Op>
int blocks_per_sm() {
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, table_kernel<Op>, kThreads, 0));
  return per_sm > 0 ? per_sm : 1;
}

template <typename Op>
void launch(TableView table, Op op, cudaStream_t stream, int device_index) {
  // Enough blocks to fill every SM; more chunks than that are grid-strided.
  int64_t grid = std::min(table.num_chunks, cuda_resident_blocks(device_index));
  table_kernel<Op><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(table.words, table.num_pairs,
                                                                          table.num_chunks, table.chunk_elems, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

// The same grid for every op: the fewest resident blocks of its instantiations (all three are
// bounded to kMinBlocksPerSM by __launch_bounds__), so a plan's chunking fits any launch of it.
int64_t cuda_resident_blocks(int device_index) {
  static std::array<std::atomic<int64_t>, 64> blocks_per_device{};  // 0: not measured yet
  int64_t blocks = device_index < 64 ? blocks_per_device[device_index].load() : 0;
  if (blocks == 0) {
    int sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_index));
    blocks = int64_t(sms) * std::min({blocks_per_sm<SyncOp>(), blocks_per_sm<SwapOp>(), blocks_per_sm<GatedSyncOp>()});
    if (device_index < 64) blocks_per_device[device_index].store(blocks);
  }
  return blocks;
}

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
