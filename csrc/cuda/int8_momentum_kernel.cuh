// The body of the CUDA int8 momentum sync (see [NOTE: int8 momentum sync] in csrc/element_math.h) and
// of its compact variant (see [NOTE: compact int8 momentum sync] in csrc/element_math.h), as what the
// lanes of one warp do, for two callers: the kernel in int8_momentum_cuda.cu, where each
// thread is one lane and the block's largest magnitude is a warp reduction, and the host emulation in
// tests/cpp/test_int8_momentum_kernel_on_host.cu, which runs all 32 lanes of a warp in turn. A warp
// policy says which lanes a caller runs and how their values meet (the one communication between
// lanes); a memory policy makes every access, as in table_kernel.cuh. The element math is
// element_math.h's, shared with the CPU kernel. No torch headers.
#pragma once

#include "int8_momentum_cuda.h"
#include "table_kernel.cuh"

namespace lookahead_fused {

// [NOTE: int8 launch table] A launch's entries travel in its kernel parameter (Int8LaunchTable, read in
// place as a __grid_constant__), not in a device table like a plan's: this op keeps no plan (its
// lists are checked on every call), a parameter needs no allocation or upload, and a captured CUDA
// graph holds its own copy of it, so a call can be captured without a warm-up and nothing has to
// outlive the graph. A parameter has room for kInt8LaunchEntries entries; a call of more takes one
// launch per that many. Each warp finds the entry of a block by binary search over first_block.
// The plan's table: see [NOTE: table layout] in csrc/table.h
constexpr int kInt8LaunchEntries = 64;
constexpr int kInt8Lanes = 32;
constexpr int kInt8LaneElems = kInt8Block / kInt8Lanes;  // consecutive elements of one lane
constexpr int kInt8Threads = 256;
constexpr int kInt8WarpsPerBlock = kInt8Threads / kInt8Lanes;

// The bits of Int8LaunchTable::vector: which tensors of an entry start where a lane's vector access
// is aligned (16 bytes for fast and slow, or the slow weights' bfloat16 high parts, 8 for the codes
// and the slow weights' int8 residuals; a block and a lane start at multiples of those from the
// tensor's start).
constexpr uint8_t kInt8VectorFast = 1, kInt8VectorSlow = 2, kInt8VectorCodes = 4, kInt8VectorResiduals = 8;

// The slow weights are float32 (slow) or bf16+int8 (slow the high parts, slow_low the residuals),
// the same for every entry of a launch: see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh.
struct Int8LaunchTable {
  void* fast[kInt8LaunchEntries];
  void* slow[kInt8LaunchEntries];
  int8_t* slow_low[kInt8LaunchEntries];  // null for float32 slow weights
  int8_t* codes[kInt8LaunchEntries];
  float* scales[kInt8LaunchEntries];
  int64_t numel[kInt8LaunchEntries];
  int64_t first_block[kInt8LaunchEntries + 1];  // entry e: blocks [first_block[e], first_block[e + 1]) of the launch
  uint8_t fast_dtype[kInt8LaunchEntries];       // an Int8FastDtype
  uint8_t vector[kInt8LaunchEntries];
  int32_t count;
};
static_assert(sizeof(Int8LaunchTable) + 64 <= 4096, "a kernel's parameters take at most 4 KiB");

inline uint8_t int8_vector_bits(const Int8CudaEntry& entry) {
  const auto aligned = [](const void* at, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(at) % bytes == 0; };
  return (aligned(entry.fast, kVecBytes) ? kInt8VectorFast : 0) |
         (aligned(entry.slow, kVecBytes) ? kInt8VectorSlow : 0) |
         (aligned(entry.codes, kInt8LaneElems) ? kInt8VectorCodes : 0) |  // a CodePack
         (entry.slow_low != nullptr && aligned(entry.slow_low, kInt8LaneElems) ? kInt8VectorResiduals : 0);
}

// The launch table of entries [first, first + count) (host code).
inline Int8LaunchTable int8_launch_table(const std::vector<Int8CudaEntry>& entries, size_t first, int count) {
  Int8LaunchTable table{};
  table.count = count;
  for (int e = 0; e < count; ++e) {
    const Int8CudaEntry& entry = entries[first + e];
    table.fast[e] = entry.fast;
    table.slow[e] = entry.slow;
    table.slow_low[e] = entry.slow_low;
    table.codes[e] = entry.codes;
    table.scales[e] = entry.scales;
    table.numel[e] = entry.numel;
    table.first_block[e + 1] = table.first_block[e] + (entry.numel + kInt8Block - 1) / kInt8Block;
    table.fast_dtype[e] = static_cast<uint8_t>(entry.fast_dtype);
    table.vector[e] = int8_vector_bits(entry);
  }
  return table;
}

// 8 codes: a lane's share of a block, one 8-byte access.
struct alignas(8) CodePack {
  int8_t v[kInt8LaneElems];
};

// Streaming accesses, as DeviceMemory's, and the codes' 8-byte ones.
// see [NOTE: streaming accesses] in csrc/cuda/table_kernel.cuh
struct Int8DeviceMemory : DeviceMemory {
#ifdef __CUDA_ARCH__
  static __device__ __forceinline__ CodePack load_codes(const int8_t* at) {
    const uint2 raw = __ldcs(reinterpret_cast<const uint2*>(at));
    CodePack pack;
    __builtin_memcpy(&pack, &raw, sizeof pack);
    return pack;
  }
  static __device__ __forceinline__ void store_codes(int8_t* at, const CodePack& pack) {
    uint2 raw;
    __builtin_memcpy(&raw, &pack, sizeof raw);
    __stcs(reinterpret_cast<uint2*>(at), raw);
  }
#endif
};

// The update once resolved: float32 alpha and mu, as the oracle computes in float32.
struct Int8SyncOp {
  float alpha, mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN Int8SyncOp resolved() const { return *this; }
  LOOKAHEAD_KERNEL_FN Int8MomentumSyncMath<bool, bool> math() const {
    return {two_sided_lerp<float>(alpha, lerp_from_slow(alpha)), mu, nesterov};  // the side of float32 alpha
  }
};

struct GatedInt8SyncOp {  // see [NOTE: step gate] in csrc/table.h
  StepGate gate;
  float mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return *gate.step % gate.k != 0; }
  LOOKAHEAD_KERNEL_FN Int8SyncOp resolved() const { return {static_cast<float>(alpha_of(gate)), mu, nesterov}; }
};

