#include "sync_cpu.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <ATen/Parallel.h>

#include "../adamw.h"
#include "../dtypes.h"
#include "../prefetch.h"
#include "../element_math.h"
#include "element_types.h"

// [NOTE: CPU vectorisation] The loops below are plain C++ that GCC vectorises, compiled twice: once
// for the baseline x86-64 (SSE2) and once inside functions marked target("avx2,fma,f16c"), chosen
// at run time. at::vec was the first choice, but it picks its ISA by preprocessor flags for the
// whole translation unit; an AVX2 unit would also emit AVX2 copies of c10's inline functions, which
// the linker may then hand to the baseline path (an illegal instruction on an older CPU). Only our
// own always-inline code lands in the AVX2 functions, so nothing leaks. The build passes
// -fno-math-errno (setup.py, CMakeLists.txt): with errno semantics GCC keeps AdamW's square root a
// scalar call, and the whole AdamW loop scalar with it (3.4 ns an element on one thread, 4x torch's
// fused AdamW; measured 2026-11-24).
namespace lookahead_fused {
namespace {

// Element i of a sync (element_math.h) whose fast value is `f` (opmath): loads the state (the slow
// weight, and the outer momentum in Momentum's storage), updates, stores it, and returns the new fast value.
template <class Slow, class Momentum = Slow, class Update>
LOOKAHEAD_INLINE typename Slow::opmath sync_element(typename Slow::opmath f, typename Slow::storage* slow,
                                                    typename Momentum::storage* momentum, int64_t i,
                                                    const Update& update) {
  using T = typename Slow::opmath;
  T state[Update::kStates];
  state[0] = Slow::load(slow[i]);
  if constexpr (Update::kStates == 2) state[1] = Momentum::load(momentum[i]);
  // The update rounds its new momentum once, through `round`, and keeps that value as state[1]: its
  // storage bits are stored as they are, not rounded again (a bfloat16 rounding is a dozen vector ops).
  typename Momentum::storage rounded{};
  update(f, state, [&rounded](T x) {
    rounded = Momentum::store(x);
    return Momentum::load(rounded);
  });
  const typename Slow::storage new_slow = Slow::store(state[0]);
  slow[i] = new_slow;
  if constexpr (Update::kStates == 2) momentum[i] = rounded;
  return Slow::load(new_slow);
}

template <class Fast, class Slow, class Momentum, class Update>
LOOKAHEAD_INLINE void update_loop(typename Fast::storage* __restrict__ fast, typename Slow::storage* __restrict__ slow,
                                  typename Momentum::storage* __restrict__ momentum, int64_t n, const Update& update) {
  for (int64_t i = 0; i < n; ++i) {
    const typename Slow::opmath f = sync_element<Slow, Momentum>(Fast::load(fast[i]), slow, momentum, i, update);
    if constexpr (std::is_same_v<Fast, Slow>) {
      fast[i] = slow[i];
    } else {
      fast[i] = Fast::store(f);
    }
  }
}

// Calls loop(update) with the sync's update (element_math.h): the plain sync, or with `momentum`
// the momentum sync; the lerp's side and Nesterov are Fixed flags, so each variant is a loop of its
// own. `loop` must be an always-inline lambda, so that its loop is compiled into the caller's ISA
// (see [NOTE: CPU vectorisation] in csrc/cpu/sync_cpu.cpp).
template <class T, class Loop>
LOOKAHEAD_INLINE void with_sync_update(double alpha, bool momentum, double mu, bool nesterov, Loop loop) {
  const T mu_t = static_cast<T>(mu);
  auto with_side = [&](auto small) LOOKAHEAD_LAMBDA_INLINE {
    using Small = decltype(small);
    const TwoSidedLerp<T, Small> lerp = two_sided_lerp<T>(alpha, small);
    if (!momentum) return loop(SyncMath<T, Small>{lerp});
    if (nesterov) return loop(MomentumSyncMath<T, Small, Fixed<true>>{lerp, mu_t, {}});
    return loop(MomentumSyncMath<T, Small, Fixed<false>>{lerp, mu_t, {}});
  };
  if (lerp_from_slow(alpha)) return with_side(Fixed<true>{});
  return with_side(Fixed<false>{});
}

// The sync or momentum sync of one entry; the outer momentum is in Momentum's storage (see [NOTE: entry dtypes] in csrc/table.h).
template <class Fast, class Slow, class Momentum = Slow>
LOOKAHEAD_INLINE void update_entry(const int64_t* entry, int64_t lo, int64_t n, TableOp op, const UpdateArgs& args) {
  auto* f = reinterpret_cast<typename Fast::storage*>(entry[0]) + lo;
  auto* s = reinterpret_cast<typename Slow::storage*>(entry[1]) + lo;
  auto* m = op == TableOp::kMomentumSync ? reinterpret_cast<typename Momentum::storage*>(entry[2]) + lo : nullptr;
  with_sync_update<typename Slow::opmath>(
      args.alpha, op == TableOp::kMomentumSync, args.mu, args.nesterov,
      [&](const auto& update) LOOKAHEAD_LAMBDA_INLINE { update_loop<Fast, Slow, Momentum>(f, s, m, n, update); });
}

struct NoSync {  // AdamW's step alone: the state tensors are not touched
  static constexpr int kStates = 0;
};

// AdamW's step (adamw.h) and then, unless Sync is NoSync, the sync of the new param: the param is
// rounded to its dtype first, as Lookahead(AdamW) stores it before its sync reads it. The pointers
// are restrict parameters: GCC honours restrict on parameters, and without it the loop needs more
// run-time alias checks than it will version for (10), and stays scalar.
template <class Fast, class Slow, class Momentum, class Sync>
LOOKAHEAD_INLINE void adamw_loop(typename Fast::storage* __restrict__ p, const typename Fast::storage* __restrict__ g,
                                 typename Fast::storage* __restrict__ m, typename Fast::storage* __restrict__ v,
                                 typename Slow::storage* __restrict__ s, typename Momentum::storage* __restrict__ b,
                                 int64_t n, const AdamWConstants<typename Slow::opmath>& c, const Sync& sync) {
  using T = typename Slow::opmath;
  auto round_fast = [](T x) { return Fast::load(Fast::store(x)); };
  for (int64_t i = 0; i < n; ++i) {
    T mi = Fast::load(m[i]), vi = Fast::load(v[i]);
    const T pi = adamw_element(Fast::load(p[i]), Fast::load(g[i]), mi, vi, c, round_fast);
    m[i] = Fast::store(mi);
    v[i] = Fast::store(vi);
    if constexpr (Sync::kStates == 0) {
      p[i] = Fast::store(pi);
    } else {
      p[i] = Fast::store(sync_element<Slow, Momentum>(round_fast(pi), s, b, i, sync));
    }
  }
}

template <class Fast, class Slow, class Momentum = Slow>
LOOKAHEAD_INLINE void adamw_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t n, TableOp op,
                                  const UpdateArgs& args) {
  using T = typename Slow::opmath;
  using FastStorage = typename Fast::storage;
  using SlowStorage = typename Slow::storage;
  auto* p = reinterpret_cast<FastStorage*>(entry[0]) + lo;
  auto* g = reinterpret_cast<const FastStorage*>(entry[1]) + lo;
  auto* m = reinterpret_cast<FastStorage*>(entry[2]) + lo;
  auto* v = reinterpret_cast<FastStorage*>(entry[3]) + lo;
  const bool has_slow = op != TableOp::kAdamWAlone;  // AdamW's step alone: the entry ends at exp_avg_sq
  auto* s = has_slow ? reinterpret_cast<SlowStorage*>(entry[4]) + lo : nullptr;
  auto* b = op == TableOp::kAdamWMomentum ? reinterpret_cast<typename Momentum::storage*>(entry[5]) + lo : nullptr;
  const AdamWConstants<T> c(args.hyper + args.rows[entry_index] * kAdamWColumns);
  if (!c.syncs || !has_slow) return adamw_loop<Fast, Slow, Momentum>(p, g, m, v, s, b, n, c, NoSync{});
  with_sync_update<T>(c.alpha, op == TableOp::kAdamWMomentum, args.mu, args.nesterov,
                      [&](const auto& update) LOOKAHEAD_LAMBDA_INLINE { adamw_loop<Fast, Slow, Momentum>(p, g, m, v, s, b, n, c, update); });
}

// The compact sync (see [NOTE: compact sync] in csrc/element_math.h): the fast tensor, then its slow
// weight's bfloat16 high parts and int8 residuals.
template <class Fast, class Small>
LOOKAHEAD_INLINE void compact_loop(typename Fast::storage* __restrict__ fast, uint16_t* __restrict__ high,
                                   int8_t* __restrict__ residual, int64_t n, const TwoSidedLerp<float, Small>& lerp) {
  for (int64_t i = 0; i < n; ++i) {
    fast[i] = Fast::store(compact_sync_element(Fast::load(fast[i]), high[i], residual[i], lerp));
  }
}

template <class Fast>
LOOKAHEAD_INLINE void compact_entry(const int64_t* entry, int64_t lo, int64_t n, const UpdateArgs& args) {
  auto* f = reinterpret_cast<typename Fast::storage*>(entry[0]) + lo;
  auto* h = reinterpret_cast<uint16_t*>(entry[1]) + lo;
  auto* q = reinterpret_cast<int8_t*>(entry[2]) + lo;
  if (lerp_from_slow(args.alpha)) {
    return compact_loop<Fast>(f, h, q, n, two_sided_lerp<float>(args.alpha, Fixed<true>{}));
  }
  compact_loop<Fast>(f, h, q, n, two_sided_lerp<float>(args.alpha, Fixed<false>{}));
}

// The pseudo-gradient (see [NOTE: pseudo-gradient] in csrc/element_math.h): the fast tensor and the
// slow weight read, `out` (in Out: the slow dtype, or BF16 beside F32) written.
template <class Fast, class Slow, class Out = Slow>
LOOKAHEAD_INLINE void pseudo_gradient_entry(const int64_t* entry, int64_t lo, int64_t n) {
  using T = typename Slow::opmath;
  const auto* __restrict__ f = reinterpret_cast<const typename Fast::storage*>(entry[0]) + lo;
  const auto* __restrict__ s = reinterpret_cast<const typename Slow::storage*>(entry[1]) + lo;
  auto* __restrict__ out = reinterpret_cast<typename Out::storage*>(entry[2]) + lo;
  for (int64_t i = 0; i < n; ++i) out[i] = Out::store(pseudo_gradient<T>(T(Fast::load(f[i])), Slow::load(s[i])));
}

// The compact momentum sync of the fast value `f` (see [NOTE: compact momentum sync] in csrc/element_math.h),
// the momentum in Momentum's storage rounded once and its bits stored as they are; returns the slow weight as
// stored.
template <class Momentum, class Update>
LOOKAHEAD_INLINE float compact_momentum_element(float f, uint16_t& high, int8_t& residual,
                                                typename Momentum::storage& momentum, const Update& update) {
  float m = Momentum::load(momentum);
  typename Momentum::storage rounded{};
  const float slow = compact_momentum_sync_element(f, high, residual, m, update, [&rounded](float x) {
    rounded = Momentum::store(x);
    return Momentum::load(rounded);
  });
  momentum = rounded;
  return slow;
}

// The compact momentum sync (see [NOTE: compact momentum sync] in csrc/element_math.h): the fast
// tensor, its slow weight's bfloat16 high parts and int8 residuals, and the outer momentum in
// Momentum's storage (F32 or BF16).
template <class Fast, class Momentum, class Update>
LOOKAHEAD_INLINE void compact_momentum_loop(typename Fast::storage* __restrict__ fast, uint16_t* __restrict__ high,
                                            int8_t* __restrict__ residual,
                                            typename Momentum::storage* __restrict__ momentum, int64_t n,
                                            const Update& update) {
  for (int64_t i = 0; i < n; ++i) {
    fast[i] =
        Fast::store(compact_momentum_element<Momentum>(Fast::load(fast[i]), high[i], residual[i], momentum[i], update));
  }
}

template <class Fast, class Momentum>
LOOKAHEAD_INLINE void compact_momentum_entry(const int64_t* entry, int64_t lo, int64_t n, const UpdateArgs& args) {
  auto* f = reinterpret_cast<typename Fast::storage*>(entry[0]) + lo;
  auto* h = reinterpret_cast<uint16_t*>(entry[1]) + lo;
  auto* q = reinterpret_cast<int8_t*>(entry[2]) + lo;
  auto* m = reinterpret_cast<typename Momentum::storage*>(entry[3]) + lo;
  with_sync_update<float>(args.alpha, true, args.mu, args.nesterov, [&](const auto& update) LOOKAHEAD_LAMBDA_INLINE {
    compact_momentum_loop<Fast, Momentum>(f, h, q, m, n, update);
  });
}

constexpr int64_t kFloat16CompactTile = 1024;  // see [NOTE: float16 compact tiles] in csrc/cpu/sync_cpu.cpp

// AdamW's step and the compact sync (Update: SyncMath) or compact momentum sync (MomentumSyncMath, the
// momentum in Momentum's storage) of the new param, on a sync row
// (see [NOTE: AdamW compact step] in csrc/adamw.h). Restrict parameters, as adamw_loop's.
template <class Fast, class Momentum, class Update>
LOOKAHEAD_INLINE void adamw_compact_loop(typename Fast::storage* __restrict__ p,
                                         const typename Fast::storage* __restrict__ g,
                                         typename Fast::storage* __restrict__ m, typename Fast::storage* __restrict__ v,
                                         uint16_t* __restrict__ high, int8_t* __restrict__ residual,
                                         typename Momentum::storage* __restrict__ b, int64_t n,
                                         const AdamWConstants<float>& c, const Update& update) {
  auto round_fast = [](float x) { return Fast::load(Fast::store(x)); };
  for (int64_t i = 0; i < n; ++i) {
    float mi = Fast::load(m[i]), vi = Fast::load(v[i]);
    const float kept = round_fast(adamw_element(Fast::load(p[i]), Fast::load(g[i]), mi, vi, c, round_fast));
    m[i] = Fast::store(mi);
    v[i] = Fast::store(vi);
    if constexpr (Update::kStates == 1) {
      p[i] = Fast::store(compact_sync_element(kept, high[i], residual[i], update.lerp));
    } else {
      p[i] = Fast::store(compact_momentum_element<Momentum>(kept, high[i], residual[i], b[i], update));
    }
  }
}

// An entry of kAdamWCompact (param, grad, exp_avg, exp_avg_sq, slow_high, slow_low) or of
// kAdamWCompactMomentum (and the outer momentum in Momentum's storage).
template <class Fast, class Momentum = F32>
LOOKAHEAD_INLINE void adamw_compact_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t n, TableOp op,
                                          const UpdateArgs& args) {
  using FastStorage = typename Fast::storage;
  auto* p = reinterpret_cast<FastStorage*>(entry[0]) + lo;
  auto* g = reinterpret_cast<const FastStorage*>(entry[1]) + lo;
  auto* m = reinterpret_cast<FastStorage*>(entry[2]) + lo;
  auto* v = reinterpret_cast<FastStorage*>(entry[3]) + lo;
  const AdamWConstants<float> c(args.hyper + args.rows[entry_index] * kAdamWColumns);
  if (!c.syncs) return adamw_loop<Fast, F32, F32>(p, g, m, v, nullptr, nullptr, n, c, NoSync{});
  auto* h = reinterpret_cast<uint16_t*>(entry[4]) + lo;
  auto* q = reinterpret_cast<int8_t*>(entry[5]) + lo;
  const bool momentum = op == TableOp::kAdamWCompactMomentum;
  auto* b = momentum ? reinterpret_cast<typename Momentum::storage*>(entry[6]) + lo : nullptr;
  with_sync_update<float>(c.alpha, momentum, args.mu, args.nesterov, [&](const auto& update) LOOKAHEAD_LAMBDA_INLINE {
    if constexpr (std::is_same_v<Fast, F16>) {
      // [NOTE: float16 compact tiles] GCC 12 keeps float16 loops scalar, and the one loop of AdamW's step
      // with the compact sync then runs slower than the two loops apart (bench/RESULTS.md, issue 26). So
      // float16 params take AdamW's loop, then the compact sync's, over a tile that stays in L1: the
      // same elements, the same bits.
      for (int64_t t = 0; t < n; t += kFloat16CompactTile) {
        const int64_t count = std::min(kFloat16CompactTile, n - t);
        adamw_loop<Fast, F32, F32>(p + t, g + t, m + t, v + t, nullptr, nullptr, count, c, NoSync{});
        if constexpr (std::decay_t<decltype(update)>::kStates == 1) {
          compact_loop<Fast>(p + t, h + t, q + t, count, update.lerp);
        } else {
          compact_momentum_loop<Fast, Momentum>(p + t, h + t, q + t, b + t, count, update);
        }
      }
    } else {
      adamw_compact_loop<Fast, Momentum>(p, g, m, v, h, q, b, n, c, update);
    }
  });
}

