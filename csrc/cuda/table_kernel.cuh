// The body of the fused table kernels (the sync, the swap, the momentum sync, AdamW's step, the
// compact sync and its momentum sync, AdamW's step with those, and the pseudo-gradient;
// see [NOTE: table layout] in csrc/table.h), as what one thread of one block does, for two callers:
// the CUDA kernel in sync_cuda.cu, and the host emulation in tests/cpp/test_cuda_kernel_on_host.cu,
// which runs every block and thread of a launch in turn
// (the kernel has no communication between threads, so in-order emulation is faithful) through a
// memory policy that records every access. The element math is element_math.h and adamw.h, shared
// with the CPU kernel; every op goes through one walker (run_range). No torch headers.
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
#include "../element_math.h"
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
// Vector steps in flight per thread (loads first, then math and stores), by the tensors of a table
// entry: 4 for two; 2 for three, whose steps hold up to 5 packs (a 16-bit fast tensor with two
// float32 state tensors; float32 fast and slow with a bfloat16 momentum, whose steps are 8 elements):
// 4 of those would not fit the 128 registers of two blocks per SM, and the compiler then interleaves
// loads with math; 1 for four to seven, whose steps hold up to 11 (AdamW's four float32 fast tensors
// with a bfloat16 momentum; AdamW's with the compact sync loads a pack of its grad and moments at a time).
template <int kDepth>
constexpr int kUnrollFor = kDepth == 2 ? 4 : kDepth == 3 ? 2 : 1;
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

template <typename S, typename T>
LOOKAHEAD_KERNEL_FN T round_to(T v) { return widen(narrow<S>(v)); }

// One element of a sync (element_math.h) on storage values: `fast`, the slow weight in S and, for a
// two-state update, the outer momentum in M (S, or bfloat16 beside a float32 slow weight; unused
// and may be null for one state). The states are spelled out, not looped over: a loop here, even
// unrolled, changed how the compiler unrolls the walker's leftover steps.
template <typename M, typename F, typename S, typename Math>
LOOKAHEAD_KERNEL_FN void sync_element(F& fast, S& slow, M* momentum, const Math& math) {
  static_assert(Math::kStates == 1 || Math::kStates == 2);
  using T = opmath_t<S>;
  T values[Math::kStates];
  values[0] = widen(slow);
  if constexpr (Math::kStates == 2) values[1] = widen(*momentum);
  math(T(widen(fast)), values, [](T x) { return round_to<M>(x); });
  slow = narrow<S>(values[0]);
  if constexpr (Math::kStates == 2) *momentum = narrow<M>(values[1]);
  fast = narrow<F>(widen(slow));
}

// The fused updates, one op each, as the walker (run_range) sees them: an entry's first kFast
// tensors are in the fast dtype F, the next kStates in the state dtype S, and element(fast, state)
// updates one element of each in place (storage values); the fast tensors with a bit in kReadOnly
// are loaded but never stored. kDepth is the table's tensors per entry. Each op is also its own gate
// (see [NOTE: step gate] in csrc/table.h): skips() and resolved() run once per thread before any
// chunk; only the gated ops read memory there.
struct SyncOp {
  static constexpr int kDepth = 2, kFast = 1, kStates = 1;
  static constexpr unsigned kReadOnly = 0;
  double alpha;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN SyncOp resolved() const { return *this; }
  template <typename F, typename S>
  LOOKAHEAD_KERNEL_FN void element(F* fast, S* state) const {
    using T = opmath_t<S>;
    sync_element<S>(fast[0], state[0], nullptr, SyncMath<T, bool>{two_sided_lerp<T>(alpha, lerp_from_slow(alpha))});
  }
};

struct SwapOp {  // the host sends only same-dtype pairs to a swap (check_swap_pairs)
  static constexpr int kDepth = 2, kFast = 1, kStates = 1;
  static constexpr unsigned kReadOnly = 0;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN SwapOp resolved() const { return *this; }
  template <typename F, typename S>
  LOOKAHEAD_KERNEL_FN void element(F* first, S* second) const {
    if constexpr (std::is_same_v<F, S>) {
      F held = first[0];
      first[0] = second[0];
      second[0] = held;
    }
  }
};

struct MomentumSyncOp {
  static constexpr int kDepth = 3, kFast = 1, kStates = 2;
  static constexpr unsigned kReadOnly = 0;
  double alpha, mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN MomentumSyncOp resolved() const { return *this; }
  template <typename T>
  LOOKAHEAD_KERNEL_FN MomentumSyncMath<T, bool, bool> math() const {
    return {two_sided_lerp<T>(alpha, lerp_from_slow(alpha)), T(mu), nesterov};
  }
  template <typename F, typename S>
  LOOKAHEAD_KERNEL_FN void element(F* fast, S* state) const {
    sync_element<S>(fast[0], state[0], &state[1], math<opmath_t<S>>());
  }
};

// [NOTE: bf16 momentum step] The momentum sync of an entry whose outer momentum is bfloat16 beside
// float32 slow weights (LOOKAHEAD_BF16_MOMENTUM_PAIRS in csrc/table.h): table_thread runs it on
// those codes only, for a MomentumSyncOp, and after AdamW's step for an AdamWOp<6> on a sync row
// (Bf16MomentumAdamWStep; Bf16MomentumOpOf names each op's; a PseudoGradientOp's bfloat16 out takes
// the same codes, Bf16PseudoGradientOp). The walker hands the state tensors over
// as float32 (S); the steps of these ops (Bf16MomentumStep, Bf16MomentumScalarStep) read the momentum
// as bfloat16, 8 elements a vector step. The math is MomentumSyncMath in float32, the new momentum
// rounded as bfloat16 storage rounds it, the Nesterov target reading it rounded.
struct Bf16MomentumSyncOp {
  static constexpr int kDepth = 3, kFast = 1, kStates = 2;
  static constexpr unsigned kReadOnly = 0;
  using Momentum = __nv_bfloat16;
  MomentumSyncOp op;
  template <typename F>
  LOOKAHEAD_KERNEL_FN void element(F* fast, float& slow, Momentum& momentum) const {
    sync_element<Momentum>(fast[0], slow, &momentum, op.math<float>());
  }
};