#ifdef __CUDACC__
struct DeviceWarp {  // this thread is one lane; every lane of the warp calls max together
  static constexpr int kLanes = 1;
  __device__ __forceinline__ int lane(int) const { return threadIdx.x % kInt8Lanes; }
  __device__ __forceinline__ uint32_t max(const uint32_t* value) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    return __reduce_max_sync(0xFFFFFFFFu, value[0]);
#else
    uint32_t largest = value[0];
    for (int distance = kInt8Lanes / 2; distance > 0; distance /= 2) {
      const uint32_t other = __shfl_xor_sync(0xFFFFFFFFu, largest, distance);
      largest = other > largest ? other : largest;
    }
    return largest;
#endif
  }
};
#endif

// A lane's `count` elements of one tensor of dtype F from `at`, widened: 16-byte packs when `vector`
// (the lane holds kInt8LaneElems elements and `at` is aligned), else one at a time.
template <typename Mem, typename F>
LOOKAHEAD_KERNEL_FN void load_lane(const F* at, bool vector, int count, float* out) {
  constexpr int kPacks = kInt8LaneElems / Pack<F>::kSize;
  if (vector) {
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const Pack<F> pack = Mem::load_pack(at + p * Pack<F>::kSize);
#pragma unroll
      for (int j = 0; j < Pack<F>::kSize; ++j) out[p * Pack<F>::kSize + j] = widen(pack.v[j]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) out[i] = i < count ? widen(Mem::load(at + i)) : 0.0f;
  }
}

// The lane's values stored to `at`, each rounded to F, as load_lane reads them.
template <typename Mem, typename F>
LOOKAHEAD_KERNEL_FN void store_lane(F* at, bool vector, int count, const float* values) {
  constexpr int kPacks = kInt8LaneElems / Pack<F>::kSize;
  if (vector) {
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      Pack<F> pack;
#pragma unroll
      for (int j = 0; j < Pack<F>::kSize; ++j) pack.v[j] = narrow<F>(values[p * Pack<F>::kSize + j]);
      Mem::store_pack(at + p * Pack<F>::kSize, pack);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      if (i < count) Mem::store(at + i, narrow<F>(values[i]));
    }
  }
}

