// The tensor table a fused sync or swap walks: plain data, no torch headers, so that the CUDA
// translation unit stays light (see docs/design.md, "Builds").
//
// [NOTE: table layout] One int64 array, built once per parameter set (plan.cpp) and reused:
//   per tensor pair t, kEntryWords words: fast address, slow address, numel, meta
//     meta = pair_code | (head + 1) << 8, head = the first element index at which both tensors are
//     16-byte aligned (< kVecBytes), or -1 when the two never align together (then the whole pair
//     runs scalar; a tensor whose both ends are offset alike keeps its vector body);
//   then per chunk one word: pair index << kChunkBits | chunk index, chunk = chunk_elems elements,
//   chosen per plan (chunking.h, [NOTE: chunk size from the bytes model]).
// A block (CUDA) or a task (CPU) takes whole chunks, so every tensor size shares one grid.
#pragma once

#include <cstdint>

namespace lookahead_fused {

enum PairCode : int64_t {  // (fast dtype, slow dtype) pairs of the contract
  kF32F32 = 0,
  kF64F64 = 1,
  kF16F16 = 2,
  kBF16BF16 = 3,
  kF16F32 = 4,
  kBF16F32 = 5,
};

constexpr int kEntryWords = 4;
constexpr int kChunkBits = 40;  // chunk index bits; the pair index takes the 23 bits above
constexpr int kVecBytes = 16;

enum class TableOp { kSync, kSwap };

struct TableView {  // what a kernel needs: the table, how many pairs and chunks it holds, the chunk size
  const int64_t* words;
  int64_t num_pairs;
  int64_t num_chunks;
  int64_t chunk_elems;
};

#ifdef __CUDACC__
#define LOOKAHEAD_HOST_DEVICE __host__ __device__
#else
#define LOOKAHEAD_HOST_DEVICE
#endif

LOOKAHEAD_HOST_DEVICE inline int64_t pair_code_of(int64_t meta) { return meta & 0xff; }
LOOKAHEAD_HOST_DEVICE inline int64_t head_of(int64_t meta) { return (meta >> 8) - 1; }

// The bytes of one fast and one slow element of a pair (the planner's bytes model).
inline int64_t pair_element_bytes(int64_t code) {
  switch (code) {
    case kF32F32: return 8;
    case kF64F64: return 16;
    case kF16F16: case kBF16BF16: return 4;
    case kF16F32: case kBF16F32: return 6;
    default: return 0;
  }
}

// The first element index at which both tensors sit on a 16-byte boundary, or -1 if none does.
// A vector step covers kVecBytes of the fast tensor, so the pattern repeats after that many of
// its elements (and the slow tensor's, with elements at least as wide, repeats within it).
inline int64_t common_head(uintptr_t fast, int64_t fast_size, uintptr_t slow, int64_t slow_size) {
  if (fast % fast_size || slow % slow_size) return -1;
  for (int64_t i = 0; i < kVecBytes / fast_size; ++i) {
    if ((fast + i * fast_size) % kVecBytes == 0 && (slow + i * slow_size) % kVecBytes == 0) return i;
  }
  return -1;
}

// [NOTE: step gate] sync_on_step_ decides on the device whether this is a sync step, so a captured
// CUDA graph (or a compiled step) is the same on every step: the kernel reads *step and alpha where
// it runs and returns at once unless *step % k == 0. No host synchronisation, no host-side branch.
struct StepGate {
  const int64_t* step;
  int64_t k;
  const void* alpha;  // one float32 or float64
  bool alpha_is_double;
};

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
// How many blocks of the table kernel run at once on the device: the grid of a large launch.
int64_t cuda_resident_blocks(int device_index);
// Launches one kernel over the device-resident table on `stream` (a cudaStream_t).
void launch_cuda(TableView table, TableOp op, double alpha, void* stream, int device_index);
// The sync, gated by `gate` (device pointers): one launch every step, early exit off the sync steps.
void launch_cuda_on_step(TableView table, StepGate gate, void* stream, int device_index);
#endif

}  // namespace lookahead_fused
