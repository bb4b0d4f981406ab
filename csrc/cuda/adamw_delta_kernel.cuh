// The body of the CUDA kernel of AdamW's step with int8-delta slow weights
// (see [NOTE: int8-delta] in csrc/adamw.h), as what the lanes of one warp do, for two callers: the kernel in adamw_delta_cuda.cu
// and the host emulation in tests/cpp/test_adamw_delta_kernel_on_host.cu, as the int8 momentum sync's
// body serves both (its warp and memory policies, int8_momentum_kernel.cuh). One warp per block of 256
// elements, each lane 8 consecutive ones; the element math is adamw.h's, shared with the CPU kernel.
// No torch headers.
#pragma once

#include "../adamw.h"
#include "adamw_delta_cuda.h"
#include "int8_momentum_kernel.cuh"

namespace lookahead_fused {

// A launch's entries travel in its kernel parameter, as the int8 momentum sync's
// (see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh); eight tensors an entry leave
// room for kDeltaLaunchEntries of them.
constexpr int kDeltaLaunchEntries = 32;
constexpr int kDeltaTensors = 4;  // param, grad, exp_avg, exp_avg_sq: the param's dtype

// The bits of DeltaLaunchTable::vector: bit t for tensor t of the four starting where a lane's 16-byte
// access is aligned, kDeltaVectorCodes for the codes' 8-byte one, kDeltaVectorMomentum for the outer
// momentum's (8 bytes of int8 codes, or 16 of float32 or bfloat16 values).
constexpr uint8_t kDeltaVectorCodes = 1 << kDeltaTensors;
constexpr uint8_t kDeltaVectorMomentum = 1 << (kDeltaTensors + 1);

struct DeltaLaunchTable {
  void* tensors[kDeltaTensors][kDeltaLaunchEntries];
  int8_t* codes[kDeltaLaunchEntries];
  float* scales[kDeltaLaunchEntries];
  void* momentum[kDeltaLaunchEntries];  // null for an entry without an outer momentum
  float* momentum_scales[kDeltaLaunchEntries];
  int64_t numel[kDeltaLaunchEntries];
  int64_t position[kDeltaLaunchEntries];         // the entry's place in the call: its row is rows[position]
  int64_t first_block[kDeltaLaunchEntries + 1];  // entry e: blocks [first_block[e], first_block[e + 1]) of the launch
  uint8_t dtype[kDeltaLaunchEntries];            // an Int8FastDtype
  uint8_t momentum_dtype[kDeltaLaunchEntries];   // a DeltaMomentumDtype
  uint8_t vector[kDeltaLaunchEntries];
  int32_t count;
};
static_assert(sizeof(DeltaLaunchTable) + 64 <= 4096, "a kernel's parameters take at most 4 KiB");

// The launch table of entries [first, first + count) (host code).
inline DeltaLaunchTable delta_launch_table(const std::vector<DeltaCudaEntry>& entries, size_t first, int count) {
  const auto aligned = [](const void* at, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(at) % bytes == 0; };
  DeltaLaunchTable table{};
  table.count = count;
  for (int e = 0; e < count; ++e) {
    const DeltaCudaEntry& entry = entries[first + e];
    const void* tensors[kDeltaTensors] = {entry.param, entry.grad, entry.exp_avg, entry.exp_avg_sq};
    uint8_t vector = aligned(entry.codes, kInt8LaneElems) ? kDeltaVectorCodes : 0;  // a CodePack
    const bool int8_momentum = entry.momentum_dtype == DeltaMomentumDtype::kInt8;
    vector |= aligned(entry.momentum, int8_momentum ? kInt8LaneElems : kVecBytes) ? kDeltaVectorMomentum : 0;
    for (int t = 0; t < kDeltaTensors; ++t) {
      table.tensors[t][e] = const_cast<void*>(tensors[t]);
      vector |= aligned(tensors[t], kVecBytes) ? uint8_t(1 << t) : 0;
    }
    table.codes[e] = entry.codes;
    table.scales[e] = entry.scales;
    table.momentum[e] = entry.momentum;
    table.momentum_scales[e] = entry.momentum_scales;
    table.numel[e] = entry.numel;
    table.position[e] = entry.position;
    table.first_block[e + 1] = table.first_block[e] + (entry.numel + kInt8Block - 1) / kInt8Block;
    table.dtype[e] = static_cast<uint8_t>(entry.dtype);
    table.momentum_dtype[e] = static_cast<uint8_t>(entry.momentum_dtype);
    table.vector[e] = vector;
  }
  return table;
}

// One block's constants, read where the kernel runs: its entry's row of the hyper table (resolved in
// float, as the CPU kernel does) and the sync's lerp at the float32 alpha.
struct DeltaRow {
  AdamWConstants<float> c;
  TwoSidedLerp<float, bool> lerp;
  LOOKAHEAD_KERNEL_FN explicit DeltaRow(const double* row)
      : c(row), lerp(two_sided_lerp<float>(static_cast<float>(c.alpha), lerp_from_slow(static_cast<float>(c.alpha)))) {}
};

// One lane's 8 elements of a block, F the param dtype: begin() loads them, takes AdamW's step and the
// sync where the row says, and returns the new offsets' largest magnitude_bits; finish() takes the
// block's, encodes and stores. Elements past the end of a tensor's last block are neither read nor written.
template <typename Mem, typename F>
struct DeltaLane {
  F* at[kDeltaTensors];  // this lane's first element of each tensor
  int8_t* codes_at;
  int count;       // the lane's elements, 0 to kInt8LaneElems
  uint8_t vector;  // the entry's kDeltaVector bits, for a lane of kInt8LaneElems elements (else 0)
  float param[kInt8LaneElems], m[kInt8LaneElems], v[kInt8LaneElems], delta[kInt8LaneElems];
  float old_momentum_scale;  // with an int8 outer momentum: its block's scale as begin_momentum() read it

