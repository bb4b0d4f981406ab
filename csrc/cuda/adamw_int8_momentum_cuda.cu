// The CUDA kernels of AdamW's step with an int8 outer momentum and their launcher: one warp per block of
// kInt8Block elements, the entries in the launch's parameter
// (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh), one kernel per slow weights'
// storage (see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh). Light includes only (no
// torch/extension.h), as sync_cuda.cu.
#include <algorithm>
#include <array>
#include <atomic>

#include <c10/cuda/CUDAException.h>

#include "adamw_int8_momentum_kernel.cuh"

namespace lookahead_fused {
namespace {

template <typename Slow>
__global__ void __launch_bounds__(kInt8Threads, kMinBlocksPerSM)
    adamw_int8_momentum_step_kernel(const __grid_constant__ AdamWInt8LaunchTable table, const double* hyper,
                                    const int64_t* rows, float mu, bool nesterov) {
  const int64_t warp = (int64_t(blockIdx.x) * kInt8Threads + threadIdx.x) / kInt8Lanes;
  adamw_int8_warp<Int8DeviceMemory, Slow>(table, hyper, rows, mu, nesterov, warp,
                                          int64_t(gridDim.x) * kInt8WarpsPerBlock, DeviceWarp{});
}

// The most thread blocks of the kernel for Slow resident on the device at once: the grid of a large
// launch, whose warps then stride over the blocks of elements.
template <typename Slow>
int64_t adamw_int8_resident_blocks(int device_index) {
  static std::array<std::atomic<int64_t>, 64> blocks_per_device{};  // 0: not measured yet
  int64_t blocks = device_index < 64 ? blocks_per_device[device_index].load() : 0;
  if (blocks == 0) {
    int sms = 0, per_sm = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_index));
    C10_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, adamw_int8_momentum_step_kernel<Slow>, kInt8Threads, 0));
    blocks = int64_t(sms) * std::max(per_sm, 1);
    if (device_index < 64) blocks_per_device[device_index].store(blocks);
  }
  return blocks;
}

template <typename Slow>
void launch_adamw_int8_momentum(const std::vector<AdamWInt8CudaEntry>& entries, const double* hyper,
                                const int64_t* rows, float mu, bool nesterov, cudaStream_t stream, int device_index) {
  for (size_t first = 0; first < entries.size(); first += kAdamWInt8LaunchEntries) {
    const int count = static_cast<int>(std::min<size_t>(kAdamWInt8LaunchEntries, entries.size() - first));
    const AdamWInt8LaunchTable table = adamw_int8_launch_table(entries, first, count);
    const int64_t blocks = table.first_block[count];
    if (blocks == 0) continue;
    const int64_t needed = (blocks + kInt8WarpsPerBlock - 1) / kInt8WarpsPerBlock;
    const auto grid = static_cast<unsigned>(std::min(needed, adamw_int8_resident_blocks<Slow>(device_index)));
    adamw_int8_momentum_step_kernel<Slow><<<grid, kInt8Threads, 0, stream>>>(table, hyper, rows, mu, nesterov);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace

void launch_adamw_int8_momentum_cuda(const std::vector<AdamWInt8CudaEntry>& entries, const double* hyper,
                                     const int64_t* rows, float mu, bool nesterov, void* stream, int device_index) {
  if (entries.empty()) return;
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  if (entries[0].slow_low != nullptr) {  // every entry of a call is of one kind
    launch_adamw_int8_momentum<CompactSlow>(entries, hyper, rows, mu, nesterov, cuda_stream, device_index);
  } else {
    launch_adamw_int8_momentum<Float32Slow>(entries, hyper, rows, mu, nesterov, cuda_stream, device_index);
  }
}

}  // namespace lookahead_fused
