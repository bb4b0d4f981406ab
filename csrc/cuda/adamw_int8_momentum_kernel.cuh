// The body of the CUDA kernel of AdamW's step with an int8 outer momentum beside float32 or bf16+int8
// slow weights (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h), as what the lanes of one warp do,
// for two callers: the kernel in adamw_int8_momentum_cuda.cu and the host emulation in
// tests/cpp/test_adamw_int8_momentum_kernel_on_host.cu, through the warp and memory policies of the int8
// momentum sync (int8_momentum_kernel.cuh). One warp per block of kInt8Block elements, each lane
// kInt8LaneElems consecutive ones: AdamW's step on them (adamw.h's element math, as the AdamW-alone
// table kernel runs it), then on a sync row the int8 momentum sync's lane (Int8Lane) with the new params
// in its fast tensor's place. No torch headers.
#pragma once

#include "../adamw.h"
#include "adamw_int8_momentum_cuda.h"
#include "int8_momentum_kernel.cuh"

namespace lookahead_fused {

// A launch's entries travel in its kernel parameter, as the int8 momentum sync's
// (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh); eight tensors an entry leave
// room for kAdamWInt8LaunchEntries of them.
constexpr int kAdamWInt8LaunchEntries = 32;

// The bits of AdamWInt8LaunchTable::vector: the int8 momentum sync's (kInt8Vector*, the param in the
// fast tensor's place), and the grad's and the moments' 16-byte ones.
constexpr uint8_t kAdamWInt8VectorGrad = 16, kAdamWInt8VectorExpAvg = 32, kAdamWInt8VectorExpAvgSq = 64;

// The slow weights are float32 (slow) or bf16+int8 (slow the high parts, slow_low the residuals), the
// same for every entry of a launch (see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh).
struct AdamWInt8LaunchTable {
  void* param[kAdamWInt8LaunchEntries];
  const void* grad[kAdamWInt8LaunchEntries];
  void* exp_avg[kAdamWInt8LaunchEntries];
  void* exp_avg_sq[kAdamWInt8LaunchEntries];
  void* slow[kAdamWInt8LaunchEntries];
  int8_t* slow_low[kAdamWInt8LaunchEntries];  // null for float32 slow weights
  int8_t* codes[kAdamWInt8LaunchEntries];
  float* scales[kAdamWInt8LaunchEntries];
  int64_t numel[kAdamWInt8LaunchEntries];
  int64_t position[kAdamWInt8LaunchEntries];         // the entry's place in the call: its row is rows[position]
  int64_t first_block[kAdamWInt8LaunchEntries + 1];  // entry e: blocks [first_block[e], first_block[e + 1])
  uint8_t dtype[kAdamWInt8LaunchEntries];            // an Int8FastDtype
  uint8_t vector[kAdamWInt8LaunchEntries];
  int32_t count;
};
static_assert(sizeof(AdamWInt8LaunchTable) + 64 <= 4096, "a kernel's parameters take at most 4 KiB");

// The launch table of entries [first, first + count) (host code).
inline AdamWInt8LaunchTable adamw_int8_launch_table(const std::vector<AdamWInt8CudaEntry>& entries, size_t first,
                                                    int count) {
  const auto aligned = [](const void* at) { return reinterpret_cast<uintptr_t>(at) % kVecBytes == 0; };
  AdamWInt8LaunchTable table{};
  table.count = count;
  for (int e = 0; e < count; ++e) {
    const AdamWInt8CudaEntry& entry = entries[first + e];
    table.param[e] = entry.param;
    table.grad[e] = entry.grad;
    table.exp_avg[e] = entry.exp_avg;
    table.exp_avg_sq[e] = entry.exp_avg_sq;
    table.slow[e] = entry.slow;
    table.slow_low[e] = entry.slow_low;
    table.codes[e] = entry.codes;
    table.scales[e] = entry.scales;
    table.numel[e] = entry.numel;
    table.position[e] = entry.position;
    table.first_block[e + 1] = table.first_block[e] + (entry.numel + kInt8Block - 1) / kInt8Block;
    table.dtype[e] = static_cast<uint8_t>(entry.dtype);
    const Int8CudaEntry sync{entry.param,  entry.slow,  entry.slow_low, entry.codes,
                             entry.scales, entry.numel, entry.dtype};
    table.vector[e] = int8_vector_bits(sync) | (aligned(entry.grad) ? kAdamWInt8VectorGrad : 0) |
                      (aligned(entry.exp_avg) ? kAdamWInt8VectorExpAvg : 0) |
                      (aligned(entry.exp_avg_sq) ? kAdamWInt8VectorExpAvgSq : 0);
  }
  return table;
}

// One lane's 8 elements of a block, F the param dtype, Slow the slow weights' storage. Off a sync row,
// step_alone(): AdamW's step, its param and moments stored. On a sync row, begin() loads the lane's param,
// grad, moments and (Int8Lane::load_state) its slow weights, codes and block scale, takes AdamW's step,
// stores the moments and returns the new momenta's largest magnitude_bits (Int8Lane::momenta, the new
// params in its fast values); then sync.finish() as in the int8 momentum sync, which stores the param.
// Elements past the end of a tensor's last block are neither read nor written.
template <typename Mem, typename F, typename Slow>
struct AdamWInt8Lane {
  Int8Lane<Mem, F, Slow> sync;  // the param in its fast tensor's place
  const F* grad_at;
  F* exp_avg_at;
  F* exp_avg_sq_at;
  float grad[kInt8LaneElems], m[kInt8LaneElems], v[kInt8LaneElems];

