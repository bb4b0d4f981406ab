// The CUDA kernel of AdamW's step with int8-delta slow weights and its launcher: one warp per block of
// kInt8Block elements, the entries in the launch's parameter
// (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh). Light includes only (no
// torch/extension.h), as sync_cuda.cu.
#include "adamw_delta_kernel.cuh"
#include "launch_grid.cuh"

namespace lookahead_fused {
namespace {

__global__ void __launch_bounds__(kInt8Threads, kMinBlocksPerSM)
    adamw_delta_kernel(const __grid_constant__ DeltaLaunchTable table, const double* hyper, const int64_t* rows,
                       float mu, bool nesterov) {
  const int64_t warp = (int64_t(blockIdx.x) * kInt8Threads + threadIdx.x) / kInt8Lanes;
  delta_warp<Int8DeviceMemory>(table, hyper, rows, {mu, nesterov}, warp, int64_t(gridDim.x) * kInt8WarpsPerBlock,
                               DeviceWarp{});
}

int delta_blocks_per_sm() { return blocks_per_sm_of(adamw_delta_kernel, kInt8Threads); }

}  // namespace

void launch_adamw_delta_cuda(const std::vector<DeltaCudaEntry>& entries, const double* hyper, const int64_t* rows,
                             float mu, bool nesterov, void* stream, int device_index) {
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  launch_int8_blocks<kDeltaLaunchEntries>(entries, &resident_blocks<&delta_blocks_per_sm>, device_index,
                                          delta_launch_table, [&](const DeltaLaunchTable& table, unsigned grid) {
                                            adamw_delta_kernel<<<grid, kInt8Threads, 0, cuda_stream>>>(
                                                table, hyper, rows, mu, nesterov);
                                          });
}

}  // namespace lookahead_fused
