// The CPU kernels that walk int8 blocks (int8_momentum_cpu.cpp, adamw_delta_cpu.cpp): the blocks of
// kInt8Block elements of every entry of a call, numbered across the call, in one parallel region.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../element_math.h"

namespace lookahead_fused {

// The params' dtypes of these kernels (contract.ENCODED_PARAM_DTYPES), as an entry records them.
enum class BlockParamType { kF32, kF16, kBF16 };

// `t`'s BlockParamType; the callers' checks refuse any other dtype first.
inline BlockParamType block_param_type_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return BlockParamType::kF32;
    case at::kHalf: return BlockParamType::kF16;
    case at::kBFloat16: return BlockParamType::kBF16;
    default:
      std::fprintf(stderr, "lookahead_fused: no int8-block kernel for dtype %s\n", c10::toString(t.scalar_type()));
      std::abort();
  }
}

inline int64_t int8_blocks_of(int64_t numel) { return (numel + kInt8Block - 1) / kInt8Block; }

// At least this many blocks to a task (see [NOTE: CPU grain] in csrc/cpu/sync_cpu.cpp).
constexpr int64_t kMinTaskBlocks = (int64_t(1) << 16) / kInt8Block;

// run(entry, first, last) for blocks [first, last) of each entry, split into parallel tasks over the
// call's `blocks` blocks. Entry has `numel` and `first_block`, the number of its first block in the
// call, increasing along `entries`; no entry is empty.
template <class Entry, class Run>
void run_block_tasks(const std::vector<Entry>& entries, int64_t blocks, const Run& run) {
  if (blocks == 0) return;
  at::parallel_for(0, blocks, kMinTaskBlocks, [&](int64_t begin, int64_t end) {
    auto entry = std::upper_bound(entries.begin(), entries.end(), begin,
                                  [](int64_t block, const Entry& e) { return block < e.first_block; }) - 1;
    for (int64_t b = begin; b < end; ++entry) {
      const int64_t stop = std::min(end, entry->first_block + int8_blocks_of(entry->numel));
      run(*entry, b - entry->first_block, stop - entry->first_block);
      b = stop;
    }
  });
}

}  // namespace lookahead_fused
