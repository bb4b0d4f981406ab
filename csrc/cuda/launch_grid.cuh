// The grids of the CUDA launchers: how many thread blocks of a kernel family fit the device at once,
// measured once per device, and the split of a call's entries into launches of an int8 block kernel.
// Host code of the .cu launchers only: it calls the CUDA runtime (the host emulations in tests/cpp do
// not include it).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include <c10/cuda/CUDAException.h>

#include "int8_momentum_kernel.cuh"

namespace lookahead_fused {

// Thread blocks of `threads` threads each of `kernel` that one SM holds at once (at least one).
template <typename Kernel>
int blocks_per_sm_of(Kernel kernel, int threads) {
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0));
  return std::max(per_sm, 1);
}

// The most thread blocks of a kernel family resident on the device at once, the SMs times
// BlocksPerSM() (the fewest of the family's kernels): the grid of a large launch, whose blocks then
// stride over the work. Measured on a device's first launch of the family, then read from a cache.
template <int (*BlocksPerSM)()>
int64_t resident_blocks(int device_index) {
  static std::array<std::atomic<int64_t>, 64> blocks_per_device{};  // 0: not measured yet
  int64_t blocks = device_index < 64 ? blocks_per_device[device_index].load() : 0;
  if (blocks == 0) {
    int sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_index));
    blocks = int64_t(sms) * BlocksPerSM();
    if (device_index < 64) blocks_per_device[device_index].store(blocks);
  }
  return blocks;
}

// One launch per kEntries entries (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh):
// table_of(entries, first, count) builds a launch's table, launch(table, grid) launches it with one
// warp per block of elements, at most resident(device_index) thread blocks; a table of no elements is
// not launched.
template <int kEntries, typename Entry, typename TableOf, typename Launch>
void launch_int8_blocks(const std::vector<Entry>& entries, int64_t (*resident)(int), int device_index, TableOf table_of,
                        Launch launch) {
  for (size_t first = 0; first < entries.size(); first += kEntries) {
    const int count = static_cast<int>(std::min<size_t>(kEntries, entries.size() - first));
    const auto table = table_of(entries, first, count);
    const int64_t blocks = table.first_block[count];
    if (blocks == 0) continue;
    const int64_t needed = (blocks + kInt8WarpsPerBlock - 1) / kInt8WarpsPerBlock;
    launch(table, static_cast<unsigned>(std::min(needed, resident(device_index))));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace lookahead_fused