// A lane's 8 codes from `at`: one 8-byte access when `vector`, else `count` of them one at a time (0 past).
template <typename Mem>
LOOKAHEAD_KERNEL_FN void load_lane_codes(const int8_t* at, bool vector, int count, int8_t* out) {
  if (vector) {
    const CodePack pack = Mem::load_codes(at);
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) out[i] = pack.v[i];
  } else {
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) out[i] = i < count ? Mem::load(at + i) : int8_t(0);
  }
}

// The lane's codes stored to `at`, as load_lane_codes reads them.
template <typename Mem>
LOOKAHEAD_KERNEL_FN void store_lane_codes(int8_t* at, bool vector, int count, const int8_t* codes) {
  if (vector) {
    CodePack pack;
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) pack.v[i] = codes[i];
    Mem::store_codes(at, pack);
  } else {
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      if (i < count) Mem::store(at + i, codes[i]);
    }
  }
}

// A lane's 8 bfloat16 high parts from `at`, as bits: one 16-byte access when `vector`, else `count` of
// them one at a time (0 past).
template <typename Mem>
LOOKAHEAD_KERNEL_FN void load_lane_high(const uint16_t* at, bool vector, int count, uint16_t* out) {
  static_assert(Pack<uint16_t>::kSize == kInt8LaneElems, "a lane's high parts are one pack");
  if (vector) {
    const Pack<uint16_t> pack = Mem::load_pack(at);
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) out[i] = pack.v[i];
  } else {
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) out[i] = i < count ? Mem::load(at + i) : uint16_t(0);
  }
}

// The lane's high parts stored to `at`, as load_lane_high reads them.
template <typename Mem>
LOOKAHEAD_KERNEL_FN void store_lane_high(uint16_t* at, bool vector, int count, const uint16_t* high) {
  if (vector) {
    Pack<uint16_t> pack;
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) pack.v[i] = high[i];
    Mem::store_pack(at, pack);
  } else {
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      if (i < count) Mem::store(at + i, high[i]);
    }
  }
}

// [NOTE: int8 slow storage] How a launch keeps its slow weights, a compile-time choice (the Slow
// parameter of the kernel, picked per launch by the launcher from its first entry, since every entry
// of a call is of one kind): Float32Slow, or CompactSlow for the compact int8 momentum sync
// (see [NOTE: compact int8 momentum sync] in csrc/element_math.h). Either hands a lane its slow weights as
// float32 values, so the int8 momentum sync's math runs on both unchanged. The new ones leave in two
// steps: settle turns them into the values as stored (decode(encode(s')) for CompactSlow), which the
// fast tensor takes, and store writes them after the fast tensor's. Float32Slow's settle is empty, so
// its kernels store as they did before CompactSlow, fast first. Each holds pointers at one element,
// moved on by +.
struct Float32Slow {
  float* at;
  struct Settled {};
  template <class Table>  // a launch table with slow and slow_low, as Int8LaunchTable
  LOOKAHEAD_KERNEL_FN static Float32Slow of(const Table& table, int e) {
    return {static_cast<float*>(table.slow[e])};
  }
  LOOKAHEAD_KERNEL_FN Float32Slow operator+(int64_t i) const { return {at + i}; }
  template <typename Mem>
  LOOKAHEAD_KERNEL_FN void load(uint8_t vector, int count, float* out) const {
    load_lane<Mem, float>(at, vector & kInt8VectorSlow, count, out);
  }
  LOOKAHEAD_KERNEL_FN static void settle(float*, Settled&) {}
  template <typename Mem>
  LOOKAHEAD_KERNEL_FN void store(uint8_t vector, int count, const float* values, const Settled&) const {
    store_lane<Mem, float>(at, vector & kInt8VectorSlow, count, values);
  }
};