template <typename Word>  // a swap moves bits: only the element width matters
LOOKAHEAD_INLINE void swap_entry(const int64_t* entry, int64_t lo, int64_t n) {
  Word* __restrict__ a = reinterpret_cast<Word*>(entry[0]) + lo;
  Word* __restrict__ b = reinterpret_cast<Word*>(entry[1]) + lo;
  for (int64_t i = 0; i < n; ++i) {
    Word held = a[i];
    a[i] = b[i];
    b[i] = held;
  }
}

[[noreturn]] void unknown_pair_code(int64_t code) {
  std::fprintf(stderr, "lookahead_fused: no CPU kernel for pair code %lld\n", static_cast<long long>(code));
  std::abort();
}

LOOKAHEAD_INLINE void run_chunk(const int64_t* entry, int64_t entry_index, int depth, int64_t lo, int64_t n,
                                TableOp op, const UpdateArgs& args) {
  const int64_t code = pair_code_of(entry[depth + 1]);
  if (op == TableOp::kSwap) {  // the host sends only same-dtype pairs to a swap (check_swap_pairs)
    switch (code) {
#define LOOKAHEAD_SWAP_CASE(pair, fast, state) \
  case pair: return swap_entry<typename fast::storage>(entry, lo, n);
      LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_SWAP_CASE)
#undef LOOKAHEAD_SWAP_CASE
      default: unknown_pair_code(code);
    }
  }
  if (op == TableOp::kCompactMomentumSync) {
    switch (code) {
#define LOOKAHEAD_COMPACT_MOMENTUM_CASE(pair, fast) \
  case pair: return compact_momentum_entry<fast, F32>(entry, lo, n, args);
      LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_COMPACT_MOMENTUM_CASE)
#undef LOOKAHEAD_COMPACT_MOMENTUM_CASE
#define LOOKAHEAD_COMPACT_BF16_MOMENTUM_CASE(pair, fast) \
  case pair: return compact_momentum_entry<fast, BF16>(entry, lo, n, args);
      LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(LOOKAHEAD_COMPACT_BF16_MOMENTUM_CASE)
#undef LOOKAHEAD_COMPACT_BF16_MOMENTUM_CASE
      default: unknown_pair_code(code);
    }
  }
  if (op == TableOp::kPseudoGradient) {
    switch (code) {
#define LOOKAHEAD_PSEUDO_GRADIENT_CASE(pair, fast, state) \
  case pair: return pseudo_gradient_entry<fast, state>(entry, lo, n);
      LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_PSEUDO_GRADIENT_CASE)
#undef LOOKAHEAD_PSEUDO_GRADIENT_CASE
#define LOOKAHEAD_PSEUDO_GRADIENT_BF16_CASE(pair, fast, state) \
  case pair: return pseudo_gradient_entry<fast, state, BF16>(entry, lo, n);
      LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_PSEUDO_GRADIENT_BF16_CASE)
