// The fused sync/swap kernel: one launch walks the whole tensor table (see [NOTE: table layout]).
// Light includes only (no torch/extension.h): this translation unit is compiled once per arch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <type_traits>

#include <c10/cuda/CUDAException.h>

#include "../table.h"

namespace lookahead_fused {
namespace {

constexpr int kThreads = 256;  // >= the elements of one vector step, so one pass covers head and tail
constexpr int kUnroll = 4;     // vector steps in flight per thread: loads first, then math and stores
constexpr int kMinBlocksPerSM = 2;  // caps registers at 128 a thread: two blocks of 256 threads fit an SM

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T narrow(float v);
template <> __device__ __forceinline__ float narrow<float>(float v) { return v; }
template <> __device__ __forceinline__ __half narrow<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> __device__ __forceinline__ T narrow(double v) { return v; }

template <typename S>
using opmath_t = decltype(widen(S()));

// 16 bytes of T: the unit of every vector load and store. [NOTE: 16-byte packs] A float32 slow
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
// push the rest of the working set out of L2.
template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* at) {
  const uint4 raw = __ldcs(reinterpret_cast<const uint4*>(at));
  Pack<T> pack;
  __builtin_memcpy(&pack, &raw, sizeof pack);
  return pack;
}

template <typename T>
__device__ __forceinline__ void store_pack(T* at, const Pack<T>& pack) {
  uint4 raw;
  __builtin_memcpy(&raw, &pack, sizeof raw);
  __stcs(reinterpret_cast<uint4*>(at), raw);
}

template <typename F, typename S>
struct Step {  // one vector step: kVecBytes of fast and the same elements of slow
  static constexpr int kElems = Pack<F>::kSize;
  static constexpr int kSlowPacks = kElems / Pack<S>::kSize;
  Pack<F> fast;
  Pack<S> slow[kSlowPacks];
  __device__ __forceinline__ void load(const F* f, const S* s) {
    fast = load_pack(f);
#pragma unroll
    for (int k = 0; k < kSlowPacks; ++k) slow[k] = load_pack(s + k * Pack<S>::kSize);
  }
  __device__ __forceinline__ S& slow_at(int j) { return slow[j / Pack<S>::kSize].v[j % Pack<S>::kSize]; }
  __device__ __forceinline__ void store(F* f, S* s) const {
    store_pack(f, fast);
#pragma unroll
    for (int k = 0; k < kSlowPacks; ++k) store_pack(s + k * Pack<S>::kSize, slow[k]);
  }
};

// [NOTE: two-sided lerp] as in the CPU kernel: exact at alpha 0 and 1; the branch is uniform.
template <typename T>
struct Lerp {
  bool small;
  T w, one_minus_w;
  __device__ explicit Lerp(double alpha) : small(fabs(alpha) < 0.5), w(T(alpha)), one_minus_w(T(1) - T(alpha)) {}
  __device__ __forceinline__ T operator()(T s, T f) const { return small ? s + w * (f - s) : f - (f - s) * one_minus_w; }
};

// Each op is also its own gate (see [NOTE: step gate]): skips() and resolved() run once per thread
// before any chunk; only GatedSyncOp reads memory there.
struct SyncOp {
  double alpha;
  __device__ __forceinline__ bool skips() const { return false; }
  __device__ __forceinline__ SyncOp resolved() const { return *this; }
  template <typename F, typename S>
  __device__ __forceinline__ void element(F& fast, S& slow) const {
    using T = opmath_t<S>;
    S result = narrow<S>(Lerp<T>(alpha)(widen(slow), widen(fast)));
    slow = result;
    fast = narrow<F>(widen(result));
  }
};

struct SwapOp {  // the host sends only same-dtype pairs to a swap (check_swap_pairs)
  __device__ __forceinline__ bool skips() const { return false; }
  __device__ __forceinline__ SwapOp resolved() const { return *this; }
  template <typename F, typename S>
  __device__ __forceinline__ void element(F& first, S& second) const {
    if constexpr (std::is_same_v<F, S>) {
      F held = first;
      first = second;
      second = held;
    }
  }
};

struct GatedSyncOp {
  StepGate gate;
  __device__ __forceinline__ bool skips() const { return *gate.step % gate.k != 0; }
  __device__ __forceinline__ SyncOp resolved() const {
    return SyncOp{gate.alpha_is_double ? *static_cast<const double*>(gate.alpha)
                                       : double(*static_cast<const float*>(gate.alpha))};
  }
};

// Elements [lo, hi) of one pair. `head` is where both tensors reach a 16-byte boundary (table.h).
template <typename F, typename S, typename Op>
__device__ void run_range(F* __restrict__ fast, S* __restrict__ slow, int64_t lo, int64_t hi, int64_t head, Op op) {
  using StepT = Step<F, S>;
  constexpr int64_t V = StepT::kElems;
  const int64_t tid = threadIdx.x;
  if (head < 0) {  // never aligned together: scalar, but still every load of a group before any store
    int64_t i = lo + tid;
    for (; i + int64_t(kUnroll - 1) * kThreads < hi; i += int64_t(kThreads) * kUnroll) {
      F f[kUnroll];
      S s[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        f[u] = fast[i + u * kThreads];
        s[u] = slow[i + u * kThreads];
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        op.element(f[u], s[u]);
        fast[i + u * kThreads] = f[u];
        slow[i + u * kThreads] = s[u];
      }
    }
    for (; i < hi; i += kThreads) op.element(fast[i], slow[i]);
    return;
  }
  int64_t vector_lo = lo + (((head - lo) % V) + V) % V;  // first index >= lo that is congruent to head
  if (vector_lo > hi) vector_lo = hi;
  const int64_t steps = (hi - vector_lo) / V;
  const int64_t vector_hi = vector_lo + steps * V;
  if (tid < vector_lo - lo) op.element(fast[lo + tid], slow[lo + tid]);
  if (tid < hi - vector_hi) op.element(fast[vector_hi + tid], slow[vector_hi + tid]);
  // [NOTE: unrolled body] Whole groups of kUnroll steps first, with no bounds test inside: all the
  // loads of a group are issued before any math, and no step is loaded under a condition (a step
  // left uninitialised on some path kept every dtype path's registers live together: 255 registers
  // and a 280-352-byte stack). The at most kUnroll - 1 steps left to a thread run one at a time.
  const int64_t stride = int64_t(kThreads) * kUnroll;
  int64_t base = tid;
  for (; base + int64_t(kUnroll - 1) * kThreads < steps; base += stride) {
    StepT step[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t at = vector_lo + (base + int64_t(u) * kThreads) * V;
      step[u].load(fast + at, slow + at);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t at = vector_lo + (base + int64_t(u) * kThreads) * V;
#pragma unroll
      for (int j = 0; j < V; ++j) op.element(step[u].fast.v[j], step[u].slow_at(j));
      step[u].store(fast + at, slow + at);
    }
  }
  for (int64_t k = base; k < steps; k += kThreads) {
    StepT step;
    const int64_t at = vector_lo + k * V;
    step.load(fast + at, slow + at);
#pragma unroll
    for (int j = 0; j < V; ++j) op.element(step.fast.v[j], step.slow_at(j));
    step.store(fast + at, slow + at);
  }
}

template <typename F, typename S, typename Op>
__device__ __forceinline__ void run_pair(const int64_t* entry, int64_t lo, int64_t hi, Op op) {
  run_range(reinterpret_cast<F*>(entry[0]), reinterpret_cast<S*>(entry[1]), lo, hi, head_of(entry[3]), op);
}

// Grid-stride over the chunks of every pair; each chunk's dtype pair is uniform over its block.
template <typename Gate>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM) table_kernel(const int64_t* __restrict__ words, int64_t num_pairs,
                                                         int64_t num_chunks, Gate gate) {
  if (gate.skips()) return;
  const auto op = gate.resolved();
  const int64_t* chunks = words + num_pairs * kEntryWords;
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const int64_t packed = chunks[c];
    const int64_t* entry = words + (packed >> kChunkBits) * kEntryWords;
    const int64_t lo = (packed & ((int64_t(1) << kChunkBits) - 1)) * kChunkElems;
    const int64_t hi = min(lo + kChunkElems, entry[2]);
    switch (pair_code_of(entry[3])) {
      case kF32F32: run_pair<float, float>(entry, lo, hi, op); break;
      case kF64F64: run_pair<double, double>(entry, lo, hi, op); break;
      case kF16F16: run_pair<__half, __half>(entry, lo, hi, op); break;
      case kBF16BF16: run_pair<__nv_bfloat16, __nv_bfloat16>(entry, lo, hi, op); break;
      case kF16F32: run_pair<__half, float>(entry, lo, hi, op); break;
      case kBF16F32: run_pair<__nv_bfloat16, float>(entry, lo, hi, op); break;
    }
  }
}

