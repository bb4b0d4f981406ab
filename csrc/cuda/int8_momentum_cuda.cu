// The int8 momentum sync's CUDA kernels and their launcher: one warp per block of kInt8Block elements,
// the entries in the launch's parameter (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh),
// one kernel per gate and slow weights' storage
// (see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh).
// Light includes only (no torch/extension.h), as sync_cuda.cu.
#include <algorithm>
#include <array>
#include <atomic>

#include <c10/cuda/CUDAException.h>

#include "int8_momentum_kernel.cuh"

namespace lookahead_fused {
namespace {

template <typename Gate, typename Slow>
__global__ void __launch_bounds__(kInt8Threads, kMinBlocksPerSM)
    int8_momentum_kernel(const __grid_constant__ Int8LaunchTable table, Gate gate) {
  const int64_t warp = (int64_t(blockIdx.x) * kInt8Threads + threadIdx.x) / kInt8Lanes;
  int8_warp<Int8DeviceMemory, Slow>(table, gate, warp, int64_t(gridDim.x) * kInt8WarpsPerBlock, DeviceWarp{});
}

template <typename Gate, typename Slow>
int int8_blocks_per_sm() {
  int per_sm = 0;
  C10_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, int8_momentum_kernel<Gate, Slow>, kInt8Threads, 0));
  return per_sm > 0 ? per_sm : 1;
}

// The most thread blocks of either gate's kernel for Slow resident on the device at once: the grid of
// a large launch, whose warps then stride over the blocks of elements. Per Slow, so that the compact
// kernels, which may hold more registers, leave the float32 ones' grid as it was.
template <typename Slow>
int64_t int8_resident_blocks(int device_index) {
  static std::array<std::atomic<int64_t>, 64> blocks_per_device{};  // 0: not measured yet
  int64_t blocks = device_index < 64 ? blocks_per_device[device_index].load() : 0;
  if (blocks == 0) {
    int sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_index));
    blocks =
        int64_t(sms) * std::min(int8_blocks_per_sm<Int8SyncOp, Slow>(), int8_blocks_per_sm<GatedInt8SyncOp, Slow>());
    if (device_index < 64) blocks_per_device[device_index].store(blocks);
  }
  return blocks;
}

template <typename Slow>
void launch_int8_momentum(const std::vector<Int8CudaEntry>& entries, double alpha, double mu, bool nesterov,
                          const StepGate* gate, cudaStream_t stream, int device_index) {
  for (size_t first = 0; first < entries.size(); first += kInt8LaunchEntries) {
    const int count = static_cast<int>(std::min<size_t>(kInt8LaunchEntries, entries.size() - first));
    const Int8LaunchTable table = int8_launch_table(entries, first, count);
    const int64_t blocks = table.first_block[count];
    if (blocks == 0) continue;
    const int64_t needed = (blocks + kInt8WarpsPerBlock - 1) / kInt8WarpsPerBlock;
    const auto grid = static_cast<unsigned>(std::min(needed, int8_resident_blocks<Slow>(device_index)));
    if (gate != nullptr) {
      const GatedInt8SyncOp op{*gate, static_cast<float>(mu), nesterov};
      int8_momentum_kernel<GatedInt8SyncOp, Slow><<<grid, kInt8Threads, 0, stream>>>(table, op);
    } else {
      const Int8SyncOp op{static_cast<float>(alpha), static_cast<float>(mu), nesterov};
      int8_momentum_kernel<Int8SyncOp, Slow><<<grid, kInt8Threads, 0, stream>>>(table, op);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
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