#undef LOOKAHEAD_PSEUDO_GRADIENT_BF16_CASE
      default: unknown_pair_code(code);
    }
  }
  if (op == TableOp::kCompactSync) {
    switch (code) {
#define LOOKAHEAD_COMPACT_CASE(pair, fast) \
  case pair: return compact_entry<fast>(entry, lo, n, args);
      LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_COMPACT_CASE)
#undef LOOKAHEAD_COMPACT_CASE
      default: unknown_pair_code(code);
    }
  }
  if (op == TableOp::kAdamWCompact || op == TableOp::kAdamWCompactMomentum) {
    switch (code) {
#define LOOKAHEAD_ADAMW_COMPACT_CASE(pair, fast) \
  case pair: return adamw_compact_entry<fast>(entry, entry_index, lo, n, op, args);
      LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_ADAMW_COMPACT_CASE)
#undef LOOKAHEAD_ADAMW_COMPACT_CASE
#define LOOKAHEAD_ADAMW_COMPACT_BF16_MOMENTUM_CASE(pair, fast) \
  case pair: return adamw_compact_entry<fast, BF16>(entry, entry_index, lo, n, op, args);
      LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(LOOKAHEAD_ADAMW_COMPACT_BF16_MOMENTUM_CASE)
#undef LOOKAHEAD_ADAMW_COMPACT_BF16_MOMENTUM_CASE
      default: unknown_pair_code(code);
    }
  }
  if (op == TableOp::kAdamW || op == TableOp::kAdamWMomentum || op == TableOp::kAdamWAlone) {
    switch (code) {
#define LOOKAHEAD_ADAMW_CASE(pair, fast, state) \
  case pair: return adamw_entry<fast, state>(entry, entry_index, lo, n, op, args);
      LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_ADAMW_CASE)
#undef LOOKAHEAD_ADAMW_CASE
#define LOOKAHEAD_ADAMW_BF16_MOMENTUM_CASE(pair, fast, state) \
  case pair: return adamw_entry<fast, state, BF16>(entry, entry_index, lo, n, op, args);
      LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_ADAMW_BF16_MOMENTUM_CASE)
