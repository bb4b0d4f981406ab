// The CUDA kernels of AdamW's step with an int8 outer momentum and their launcher: one warp per block of
// kInt8Block elements, the entries in the launch's parameter
// (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh), one kernel per slow weights'
// storage (see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh). Light includes only (no
// torch/extension.h), as sync_cuda.cu.
#include "adamw_int8_momentum_kernel.cuh"
#include "launch_grid.cuh"

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

// The blocks per SM of the kernel for Slow: per Slow, as int8_blocks_per_sm in int8_momentum_cuda.cu is,
// so that the compact kernel's registers leave the float32 one's grid as it was.
template <typename Slow>
int adamw_int8_blocks_per_sm() {
  return blocks_per_sm_of(adamw_int8_momentum_step_kernel<Slow>, kInt8Threads);
}

template <typename Slow>
void launch_adamw_int8_momentum(const std::vector<AdamWInt8CudaEntry>& entries, const double* hyper,
                                const int64_t* rows, float mu, bool nesterov, cudaStream_t stream, int device_index) {
  launch_int8_blocks<kAdamWInt8LaunchEntries>(
      entries, &resident_blocks<&adamw_int8_blocks_per_sm<Slow>>, device_index, adamw_int8_launch_table,
      [&](const AdamWInt8LaunchTable& table, unsigned grid) {
        adamw_int8_momentum_step_kernel<Slow><<<grid, kInt8Threads, 0, stream>>>(table, hyper, rows, mu, nesterov);
      });
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
