// The body of the fused table kernels (the sync, the swap, the momentum sync and AdamW's step;
// see [NOTE: table layout] in csrc/table.h), as what one thread of one block does, for two callers:
// the CUDA kernel in sync_cuda.cu, and the host emulation in tests/cpp/test_cuda_kernel_on_host.cu,
// which runs every block and thread of a launch in turn
// (the kernel has no communication between threads, so in-order emulation is faithful) through a
// memory policy that records every access. No torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "../adamw.h"
#include "../table.h"

#ifdef __CUDACC__
#define LOOKAHEAD_KERNEL_FN __host__ __device__ __forceinline__
#else
#define LOOKAHEAD_KERNEL_FN inline
#endif

namespace lookahead_fused {

LOOKAHEAD_KERNEL_FN void unknown_pair_code(int64_t code) {
#ifdef __CUDA_ARCH__
  __trap();
#else
  std::fprintf(stderr, "lookahead_fused: no kernel for pair code %lld\n", static_cast<long long>(code));
  std::abort();
#endif
}

constexpr int kThreads = 256;  // >= the elements of one vector step, so one pass covers head and tail
// Vector steps in flight per thread (loads first, then math and stores): 4 for an entry of two
// tensors; 2 for three, whose steps hold up to 5 packs (a 16-bit fast tensor with two float32 state
// tensors): 4 of those would not fit the 128 registers of two blocks per SM, and the compiler then
// interleaves loads with math.
template <int kDepth>
constexpr int kUnrollFor = kDepth == 2 ? 4 : 2;
constexpr int kMinBlocksPerSM = 2;  // caps registers at 128 a thread: two blocks of 256 threads fit an SM

LOOKAHEAD_KERNEL_FN float widen(float v) { return v; }
LOOKAHEAD_KERNEL_FN double widen(double v) { return v; }
LOOKAHEAD_KERNEL_FN float widen(__half v) { return __half2float(v); }
LOOKAHEAD_KERNEL_FN float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> LOOKAHEAD_KERNEL_FN T narrow(float v);
template <> LOOKAHEAD_KERNEL_FN float narrow<float>(float v) { return v; }
template <> LOOKAHEAD_KERNEL_FN __half narrow<__half>(float v) { return __float2half_rn(v); }
template <> LOOKAHEAD_KERNEL_FN __nv_bfloat16 narrow<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> LOOKAHEAD_KERNEL_FN T narrow(double v) { return v; }

template <typename S>
using opmath_t = decltype(widen(S()));

// [NOTE: 16-byte packs] 16 bytes of T: the unit of every vector load and store. A float32 slow
// tensor paired with a 16-bit fast one takes two packs per step; one 32-byte type would need
// 32-byte alignment, which a tensor at a 16-byte boundary does not have.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

// [NOTE: streaming accesses] Every element is read once and written once, so the vector body uses
// the evict-first global loads and stores (ld.global.cs / st.global.cs): global-space accesses
// (plain dereferences of pointers taken from the int64 table compile to generic LD/ST) that do not
// push the rest of the working set out of L2. Every access goes through a memory policy: this one on
// the GPU, a recording one in the host emulation (tests/cpp/test_cuda_kernel_on_host.cu).
struct DeviceMemory {
#ifdef __CUDA_ARCH__
  template <typename T>
  static __device__ __forceinline__ Pack<T> load_pack(const T* at) {
    const uint4 raw = __ldcs(reinterpret_cast<const uint4*>(at));
    Pack<T> pack;
    __builtin_memcpy(&pack, &raw, sizeof pack);
    return pack;
  }
  template <typename T>
  static __device__ __forceinline__ void store_pack(T* at, const Pack<T>& pack) {
    uint4 raw;
    __builtin_memcpy(&raw, &pack, sizeof raw);
    __stcs(reinterpret_cast<uint4*>(at), raw);
  }
  template <typename T>
  static __device__ __forceinline__ T load(const T* at) { return *at; }
  template <typename T>
  static __device__ __forceinline__ void store(T* at, T value) { *at = value; }
#endif
};

// Element types of the CUDA kernels by the tokens of the dtype list (see [NOTE: dtype list] in csrc/table.h).
using CudaF32 = float;
using CudaF64 = double;
using CudaF16 = __half;
using CudaBF16 = __nv_bfloat16;

template <typename F, typename S, int kStates, typename Mem>
struct Step {  // one vector step: kVecBytes of fast and the same elements of each state tensor
  static constexpr int kElems = Pack<F>::kSize;
  static constexpr int kStatePacks = kElems / Pack<S>::kSize;
  Pack<F> fast;
  Pack<S> state[kStates][kStatePacks];
  LOOKAHEAD_KERNEL_FN void load(const F* f, S* const* s, int64_t at) {
    fast = Mem::load_pack(f + at);
#pragma unroll
    for (int t = 0; t < kStates; ++t) {
#pragma unroll
      for (int k = 0; k < kStatePacks; ++k) state[t][k] = Mem::load_pack(s[t] + at + k * Pack<S>::kSize);
    }
  }
  LOOKAHEAD_KERNEL_FN S& at(int t, int j) { return state[t][j / Pack<S>::kSize].v[j % Pack<S>::kSize]; }
  LOOKAHEAD_KERNEL_FN void store(F* f, S* const* s, int64_t at) const {
    Mem::store_pack(f + at, fast);
#pragma unroll
    for (int t = 0; t < kStates; ++t) {
#pragma unroll
      for (int k = 0; k < kStatePacks; ++k) Mem::store_pack(s[t] + at + k * Pack<S>::kSize, state[t][k]);
    }
  }
  template <typename Op>
  LOOKAHEAD_KERNEL_FN void apply(const Op& op) {
#pragma unroll
    for (int j = 0; j < kElems; ++j) {
      if constexpr (kStates == 1) {
        op.element(fast.v[j], at(0, j));
      } else {
        op.element(fast.v[j], at(0, j), at(1, j));
      }
    }
  }
};

// The two-sided lerp as in the CPU kernel (see [NOTE: two-sided lerp] in csrc/cpu/sync_cpu.cpp): exact at alpha 0
// and 1; the branch is uniform.
template <typename T>
struct Lerp {
  bool small;
  T w, one_minus_w;
  LOOKAHEAD_KERNEL_FN explicit Lerp(double alpha) : small(fabs(alpha) < 0.5), w(T(alpha)), one_minus_w(T(1) - T(alpha)) {}
  LOOKAHEAD_KERNEL_FN T operator()(T s, T f) const { return small ? s + w * (f - s) : f - (f - s) * one_minus_w; }
};

template <typename S, typename T>
LOOKAHEAD_KERNEL_FN T round_to(T v) { return widen(narrow<S>(v)); }

// The fused updates, one functor each over an entry's elements (fast, then its state tensors);
// kDepth is the tensors per entry. Each op is also its own gate (see [NOTE: step gate] in csrc/table.h): skips()
// and resolved() run once per thread before any chunk; only the gated ops read memory there.
struct SyncOp {
  static constexpr int kDepth = 2;
  double alpha;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN SyncOp resolved() const { return *this; }
  template <typename F, typename S>
  LOOKAHEAD_KERNEL_FN void element(F& fast, S& slow) const {
    using T = opmath_t<S>;
    S result = narrow<S>(Lerp<T>(alpha)(widen(slow), widen(fast)));
    slow = result;
    fast = narrow<F>(widen(result));
  }
};

struct SwapOp {  // the host sends only same-dtype pairs to a swap (check_swap_pairs)
  static constexpr int kDepth = 2;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN SwapOp resolved() const { return *this; }
  template <typename F, typename S>
  LOOKAHEAD_KERNEL_FN void element(F& first, S& second) const {
    if constexpr (std::is_same_v<F, S>) {
      F held = first;
      first = second;
      second = held;
    }
  }
};

// The momentum sync as in the CPU kernel (see [NOTE: momentum sync] in csrc/cpu/sync_cpu.cpp): a lerp of slow
// toward f + mu * (nesterov ? m_new : m_old),
// so mu = 0 is the plain sync bit for bit.
struct MomentumSyncOp {
  static constexpr int kDepth = 3;
  double alpha, mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN MomentumSyncOp resolved() const { return *this; }
  template <typename F, typename S>
  LOOKAHEAD_KERNEL_FN void element(F& fast, S& slow, S& momentum) const {
    using T = opmath_t<S>;
    const T f = widen(fast), s = widen(slow), m = widen(momentum), mu_t = T(mu);
    const T m_new = round_to<S>(mu_t * m + (f - s));
    const T target = f + mu_t * (nesterov ? m_new : m);
    S result = narrow<S>(Lerp<T>(alpha)(s, target));
    slow = result;
    momentum = narrow<S>(m_new);
    fast = narrow<F>(widen(result));
  }
};

LOOKAHEAD_KERNEL_FN double alpha_of(const StepGate& gate) {
  return gate.alpha_is_double ? *static_cast<const double*>(gate.alpha) : double(*static_cast<const float*>(gate.alpha));
}

struct GatedSyncOp {
  static constexpr int kDepth = 2;
  StepGate gate;
  LOOKAHEAD_KERNEL_FN bool skips() const { return *gate.step % gate.k != 0; }
  LOOKAHEAD_KERNEL_FN SyncOp resolved() const { return SyncOp{alpha_of(gate)}; }
};

struct GatedMomentumSyncOp {
  static constexpr int kDepth = 3;
  StepGate gate;
  double mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return *gate.step % gate.k != 0; }
  LOOKAHEAD_KERNEL_FN MomentumSyncOp resolved() const { return MomentumSyncOp{alpha_of(gate), mu, nesterov}; }
};