  LOOKAHEAD_KERNEL_FN void step_alone(const AdamWInt8LaunchTable& table, int e, int64_t lo, int64_t block_elems,
                                      int lane, const AdamWConstants<float>& c) {
    place(table, e, lo, block_elems, lane);
    load();
    step(c);
    store_lane<Mem, F>(sync.fast_at, sync.vector & kInt8VectorFast, sync.count, sync.fast);
  }

  LOOKAHEAD_KERNEL_FN uint32_t begin(const AdamWInt8LaunchTable& table, int e, int64_t lo, int64_t block_elems,
                                     const float* scale, int lane, const AdamWConstants<float>& c, float mu) {
    place(table, e, lo, block_elems, lane);
    sync.load_state(scale, [&] { load(); });
    step(c);
    return sync.momenta(mu);
  }

 private:
  LOOKAHEAD_KERNEL_FN void place(const AdamWInt8LaunchTable& table, int e, int64_t lo, int64_t block_elems, int lane) {
    sync.place(static_cast<F*>(table.param[e]) + lo, Slow::of(table, e) + lo, table.codes[e] + lo, block_elems,
               table.vector[e], lane);
    const int64_t first = lo + int64_t(lane) * kInt8LaneElems;
    grad_at = static_cast<const F*>(table.grad[e]) + first;
    exp_avg_at = static_cast<F*>(table.exp_avg[e]) + first;
    exp_avg_sq_at = static_cast<F*>(table.exp_avg_sq[e]) + first;
  }

  LOOKAHEAD_KERNEL_FN void load() {
    load_lane<Mem, F>(sync.fast_at, sync.vector & kInt8VectorFast, sync.count, sync.fast);
    load_lane<Mem, F>(grad_at, sync.vector & kAdamWInt8VectorGrad, sync.count, grad);
    load_lane<Mem, F>(exp_avg_at, sync.vector & kAdamWInt8VectorExpAvg, sync.count, m);
    load_lane<Mem, F>(exp_avg_sq_at, sync.vector & kAdamWInt8VectorExpAvgSq, sync.count, v);
  }

