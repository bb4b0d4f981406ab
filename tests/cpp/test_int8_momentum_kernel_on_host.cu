// The CUDA int8 momentum sync's body (csrc/cuda/int8_momentum_kernel.cuh) run on the host, no GPU
// needed: every thread block, warp and lane of a launch in turn, the lanes of a warp meeting in the
// block's largest magnitude through a host warp policy (the kernel's one communication between
// lanes: each lane's begin, the warp's max, each lane's finish), and every access through a memory
// policy that records it. Over the slow weights' storage, float32 and bf16+int8 (the compact int8
// momentum sync, see [NOTE: compact int8 momentum sync] in csrc/element_math.h), the fast dtypes
// float32, float16 and bfloat16, sizes around a block and a lane, element offsets that break each
// tensor's vector alignment, mu 0 and 0.9, Nesterov on and off, alpha 0, 0.3, 0.5 and 1, blocks with
// NaN, Inf, zeros and magnitudes below 2^-96, the step gate on and off, and a call of more entries
// than one launch table holds, it checks:
//   - each element of fast, the slow weights (or their high parts and residuals) and the codes, and
//     each scale, is written exactly once (none when the gate is off, and then nothing changes);
//   - every vector access is aligned (16 bytes, 8 for the codes and the residuals), every access is
//     inside its tensor, and each lane of 8 elements makes one vector access per pack of each tensor
//     that is aligned, and none to the others;
//   - the results equal, bit for bit, the CPU kernel's two passes per block
//     (csrc/cpu/int8_momentum_cpu.cpp) written with the same element math (element_math.h); for
//     compact slow weights, those passes on the decoded slow weights, the new ones encoded with
//     encode_bf16_int8 and fast the encoding decoded.
// The recording policies are host code called from the kernel's __host__ __device__ body; only the
// host side is compiled into this test, so nvcc's warnings about that call are moot here.
#pragma nv_diag_suppress 20011
#pragma nv_diag_suppress 20014

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "host_int8_lanes.h"

using namespace lookahead_fused;
using namespace host_tracking;
using namespace host_int8_lanes;

namespace {

// Every thread block and warp of the launches of a call, as launch_int8_momentum_cuda makes them:
// the kernel for the storage of the first entry's slow weights (every entry's).
template <typename Slow, typename Gate>
void run_launches(const std::vector<Int8CudaEntry>& entries, const Gate& gate, int64_t grid) {
  for (size_t first = 0; first < entries.size(); first += kInt8LaunchEntries) {
    const int count = static_cast<int>(std::min<size_t>(kInt8LaunchEntries, entries.size() - first));
    const Int8LaunchTable table = int8_launch_table(entries, first, count);
    const int64_t warps = grid * kInt8WarpsPerBlock;
    for (int64_t warp = 0; warp < warps; ++warp) int8_warp<HostMemory, Slow>(table, gate, warp, warps, HostWarp{});
  }
}

template <typename Gate>
void run_on_host(const std::vector<Int8CudaEntry>& entries, const Gate& gate, int64_t grid) {
  if (entries.empty()) return;
  if (entries[0].slow_low != nullptr) {
    run_launches<CompactSlow>(entries, gate, grid);
  } else {
    run_launches<Float32Slow>(entries, gate, grid);
  }
}

struct Offsets {
  int64_t fast, slow, codes, low;  // elements; slow: the float32 slow weights or the high parts; low: the residuals
};

// One entry's tensors, their values before the call, and the oracle's after. Slow: Float32Slow or
// CompactSlow, the slow weights in `slow` or in `high` and `low` (the others empty).
template <typename F, typename Slow>
struct Case {
  static constexpr bool kCompact = std::is_same_v<Slow, CompactSlow>;
  Buffer<F> fast;
  Buffer<float> slow;
  Buffer<uint16_t> high;
  Buffer<int8_t> low;
  Buffer<int8_t> codes;
  Buffer<float> scales;
  Offsets offsets;
  std::vector<F> fast0;
  std::vector<float> slow0, scales0;  // slow0: the slow weights as float32 values (decoded when compact)
  std::vector<uint16_t> high0;
  std::vector<int8_t> low0, codes0;