// How elements [lo, hi) of an entry split for vector steps of V elements, where `head` (>= 0) is the
// first index at which every tensor of the entry is 16-byte aligned (table.h): the vector body
// [lo_vector, lo_vector + steps * V), and the unaligned elements before and after it, fewer than V
// each, which one thread apiece runs scalar.
struct VectorSpan {
  int64_t lo_vector, steps, hi_vector;
};

LOOKAHEAD_KERNEL_FN VectorSpan vector_span(int64_t lo, int64_t hi, int64_t head, int64_t V) {
  int64_t lo_vector = lo + (((head - lo) % V) + V) % V;  // first index >= lo that is congruent to head
  if (lo_vector > hi) lo_vector = hi;
  const int64_t steps = (hi - lo_vector) / V;
  return {lo_vector, steps, lo_vector + steps * V};
}

// AdamW's step with the sync in one pass (see [NOTE: AdamW hyper table] in csrc/adamw.h): kDepth 5 for the
// plain sync, 6 for the momentum sync. Each entry resolves its row, and runs the step alone (the
// slow weights untouched) or with the sync, as the row's sync flag says.
template <int D>
struct AdamWOp {
  static constexpr int kDepth = D;
  const double* hyper;
  const int64_t* rows;
  double mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN AdamWOp resolved() const { return *this; }
};