  // The lane's place in the block, and its param, grad, moments and offset codes loaded.
  LOOKAHEAD_KERNEL_FN void load(F* const* block, int8_t* codes_block, int64_t block_elems, uint8_t aligned, int lane,
                                float* grad, int8_t* code) {
    const int64_t first = int64_t(lane) * kInt8LaneElems;
    count = lane_count(block_elems, lane);
    vector = count == kInt8LaneElems ? aligned : 0;
#pragma unroll
    for (int t = 0; t < kDeltaTensors; ++t) at[t] = block[t] + first;
    codes_at = codes_block + first;
    load_lane<Mem, F>(at[0], vector & 1, count, param);
    load_lane<Mem, F>(at[1], vector & 2, count, grad);
    load_lane<Mem, F>(at[2], vector & 4, count, m);
    load_lane<Mem, F>(at[3], vector & 8, count, v);
    load_lane_codes<Mem>(codes_at, vector & kDeltaVectorCodes, count, code);
  }

  // The first pass of begin() and begin_float_momentum(): the lane loaded, then loaded() (a caller's own
  // loads), then param[i] = element(i, param[i], grad[i], m[i], v[i], code[i], old_scale, round, delta[i]) for each
  // element, round taking a float to F and back; returns the new offsets' largest magnitude_bits.
  template <class Loaded, class Element>
  LOOKAHEAD_KERNEL_FN uint32_t first_pass(F* const* block, int8_t* codes_block, const float* scale, int64_t block_elems,
                                          uint8_t aligned, int lane, const Loaded& loaded, const Element& element) {
    const float old_scale = Mem::load(scale);
    float grad[kInt8LaneElems];
    int8_t code[kInt8LaneElems];
    load(block, codes_block, block_elems, aligned, lane, grad, code);
    loaded();
    const auto round = [](float x) { return widen(narrow<F>(x)); };
    uint32_t largest = 0;
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      param[i] = element(i, param[i], grad[i], m[i], v[i], code[i], old_scale, round, delta[i]);
      const uint32_t bits = i < count ? magnitude_bits(delta[i]) : 0u;
      largest = bits > largest ? bits : largest;
    }
    return largest;
  }

  LOOKAHEAD_KERNEL_FN uint32_t begin(F* const* block, int8_t* codes_block, const float* scale, int64_t block_elems,
                                     uint8_t aligned, int lane, const DeltaRow& row) {
    return first_pass(
        block, codes_block, scale, block_elems, aligned, lane, [] {},
        [&](int, float pi, float gi, float& mi, float& vi, int8_t code, float old_scale, const auto& round,
            float& delta) {
          return int8_delta_element(pi, gi, mi, vi, code, old_scale, row.c, row.lerp, row.c.syncs, round, delta);
        });
  }