  Case(int64_t n, Offsets o, std::mt19937& rng)
      : fast(n, o.fast),
        slow(kCompact ? 0 : n, o.slow),
        high(kCompact ? n : 0, o.slow),
        low(kCompact ? n : 0, o.low),
        codes(n, o.codes),
        scales((n + kInt8Block - 1) / kInt8Block, 0),
        offsets(o) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> code(-127, 127);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t block = i / kInt8Block;
      float f = normal(rng), s = f + 0.01f * normal(rng);
      int8_t q = static_cast<int8_t>(code(rng));
      if (block == 1 && i % 97 == 3) f = NAN;
      if (block == 2 && i % 89 == 5) s = i % 2 ? INFINITY : -INFINITY;
      if (block == 3) f = s = 0.0f, q = 0;                                          // a zero block
      if (block == 4) f = 0.0f, s = -1e-30f * std::fabs(normal(rng)), q = 0;        // below 2^-96
      fast.data[i] = narrow<F>(f);
      codes.data[i] = q;
      if constexpr (kCompact) {  // any residual, not only encode's: the kernel decodes what it finds
        high.data[i] = bfloat16_bits_of(s);
        low.data[i] = block == 3 ? int8_t(0) : static_cast<int8_t>(code(rng));
        if (block == 2 && i % 89 == 7) high.data[i] = 0xFFC1;  // a NaN slow weight, sign and payload set
      } else {
        slow.data[i] = s;
      }
    }
    for (int64_t b = 0; b < scales.n; ++b) scales.data[b] = b == 4 ? 0.0f : 0.001f * std::fabs(normal(rng)) + 1e-4f;
    fast0.assign(fast.data, fast.data + n);
    if constexpr (kCompact) {
      high0.assign(high.data, high.data + n);
      low0.assign(low.data, low.data + n);
      for (int64_t i = 0; i < n; ++i) slow0.push_back(decode_bf16_int8(high0[i], low0[i]));
    } else {
      slow0.assign(slow.data, slow.data + n);
    }
    codes0.assign(codes.data, codes.data + n);
    scales0.assign(scales.data, scales.data + scales.n);
  }

  Int8CudaEntry entry() {
    if constexpr (kCompact) return {fast.data, high.data, low.data, codes.data, scales.data, fast.n, dtype_of<F>()};
    return {fast.data, slow.data, nullptr, codes.data, scales.data, fast.n, dtype_of<F>()};
  }

  void track_all() {
    track(fast.data, fast.n, sizeof(F));
    if constexpr (kCompact) {
      track(high.data, high.n, sizeof(uint16_t));
      track(low.data, low.n, sizeof(int8_t));
    } else {
      track(slow.data, slow.n, sizeof(float));
    }
    track(codes.data, codes.n, sizeof(int8_t));
    track(scales.data, scales.n, sizeof(float));
  }

  bool owns(uintptr_t begin) const {
    for (const void* data : {static_cast<const void*>(fast.data), static_cast<const void*>(slow.data),
                             static_cast<const void*>(high.data), static_cast<const void*>(low.data),
                             static_cast<const void*>(codes.data), static_cast<const void*>(scales.data)}) {
      if (begin == reinterpret_cast<uintptr_t>(data)) return true;
    }
    return false;
  }

  // The vector accesses of a call that updates: each lane of 8 elements loads and stores one per pack
  // of each tensor whose start is aligned (fast and slow, or the high parts: 16 bytes; the codes and
  // the residuals: 8), none of the others'; a lane of fewer, none.
  int64_t vector_accesses_expected() const {
    const auto aligned = [](int64_t offset, int64_t element, int64_t bytes) { return offset * element % bytes == 0; };
    int64_t packs = aligned(offsets.fast, sizeof(F), 16) ? int64_t(sizeof(F)) * kInt8LaneElems / 16 : 0;
    if constexpr (kCompact) {
      packs += aligned(offsets.slow, 2, 16) + aligned(offsets.low, 1, 8);
    } else {
      packs += aligned(offsets.slow, 4, 16) ? 2 : 0;
    }
    packs += aligned(offsets.codes, 1, 8);
    int64_t full_lanes = 0;
    for (int64_t lo = 0; lo < fast.n; lo += kInt8Block) {
      full_lanes += std::min<int64_t>(kInt8Block, fast.n - lo) / kInt8LaneElems;
    }
    return 2 * full_lanes * packs;
  }

  // The new slow weight i as stored, which the fast tensor takes: float32 as it is, or bf16+int8
  // encoded (into h and l) and decoded back.
  float stored(float s, int64_t i, std::vector<uint16_t>& h, std::vector<int8_t>& l) const {
    if constexpr (kCompact) return store_compact_slow(s, h[i], l[i]);
    return s;
  }

  // The CPU kernel's two passes per block (int8_block in csrc/cpu/int8_momentum_cpu.cpp) on the values
  // before the call (the decoded slow weights when compact); h and l: the encoding of the new ones.
  void oracle(std::vector<F>& f, std::vector<float>& s, std::vector<uint16_t>& h, std::vector<int8_t>& l,
              std::vector<int8_t>& q, std::vector<float>& sc, float alpha, float mu, bool nesterov) const {
    f = fast0, s = slow0, h = high0, l = low0, q = codes0, sc = scales0;
    const Int8MomentumSyncMath<bool, bool> math{two_sided_lerp<float>(alpha, lerp_from_slow(alpha)), mu, nesterov};
    for (int64_t b = 0; b < scales.n; ++b) {
      const int64_t lo = b * kInt8Block, hi = std::min<int64_t>(lo + kInt8Block, fast.n);
      float momentum[kInt8Block];
      uint32_t largest = 0;
      for (int64_t i = lo; i < hi; ++i) {
        momentum[i - lo] = int8_momentum_of(widen(f[i]), s[i], q[i], sc[b], mu);
        largest = std::max(largest, magnitude_bits(momentum[i - lo]));
      }
      const Int8BlockScale block = int8_block_scale(largest);
      for (int64_t i = lo; i < hi; ++i) {
        s[i] = math(widen(f[i]), s[i], block.kept ? momentum[i - lo] : 0.0f, q[i], sc[b], block);
        f[i] = narrow<F>(stored(s[i], i, h, l));
      }
      sc[b] = block.scale;
    }
  }

  // The writes and values after a call; `synced`: whether it updated (else nothing may change).
  void check(bool synced, float alpha, float mu, bool nesterov, const std::string& what) {
    std::vector<F> f;
    std::vector<float> s, sc;
    std::vector<uint16_t> h;
    std::vector<int8_t> l, q;
    if (synced) {
      oracle(f, s, h, l, q, sc, alpha, mu, nesterov);
    } else {
      f = fast0, s = slow0, h = high0, l = low0, q = codes0, sc = scales0;
    }
    const int expected = synced ? 1 : 0;
    for (const Tracked& t : tracked) {
      if (!owns(t.begin)) continue;
      for (size_t i = 0; i < t.writes.size(); ++i) {
        if (t.writes[i] != expected) {
          fail(what + ": element " + std::to_string(i) + " written " + std::to_string(t.writes[i]) + " times");
          break;
        }
      }
    }
    compare(f.data(), fast.data, fast.n, what + ": fast");
    if constexpr (kCompact) {
      compare(h.data(), high.data, high.n, what + ": slow high parts");
      compare(l.data(), low.data, low.n, what + ": slow residuals");
    } else {
      compare(s.data(), slow.data, slow.n, what + ": slow");
    }
    compare(q.data(), codes.data, codes.n, what + ": codes");
    compare(sc.data(), scales.data, scales.n, what + ": scales");
  }
};