template <typename Op>
struct IsAdamW : std::false_type {};
template <int D>
struct IsAdamW<AdamWOp<D>> : std::true_type {};

struct NoSyncOp {};  // the step alone

// One entry's elements: param, grad, exp_avg, exp_avg_sq in F; kStates state tensors in S (0 when
// the step does not sync).
template <typename Mem, typename F, typename S, int kStates, typename Sync>
struct AdamWEntry {
  using T = opmath_t<S>;
  static constexpr int kElems = Pack<F>::kSize;
  static constexpr int kStatePacks = kElems / Pack<S>::kSize;
  F* p;
  const F* g;
  F* m;
  F* v;
  S* state[kStates > 0 ? kStates : 1];
  AdamWConstants<T> c;
  Sync sync;

  LOOKAHEAD_KERNEL_FN void element(F& pe, F ge, F& me, F& ve, S* st) const {
    T mi = widen(me), vi = widen(ve);
    const T pi = adamw_element(T(widen(pe)), T(widen(ge)), mi, vi, c, [](T x) { return round_to<F>(x); });
    me = narrow<F>(mi);
    ve = narrow<F>(vi);
    pe = narrow<F>(pi);  // the param as Lookahead(AdamW) stores it before the sync reads it
    if constexpr (kStates == 1) sync.element(pe, st[0]);
    if constexpr (kStates == 2) sync.element(pe, st[0], st[1]);
  }
  LOOKAHEAD_KERNEL_FN void scalar(int64_t i) const {
    F pe = Mem::load(p + i), me = Mem::load(m + i), ve = Mem::load(v + i);
    S st[kStates > 0 ? kStates : 1];
#pragma unroll
    for (int t = 0; t < kStates; ++t) st[t] = Mem::load(state[t] + i);
    element(pe, Mem::load(g + i), me, ve, st);
    Mem::store(p + i, pe);
    Mem::store(m + i, me);
    Mem::store(v + i, ve);
#pragma unroll
    for (int t = 0; t < kStates; ++t) Mem::store(state[t] + i, st[t]);
  }
  LOOKAHEAD_KERNEL_FN void vector(int64_t at) const {  // kElems elements from `at`, 16-byte aligned
    Pack<F> pp = Mem::load_pack(p + at), gp = Mem::load_pack(g + at), mp = Mem::load_pack(m + at),
            vp = Mem::load_pack(v + at);
    Pack<S> sp[kStates > 0 ? kStates : 1][kStatePacks];
#pragma unroll
    for (int t = 0; t < kStates; ++t) {
#pragma unroll
      for (int k = 0; k < kStatePacks; ++k) sp[t][k] = Mem::load_pack(state[t] + at + k * Pack<S>::kSize);
    }
#pragma unroll
    for (int j = 0; j < kElems; ++j) {
      S st[kStates > 0 ? kStates : 1];
#pragma unroll
      for (int t = 0; t < kStates; ++t) st[t] = sp[t][j / Pack<S>::kSize].v[j % Pack<S>::kSize];
      element(pp.v[j], gp.v[j], mp.v[j], vp.v[j], st);
#pragma unroll
      for (int t = 0; t < kStates; ++t) sp[t][j / Pack<S>::kSize].v[j % Pack<S>::kSize] = st[t];
    }
    Mem::store_pack(p + at, pp);
    Mem::store_pack(m + at, mp);
    Mem::store_pack(v + at, vp);
#pragma unroll
    for (int t = 0; t < kStates; ++t) {
#pragma unroll
      for (int k = 0; k < kStatePacks; ++k) Mem::store_pack(state[t] + at + k * Pack<S>::kSize, sp[t][k]);
    }
  }
  // Elements [lo, hi) as thread `tid` runs them: the unaligned head and tail one element a thread,
  // the body in 16-byte steps (no unrolling: a step holds up to 8 packs).
  LOOKAHEAD_KERNEL_FN void run(int64_t lo, int64_t hi, int64_t head, int64_t tid) const {
    if (head < 0) {
      for (int64_t i = lo + tid; i < hi; i += kThreads) scalar(i);
      return;
    }
    const VectorSpan span = vector_span(lo, hi, head, kElems);
    if (tid < span.lo_vector - lo) scalar(lo + tid);
    if (tid < hi - span.hi_vector) scalar(span.hi_vector + tid);
    for (int64_t k = tid; k < span.steps; k += kThreads) vector(span.lo_vector + k * kElems);
  }
};

