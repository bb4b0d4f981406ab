#include "chunking.h"

#include <algorithm>
#include <vector>

#include "table.h"

namespace lookahead_fused {

// [NOTE: chunk size from the bytes model] A CUDA launch has `lanes` resident blocks (SMs x blocks
// per SM, 264 on an H100) and the chunks go to them round-robin, so a launch lasts about as long as
// its busiest block: model each block as a lane with 1/lanes of the memory bandwidth, and its time
// as the bytes it moves (read and write of every tensor) plus kChunkCostBytes per chunk. Fixed
// 65536-element chunks leave most of a launch to a few blocks whenever the chunk count is not a
// large multiple of the lane count: 10M fp32 params are 153 chunks of 1 MB on 264 lanes, so the
// busiest lane moves 1 MB where the mean is 0.61 MB (58 % of the limit, with the chunk cost); 300
// chunks take two rounds where 1.14 would do (56 %). Smaller chunks even the lanes out but pay
// their fixed cost more often; the plan takes the multiple of kChunkQuantum up to kMaxChunkElems
// whose busiest lane is cheapest, the largest on a tie within 1 % (10M fp32 params: 38 x 1024
// elements, 258 chunks in one round). The model is pessimistic about uneven lanes (the blocks still
// running can draw the bandwidth of those that finished, up to what one SM can take) and is
// unmeasured on a GPU. The CPU kernel keeps kMaxChunkElems: its threads take contiguous runs of
// chunks (see [NOTE: CPU grain] in csrc/cpu/sync_cpu.cpp).
int64_t busiest_lane_bytes(const int64_t* words, int64_t num_entries, EntryRoles roles, int64_t lanes, int64_t chunk) {
  const int depth = roles.depth;
  const int64_t stride = entry_words(depth);
  int64_t num_chunks = 0;
  for (int64_t t = 0; t < num_entries; ++t) num_chunks += (words[t * stride + depth] + chunk - 1) / chunk;
  const int64_t grid = std::max<int64_t>(1, std::min(num_chunks, lanes));
  std::vector<int64_t> lane(grid, 0);
  int64_t c = 0;
  for (int64_t t = 0; t < num_entries; ++t) {
    const int64_t numel = words[t * stride + depth];
    const int64_t bytes_per_element = 2 * entry_element_bytes(pair_code_of(words[t * stride + depth + 1]), roles);
    for (int64_t lo = 0; lo < numel; lo += chunk, ++c) {
      lane[c % grid] += std::min(chunk, numel - lo) * bytes_per_element + kChunkCostBytes;
    }
  }
  return *std::max_element(lane.begin(), lane.end());
}

int64_t choose_chunk_elements(const int64_t* words, int64_t num_entries, EntryRoles roles, int64_t lanes) {
  if (lanes <= 0) return kMaxChunkElems;
  int64_t best = kMaxChunkElems;
  int64_t best_bytes = busiest_lane_bytes(words, num_entries, roles, lanes, best);
  for (int64_t chunk = kMaxChunkElems - kChunkQuantum; chunk >= kChunkQuantum; chunk -= kChunkQuantum) {
    const int64_t bytes = busiest_lane_bytes(words, num_entries, roles, lanes, chunk);
    if (bytes * 101 < best_bytes * 100) {
      best = chunk;
      best_bytes = bytes;
    }
  }
  return best;
}

}  // namespace lookahead_fused