enum class Kind { kPlain, kGatedOn, kGatedOff };

template <typename F, typename Slow>
void run_case(int64_t n, Offsets offsets, float alpha, float mu, bool nesterov, Kind kind, std::mt19937& rng) {
  Case<F, Slow> c(n, offsets, rng);
  tracked.clear();
  c.track_all();
  const int64_t vector_accesses_before = vector_accesses;
  const std::vector<Int8CudaEntry> entries = n > 0 ? std::vector<Int8CudaEntry>{c.entry()} : std::vector<Int8CudaEntry>{};
  const int64_t grid = 2;  // 16 warps: the larger sizes stride
  // alpha as the gate holds it: float32 on one side, float64 on the other
  const int64_t step = kind == Kind::kGatedOff ? 7 : 6;
  const double alpha64 = alpha;
  const bool alpha_is_double = (n % 2) == 1;
  const StepGate gate{&step, 3, alpha_is_double ? static_cast<const void*>(&alpha64) : &alpha, alpha_is_double};
  if (kind == Kind::kPlain) {
    run_on_host(entries, Int8SyncOp{alpha, mu, nesterov}, grid);
  } else {
    run_on_host(entries, GatedInt8SyncOp{gate, mu, nesterov}, grid);
  }
  const char* dtype = sizeof(F) == 4 ? "float32" : std::is_same_v<F, __half> ? "float16" : "bfloat16";
  const std::string what = std::string(Case<F, Slow>::kCompact ? "compact " : "") + dtype + " n=" + std::to_string(n) +
                           " offsets=" + std::to_string(offsets.fast) + "," + std::to_string(offsets.slow) + "," +
                           std::to_string(offsets.codes) + "," + std::to_string(offsets.low) +
                           " alpha=" + std::to_string(alpha) + " mu=" + std::to_string(mu) +
                           " nesterov=" + std::to_string(nesterov) + " kind=" + std::to_string(int(kind));
  c.check(kind != Kind::kGatedOff, alpha, mu, nesterov, what);
  const int64_t vector = vector_accesses - vector_accesses_before;
  const int64_t wanted = kind == Kind::kGatedOff ? 0 : c.vector_accesses_expected();
  if (vector != wanted) {
    fail(what + ": " + std::to_string(vector) + " vector accesses, " + std::to_string(wanted) + " expected");
  }
}