// The compact sync (see [NOTE: compact sync] in csrc/element_math.h): the fast tensor, then the slow
// weight's bfloat16 high parts and int8 residuals. The walker hands the two state tensors over as
// bytes (S = int8_t); its steps (Step and ScalarStep for this op, below) read each as its own type.
struct CompactSyncOp {
  static constexpr int kDepth = 3, kFast = 1, kStates = 2;
  static constexpr unsigned kReadOnly = 0;
  double alpha;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN CompactSyncOp resolved() const { return *this; }
  template <typename F>
  LOOKAHEAD_KERNEL_FN void element(F& fast, uint16_t& high, int8_t& residual) const {
    const auto lerp = two_sided_lerp<float>(alpha, lerp_from_slow(alpha));
    fast = narrow<F>(compact_sync_element(float(widen(fast)), high, residual, lerp));
  }
};

// The pseudo-gradient (see [NOTE: pseudo-gradient] in csrc/element_math.h): the fast tensor and the
// slow weight read, out (in S) written. Its steps (PseudoGradientStep and PseudoGradientElement,
// below) neither load out nor store fast and slow.
struct PseudoGradientOp {
  static constexpr int kDepth = 3, kFast = 1, kStates = 2;
  static constexpr unsigned kReadOnly = 1u << 0;  // the fast tensor
  using Out = void;  // out in S
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN PseudoGradientOp resolved() const { return *this; }
  template <typename O, typename F, typename S>
  LOOKAHEAD_KERNEL_FN O element(F fast, S slow) const {
    using T = opmath_t<S>;
    return narrow<O>(pseudo_gradient<T>(T(widen(fast)), widen(slow)));
  }
};

// The pseudo-gradient of an entry whose out is bfloat16 beside float32 slow weights (the replicas'
// bfloat16 wire; LOOKAHEAD_BF16_MOMENTUM_PAIRS in csrc/table.h, out in the momentum's role,
// see [NOTE: entry dtypes] in csrc/table.h): table_thread runs it on those codes for a PseudoGradientOp.
// The walker hands the state tensors over as float32 (S); its steps store out as bfloat16.
struct Bf16PseudoGradientOp {
  static constexpr int kDepth = 3, kFast = 1, kStates = 2;
  static constexpr unsigned kReadOnly = PseudoGradientOp::kReadOnly;
  using Out = __nv_bfloat16;
  PseudoGradientOp op;
  template <typename O, typename F, typename S>
  LOOKAHEAD_KERNEL_FN O element(F fast, S slow) const {
    return op.element<O>(fast, slow);
  }
};

// The compact momentum sync (see [NOTE: compact momentum sync] in csrc/element_math.h): the compact
// sync's tensors, then the outer momentum, float32 or bfloat16 by the entry's code. The walker runs
// each entry as CompactMomentumEntryOp<M> for its momentum's type M, whose steps (below) read it.
struct CompactMomentumSyncOp {
  static constexpr int kDepth = 4, kFast = 1, kStates = 3;
  static constexpr unsigned kReadOnly = 0;
  double alpha, mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN CompactMomentumSyncOp resolved() const { return *this; }
  template <typename F, typename M>
  LOOKAHEAD_KERNEL_FN void element(F& fast, uint16_t& high, int8_t& residual, M& momentum) const {
    const MomentumSyncMath<float, bool, bool> math{two_sided_lerp<float>(alpha, lerp_from_slow(alpha)), float(mu),
                                                   nesterov};
    float m = widen(momentum);
    const float slow = compact_momentum_sync_element(float(widen(fast)), high, residual, m, math,
                                                     [](float x) { return round_to<M>(x); });
    momentum = narrow<M>(m);  // exact: m is rounded as M already
    fast = narrow<F>(slow);
  }
};

template <typename M>
struct CompactMomentumEntryOp {  // a CompactMomentumSyncOp on the entries whose momentum is M
  static constexpr int kDepth = 4, kFast = 1, kStates = 3;
  using Momentum = M;
  CompactMomentumSyncOp op;
};

template <typename Op>
struct HasCompactState : std::false_type {};  // its entries' slow weight is bf16+int8
template <>
struct HasCompactState<CompactSyncOp> : std::true_type {};
template <>
struct HasCompactState<CompactMomentumSyncOp> : std::true_type {};

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

struct GatedCompactSyncOp {
  static constexpr int kDepth = 3;
  StepGate gate;
  LOOKAHEAD_KERNEL_FN bool skips() const { return *gate.step % gate.k != 0; }
  LOOKAHEAD_KERNEL_FN CompactSyncOp resolved() const { return CompactSyncOp{alpha_of(gate)}; }
};

struct GatedCompactMomentumSyncOp {
  static constexpr int kDepth = 4;
  StepGate gate;
  double mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return *gate.step % gate.k != 0; }
  LOOKAHEAD_KERNEL_FN CompactMomentumSyncOp resolved() const {
    return CompactMomentumSyncOp{alpha_of(gate), mu, nesterov};
  }
};

// AdamW's step with the sync in one pass (see [NOTE: AdamW hyper table] in csrc/adamw.h): kDepth 5 for the
// plain sync, 6 for the momentum sync, 4 for the step alone (no slow weights: it never syncs). Each
// entry resolves its row, and runs an AdamWStep: the step alone (the slow weights untouched) or with
// the sync, as the row's sync flag says. With kCompact, AdamWCompactOp below.
template <int D, bool kCompact = false>
struct AdamWOp {
  static constexpr int kDepth = D;
  const double* hyper;
  const int64_t* rows;
  double mu;
  bool nesterov;
  LOOKAHEAD_KERNEL_FN bool skips() const { return false; }
  LOOKAHEAD_KERNEL_FN AdamWOp resolved() const { return *this; }
};

struct NoSyncOp {  // the step alone
  static constexpr int kStates = 0;
};