template <typename Mem, typename F, typename S, int D>
LOOKAHEAD_KERNEL_FN void run_adamw_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t hi,
                                         const AdamWOp<D>& op, int64_t tid) {
  using T = opmath_t<S>;
  const AdamWConstants<T> c(op.hyper + op.rows[entry_index] * kAdamWColumns);
  F* p = reinterpret_cast<F*>(entry[0]);
  const F* g = reinterpret_cast<const F*>(entry[1]);
  F* m = reinterpret_cast<F*>(entry[2]);
  F* v = reinterpret_cast<F*>(entry[3]);
  S* s = reinterpret_cast<S*>(entry[4]);
  const int64_t head = head_of(entry[D + 1]);
  if (!c.syncs) {
    AdamWEntry<Mem, F, S, 0, NoSyncOp>{p, g, m, v, {nullptr}, c, NoSyncOp{}}.run(lo, hi, head, tid);
  } else if constexpr (D == 5) {
    AdamWEntry<Mem, F, S, 1, SyncOp>{p, g, m, v, {s}, c, SyncOp{c.alpha}}.run(lo, hi, head, tid);
  } else {
    AdamWEntry<Mem, F, S, 2, MomentumSyncOp>{p, g, m, v, {s, reinterpret_cast<S*>(entry[5])}, c,
                                            MomentumSyncOp{c.alpha, op.mu, op.nesterov}}
        .run(lo, hi, head, tid);
  }
}

template <typename Mem, typename F, typename S, typename Op>
LOOKAHEAD_KERNEL_FN void scalar_element(F* fast, S* const* state, int64_t i, const Op& op) {
  F f = Mem::load(fast + i);
  S s0 = Mem::load(state[0] + i);
  if constexpr (Op::kDepth == 2) {
    op.element(f, s0);
  } else {
    S s1 = Mem::load(state[1] + i);
    op.element(f, s0, s1);
    Mem::store(state[1] + i, s1);
  }
  Mem::store(fast + i, f);
  Mem::store(state[0] + i, s0);
}