// bf16+int8: a lane's 8 high parts in one 16-byte access and its 8 residuals in one 8-byte access (a
// CodePack, as its codes), when aligned. The decoding is exact, so the math sees the slow weights the
// oracle decodes; settle encodes (store_compact_slow) and leaves the encoding, decoded, in place.
struct CompactSlow {
  uint16_t* high;
  int8_t* low;
  struct Settled {
    uint16_t high[kInt8LaneElems];
    int8_t low[kInt8LaneElems];
  };
  template <class Table>
  LOOKAHEAD_KERNEL_FN static CompactSlow of(const Table& table, int e) {
    return {static_cast<uint16_t*>(table.slow[e]), table.slow_low[e]};
  }
  LOOKAHEAD_KERNEL_FN CompactSlow operator+(int64_t i) const { return {high + i, low + i}; }
  template <typename Mem>
  LOOKAHEAD_KERNEL_FN void load(uint8_t vector, int count, float* out) const {
    uint16_t h[kInt8LaneElems];
    int8_t q[kInt8LaneElems];
    load_lane_high<Mem>(high, vector & kInt8VectorSlow, count, h);
    load_lane_codes<Mem>(low, vector & kInt8VectorResiduals, count, q);
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) out[i] = decode_bf16_int8(h[i], q[i]);
  }
  LOOKAHEAD_KERNEL_FN static void settle(float* values, Settled& settled) {
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) values[i] = store_compact_slow(values[i], settled.high[i], settled.low[i]);
  }
  template <typename Mem>
  LOOKAHEAD_KERNEL_FN void store(uint8_t vector, int count, const float*, const Settled& settled) const {
    store_lane_high<Mem>(high, vector & kInt8VectorSlow, count, settled.high);
    store_lane_codes<Mem>(low, vector & kInt8VectorResiduals, count, settled.low);
  }
};

// The elements of lane `lane` in a block of `block_elems`: 0 to kInt8LaneElems.
LOOKAHEAD_KERNEL_FN int lane_count(int64_t block_elems, int lane) {
  const int64_t left = block_elems - int64_t(lane) * kInt8LaneElems;
  return left <= 0 ? 0 : left >= kInt8LaneElems ? kInt8LaneElems : int(left);
}

// One lane's 8 elements of a block, F the fast dtype, Slow the slow weights' storage: begin() loads
// them and computes their new momenta, returning their largest magnitude_bits; finish() takes the
// block's, encodes, runs the lerp and stores. Elements past the end of a tensor's last block are
// neither read nor written. begin() is place(), load_state() with fast loaded in between, and
// momenta(): AdamW's lane (adamw_int8_momentum_kernel.cuh) runs those parts itself, with the new
// params in `fast`.
template <typename Mem, typename F, typename Slow>
struct Int8Lane {
  F* fast_at;
  Slow slow_at;
  int8_t* codes_at;
  int count;       // the lane's elements, 0 to kInt8LaneElems
  uint8_t vector;  // kInt8Vector* bits, for a lane of kInt8LaneElems elements
  float old_scale;
  float fast[kInt8LaneElems], slow[kInt8LaneElems], momentum[kInt8LaneElems];
  int8_t code[kInt8LaneElems];

  LOOKAHEAD_KERNEL_FN uint32_t begin(F* fast_block, const Slow& slow_block, int8_t* codes_block, const float* scale,
                                     int64_t block_elems, uint8_t aligned, int lane, float mu) {
    place(fast_block, slow_block, codes_block, block_elems, aligned, lane);
    load_state(scale, [&] { load_lane<Mem, F>(fast_at, vector & kInt8VectorFast, count, fast); });
    return momenta(mu);
  }

  // The lane's elements of the block: its pointers, count and vector bits.
  LOOKAHEAD_KERNEL_FN void place(F* fast_block, const Slow& slow_block, int8_t* codes_block, int64_t block_elems,
                                 uint8_t aligned, int lane) {
    const int64_t first = int64_t(lane) * kInt8LaneElems;
    count = lane_count(block_elems, lane);
    vector = count == kInt8LaneElems ? aligned : 0;
    fast_at = fast_block + first;
    slow_at = slow_block + first;
    codes_at = codes_block + first;
  }

  // The block's old scale loaded, then `between()` (a caller's loads), then the lane's slow weights and codes.
  template <class Between>
  LOOKAHEAD_KERNEL_FN void load_state(const float* scale, const Between& between) {
    old_scale = Mem::load(scale);
    between();
    slow_at.template load<Mem>(vector, count, slow);
    load_lane_codes<Mem>(codes_at, vector & kInt8VectorCodes, count, code);
  }