template <typename F, typename Slow>
void run_dtype(std::mt19937& rng) {
  const int64_t sizes[] = {0, 1, 7, 255, 256, 257, 1000, 4097};
  // in elements: aligned; each tensor off its vector alignment in turn; all of them; codes 8-byte but
  // not 16-byte aligned
  std::vector<Offsets> offsets = {{0, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {3, 2, 5, 0}, {0, 0, 8, 0}};
  if (std::is_same_v<Slow, CompactSlow>) {
    // the residuals off theirs, all four, and high parts 8-byte but not 16-byte aligned beside
    // residuals 8-byte but not 16-byte aligned
    offsets.insert(offsets.end(), {{0, 0, 0, 1}, {3, 2, 5, 7}, {0, 4, 0, 8}});
  }
  for (int64_t n : sizes) {
    for (Offsets o : offsets) {
      for (float alpha : {0.0f, 0.3f, 0.5f, 1.0f}) {
        for (float mu : {0.0f, 0.9f}) {
          for (bool nesterov : {false, true}) {
            for (Kind kind : {Kind::kPlain, Kind::kGatedOn, Kind::kGatedOff}) {
              run_case<F, Slow>(n, o, alpha, mu, nesterov, kind, rng);
            }
          }
        }
      }
    }
  }
}

// One call of more entries than one launch table holds, of every fast dtype and size in turn, the
// slow weights stored as Slow says: each launch's entries found by the binary search, each entry as
// its own call would leave it.
template <typename Slow>
void run_many_entries(std::mt19937& rng) {
  const int64_t sizes[] = {1, 7, 255, 256, 257, 1000, 4097, 0};
  std::vector<Case<float, Slow>> f32;
  std::vector<Case<__half, Slow>> f16;
  std::vector<Case<__nv_bfloat16, Slow>> bf16;
  const int kEach = (kInt8LaunchEntries + 8) / 3 + 1;
  f32.reserve(kEach), f16.reserve(kEach), bf16.reserve(kEach);
  std::vector<Int8CudaEntry> entries;
  tracked.clear();
  for (int i = 0; i < kEach; ++i) {
    const int64_t n = sizes[i % 8];
    const Offsets o{i % 3, i % 5, i % 9, i % 7};
    f32.emplace_back(n, o, rng);
    f16.emplace_back(n, o, rng);
    bf16.emplace_back(n, o, rng);
  }
  for (int i = 0; i < kEach; ++i) {  // the order of a mixed call
    if (f32[i].fast.n > 0) entries.push_back(f32[i].entry()), f32[i].track_all();
    if (f16[i].fast.n > 0) entries.push_back(f16[i].entry()), f16[i].track_all();
    if (bf16[i].fast.n > 0) entries.push_back(bf16[i].entry()), bf16[i].track_all();
  }
  if (entries.size() <= size_t(kInt8LaunchEntries)) fail("the many-entry call fits one launch table");
  run_on_host(entries, Int8SyncOp{0.5f, 0.9f, true}, 5);
  const std::string kind = std::is_same_v<Slow, CompactSlow> ? "many compact entries, " : "many entries, ";
  for (int i = 0; i < kEach; ++i) {
    f32[i].check(true, 0.5f, 0.9f, true, kind + "float32 " + std::to_string(i));
    f16[i].check(true, 0.5f, 0.9f, true, kind + "float16 " + std::to_string(i));
    bf16[i].check(true, 0.5f, 0.9f, true, kind + "bfloat16 " + std::to_string(i));
  }
}

}  // namespace

int main() {
  std::mt19937 rng(26);
  run_dtype<float, Float32Slow>(rng);
  run_dtype<__half, Float32Slow>(rng);
  run_dtype<__nv_bfloat16, Float32Slow>(rng);
  run_dtype<float, CompactSlow>(rng);
  run_dtype<__half, CompactSlow>(rng);
  run_dtype<__nv_bfloat16, CompactSlow>(rng);
  if (vector_accesses == 0) fail("no vector access at all");
  run_many_entries<Float32Slow>(rng);
  run_many_entries<CompactSlow>(rng);
  if (failures > 0) {
    std::fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  std::printf("int8 momentum kernel on host: all checks passed (%lld vector accesses)\n",
              static_cast<long long>(vector_accesses));
  return 0;
}
