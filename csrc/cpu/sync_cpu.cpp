#include "sync_cpu.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>

#include <ATen/Parallel.h>

// [NOTE: CPU vectorisation] The loops below are plain C++ that GCC vectorises, compiled twice: once
// for the baseline x86-64 (SSE2) and once inside functions marked target("avx2,fma,f16c"), chosen
// at run time. at::vec was the first choice, but it picks its ISA by preprocessor flags for the
// whole translation unit; an AVX2 unit would also emit AVX2 copies of c10's inline functions, which
// the linker may then hand to the baseline path (an illegal instruction on an older CPU). Only our
// own always-inline code lands in the AVX2 functions, so nothing leaks.
#define LOOKAHEAD_INLINE inline __attribute__((always_inline))

namespace lookahead_fused {
namespace {

LOOKAHEAD_INLINE float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The element types, as stored and as computed (opmath). bfloat16 rounds to nearest even with one
// canonical NaN, bit for bit as c10::BFloat16 does, so fast == slow.to(fast.dtype) holds exactly.
struct F32 {
  using storage = float;
  using opmath = float;
  static LOOKAHEAD_INLINE float load(float v) { return v; }
  static LOOKAHEAD_INLINE float store(float v) { return v; }
};
struct F64 {
  using storage = double;
  using opmath = double;
  static LOOKAHEAD_INLINE double load(double v) { return v; }
  static LOOKAHEAD_INLINE double store(double v) { return v; }
};
struct BF16 {
  using storage = uint16_t;
  using opmath = float;
  static LOOKAHEAD_INLINE float load(uint16_t v) { return bits_to_float(uint32_t(v) << 16); }
  static LOOKAHEAD_INLINE uint16_t store(float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    uint16_t rounded = uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return v != v ? uint16_t(0x7FC0) : rounded;
  }
};
struct F16 {  // GCC's _Float16: IEEE binary16, round to nearest even; GCC 12 keeps these loops scalar
  using storage = uint16_t;
  using opmath = float;
  static LOOKAHEAD_INLINE float load(uint16_t v) {
    _Float16 h;
    std::memcpy(&h, &v, sizeof h);
    return static_cast<float>(h);
  }
  static LOOKAHEAD_INLINE uint16_t store(float v) {
    _Float16 h = static_cast<_Float16>(v);
    uint16_t u;
    std::memcpy(&u, &h, sizeof u);
    return u;
  }
};

// [NOTE: two-sided lerp] The contract's formula, the one torch.lerp uses: s + w (f - s) for |w| < 0.5,
// else f - (f - s)(1 - w); exact at w = 0 and w = 1. The branch is uniform over a call, so it
// selects a loop instead of sitting inside one.
template <class Fast, class Slow, bool kSmallAlpha>
LOOKAHEAD_INLINE void sync_loop(typename Fast::storage* __restrict__ fast, typename Slow::storage* __restrict__ slow,
                                int64_t n, typename Slow::opmath w) {
  using T = typename Slow::opmath;
  const T one_minus_w = T(1) - w;
  for (int64_t i = 0; i < n; ++i) {
    T s = Slow::load(slow[i]);
    T f = Fast::load(fast[i]);
    T r = kSmallAlpha ? s + w * (f - s) : f - (f - s) * one_minus_w;
    auto stored = Slow::store(r);
    slow[i] = stored;
    if constexpr (std::is_same_v<Fast, Slow>) {
      fast[i] = stored;
    } else {
      fast[i] = Fast::store(Slow::load(stored));
    }
  }
}

template <class Fast, class Slow>
LOOKAHEAD_INLINE void sync_pair(int64_t fast, int64_t slow, int64_t lo, int64_t n, double alpha) {
  auto* f = reinterpret_cast<typename Fast::storage*>(fast) + lo;
  auto* s = reinterpret_cast<typename Slow::storage*>(slow) + lo;
  auto w = static_cast<typename Slow::opmath>(alpha);
  if (std::abs(alpha) < 0.5) {
    sync_loop<Fast, Slow, true>(f, s, n, w);
  } else {
    sync_loop<Fast, Slow, false>(f, s, n, w);
  }
}

template <typename Word>  // a swap moves bits: only the element width matters
LOOKAHEAD_INLINE void swap_pair(int64_t first, int64_t second, int64_t lo, int64_t n) {
  Word* __restrict__ a = reinterpret_cast<Word*>(first) + lo;
  Word* __restrict__ b = reinterpret_cast<Word*>(second) + lo;
  for (int64_t i = 0; i < n; ++i) {
    Word held = a[i];
    a[i] = b[i];
    b[i] = held;
  }
}

LOOKAHEAD_INLINE void run_chunk(const int64_t* entry, int64_t lo, int64_t n, TableOp op, double alpha) {
  int64_t fast = entry[0], slow = entry[1];
  int64_t code = pair_code_of(entry[3]);
  if (op == TableOp::kSwap) {
    switch (code) {
      case kF32F32: return swap_pair<uint32_t>(fast, slow, lo, n);
      case kF64F64: return swap_pair<uint64_t>(fast, slow, lo, n);
      default: return swap_pair<uint16_t>(fast, slow, lo, n);  // float16, bfloat16
    }
  }
  switch (code) {
    case kF32F32: return sync_pair<F32, F32>(fast, slow, lo, n, alpha);
    case kF64F64: return sync_pair<F64, F64>(fast, slow, lo, n, alpha);
    case kF16F16: return sync_pair<F16, F16>(fast, slow, lo, n, alpha);
    case kBF16BF16: return sync_pair<BF16, BF16>(fast, slow, lo, n, alpha);
    case kF16F32: return sync_pair<F16, F32>(fast, slow, lo, n, alpha);
    case kBF16F32: return sync_pair<BF16, F32>(fast, slow, lo, n, alpha);
  }
}

void run_chunk_baseline(const int64_t* entry, int64_t lo, int64_t n, TableOp op, double alpha) {
  run_chunk(entry, lo, n, op, alpha);
}

__attribute__((target("avx2,fma,f16c"))) void run_chunk_avx2(const int64_t* entry, int64_t lo, int64_t n, TableOp op,
                                                              double alpha) {
  run_chunk(entry, lo, n, op, alpha);
}

using ChunkRunner = void (*)(const int64_t*, int64_t, int64_t, TableOp, double);

ChunkRunner chunk_runner() {
  static const ChunkRunner runner = [] {
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    return avx2 ? &run_chunk_avx2 : &run_chunk_baseline;
  }();
  return runner;
}

}  // namespace

const char* cpu_kernel_isa() { return chunk_runner() == &run_chunk_avx2 ? "avx2" : "baseline"; }

// [NOTE: OpenMP] at::parallel_for is header code: in a torch built with OpenMP its parallel region
// is an `omp parallel` pragma compiled into this translation unit, which a compiler without
// -fopenmp ignores silently, and every chunk then runs on one thread. setup.py and CMakeLists.txt
// compile with OpenMP; this probe, compiled beside run_cpu, lets a test see the threads it gets.
int64_t cpu_parallel_threads(int64_t tasks) {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) { seen |= uint64_t(1) << (at::get_thread_num() % 64); });
  return __builtin_popcountll(seen.load());
}

constexpr int64_t kMinTaskElements = int64_t(1) << 16;

void run_cpu(const Plan& plan, TableOp op, double alpha) {
  TableView table = plan.host_view();
  const int64_t* chunks = table.words + table.num_pairs * kEntryWords;
  ChunkRunner runner = chunk_runner();
  // [NOTE: CPU grain] A task of fewer than kMinTaskElements elements costs more to hand to another
  // thread than to run: a parallel region wakes the other threads and waits for the slowest, which
  // on a loaded machine can be a time slice. So each task gets at least that many elements on
  // average, and a small set (2000 one-element pairs) runs on the calling thread alone.
  const int64_t elements = std::max<int64_t>(plan.num_elements, 1);
  const int64_t grain = std::max<int64_t>(1, (table.num_chunks * kMinTaskElements + elements - 1) / elements);
  at::parallel_for(0, table.num_chunks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t* entry = table.words + (chunks[c] >> kChunkBits) * kEntryWords;
      int64_t lo = (chunks[c] & ((int64_t(1) << kChunkBits) - 1)) * table.chunk_elems;
      runner(entry, lo, std::min(table.chunk_elems, entry[2] - lo), op, alpha);
    }
  });
}

}  // namespace lookahead_fused