#undef LOOKAHEAD_ADAMW_BF16_MOMENTUM_CASE
      default: unknown_pair_code(code);
    }
  }
  switch (code) {
#define LOOKAHEAD_UPDATE_CASE(pair, fast, state) \
  case pair: return update_entry<fast, state>(entry, lo, n, op, args);
    LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_UPDATE_CASE)
#undef LOOKAHEAD_UPDATE_CASE
#define LOOKAHEAD_BF16_MOMENTUM_CASE(pair, fast, state) \
  case pair: return update_entry<fast, state, BF16>(entry, lo, n, op, args);
    LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_BF16_MOMENTUM_CASE)
#undef LOOKAHEAD_BF16_MOMENTUM_CASE
    default: unknown_pair_code(code);
  }
}

void run_chunk_baseline(const int64_t* entry, int64_t entry_index, int depth, int64_t lo, int64_t n, TableOp op,
                        const UpdateArgs& args) {
  run_chunk(entry, entry_index, depth, lo, n, op, args);
}

__attribute__((target("avx2,fma,f16c"))) void run_chunk_avx2(const int64_t* entry, int64_t entry_index, int depth,
                                                              int64_t lo, int64_t n, TableOp op, const UpdateArgs& args) {
  run_chunk(entry, entry_index, depth, lo, n, op, args);
}