  // The new momenta of `fast`, returning their largest magnitude_bits.
  LOOKAHEAD_KERNEL_FN uint32_t momenta(float mu) {
    uint32_t largest = 0;
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {
      momentum[i] = int8_momentum_of(fast[i], slow[i], code[i], old_scale, mu);
      const uint32_t bits = i < count ? magnitude_bits(momentum[i]) : 0u;
      largest = bits > largest ? bits : largest;
    }
    return largest;
  }

  LOOKAHEAD_KERNEL_FN void finish(uint32_t block_largest, const Int8MomentumSyncMath<bool, bool>& math, float* scale,
                                  int lane) {
    const Int8BlockScale block = int8_block_scale(block_largest);
#pragma unroll
    for (int i = 0; i < kInt8LaneElems; ++i) {  // a block not kept: every code 0 (int8_code takes finite values)
      slow[i] = math(fast[i], slow[i], block.kept ? momentum[i] : 0.0f, code[i], old_scale, block);
    }
    typename Slow::Settled settled;
    Slow::settle(slow, settled);
    store_lane<Mem, F>(fast_at, vector & kInt8VectorFast, count, slow);  // fast <- slow as stored, rounded to F
    slow_at.template store<Mem>(vector, count, slow, settled);
    store_lane_codes<Mem>(codes_at, vector & kInt8VectorCodes, count, code);
    if (lane == 0) Mem::store(scale, block.scale);  // lane 0 has an element in every block
  }
};

// Block `block` of entry `e`: every lane's begin, the block's largest magnitude over the warp, then
// every lane's finish.
template <typename Mem, typename F, typename Slow, typename Warp>
LOOKAHEAD_KERNEL_FN void int8_block(const Int8LaunchTable& table, int e, int64_t block, const Int8SyncOp& op,
                                    const Warp& warp) {
  const int64_t lo = block * kInt8Block;
  const int64_t left = table.numel[e] - lo;
  const int64_t elems = left < kInt8Block ? left : kInt8Block;
  F* fast = static_cast<F*>(table.fast[e]) + lo;
  const Slow slow = Slow::of(table, e) + lo;
  int8_t* codes = table.codes[e] + lo;
  float* scale = table.scales[e] + block;
  Int8Lane<Mem, F, Slow> lanes[Warp::kLanes];
  uint32_t largest[Warp::kLanes];
  for (int l = 0; l < Warp::kLanes; ++l) {
    largest[l] = lanes[l].begin(fast, slow, codes, scale, elems, table.vector[e], warp.lane(l), op.mu);
  }
  const uint32_t block_largest = warp.max(largest);
  const auto math = op.math();
  for (int l = 0; l < Warp::kLanes; ++l) lanes[l].finish(block_largest, math, scale, warp.lane(l));
}

// The entry that holds block b of a launch table (Int8LaunchTable, or another with count and
// first_block): the last e with first_block[e] <= b.
template <typename Table>
LOOKAHEAD_KERNEL_FN int int8_entry_of(const Table& table, int64_t b) {
  int lo = 0, hi = table.count;  // first_block[lo] <= b < first_block[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (table.first_block[mid] <= b) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// What warp `warp` of `warps` does: grid-stride over the launch's blocks, one block at a time.
// Slow: Float32Slow or CompactSlow, as the launch's entries are; Gate: Int8SyncOp or GatedInt8SyncOp.
// An unknown fast dtype traps.
template <typename Mem, typename Slow, typename Gate, typename Warp>
LOOKAHEAD_KERNEL_FN void int8_warp(const Int8LaunchTable& table, const Gate& gate, int64_t warp, int64_t warps,
                                   const Warp& lanes) {
  if (gate.skips()) return;
  const Int8SyncOp op = gate.resolved();
  const int64_t blocks = table.first_block[table.count];
  for (int64_t b = warp; b < blocks; b += warps) {
    const int e = int8_entry_of(table, b);
    const int64_t block = b - table.first_block[e];
    switch (static_cast<Int8FastDtype>(table.fast_dtype[e])) {
      case Int8FastDtype::kF32: int8_block<Mem, CudaF32, Slow>(table, e, block, op, lanes); break;
      case Int8FastDtype::kF16: int8_block<Mem, CudaF16, Slow>(table, e, block, op, lanes); break;
      case Int8FastDtype::kBF16: int8_block<Mem, CudaBF16, Slow>(table, e, block, op, lanes); break;
      default: unknown_pair_code(table.fast_dtype[e]);
    }
  }
}

}  // namespace lookahead_fused
