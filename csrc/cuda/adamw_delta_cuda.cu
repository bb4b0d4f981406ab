// The CUDA kernel of AdamW's step with int8-delta slow weights and its launcher: one warp per block of
// kInt8Block elements, the entries in the launch's parameter
// (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh). Light includes only (no
// torch/extension.h), as sync_cuda.cu.
#include <algorithm>
#include <array>
#include <atomic>

#include <c10/cuda/CUDAException.h>

#include "adamw_delta_kernel.cuh"

namespace lookahead_fused {
namespace {

__global__ void __launch_bounds__(kInt8Threads, kMinBlocksPerSM)
    adamw_delta_kernel(const __grid_constant__ DeltaLaunchTable table, const double* hyper, const int64_t* rows,
                       float mu, bool nesterov) {
  const int64_t warp = (int64_t(blockIdx.x) * kInt8Threads + threadIdx.x) / kInt8Lanes;
  delta_warp<Int8DeviceMemory>(table, hyper, rows, {mu, nesterov}, warp, int64_t(gridDim.x) * kInt8WarpsPerBlock,
                               DeviceWarp{});
}

// The most thread blocks of the kernel resident on the device at once: the grid of a large launch,
// whose warps then stride over the blocks of elements.
int64_t delta_resident_blocks(int device_index) {
  static std::array<std::atomic<int64_t>, 64> blocks_per_device{};  // 0: not measured yet
  int64_t blocks = device_index < 64 ? blocks_per_device[device_index].load() : 0;
  if (blocks == 0) {
    int sms = 0, per_sm = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_index));
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, adamw_delta_kernel, kInt8Threads, 0));
    blocks = int64_t(sms) * std::max(per_sm, 1);
    if (device_index < 64) blocks_per_device[device_index].store(blocks);
  }
  return blocks;
}

}  // namespace

void launch_adamw_delta_cuda(const std::vector<DeltaCudaEntry>& entries, const double* hyper, const int64_t* rows,
                             float mu, bool nesterov, void* stream, int device_index) {
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  for (size_t first = 0; first < entries.size(); first += kDeltaLaunchEntries) {
    const int count = static_cast<int>(std::min<size_t>(kDeltaLaunchEntries, entries.size() - first));
    const DeltaLaunchTable table = delta_launch_table(entries, first, count);
    const int64_t blocks = table.first_block[count];
    if (blocks == 0) continue;
    const int64_t needed = (blocks + kInt8WarpsPerBlock - 1) / kInt8WarpsPerBlock;
    const auto grid = static_cast<unsigned>(std::min(needed, delta_resident_blocks(device_index)));
    adamw_delta_kernel<<<grid, kInt8Threads, 0, cuda_stream>>>(table, hyper, rows, mu, nesterov);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace lookahead_fused