using ChunkRunner = void (*)(const int64_t*, int64_t, int, int64_t, int64_t, TableOp, const UpdateArgs&);

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

void run_adamw_alone_cpu(void* param, const void* grad, void* exp_avg, void* exp_avg_sq, int64_t n,
                         at::ScalarType dtype, const double* row) {
  const int64_t entry[] = {reinterpret_cast<int64_t>(param),
                           reinterpret_cast<int64_t>(grad),
                           reinterpret_cast<int64_t>(exp_avg),
                           reinterpret_cast<int64_t>(exp_avg_sq),
                           n,
                           pair_code(dtype, dtype)};  // the CPU loops read only the meta word's pair code
  const int64_t row_index = 0;
  UpdateArgs args;
  args.hyper = row;
  args.rows = &row_index;
  chunk_runner()(entry, 0, 4, 0, n, TableOp::kAdamWAlone, args);
}

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

void run_cpu(const Plan& plan, TableOp op, const UpdateArgs& args) {
  TableView table = plan.host_view();
  const int64_t stride = entry_words(table.depth);
  const int64_t* chunks = table.words + table.num_entries * stride;
  ChunkRunner runner = chunk_runner();
  // [NOTE: CPU grain] A task of fewer than kMinTaskElements elements costs more to hand to another
  // thread than to run: a parallel region wakes the other threads and waits for the slowest, which
  // on a loaded machine can be a time slice. So each task gets at least that many elements on
  // average, and a small set (2000 one-element pairs) runs on the calling thread alone.
  const int64_t elements = std::max<int64_t>(plan.num_elements, 1);
  const int64_t grain = std::max<int64_t>(1, (table.num_chunks * kMinTaskElements + elements - 1) / elements);
  at::parallel_for(0, table.num_chunks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      if (c + kPrefetchAhead < end && (chunks[c + kPrefetchAhead] & ((int64_t(1) << kChunkBits) - 1)) == 0) {
        // a small tensor's first chunk: ask for its first line (see [NOTE: prefetch ahead] in csrc/prefetch.h)
        const int64_t* ahead = table.words + (chunks[c + kPrefetchAhead] >> kChunkBits) * stride;
        for (int t = 0; t < table.depth; ++t) __builtin_prefetch(reinterpret_cast<const void*>(ahead[t]));
      }
      const int64_t entry_index = chunks[c] >> kChunkBits;
      const int64_t* entry = table.words + entry_index * stride;
      int64_t lo = (chunks[c] & ((int64_t(1) << kChunkBits) - 1)) * table.chunk_elems;
      runner(entry, entry_index, table.depth, lo, std::min(table.chunk_elems, entry[table.depth] - lo), op, args);
    }
  });
}

}  // namespace lookahead_fused