// Enough blocks to fill every SM at full occupancy; more chunks than that are grid-strided.
template <typename Op>
int64_t grid_size(int device_index, int64_t num_chunks) {
  static std::array<std::atomic<int>, 64> blocks_per_device{};  // 0: not measured yet
  int blocks = device_index < 64 ? blocks_per_device[device_index].load() : 0;
  if (blocks == 0) {
    int sms = 0, per_sm = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_index));
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, table_kernel<Op>, kThreads, 0));
    blocks = sms * (per_sm > 0 ? per_sm : 1);
    if (device_index < 64) blocks_per_device[device_index].store(blocks);
  }
  return num_chunks < blocks ? num_chunks : blocks;
}

template <typename Op>
void launch(TableView table, Op op, cudaStream_t stream, int device_index) {
  int64_t grid = grid_size<Op>(device_index, table.num_chunks);
  table_kernel<Op><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(table.words, table.num_pairs,
                                                                          table.num_chunks, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void launch_cuda_on_step(TableView table, StepGate gate, void* stream, int device_index) {
  if (table.num_chunks == 0) return;
  launch(table, GatedSyncOp{gate}, static_cast<cudaStream_t>(stream), device_index);
}

void launch_cuda(TableView table, TableOp op, double alpha, void* stream, int device_index) {
  if (table.num_chunks == 0) return;
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  if (op == TableOp::kSync) {
    launch(table, SyncOp{alpha}, cuda_stream, device_index);
  } else {
    launch(table, SwapOp{}, cuda_stream, device_index);
  }
}

}  // namespace lookahead_fused