// One entry's AdamW step in opmath T: param, grad (read only), exp_avg, exp_avg_sq in F, then
// `sync` (SyncOp, MomentumSyncOp or NoSyncOp) of the new param with its state tensors in S.
template <int D, typename T, typename Sync>
struct AdamWStep {
  static constexpr int kDepth = D, kFast = 4, kStates = Sync::kStates;
  static constexpr unsigned kReadOnly = 1u << 1;  // the grad
  AdamWConstants<T> c;
  Sync sync;
  template <typename F>
  LOOKAHEAD_KERNEL_FN void step(F* fast) const {
    T m = widen(fast[2]), v = widen(fast[3]);
    const T p = adamw_element(T(widen(fast[0])), T(widen(fast[1])), m, v, c, [](T x) { return round_to<F>(x); });
    fast[2] = narrow<F>(m);
    fast[3] = narrow<F>(v);
    fast[0] = narrow<F>(p);  // the param as Lookahead(AdamW) stores it before the sync reads it
  }
  template <typename F, typename S>
  LOOKAHEAD_KERNEL_FN void element(F* fast, S* state) const {
    step(fast);
    if constexpr (kStates > 0) sync.element(fast, state);
  }
};

// AdamW's step, then the momentum sync with a bfloat16 momentum, on a sync row of an AdamWOp<6>.
// see [NOTE: bf16 momentum step] in csrc/cuda/table_kernel.cuh
struct Bf16MomentumAdamWStep {
  static constexpr int kDepth = 6, kFast = 4, kStates = 2;
  static constexpr unsigned kReadOnly = AdamWStep<6, float, MomentumSyncOp>::kReadOnly;
  using Momentum = Bf16MomentumSyncOp::Momentum;
  AdamWStep<6, float, MomentumSyncOp> adamw;
  template <typename F>
  LOOKAHEAD_KERNEL_FN void element(F* fast, float& slow, Momentum& momentum) const {
    adamw.step(fast);
    Bf16MomentumSyncOp{adamw.sync}.element(fast, slow, momentum);
  }
};

struct Bf16MomentumAdamWOp {  // an AdamWOp<6> on an entry with a bfloat16 momentum
  AdamWOp<6> op;
};

template <typename Op>
struct Bf16MomentumOpOf {  // the op that runs Op's bf16-momentum entries; void: Op has none (the codes trap)
  using type = void;
};
template <>
struct Bf16MomentumOpOf<MomentumSyncOp> {
  using type = Bf16MomentumSyncOp;
};
template <>
struct Bf16MomentumOpOf<AdamWOp<6>> {
  using type = Bf16MomentumAdamWOp;
};
template <>
struct Bf16MomentumOpOf<PseudoGradientOp> {  // out in the momentum's role
  using type = Bf16PseudoGradientOp;
};

// AdamW's step with the compact sync in one pass (see [NOTE: AdamW compact step] in csrc/adamw.h): kDepth 6
// for the compact sync, 7 for the compact momentum sync. Each entry resolves its row and runs AdamW's step
// alone on the fast tensors (the compact state neither read nor written) or, on a sync row, an
// AdamWCompactStep.
template <int D>
using AdamWCompactOp = AdamWOp<D, true>;

template <typename M>
struct AdamWCompactMomentumEntryOp {  // an AdamWCompactOp<7> on the entries whose momentum is M
  AdamWCompactOp<7> op;
};

// AdamW's step, then the compact sync's op `Sync` (CompactSyncOp, or CompactMomentumEntryOp<M>) of the new
// param as stored, on a sync row of an AdamWCompactOp: AdamWStep's step and Sync's element, so each element
// is theirs bit for bit. Its steps (below) are Sync's, the param in the place of Sync's fast tensor, with
// the grad and the moments beside them.
template <typename Sync>
struct AdamWCompactStep {
  static constexpr int kDepth = 4 + Sync::kStates, kFast = 4, kStates = Sync::kStates;
  using AdamW = AdamWStep<kDepth, float, NoSyncOp>;
  static constexpr unsigned kReadOnly = AdamW::kReadOnly;
  AdamW adamw;
  Sync sync;
  template <typename F>
  LOOKAHEAD_KERNEL_FN void step(F& param, F grad, F& exp_avg, F& exp_avg_sq) const {
    F fast[4] = {param, grad, exp_avg, exp_avg_sq};
    adamw.step(fast);
    param = fast[0];
    exp_avg = fast[2];
    exp_avg_sq = fast[3];
  }
};

template <typename Op, typename M>
struct CompactMomentumEntryOf {  // the op that runs Op's compact entries whose momentum is M; void: Op has none
  using type = void;
};
template <typename M>
struct CompactMomentumEntryOf<CompactMomentumSyncOp, M> {
  using type = CompactMomentumEntryOp<M>;
};
template <typename M>
struct CompactMomentumEntryOf<AdamWCompactOp<7>, M> {
  using type = AdamWCompactMomentumEntryOp<M>;
};
template <int D>
struct HasCompactState<AdamWCompactOp<D>> : std::true_type {};

template <int kCount>
constexpr int kSlots = kCount > 0 ? kCount : 1;  // the length of an array of kCount values (C++ has no empty one)

template <typename Op>
LOOKAHEAD_KERNEL_FN constexpr bool stores_fast(int t) { return !((Op::kReadOnly >> t) & 1u); }