  // On a sync step with an int8 outer momentum (see [NOTE: int8-delta outer momentum] in csrc/adamw.h):
  // begin_momentum() loads as begin() does, takes AdamW's step and returns the new momenta's largest
  // magnitude_bits (the new params before the sync in `param`, the slow weights in `delta`);
  // sync_momentum() takes the block's encoding of the momentum (from their largest over the warp),
  // stores the codes, syncs and returns the new offsets' largest (lane 0 stores the momentum's scale
  // after the warp has met again); finish() then as after begin().
  LOOKAHEAD_KERNEL_FN uint32_t begin_momentum(F* const* block, int8_t* codes_block, const float* scale,
                                              int8_t* momentum_block, const float* momentum_scale, int64_t block_elems,
                                              uint8_t aligned, int lane, const DeltaRow& row, float mu,
                                              float* momentum, int8_t* momentum_code) {
    const float old_scale = Mem::load(scale);
    old_momentum_scale = Mem::load(momentum_scale);
    float grad[kInt8LaneElems];
    int8_t code[kInt8LaneElems];
    load(block, codes_block, block_elems, aligned, lane, grad, code);
    load_lane_codes<Mem>(momentum_block + int64_t(lane) * kInt8LaneElems, vector & kDeltaVectorMomentum, count,
                         momentum_code);
    const auto round = [](float x) { return widen(narrow<F>(x)); };
    uint32_t largest = 0;
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      momentum[i] = int8_delta_momentum_of(param[i], grad[i], m[i], v[i], code[i], old_scale, momentum_code[i],
                                           old_momentum_scale, mu, row.c, round, param[i], delta[i]);
      const uint32_t bits = i < count ? magnitude_bits(momentum[i]) : 0u;
      largest = bits > largest ? bits : largest;
    }
    return largest;
  }

  template <class Math>
  LOOKAHEAD_KERNEL_FN uint32_t sync_momentum(const Int8BlockScale& block, int8_t* momentum_block, int lane,
                                             const Math& math, const float* momentum, int8_t* momentum_code) {
    const auto round = [](float x) { return widen(narrow<F>(x)); };
    uint32_t largest = 0;
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      param[i] = int8_delta_momentum_sync(param[i], delta[i], momentum[i], momentum_code[i], old_momentum_scale, block,
                                          math, round, delta[i]);
      const uint32_t bits = i < count ? magnitude_bits(delta[i]) : 0u;
      largest = bits > largest ? bits : largest;
    }
    store_lane_codes<Mem>(momentum_block + int64_t(lane) * kInt8LaneElems, vector & kDeltaVectorMomentum, count,
                          momentum_code);
    return largest;
  }

  // On a sync step with a float32 or bfloat16 outer momentum of dtype M
  // (see [NOTE: int8-delta float momentum] in csrc/adamw.h): begin() with the momentum's sync, the new
  // momentum stored (rounded to M) before it returns; finish() then as after begin().
  template <typename M, class Math>
  LOOKAHEAD_KERNEL_FN uint32_t begin_float_momentum(F* const* block, int8_t* codes_block, const float* scale,
                                                    M* momentum_block, int64_t block_elems, uint8_t aligned, int lane,
                                                    const DeltaRow& row, const Math& math) {
    float momentum[kInt8LaneElems];
    M* momentum_at = momentum_block + int64_t(lane) * kInt8LaneElems;
    const auto round_momentum = [](float x) { return widen(narrow<M>(x)); };
    const uint32_t largest = first_pass(
        block, codes_block, scale, block_elems, aligned, lane,
        [&] { load_lane<Mem, M>(momentum_at, vector & kDeltaVectorMomentum, count, momentum); },
        [&](int i, float pi, float gi, float& mi, float& vi, int8_t code, float old_scale, const auto& round,
            float& delta) {
          return int8_delta_float_momentum_element(pi, gi, mi, vi, code, old_scale, momentum[i], row.c, math, round,
                                                   round_momentum, delta);
        });
    store_lane<Mem, M>(momentum_at, vector & kDeltaVectorMomentum, count, momentum);
    return largest;
  }

  LOOKAHEAD_KERNEL_FN void finish(uint32_t block_largest, float* scale, int lane) {
    const Int8BlockScale block = int8_block_scale(block_largest);
    store_lane<Mem, F>(at[0], vector & 1, count, param);
    store_lane<Mem, F>(at[2], vector & 4, count, m);
    store_lane<Mem, F>(at[3], vector & 8, count, v);
    int8_t code[kInt8LaneElems];
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {  // a block not kept: every code 0 (int8_code takes finite values)
      code[i] = static_cast<int8_t>(static_cast<int32_t>(int8_code(block.kept ? delta[i] : 0.0f, block.inv)));
    }
    store_lane_codes<Mem>(codes_at, vector & kDeltaVectorCodes, count, code);
    if (lane == 0) Mem::store(scale, block.scale);  // lane 0 has an element in every block
  }
};