// Elements [lo, hi) of one entry, as thread `tid` of a block runs them. `head` is where every tensor
// of the entry reaches a 16-byte boundary (table.h).
template <typename Mem, typename F, typename S, typename Op>
LOOKAHEAD_KERNEL_FN void run_range(F* __restrict__ fast, S* const* state, int64_t lo, int64_t hi, int64_t head,
                                   const Op& op, int64_t tid) {
  constexpr int kStates = Op::kDepth - 1;
  constexpr int kUnroll = kUnrollFor<Op::kDepth>;
  using StepT = Step<F, S, kStates, Mem>;
  constexpr int64_t V = StepT::kElems;
  if (head < 0) {  // never aligned together: scalar, but still every load of a group before any store
    int64_t i = lo + tid;
    for (; i + int64_t(kUnroll - 1) * kThreads < hi; i += int64_t(kThreads) * kUnroll) {
      F f[kUnroll];
      S s[kUnroll][kStates];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        f[u] = Mem::load(fast + i + u * kThreads);
#pragma unroll
        for (int t = 0; t < kStates; ++t) s[u][t] = Mem::load(state[t] + i + u * kThreads);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if constexpr (kStates == 1) {
          op.element(f[u], s[u][0]);
        } else {
          op.element(f[u], s[u][0], s[u][1]);
        }
        Mem::store(fast + i + u * kThreads, f[u]);
#pragma unroll
        for (int t = 0; t < kStates; ++t) Mem::store(state[t] + i + u * kThreads, s[u][t]);
      }
    }
    for (; i < hi; i += kThreads) scalar_element<Mem>(fast, state, i, op);
    return;
  }
  const VectorSpan span = vector_span(lo, hi, head, V);
  const int64_t vector_lo = span.lo_vector, steps = span.steps;
  if (tid < vector_lo - lo) scalar_element<Mem>(fast, state, lo + tid, op);
  if (tid < hi - span.hi_vector) scalar_element<Mem>(fast, state, span.hi_vector + tid, op);
  // [NOTE: unrolled body] Whole groups of kUnroll steps first, with no bounds test inside: all the
  // loads of a group are issued before any math, and no step is loaded under a condition (a step
  // left uninitialised on some path kept every dtype path's registers live together: 255 registers
  // and a 280-352-byte stack). The at most kUnroll - 1 steps left to a thread run one at a time.
  const int64_t stride = int64_t(kThreads) * kUnroll;
  int64_t base = tid;
  for (; base + int64_t(kUnroll - 1) * kThreads < steps; base += stride) {
    StepT step[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) step[u].load(fast, state, vector_lo + (base + int64_t(u) * kThreads) * V);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      step[u].apply(op);
      step[u].store(fast, state, vector_lo + (base + int64_t(u) * kThreads) * V);
    }
  }
  for (int64_t k = base; k < steps; k += kThreads) {
    StepT step;
    step.load(fast, state, vector_lo + k * V);
    step.apply(op);
    step.store(fast, state, vector_lo + k * V);
  }
}

template <typename Mem, typename F, typename S, typename Op>
LOOKAHEAD_KERNEL_FN void run_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t hi, const Op& op,
                                   int64_t tid) {
  if constexpr (IsAdamW<Op>::value) {
    run_adamw_entry<Mem, F, S>(entry, entry_index, lo, hi, op, tid);
  } else {
    constexpr int kStates = Op::kDepth - 1;
    S* state[kStates];
#pragma unroll
    for (int t = 0; t < kStates; ++t) state[t] = reinterpret_cast<S*>(entry[1 + t]);
    run_range<Mem>(reinterpret_cast<F*>(entry[0]), state, lo, hi, head_of(entry[Op::kDepth + 1]), op, tid);
  }
}

// What thread `tid` of block `block` (of `grid`) does: grid-stride over the chunks of every entry;
// each chunk's dtype pair is uniform over its block. An unknown pair code traps (a table built by a
// newer plan.cpp than this kernel must not pass silently).
template <typename Mem, typename Gate>
LOOKAHEAD_KERNEL_FN void table_thread(const int64_t* __restrict__ words, int64_t num_entries, int64_t num_chunks,
                                      int64_t chunk_elems, Gate gate, int64_t block, int64_t grid, int64_t tid) {
  if (gate.skips()) return;
  const auto op = gate.resolved();
  constexpr int64_t kStride = entry_words(Gate::kDepth);
  const int64_t* chunks = words + num_entries * kStride;
  for (int64_t c = block; c < num_chunks; c += grid) {
    const int64_t packed = chunks[c];
    const int64_t entry_index = packed >> kChunkBits;
    const int64_t* entry = words + entry_index * kStride;
    const int64_t lo = (packed & ((int64_t(1) << kChunkBits) - 1)) * chunk_elems;
    const int64_t chunk_end = lo + chunk_elems;
    const int64_t numel = entry[Gate::kDepth];
    const int64_t hi = chunk_end < numel ? chunk_end : numel;
    switch (pair_code_of(entry[Gate::kDepth + 1])) {
#define LOOKAHEAD_CUDA_CASE(code, fast, state) \
  case code: run_entry<Mem, Cuda##fast, Cuda##state>(entry, entry_index, lo, hi, op, tid); break;
      LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_CUDA_CASE)
#undef LOOKAHEAD_CUDA_CASE
      default: unknown_pair_code(pair_code_of(entry[Gate::kDepth + 1]));
    }
  }
}

}  // namespace lookahead_fused