template <typename F, typename S, typename Op, typename Mem>
struct Step {  // one vector step: 16 bytes of each fast tensor and the same elements of each state tensor
  static constexpr int kFast = Op::kFast, kStates = Op::kStates;
  static constexpr int kElems = Pack<F>::kSize;
  static constexpr int kStatePacks = kElems / Pack<S>::kSize;
  Pack<F> fast[kFast];
  Pack<S> state[kSlots<kStates>][kStatePacks];
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t at) {
#pragma unroll
    for (int t = 0; t < kFast; ++t) fast[t] = Mem::load_pack(f[t] + at);
#pragma unroll
    for (int t = 0; t < kStates; ++t) {
#pragma unroll
      for (int k = 0; k < kStatePacks; ++k) state[t][k] = Mem::load_pack(s[t] + at + k * Pack<S>::kSize);
    }
  }
  LOOKAHEAD_KERNEL_FN S& at(int t, int j) { return state[t][j / Pack<S>::kSize].v[j % Pack<S>::kSize]; }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t at) const {
#pragma unroll
    for (int t = 0; t < kFast; ++t) {
      if (stores_fast<Op>(t)) Mem::store_pack(f[t] + at, fast[t]);
    }
#pragma unroll
    for (int t = 0; t < kStates; ++t) {
#pragma unroll
      for (int k = 0; k < kStatePacks; ++k) Mem::store_pack(s[t] + at + k * Pack<S>::kSize, state[t][k]);
    }
  }
  LOOKAHEAD_KERNEL_FN void apply(const Op& op) {
#pragma unroll
    for (int j = 0; j < kElems; ++j) {
      F f[kFast];
      S s[kSlots<kStates>];
#pragma unroll
      for (int t = 0; t < kFast; ++t) f[t] = fast[t].v[j];
#pragma unroll
      for (int t = 0; t < kStates; ++t) s[t] = at(t, j);
      op.element(f, s);
#pragma unroll
      for (int t = 0; t < kFast; ++t) fast[t].v[j] = f[t];
#pragma unroll
      for (int t = 0; t < kStates; ++t) at(t, j) = s[t];
    }
  }
};

// The packs of a compact slow weight's vector step: 16 elements, one 16-byte pack of residuals, two of
// high parts and one to four of the fast tensor. The compact sync's step is these alone; the compact
// momentum sync's adds the momentum's.
template <typename F, typename S, typename Mem>
struct CompactPacks {
  static constexpr int kElems = Pack<int8_t>::kSize;
  static constexpr int kFastPacks = kElems / Pack<F>::kSize;
  static constexpr int kHighPacks = kElems / Pack<uint16_t>::kSize;
  Pack<F> fast[kFastPacks];
  Pack<uint16_t> high[kHighPacks];
  Pack<int8_t> residual;
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t at) {
#pragma unroll
    for (int k = 0; k < kFastPacks; ++k) fast[k] = Mem::load_pack(f[0] + at + k * Pack<F>::kSize);
#pragma unroll
    for (int k = 0; k < kHighPacks; ++k) {
      high[k] = Mem::load_pack(reinterpret_cast<const uint16_t*>(s[0]) + at + k * Pack<uint16_t>::kSize);
    }
    residual = Mem::load_pack(reinterpret_cast<const int8_t*>(s[1]) + at);
  }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t at) const {
#pragma unroll
    for (int k = 0; k < kFastPacks; ++k) Mem::store_pack(f[0] + at + k * Pack<F>::kSize, fast[k]);
#pragma unroll
    for (int k = 0; k < kHighPacks; ++k) {
      Mem::store_pack(reinterpret_cast<uint16_t*>(s[0]) + at + k * Pack<uint16_t>::kSize, high[k]);
    }
    Mem::store_pack(reinterpret_cast<int8_t*>(s[1]) + at, residual);
  }
  LOOKAHEAD_KERNEL_FN F& fast_at(int j) { return fast[j / Pack<F>::kSize].v[j % Pack<F>::kSize]; }
  LOOKAHEAD_KERNEL_FN uint16_t& high_at(int j) { return high[j / Pack<uint16_t>::kSize].v[j % Pack<uint16_t>::kSize]; }
};

template <typename F, typename S, typename Mem>
struct Step<F, S, CompactSyncOp, Mem> : CompactPacks<F, S, Mem> {
  LOOKAHEAD_KERNEL_FN void element(const CompactSyncOp& op, int j) {
    op.element(this->fast_at(j), this->high_at(j), this->residual.v[j]);
  }
  LOOKAHEAD_KERNEL_FN void apply(const CompactSyncOp& op) {
#pragma unroll
    for (int j = 0; j < this->kElems; ++j) element(op, j);
  }
};

// A vector step of the compact momentum sync: the compact packs and the momentum's (four packs of
// float32, two of bfloat16).
template <typename F, typename S, typename M, typename Mem>
struct Step<F, S, CompactMomentumEntryOp<M>, Mem> : CompactPacks<F, S, Mem> {
  using Base = CompactPacks<F, S, Mem>;
  static constexpr int kMomentumPacks = Base::kElems / Pack<M>::kSize;
  Pack<M> momentum[kMomentumPacks];
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t at) {
    Base::load(f, s, at);
#pragma unroll
    for (int k = 0; k < kMomentumPacks; ++k) {
      momentum[k] = Mem::load_pack(reinterpret_cast<const M*>(s[2]) + at + k * Pack<M>::kSize);
    }
  }
  LOOKAHEAD_KERNEL_FN void element(const CompactMomentumEntryOp<M>& entry, int j) {
    entry.op.element(this->fast_at(j), this->high_at(j), this->residual.v[j],
                     momentum[j / Pack<M>::kSize].v[j % Pack<M>::kSize]);
  }
  LOOKAHEAD_KERNEL_FN void apply(const CompactMomentumEntryOp<M>& entry) {
#pragma unroll
    for (int j = 0; j < Base::kElems; ++j) element(entry, j);
  }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t at) const {
    Base::store(f, s, at);
#pragma unroll
    for (int k = 0; k < kMomentumPacks; ++k) {
      Mem::store_pack(reinterpret_cast<M*>(s[2]) + at + k * Pack<M>::kSize, momentum[k]);
    }
  }
};