// Block `block` of entry `e`: every lane's begin (or its variant for the entry's outer momentum on a
// sync row), the block's largest offset over the warp, then every lane's finish.
template <typename Mem, typename F, typename Warp>
LOOKAHEAD_KERNEL_FN void delta_block(const DeltaLaunchTable& table, int e, int64_t block, const double* hyper,
                                     const int64_t* rows, const DeltaMomentumArgs& args, const Warp& warp) {
  const int64_t lo = block * kInt8Block;
  const int64_t left = table.numel[e] - lo;
  const int64_t elems = left < kInt8Block ? left : kInt8Block;
  F* tensors[kDeltaTensors];
  for (int t = 0; t < kDeltaTensors; ++t) tensors[t] = static_cast<F*>(table.tensors[t][e]) + lo;
  int8_t* codes = table.codes[e] + lo;
  float* scale = table.scales[e] + block;
  const DeltaRow row(hyper + Mem::load(rows + table.position[e]) * kAdamWColumns);
  DeltaLane<Mem, F> lanes[Warp::kLanes];
  uint32_t largest[Warp::kLanes];
  const auto momentum_dtype = row.c.syncs ? static_cast<DeltaMomentumDtype>(table.momentum_dtype[e])
                                          : DeltaMomentumDtype::kNone;  // uniform over the warp
  if (momentum_dtype == DeltaMomentumDtype::kInt8) {
    int8_t* momentum_codes = static_cast<int8_t*>(table.momentum[e]) + lo;
    float* momentum_scale = table.momentum_scales[e] + block;
    float momentum[Warp::kLanes][kInt8LaneElems];
    int8_t momentum_code[Warp::kLanes][kInt8LaneElems];
    for (int l = 0; l < Warp::kLanes; ++l) {
      largest[l] = lanes[l].begin_momentum(tensors, codes, scale, momentum_codes, momentum_scale, elems,
                                           table.vector[e], warp.lane(l), row, args.mu, momentum[l], momentum_code[l]);
    }
    const Int8BlockScale momentum_encoding = int8_block_scale(warp.max(largest));
    const Int8MomentumSyncMath<bool, bool> math{row.lerp, args.mu, args.nesterov};
    for (int l = 0; l < Warp::kLanes; ++l) {
      largest[l] = lanes[l].sync_momentum(momentum_encoding, momentum_codes, warp.lane(l), math, momentum[l],
                                          momentum_code[l]);
    }
    const uint32_t delta_largest = warp.max(largest);
    if (warp.lane(0) == 0) Mem::store(momentum_scale, momentum_encoding.scale);
    for (int l = 0; l < Warp::kLanes; ++l) lanes[l].finish(delta_largest, scale, warp.lane(l));
    return;
  }
  const DeltaFloatMomentumMath<bool, bool> math{row.lerp, args.mu, args.nesterov};
  void* momentum = table.momentum[e];
  for (int l = 0; l < Warp::kLanes; ++l) {
    switch (momentum_dtype) {
      case DeltaMomentumDtype::kF32:
        largest[l] = lanes[l].begin_float_momentum(tensors, codes, scale, static_cast<CudaF32*>(momentum) + lo, elems,
                                                   table.vector[e], warp.lane(l), row, math);
        break;
      case DeltaMomentumDtype::kBF16:
        largest[l] = lanes[l].begin_float_momentum(tensors, codes, scale, static_cast<CudaBF16*>(momentum) + lo, elems,
                                                   table.vector[e], warp.lane(l), row, math);
        break;
      default: largest[l] = lanes[l].begin(tensors, codes, scale, elems, table.vector[e], warp.lane(l), row);
    }
  }
  const uint32_t block_largest = warp.max(largest);
  for (int l = 0; l < Warp::kLanes; ++l) lanes[l].finish(block_largest, scale, warp.lane(l));
}

// What warp `warp` of `warps` does: grid-stride over the launch's blocks, one block at a time. An
// unknown param dtype traps.
template <typename Mem, typename Warp>
LOOKAHEAD_KERNEL_FN void delta_warp(const DeltaLaunchTable& table, const double* hyper, const int64_t* rows,
                                    const DeltaMomentumArgs& args, int64_t warp, int64_t warps, const Warp& lanes) {
  const int64_t blocks = table.first_block[table.count];
  for (int64_t b = warp; b < blocks; b += warps) {
    const int e = int8_entry_of(table, b);
    const int64_t block = b - table.first_block[e];
    switch (static_cast<Int8FastDtype>(table.dtype[e])) {
      case Int8FastDtype::kF32: delta_block<Mem, CudaF32>(table, e, block, hyper, rows, args, lanes); break;
      case Int8FastDtype::kF16: delta_block<Mem, CudaF16>(table, e, block, hyper, rows, args, lanes); break;
      case Int8FastDtype::kBF16: delta_block<Mem, CudaBF16>(table, e, block, hyper, rows, args, lanes); break;
      default: unknown_pair_code(table.dtype[e]);
    }
  }
}

}  // namespace lookahead_fused
