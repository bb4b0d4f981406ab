// How big a chunk of the tensor table is, per plan (see [NOTE: table layout] in csrc/table.h).
#pragma once

#include <cstdint>

#include "table.h"

namespace lookahead_fused {

constexpr int64_t kChunkQuantum = 1024;      // every chunk size is a multiple of this many elements
constexpr int64_t kMaxChunkElems = 1 << 16;  // the CPU kernel's chunk, and the largest CUDA one

// The chunk size (elements) for a table of `num_entries` entries of `roles.depth` tensors (`words`,
// entry_words(roles.depth) each) run by `lanes` concurrent workers that take chunks round-robin, as the
// CUDA grid does (see [NOTE: chunk size from the bytes model] in csrc/chunking.cpp). lanes <= 0: kMaxChunkElems.
int64_t choose_chunk_elements(const int64_t* words, int64_t num_entries, EntryRoles roles, int64_t lanes);

// The bytes the busiest lane moves with chunks of `chunk` elements, counting kChunkCostBytes per
// chunk it takes: the model choose_chunk_elements minimises (exposed for the tests and the notes).
int64_t busiest_lane_bytes(const int64_t* words, int64_t num_entries, EntryRoles roles, int64_t lanes, int64_t chunk);

// The fixed cost of one chunk (two dependent table reads, the index math, a partial first and last
// vector step), in the bytes a lane would move in that time (~0.6 us at 1/264 of 3.35 TB/s).
constexpr int64_t kChunkCostBytes = 8192;

}  // namespace lookahead_fused