// A vector step of AdamWCompactStep<Sync>: Sync's step, whose fast packs are the param's, and for each of
// them in turn one pack each of the grad and the moments: a pack's three are loaded once the moments of the
// pack before are stored, so those loads wait for these stores. The grad's and moments' packs of all 16
// elements at once (12 of float32) beside Sync's (up to 11) do not fit the 128 registers of two blocks per SM.
template <typename F, typename S, typename Sync, typename Mem>
struct Step<F, S, AdamWCompactStep<Sync>, Mem> {
  using SyncStep = Step<F, S, Sync, Mem>;
  static constexpr int kElems = SyncStep::kElems;
  static constexpr int kPacks = kElems / Pack<F>::kSize;  // of each fast tensor
  SyncStep sync;
  Pack<F> others[3];  // the entry's fast tensors 1 to 3 (grad, exp_avg, exp_avg_sq) at one of the packs
  F* const* fast;     // where load() read, for apply()
  int64_t at;
  LOOKAHEAD_KERNEL_FN void load_others(F* const* f, int64_t at_element, int k) {
#pragma unroll
    for (int t = 0; t < 3; ++t) others[t] = Mem::load_pack(f[t + 1] + at_element + k * Pack<F>::kSize);
  }
  LOOKAHEAD_KERNEL_FN void store_moments(F* const* f, int64_t at_element, int k) const {  // the grad is only read
#pragma unroll
    for (int t = 1; t < 3; ++t) Mem::store_pack(f[t + 1] + at_element + k * Pack<F>::kSize, others[t]);
  }
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t at_element) {
    fast = f;
    at = at_element;
    sync.load(f, s, at_element);
    load_others(f, at_element, 0);
  }
  LOOKAHEAD_KERNEL_FN void apply(const AdamWCompactStep<Sync>& op) {
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      if (k > 0) {
        store_moments(fast, at, k - 1);
        load_others(fast, at, k);
      }
#pragma unroll
      for (int i = 0; i < Pack<F>::kSize; ++i) {
        const int j = k * Pack<F>::kSize + i;
        op.step(sync.fast_at(j), others[0].v[i], others[1].v[i], others[2].v[i]);
        sync.element(op.sync, j);
      }
    }
  }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t at_element) const {
    store_moments(f, at_element, kPacks - 1);
    sync.store(f, s, at_element);
  }
};

// The type a pseudo-gradient op writes out in: S, or its Out.
template <typename S, typename Op>
using PseudoGradientOut = std::conditional_t<std::is_void_v<typename Op::Out>, S, typename Op::Out>;

// A vector step of the pseudo-gradient: 16 bytes of the fast tensor or of out, whichever holds more
// elements (out: bfloat16 beside float32 fast tensors), and the same elements of the others: fast and
// slow loaded, out stored, one or two packs each.
template <typename F, typename S, typename Op, typename Mem>
struct PseudoGradientStep {
  using O = PseudoGradientOut<S, Op>;
  static constexpr int kElems = Pack<F>::kSize > Pack<O>::kSize ? Pack<F>::kSize : Pack<O>::kSize;
  static constexpr int kFastPacks = kElems / Pack<F>::kSize;
  static constexpr int kSlowPacks = kElems / Pack<S>::kSize;
  static constexpr int kOutPacks = kElems / Pack<O>::kSize;
  Pack<F> fast[kFastPacks];
  Pack<S> slow[kSlowPacks];
  Pack<O> out[kOutPacks];
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t at) {
#pragma unroll
    for (int k = 0; k < kFastPacks; ++k) fast[k] = Mem::load_pack(f[0] + at + k * Pack<F>::kSize);
#pragma unroll
    for (int k = 0; k < kSlowPacks; ++k) slow[k] = Mem::load_pack(s[0] + at + k * Pack<S>::kSize);
  }
  LOOKAHEAD_KERNEL_FN void apply(const Op& op) {
#pragma unroll
    for (int j = 0; j < kElems; ++j) {
      constexpr int kFastSize = Pack<F>::kSize, kSlowSize = Pack<S>::kSize, kOutSize = Pack<O>::kSize;
      out[j / kOutSize].v[j % kOutSize] =
          op.template element<O>(fast[j / kFastSize].v[j % kFastSize], slow[j / kSlowSize].v[j % kSlowSize]);
    }
  }
  LOOKAHEAD_KERNEL_FN void store(F* const*, S* const* s, int64_t at) const {
#pragma unroll
    for (int k = 0; k < kOutPacks; ++k) Mem::store_pack(reinterpret_cast<O*>(s[1]) + at + k * Pack<O>::kSize, out[k]);
  }
};

template <typename F, typename S, typename Mem>
struct Step<F, S, PseudoGradientOp, Mem> : PseudoGradientStep<F, S, PseudoGradientOp, Mem> {};
template <typename F, typename S, typename Mem>
struct Step<F, S, Bf16PseudoGradientOp, Mem> : PseudoGradientStep<F, S, Bf16PseudoGradientOp, Mem> {};

// A vector step of an op with a bfloat16 momentum: 8 elements, one 16-byte pack of momentum, two of
// float32 slow weights and one or two of each fast tensor.
// see [NOTE: bf16 momentum step] in csrc/cuda/table_kernel.cuh
template <typename F, typename S, typename Op, typename Mem>
struct Bf16MomentumStep {
  static_assert(std::is_same_v<S, float>);
  using M = typename Op::Momentum;
  static constexpr int kFast = Op::kFast;
  static constexpr int kElems = Pack<M>::kSize;
  static constexpr int kFastPacks = kElems / Pack<F>::kSize;
  static constexpr int kSlowPacks = kElems / Pack<S>::kSize;
  Pack<F> fast[kFast][kFastPacks];
  Pack<S> slow[kSlowPacks];
  Pack<M> momentum;
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t at) {
#pragma unroll
    for (int t = 0; t < kFast; ++t) {
#pragma unroll
      for (int k = 0; k < kFastPacks; ++k) fast[t][k] = Mem::load_pack(f[t] + at + k * Pack<F>::kSize);
    }
#pragma unroll
    for (int k = 0; k < kSlowPacks; ++k) slow[k] = Mem::load_pack(s[0] + at + k * Pack<S>::kSize);
    momentum = Mem::load_pack(reinterpret_cast<const M*>(s[1]) + at);
  }
  LOOKAHEAD_KERNEL_FN void apply(const Op& op) {
#pragma unroll
    for (int j = 0; j < kElems; ++j) {
      constexpr int kFastSize = Pack<F>::kSize, kSlowSize = Pack<S>::kSize;
      F f[kFast];
#pragma unroll
      for (int t = 0; t < kFast; ++t) f[t] = fast[t][j / kFastSize].v[j % kFastSize];
      op.element(f, slow[j / kSlowSize].v[j % kSlowSize], momentum.v[j]);
#pragma unroll
      for (int t = 0; t < kFast; ++t) fast[t][j / kFastSize].v[j % kFastSize] = f[t];
    }
  }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t at) const {
#pragma unroll
    for (int t = 0; t < kFast; ++t) {
      if (!stores_fast<Op>(t)) continue;
#pragma unroll
      for (int k = 0; k < kFastPacks; ++k) Mem::store_pack(f[t] + at + k * Pack<F>::kSize, fast[t][k]);
    }
#pragma unroll
    for (int k = 0; k < kSlowPacks; ++k) Mem::store_pack(s[0] + at + k * Pack<S>::kSize, slow[k]);
    Mem::store_pack(reinterpret_cast<M*>(s[1]) + at, momentum);
  }
};