  // The new params, rounded to F, in sync.fast, as the AdamW-alone table kernel computes them
  // (AdamWStep::step in table_kernel.cuh); the moments stored.
  LOOKAHEAD_KERNEL_FN void step(const AdamWConstants<float>& c) {
    const auto round = [](float x) { return widen(narrow<F>(x)); };
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      sync.fast[i] = round(adamw_element(sync.fast[i], grad[i], m[i], v[i], c, round));
    }
    store_lane<Mem, F>(exp_avg_at, sync.vector & kAdamWInt8VectorExpAvg, sync.count, m);
    store_lane<Mem, F>(exp_avg_sq_at, sync.vector & kAdamWInt8VectorExpAvgSq, sync.count, v);
  }
};

// Block `block` of entry `e`, as its row (read here) says: off a sync row every lane's step_alone; on
// one every lane's begin, the block's largest momentum over the warp, then every lane's finish of the
// int8 momentum sync at the row's float32 alpha, as Int8SyncOp resolves it. The row is the entry's, so
// the branch is uniform over the warp; it is taken once, around whole lanes (one inside a lane, between
// its loads, made ptxas hold the slow weights' and codes' registers over the whole loop, and spill).
template <typename Mem, typename F, typename Slow, typename Warp>
LOOKAHEAD_KERNEL_FN void adamw_int8_block(const AdamWInt8LaunchTable& table, int e, int64_t block, const double* hyper,
                                          const int64_t* rows, float mu, bool nesterov, const Warp& warp) {
  const int64_t lo = block * kInt8Block;
  const int64_t left = table.numel[e] - lo;
  const int64_t elems = left < kInt8Block ? left : kInt8Block;
  const AdamWConstants<float> c(hyper + Mem::load(rows + table.position[e]) * kAdamWColumns);
  AdamWInt8Lane<Mem, F, Slow> lanes[Warp::kLanes];
  if (!c.syncs) {
    for (int l = 0; l < Warp::kLanes; ++l) lanes[l].step_alone(table, e, lo, elems, warp.lane(l), c);
    return;
  }
  float* scale = table.scales[e] + block;
  uint32_t largest[Warp::kLanes];
  for (int l = 0; l < Warp::kLanes; ++l) largest[l] = lanes[l].begin(table, e, lo, elems, scale, warp.lane(l), c, mu);
  const uint32_t block_largest = warp.max(largest);
  const auto math = Int8SyncOp{static_cast<float>(c.alpha), mu, nesterov}.math();
  for (int l = 0; l < Warp::kLanes; ++l) lanes[l].sync.finish(block_largest, math, scale, warp.lane(l));
}

// What warp `warp` of `warps` does: grid-stride over the launch's blocks, one block at a time. Slow:
// Float32Slow or CompactSlow, as the launch's entries are. An unknown param dtype traps.
template <typename Mem, typename Slow, typename Warp>
LOOKAHEAD_KERNEL_FN void adamw_int8_warp(const AdamWInt8LaunchTable& table, const double* hyper, const int64_t* rows,
                                         float mu, bool nesterov, int64_t warp, int64_t warps, const Warp& lanes) {
  const int64_t blocks = table.first_block[table.count];
  for (int64_t b = warp; b < blocks; b += warps) {
    const int e = int8_entry_of(table, b);
    const int64_t block = b - table.first_block[e];
    switch (static_cast<Int8FastDtype>(table.dtype[e])) {
      case Int8FastDtype::kF32:
        adamw_int8_block<Mem, CudaF32, Slow>(table, e, block, hyper, rows, mu, nesterov, lanes);
        break;
      case Int8FastDtype::kF16:
        adamw_int8_block<Mem, CudaF16, Slow>(table, e, block, hyper, rows, mu, nesterov, lanes);
        break;
      case Int8FastDtype::kBF16:
        adamw_int8_block<Mem, CudaBF16, Slow>(table, e, block, hyper, rows, mu, nesterov, lanes);
        break;
      default: unknown_pair_code(table.dtype[e]);
    }
  }
}

}  // namespace lookahead_fused
