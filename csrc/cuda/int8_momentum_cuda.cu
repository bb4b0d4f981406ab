// The int8 momentum sync's CUDA kernels and their launcher: one warp per block of kInt8Block elements,
// the entries in the launch's parameter (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh),
// one kernel per gate and slow weights' storage
// (see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh).
// Light includes only (no torch/extension.h), as sync_cuda.cu.
#include <algorithm>

#include "int8_momentum_kernel.cuh"
#include "launch_grid.cuh"

namespace lookahead_fused {
namespace {

template <typename Gate, typename Slow>
__global__ void __launch_bounds__(kInt8Threads, kMinBlocksPerSM)
    int8_momentum_kernel(const __grid_constant__ Int8LaunchTable table, Gate gate) {
  const int64_t warp = (int64_t(blockIdx.x) * kInt8Threads + threadIdx.x) / kInt8Lanes;
  int8_warp<Int8DeviceMemory, Slow>(table, gate, warp, int64_t(gridDim.x) * kInt8WarpsPerBlock, DeviceWarp{});
}

// The fewer blocks per SM of either gate's kernel for Slow: per Slow, so that the compact kernels, which
// may hold more registers, leave the float32 ones' grid as it was.
template <typename Slow>
int int8_blocks_per_sm() {
  return std::min(blocks_per_sm_of(int8_momentum_kernel<Int8SyncOp, Slow>, kInt8Threads),
                  blocks_per_sm_of(int8_momentum_kernel<GatedInt8SyncOp, Slow>, kInt8Threads));
}

template <typename Slow>
void launch_int8_momentum(const std::vector<Int8CudaEntry>& entries, double alpha, double mu, bool nesterov,
                          const StepGate* gate, cudaStream_t stream, int device_index) {
  launch_int8_blocks<kInt8LaunchEntries>(
      entries, &resident_blocks<&int8_blocks_per_sm<Slow>>, device_index, int8_launch_table,
      [&](const Int8LaunchTable& table, unsigned grid) {
        if (gate != nullptr) {
          const GatedInt8SyncOp op{*gate, static_cast<float>(mu), nesterov};
          int8_momentum_kernel<GatedInt8SyncOp, Slow><<<grid, kInt8Threads, 0, stream>>>(table, op);
        } else {
          const Int8SyncOp op{static_cast<float>(alpha), static_cast<float>(mu), nesterov};
          int8_momentum_kernel<Int8SyncOp, Slow><<<grid, kInt8Threads, 0, stream>>>(table, op);
        }
      });
}

}  // namespace

void launch_int8_momentum_cuda(const std::vector<Int8CudaEntry>& entries, double alpha, double mu, bool nesterov,
                               const StepGate* gate, void* stream, int device_index) {
  if (entries.empty()) return;
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  if (entries[0].slow_low != nullptr) {  // every entry of a call is of one kind
    launch_int8_momentum<CompactSlow>(entries, alpha, mu, nesterov, gate, cuda_stream, device_index);
  } else {
    launch_int8_momentum<Float32Slow>(entries, alpha, mu, nesterov, gate, cuda_stream, device_index);
  }
}

}  // namespace lookahead_fused