template <typename F, typename S, typename Mem>
struct Step<F, S, Bf16MomentumSyncOp, Mem> : Bf16MomentumStep<F, S, Bf16MomentumSyncOp, Mem> {};
template <typename F, typename S, typename Mem>
struct Step<F, S, Bf16MomentumAdamWStep, Mem> : Bf16MomentumStep<F, S, Bf16MomentumAdamWStep, Mem> {};

// One element of every tensor of an entry, at index i: loaded, updated, stored.
template <typename Mem, typename F, typename S, typename Op>
struct ScalarStep {
  F fast[Op::kFast];
  S state[kSlots<Op::kStates>];
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t i) {
#pragma unroll
    for (int t = 0; t < Op::kFast; ++t) fast[t] = Mem::load(f[t] + i);
#pragma unroll
    for (int t = 0; t < Op::kStates; ++t) state[t] = Mem::load(s[t] + i);
  }
  LOOKAHEAD_KERNEL_FN void apply(const Op& op) { op.element(fast, state); }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t i) const {
#pragma unroll
    for (int t = 0; t < Op::kFast; ++t) {
      if (stores_fast<Op>(t)) Mem::store(f[t] + i, fast[t]);
    }
#pragma unroll
    for (int t = 0; t < Op::kStates; ++t) Mem::store(s[t] + i, state[t]);
  }
};

template <typename Mem, typename F, typename S>
struct CompactElement {  // one element of a compact slow weight, as CompactPacks reads it
  F fast;
  uint16_t high;
  int8_t residual;
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t i) {
    fast = Mem::load(f[0] + i);
    high = Mem::load(reinterpret_cast<const uint16_t*>(s[0]) + i);
    residual = Mem::load(reinterpret_cast<const int8_t*>(s[1]) + i);
  }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t i) const {
    Mem::store(f[0] + i, fast);
    Mem::store(reinterpret_cast<uint16_t*>(s[0]) + i, high);
    Mem::store(reinterpret_cast<int8_t*>(s[1]) + i, residual);
  }
};

template <typename Mem, typename F, typename S>
struct ScalarStep<Mem, F, S, CompactSyncOp> : CompactElement<Mem, F, S> {
  LOOKAHEAD_KERNEL_FN void apply(const CompactSyncOp& op) { op.element(this->fast, this->high, this->residual); }
};

template <typename Mem, typename F, typename S, typename M>
struct ScalarStep<Mem, F, S, CompactMomentumEntryOp<M>> : CompactElement<Mem, F, S> {
  using Base = CompactElement<Mem, F, S>;
  M momentum;
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t i) {
    Base::load(f, s, i);
    momentum = Mem::load(reinterpret_cast<const M*>(s[2]) + i);
  }
  LOOKAHEAD_KERNEL_FN void apply(const CompactMomentumEntryOp<M>& entry) {
    entry.op.element(this->fast, this->high, this->residual, momentum);
  }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t i) const {
    Base::store(f, s, i);
    Mem::store(reinterpret_cast<M*>(s[2]) + i, momentum);
  }
};

template <typename Mem, typename F, typename S, typename Sync>
struct ScalarStep<Mem, F, S, AdamWCompactStep<Sync>> {  // one element, as Step<..., AdamWCompactStep<Sync>> reads it
  ScalarStep<Mem, F, S, Sync> sync;
  F others[3];  // grad, exp_avg, exp_avg_sq
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t i) {
    sync.load(f, s, i);
#pragma unroll
    for (int t = 0; t < 3; ++t) others[t] = Mem::load(f[t + 1] + i);
  }
  LOOKAHEAD_KERNEL_FN void apply(const AdamWCompactStep<Sync>& op) {
    op.step(sync.fast, others[0], others[1], others[2]);
    sync.apply(op.sync);
  }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t i) const {
    Mem::store(f[2] + i, others[1]);
    Mem::store(f[3] + i, others[2]);
    sync.store(f, s, i);
  }
};

template <typename Mem, typename F, typename S, typename Op>
struct PseudoGradientElement {  // the pseudo-gradient's element, as its vector step reads it
  using O = PseudoGradientOut<S, Op>;
  F fast;
  S slow;
  O out;
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t i) {
    fast = Mem::load(f[0] + i);
    slow = Mem::load(s[0] + i);
  }
  LOOKAHEAD_KERNEL_FN void apply(const Op& op) { out = op.template element<O>(fast, slow); }
  LOOKAHEAD_KERNEL_FN void store(F* const*, S* const* s, int64_t i) const {
    Mem::store(reinterpret_cast<O*>(s[1]) + i, out);
  }
};

template <typename Mem, typename F, typename S>
struct ScalarStep<Mem, F, S, PseudoGradientOp> : PseudoGradientElement<Mem, F, S, PseudoGradientOp> {};
template <typename Mem, typename F, typename S>
struct ScalarStep<Mem, F, S, Bf16PseudoGradientOp> : PseudoGradientElement<Mem, F, S, Bf16PseudoGradientOp> {};

template <typename Mem, typename F, typename S, typename Op>
struct Bf16MomentumScalarStep {  // one element, as Bf16MomentumStep reads it
  using M = typename Op::Momentum;
  F fast[Op::kFast];
  S slow;
  M momentum;
  LOOKAHEAD_KERNEL_FN void load(F* const* f, S* const* s, int64_t i) {
#pragma unroll
    for (int t = 0; t < Op::kFast; ++t) fast[t] = Mem::load(f[t] + i);
    slow = Mem::load(s[0] + i);
    momentum = Mem::load(reinterpret_cast<const M*>(s[1]) + i);
  }
  LOOKAHEAD_KERNEL_FN void apply(const Op& op) { op.element(fast, slow, momentum); }
  LOOKAHEAD_KERNEL_FN void store(F* const* f, S* const* s, int64_t i) const {
#pragma unroll
    for (int t = 0; t < Op::kFast; ++t) {
      if (stores_fast<Op>(t)) Mem::store(f[t] + i, fast[t]);
    }
    Mem::store(s[0] + i, slow);
    Mem::store(reinterpret_cast<M*>(s[1]) + i, momentum);
  }
};

template <typename Mem, typename F, typename S>
struct ScalarStep<Mem, F, S, Bf16MomentumSyncOp> : Bf16MomentumScalarStep<Mem, F, S, Bf16MomentumSyncOp> {};
template <typename Mem, typename F, typename S>
struct ScalarStep<Mem, F, S, Bf16MomentumAdamWStep> : Bf16MomentumScalarStep<Mem, F, S, Bf16MomentumAdamWStep> {};

template <typename Mem, typename F, typename S, typename Op>
LOOKAHEAD_KERNEL_FN void scalar_element(F* const* fast, S* const* state, int64_t i, const Op& op) {
  ScalarStep<Mem, F, S, Op> step;
  step.load(fast, state, i);
  step.apply(op);
  step.store(fast, state, i);
}

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

// Elements [lo, hi) of one entry's tensors (`fast`, then `state`), as thread `tid` of a block runs
// them, for any op. `head` is where every tensor of the entry reaches a 16-byte boundary (table.h).
template <typename Mem, typename F, typename S, typename Op>
LOOKAHEAD_KERNEL_FN void run_range(F* const* fast, S* const* state, int64_t lo, int64_t hi, int64_t head,
                                   const Op& op, int64_t tid) {
  constexpr int kUnroll = kUnrollFor<Op::kDepth>;
  using StepT = Step<F, S, Op, Mem>;
  constexpr int64_t V = StepT::kElems;
  if (head < 0) {  // never aligned together: scalar, but still every load of a group before any store
    int64_t i = lo + tid;
    for (; i + int64_t(kUnroll - 1) * kThreads < hi; i += int64_t(kThreads) * kUnroll) {
      ScalarStep<Mem, F, S, Op> step[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) step[u].load(fast, state, i + u * kThreads);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        step[u].apply(op);
        step[u].store(fast, state, i + u * kThreads);
      }
    }
    if constexpr (kUnroll > 1) {
      for (; i < hi; i += kThreads) scalar_element<Mem>(fast, state, i, op);
    }
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
  if constexpr (kUnroll > 1) {
    for (int64_t k = base; k < steps; k += kThreads) {
      StepT step;
      step.load(fast, state, vector_lo + k * V);
      step.apply(op);
      step.store(fast, state, vector_lo + k * V);
    }
  }
}

// The tensors of an entry that `op` walks, from the table's words: kFast, then kStates.
template <typename Mem, typename F, typename S, typename Op>
LOOKAHEAD_KERNEL_FN void run_tensors(const int64_t* entry, int64_t lo, int64_t hi, const Op& op, int64_t tid) {
  F* fast[Op::kFast];
  S* state[kSlots<Op::kStates>] = {};
#pragma unroll
  for (int t = 0; t < Op::kFast; ++t) fast[t] = reinterpret_cast<F*>(entry[t]);
#pragma unroll
  for (int t = 0; t < Op::kStates; ++t) state[t] = reinterpret_cast<S*>(entry[Op::kFast + t]);
  run_range<Mem>(fast, state, lo, hi, head_of(entry[Op::kDepth + 1]), op, tid);
}

template <typename Mem, typename F, typename S, typename Op>
LOOKAHEAD_KERNEL_FN void run_entry(const int64_t* entry, int64_t, int64_t lo, int64_t hi, const Op& op, int64_t tid) {
  run_tensors<Mem, F, S>(entry, lo, hi, op, tid);
}

template <typename Mem, typename F, typename S, int D>
LOOKAHEAD_KERNEL_FN void run_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t hi,
                                   const AdamWOp<D>& op, int64_t tid) {
  using T = opmath_t<S>;
  const AdamWConstants<T> c(op.hyper + op.rows[entry_index] * kAdamWColumns);
  if constexpr (D == 4) {
    run_tensors<Mem, F, S>(entry, lo, hi, AdamWStep<D, T, NoSyncOp>{c, {}}, tid);
  } else if (!c.syncs) {
    run_tensors<Mem, F, S>(entry, lo, hi, AdamWStep<D, T, NoSyncOp>{c, {}}, tid);
  } else if constexpr (D == 5) {
    run_tensors<Mem, F, S>(entry, lo, hi, AdamWStep<D, T, SyncOp>{c, SyncOp{c.alpha}}, tid);
  } else {
    run_tensors<Mem, F, S>(entry, lo, hi, AdamWStep<D, T, MomentumSyncOp>{c, MomentumSyncOp{c.alpha, op.mu, op.nesterov}},
                           tid);
  }
}

// An AdamWOp<6> entry with a bfloat16 momentum (S is float): the step alone on a row with sync 0.
// see [NOTE: bf16 momentum step] in csrc/cuda/table_kernel.cuh
template <typename Mem, typename F, typename S>
LOOKAHEAD_KERNEL_FN void run_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t hi,
                                   const Bf16MomentumAdamWOp& bf16, int64_t tid) {
  const AdamWOp<6>& op = bf16.op;
  const AdamWConstants<float> c(op.hyper + op.rows[entry_index] * kAdamWColumns);
  if (!c.syncs) {  // the fast tensors alone, slow and momentum untouched, as for the other codes
    run_tensors<Mem, F, S>(entry, lo, hi, AdamWStep<6, float, NoSyncOp>{c, {}}, tid);
  } else {
    const Bf16MomentumAdamWStep step{{c, MomentumSyncOp{c.alpha, op.mu, op.nesterov}}};
    run_tensors<Mem, F, S>(entry, lo, hi, step, tid);
  }
}

// An AdamWCompactOp<D> entry, its outer momentum in M (void: none); the walker hands its state tensors over
// as bytes (S = int8_t). On a row with sync 0 the fast tensors alone, as AdamWOp<4> walks them.
template <typename Mem, typename F, typename M, int D>
LOOKAHEAD_KERNEL_FN void run_adamw_compact(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t hi,
                                           const AdamWCompactOp<D>& op, int64_t tid) {
  const AdamWConstants<float> c(op.hyper + op.rows[entry_index] * kAdamWColumns);
  if (!c.syncs) {
    run_tensors<Mem, F, F>(entry, lo, hi, AdamWStep<D, float, NoSyncOp>{c, {}}, tid);
  } else if constexpr (std::is_void_v<M>) {
    run_tensors<Mem, F, int8_t>(entry, lo, hi, AdamWCompactStep<CompactSyncOp>{{c, {}}, CompactSyncOp{c.alpha}}, tid);
  } else {
    const CompactMomentumEntryOp<M> sync{{c.alpha, op.mu, op.nesterov}};
    run_tensors<Mem, F, int8_t>(entry, lo, hi, AdamWCompactStep<CompactMomentumEntryOp<M>>{{c, {}}, sync}, tid);
  }
}

template <typename Mem, typename F, typename S>
LOOKAHEAD_KERNEL_FN void run_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t hi,
                                   const AdamWCompactOp<6>& op, int64_t tid) {
  run_adamw_compact<Mem, F, void>(entry, entry_index, lo, hi, op, tid);
}

template <typename Mem, typename F, typename S, typename M>
LOOKAHEAD_KERNEL_FN void run_entry(const int64_t* entry, int64_t entry_index, int64_t lo, int64_t hi,
                                   const AdamWCompactMomentumEntryOp<M>& momentum_entry, int64_t tid) {
  run_adamw_compact<Mem, F, M>(entry, entry_index, lo, hi, momentum_entry.op, tid);
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
    using OpT = std::remove_const_t<decltype(op)>;
#define LOOKAHEAD_CUDA_CASE(code, fast, state) \
  case code: run_entry<Mem, Cuda##fast, Cuda##state>(entry, entry_index, lo, hi, op, tid); break;
    using FloatMomentumEntry = typename CompactMomentumEntryOf<OpT, float>::type;
    if constexpr (!std::is_void_v<FloatMomentumEntry>) {
      using Bf16MomentumEntry = typename CompactMomentumEntryOf<OpT, CudaBF16>::type;
      switch (pair_code_of(entry[Gate::kDepth + 1])) {  // the state tensors go as bytes, the momentum by its code
#define LOOKAHEAD_CUDA_COMPACT_MOMENTUM_CASE(code, fast) \
  case code: run_entry<Mem, Cuda##fast, int8_t>(entry, entry_index, lo, hi, FloatMomentumEntry{op}, tid); break;
        LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_CUDA_COMPACT_MOMENTUM_CASE)
#undef LOOKAHEAD_CUDA_COMPACT_MOMENTUM_CASE
#define LOOKAHEAD_CUDA_COMPACT_BF16_MOMENTUM_CASE(code, fast) \
  case code: run_entry<Mem, Cuda##fast, int8_t>(entry, entry_index, lo, hi, Bf16MomentumEntry{op}, tid); break;
        LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(LOOKAHEAD_CUDA_COMPACT_BF16_MOMENTUM_CASE)
#undef LOOKAHEAD_CUDA_COMPACT_BF16_MOMENTUM_CASE
        default: unknown_pair_code(pair_code_of(entry[Gate::kDepth + 1]));
      }
    } else if constexpr (HasCompactState<OpT>::value) {
      switch (pair_code_of(entry[Gate::kDepth + 1])) {  // the state tensors go as bytes (CompactSyncOp and others)
#define LOOKAHEAD_CUDA_COMPACT_CASE(code, fast) \
  case code: run_entry<Mem, Cuda##fast, int8_t>(entry, entry_index, lo, hi, op, tid); break;
        LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_CUDA_COMPACT_CASE)
#undef LOOKAHEAD_CUDA_COMPACT_CASE
        default: unknown_pair_code(pair_code_of(entry[Gate::kDepth + 1]));
      }
    } else if constexpr (!std::is_void_v<typename Bf16MomentumOpOf<OpT>::type>) {
      // see [NOTE: bf16 momentum step] in csrc/cuda/table_kernel.cuh
      using Bf16Op = typename Bf16MomentumOpOf<OpT>::type;
      switch (pair_code_of(entry[Gate::kDepth + 1])) {
        LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_CUDA_CASE)
#define LOOKAHEAD_CUDA_BF16_MOMENTUM_CASE(code, fast, state) \
  case code: run_entry<Mem, Cuda##fast, Cuda##state>(entry, entry_index, lo, hi, Bf16Op{op}, tid); break;
        LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_CUDA_BF16_MOMENTUM_CASE)
#undef LOOKAHEAD_CUDA_BF16_MOMENTUM_CASE
        default: unknown_pair_code(pair_code_of(entry[Gate::kDepth + 1]));
      }
    } else {
      switch (pair_code_of(entry[Gate::kDepth + 1])) {
        LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_CUDA_CASE)
        default: unknown_pair_code(pair_code_of(entry[Gate::kDepth + 1]));
      }
    }
#undef LOOKAHEAD_CUDA_CASE
  }
}

}  // namespace lookahead_fused
