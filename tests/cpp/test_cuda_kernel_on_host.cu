// The CUDA kernel's body (csrc/cuda/table_kernel.cuh) run on the host, no GPU needed: every block
// and every thread of a launch in turn (the kernel has no communication between threads, so this
// in-order emulation is faithful), through a memory policy that records every access. Over every
// dtype pair, byte offsets 0-15 on both sides, sizes around the vector width, the unrolled group and
// the chunk, the edge alphas, NaN and Inf, the step gate on and off, and the swap, it checks:
//   - each element of both tensors is written exactly once (none when the gate is off);
//   - every 16-byte access is 16-byte aligned, and every access is inside its tensor;
//   - the values follow the op contract (docs/design.md): fast == slow cast exactly, alpha 0 and 1
//     exact, otherwise within 2 ulp of max(|slow|, |fast|) of the float64 evaluation, NaN propagates;
//     AdamW's step with the compact sync is, bit for bit, AdamW's step followed by the compact sync.
// The recording memory policy is host code called from the kernel's __host__ __device__ body; only
// the host side is compiled into this test, so nvcc's warnings about that call are moot here.
//
// Built twice (CMakeLists.txt), LOOKAHEAD_HOST_EMULATION_PART 0 and 1, each running half of the cases:
// the two halves' instantiations compile at once, on two cores. Without the macro, all the cases.
#pragma nv_diag_suppress 20011
#pragma nv_diag_suppress 20014
#pragma nv_diag_suppress 177  // a half of the cases leaves some helpers unreferenced

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <array>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "chunking.h"
#include "cuda/table_kernel.cuh"
#include "host_tracking.h"

using namespace lookahead_fused;
using namespace host_tracking;

namespace {

struct HostMemory {
  template <typename T>
  static Pack<T> load_pack(const T* at) {
    check_alignment(at, kVecBytes);
    find(at, sizeof(Pack<T>));
    Pack<T> pack;
    std::memcpy(&pack, at, sizeof pack);
    return pack;
  }
  template <typename T>
  static void store_pack(T* at, const Pack<T>& pack) {
    check_alignment(at, kVecBytes);
    count_writes(at, sizeof pack);
    std::memcpy(at, &pack, sizeof pack);
  }
  template <typename T>
  static T load(const T* at) {
    find(at, sizeof(T));
    return *at;
  }
  template <typename T>
  static void store(T* at, T value) {
    count_writes(at, sizeof(T));
    *at = value;
  }
};

template <typename T> double to_double(T v) { return static_cast<double>(widen(v)); }
template <typename T> T from_double(double v) { return narrow<T>(static_cast<opmath_t<T>>(v)); }

template <typename T> constexpr int mantissa_bits();
template <> constexpr int mantissa_bits<float>() { return 23; }
template <> constexpr int mantissa_bits<double>() { return 52; }
template <> constexpr int mantissa_bits<__half>() { return 10; }
template <> constexpr int mantissa_bits<__nv_bfloat16>() { return 7; }

template <typename T>
double ulp(double magnitude) {
  int exponent = magnitude > 0 ? std::ilogb(magnitude) : -1022;
  return std::ldexp(1.0, std::max(exponent, -1022) - mantissa_bits<T>());
}

// A buffer of n + offset elements whose storage starts 64-byte aligned; the tensor begins `offset`
// elements in, so its byte offset from a 16-byte boundary is offset * sizeof(T) (mod 16).
template <typename T>
struct Buffer {
  std::vector<unsigned char> storage;
  T* data;
  Buffer(int64_t n, int64_t offset) : storage((n + offset) * sizeof(T) + 128) {
    auto base = (reinterpret_cast<uintptr_t>(storage.data()) + 63) / 64 * 64;
    data = reinterpret_cast<T*>(base) + offset;
  }
};

enum class Kind { kSync, kGatedOn, kGatedOff, kSwap };

// Every block and every thread of a launch of `op` over a one-entry table, in turn.
template <typename Op>
void run_on_host(const std::vector<int64_t>& words, int64_t num_chunks, int64_t chunk, const Op& op, int64_t grid) {
  for (int64_t block = 0; block < grid; ++block) {
    for (int64_t tid = 0; tid < kThreads; ++tid) table_thread<HostMemory>(words.data(), 1, num_chunks, chunk, op, block, grid, tid);
  }
}

// The pair code of (F, S) from the dtype list (see [NOTE: dtype list] in csrc/table.h), as the planner would set it.
template <typename F, typename S>
int64_t pair_code_for() {
#define LOOKAHEAD_TEST_CODE(pair, fast_token, state_token) \
  if (std::is_same_v<F, Cuda##fast_token> && std::is_same_v<S, Cuda##state_token>) return pair;
  LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_TEST_CODE)
#undef LOOKAHEAD_TEST_CODE
  return -1;
}

// The codes of compact entries whose fast tensor is F (LOOKAHEAD_COMPACT_PAIRS), and of compact
// momentum-sync entries with a bfloat16 momentum (LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS), in csrc/table.h.
template <typename F>
int64_t compact_code_for() {
#define LOOKAHEAD_TEST_COMPACT_CODE(pair, fast_token) \
  if (std::is_same_v<F, Cuda##fast_token>) return pair;
  LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_TEST_COMPACT_CODE)
#undef LOOKAHEAD_TEST_COMPACT_CODE
  return -1;
}
template <typename F>
int64_t compact_bf16_momentum_code_for() {
#define LOOKAHEAD_TEST_COMPACT_BF16_MOMENTUM_CODE(pair, fast_token) \
  if (std::is_same_v<F, Cuda##fast_token>) return pair;
  LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(LOOKAHEAD_TEST_COMPACT_BF16_MOMENTUM_CODE)
#undef LOOKAHEAD_TEST_COMPACT_BF16_MOMENTUM_CODE
  return -1;
}

// The code of a momentum-sync entry of (F, S) with momentum in M: the pair's, or for a bfloat16
// momentum beside float32 slow weights the one in LOOKAHEAD_BF16_MOMENTUM_PAIRS (csrc/table.h).
template <typename F, typename S, typename M>
int64_t momentum_code_for() {
  if constexpr (std::is_same_v<M, S>) {
    return pair_code_for<F, S>();
  } else {
#define LOOKAHEAD_TEST_BF16_MOMENTUM_CODE(pair, fast_token, state_token) \
  if (std::is_same_v<F, Cuda##fast_token> && std::is_same_v<S, Cuda##state_token>) return pair;
    if (std::is_same_v<M, __nv_bfloat16>) {
      LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_TEST_BF16_MOMENTUM_CODE)
    }
#undef LOOKAHEAD_TEST_BF16_MOMENTUM_CODE
    return -1;
  }
}

template <typename F, typename S>
void check_case(int64_t n, int64_t fast_offset, int64_t slow_offset, double alpha, Kind kind, int grid_cap,
                int64_t chunk, std::mt19937& rng) {
  if (kind == Kind::kSwap && !std::is_same_v<F, S>) return;
  Buffer<F> fast(n, fast_offset);
  Buffer<S> slow(n, slow_offset);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> f0(n), s0(n);
  for (int64_t i = 0; i < n; ++i) {
    double f = normal(rng), s = i % 3 == 0 ? f : normal(rng);  // a third where the weights did not move
    if (i % 97 == 5) f = NAN;
    if (i % 89 == 7) s = INFINITY;
    if (i % 83 == 11) f = -INFINITY;
    fast.data[i] = from_double<F>(f);
    slow.data[i] = from_double<S>(s);
    f0[i] = to_double(fast.data[i]);
    s0[i] = to_double(slow.data[i]);
  }
  const int64_t code = pair_code_for<F, S>();
  auto fa = reinterpret_cast<uintptr_t>(fast.data), sa = reinterpret_cast<uintptr_t>(slow.data);
  uintptr_t addresses[2] = {fa, sa};
  int64_t sizes[2] = {sizeof(F), sizeof(S)};
  int64_t head = common_head(addresses, sizes, 2);
  std::vector<int64_t> words = {int64_t(fa), int64_t(sa), n, code | ((head + 1) << 8)};
  for (int64_t c = 0; c * chunk < n; ++c) words.push_back(c);
  int64_t num_chunks = int64_t(words.size()) - entry_words(2);

  tracked = {{fa, fa + n * sizeof(F), sizeof(F), std::vector<int>(n)},
             {sa, sa + n * sizeof(S), sizeof(S), std::vector<int>(n)}};
  const int64_t step_value = kind == Kind::kGatedOff ? 7 : 6;
  const double alpha_value = alpha;
  StepGate gate{&step_value, 3, &alpha_value, true};
  int64_t grid = std::min<int64_t>(num_chunks, grid_cap);
  if (kind == Kind::kSync) run_on_host(words, num_chunks, chunk, SyncOp{alpha}, grid);
  if (kind == Kind::kSwap) run_on_host(words, num_chunks, chunk, SwapOp{}, grid);
  if (kind == Kind::kGatedOn || kind == Kind::kGatedOff) run_on_host(words, num_chunks, chunk, GatedSyncOp{gate}, grid);

  char where[200];
  std::snprintf(where, sizeof where,
                "pair code %lld, n %lld, offsets (%lld, %lld), alpha %.2f, kind %d, grid %lld, chunk %lld",
                (long long)code, (long long)n, (long long)fast_offset, (long long)slow_offset, alpha, int(kind),
                (long long)grid, (long long)chunk);
  const int expected_writes = kind == Kind::kGatedOff ? 0 : 1;
  for (int64_t i = 0; i < n; ++i) {
    if (tracked[0].writes[i] != expected_writes || tracked[1].writes[i] != expected_writes) {
      fail(std::string(where) + ": element " + std::to_string(i) + " written " + std::to_string(tracked[0].writes[i]) +
           " / " + std::to_string(tracked[1].writes[i]) + " times");
      return;
    }
    double f = to_double(fast.data[i]), s = to_double(slow.data[i]);
    auto same = [](double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; };
    if (kind == Kind::kGatedOff) {
      if (!same(f, f0[i]) || !same(s, s0[i])) fail(std::string(where) + ": changed off the sync step");
      continue;
    }
    if (kind == Kind::kSwap) {
      if (!same(f, s0[i]) || !same(s, f0[i])) fail(std::string(where) + ": not swapped");
      continue;
    }
    if (!same(f, to_double(from_double<F>(s)))) fail(std::string(where) + ": fast is not slow cast");
    double expected = alpha < 0.5 ? s0[i] + alpha * (f0[i] - s0[i]) : f0[i] - (f0[i] - s0[i]) * (1 - alpha);
    if (!std::isfinite(expected)) {  // NaN and Inf propagate as IEEE arithmetic does
      if (!same(s, to_double(from_double<S>(expected)))) fail(std::string(where) + ": NaN/Inf not propagated");
      continue;
    }
    if (alpha == 0.0 && !same(s, s0[i])) fail(std::string(where) + ": alpha 0 moved slow");
    if (alpha == 1.0 && !same(s, to_double(from_double<S>(f0[i])))) fail(std::string(where) + ": alpha 1 is not fast");
    double bound = 2 * ulp<S>(std::max(std::fabs(s0[i]), std::fabs(f0[i])));
    if (std::fabs(s - expected) > bound) {
      fail(std::string(where) + ": element " + std::to_string(i) + " is " + std::to_string(s) + ", want " +
           std::to_string(expected));
    }
  }
}

// The table of one entry of N tensors of n elements each (element sizes `sizes`), in chunks of
// `chunk`, as the planner would build it; and `tracked` set to those tensors.
template <size_t N>
std::vector<int64_t> entry_table(std::array<const void*, N> data, std::array<int64_t, N> sizes, int64_t n, int64_t code,
                                 int64_t chunk) {
  uintptr_t addresses[N];
  tracked.clear();
  std::vector<int64_t> words;
  for (size_t t = 0; t < N; ++t) {
    addresses[t] = reinterpret_cast<uintptr_t>(data[t]);
    track(reinterpret_cast<const void*>(addresses[t]), n, size_t(sizes[t]));
    words.push_back(int64_t(addresses[t]));
  }
  const int64_t head = common_head(addresses, sizes.data(), int(N));
  words.push_back(n);
  words.push_back(code | ((head + 1) << 8));
  for (int64_t c = 0; c * chunk < n; ++c) words.push_back(c);
  return words;
}

// The momentum sync (depth 3, see [NOTE: momentum sync] in csrc/element_math.h): fast, slow and
// momentum at their own offsets; gated (on or off) or not. Each element of all three written exactly
// once; slow against the float64 evaluation within 8 ulp of the largest magnitude involved, momentum
// within 4; mu = 0 keeps the plain sync's exact ends (alpha 0: slow unchanged; alpha 1: slow = old fast).
// M is the momentum's storage: S, or bfloat16 beside float32 slow weights. A bfloat16 momentum is
// rounded to bfloat16 every sync, and the Nesterov target reads it as stored: so the float64
// evaluation of slow takes the stored new momentum, and the momentum is within e + half a bfloat16
// ulp of |m_expected| + e of the float64 value, e being the float32 budget (4 ulp): round to nearest,
// of a float32 value within e of it (at most 1 bfloat16 ulp of |m_expected| in all).
template <typename F, typename S, typename M = S>
void check_momentum_case(int64_t n, int64_t offsets[3], double alpha, double mu, bool nesterov, Kind kind,
                         int grid_cap, int64_t chunk, std::mt19937& rng) {
  constexpr bool kBf16Momentum = !std::is_same_v<M, S>;
  Buffer<F> fast(n, offsets[0]);
  Buffer<S> slow(n, offsets[1]);
  Buffer<M> momentum(n, offsets[2]);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> f0(n), s0(n), m0(n);
  for (int64_t i = 0; i < n; ++i) {
    fast.data[i] = from_double<F>(normal(rng));
    slow.data[i] = from_double<S>(i % 3 == 0 ? to_double(fast.data[i]) : normal(rng));
    momentum.data[i] = from_double<M>(i % 5 == 0 ? 0.0 : normal(rng));
    f0[i] = to_double(fast.data[i]);
    s0[i] = to_double(slow.data[i]);
    m0[i] = to_double(momentum.data[i]);
  }
  const int64_t code = momentum_code_for<F, S, M>();
  const std::vector<int64_t> words = entry_table<3>({fast.data, slow.data, momentum.data},
                                                        {sizeof(F), sizeof(S), sizeof(M)}, n, code, chunk);
  const int64_t num_chunks = int64_t(words.size()) - entry_words(3);
  const int64_t step_value = kind == Kind::kGatedOff ? 7 : 6;
  const double alpha_value = alpha;
  StepGate gate{&step_value, 3, &alpha_value, true};
  int64_t grid = std::min<int64_t>(num_chunks, grid_cap);
  if (kind == Kind::kSync) {
    run_on_host(words, num_chunks, chunk, MomentumSyncOp{alpha, mu, nesterov}, grid);
  } else {
    run_on_host(words, num_chunks, chunk, GatedMomentumSyncOp{gate, mu, nesterov}, grid);
  }
  char where[200];
  std::snprintf(where, sizeof where,
                "momentum sync: pair code %lld, n %lld, offsets (%lld, %lld, %lld), alpha %.2f, mu %.2f, nesterov %d, "
                "kind %d, chunk %lld",
                (long long)code, (long long)n, (long long)offsets[0], (long long)offsets[1], (long long)offsets[2],
                alpha, mu, int(nesterov), int(kind), (long long)chunk);
  const int expected_writes = kind == Kind::kGatedOff ? 0 : 1;
  for (int64_t i = 0; i < n; ++i) {
    for (const Tracked& t : tracked) {
      if (t.writes[i] != expected_writes) {
        fail(std::string(where) + ": element " + std::to_string(i) + " written " + std::to_string(t.writes[i]) + " times");
        return;
      }
    }
    double f = to_double(fast.data[i]), s = to_double(slow.data[i]), m = to_double(momentum.data[i]);
    if (kind == Kind::kGatedOff) {
      if (f != f0[i] || s != s0[i] || m != m0[i]) fail(std::string(where) + ": changed off the sync step");
      continue;
    }
    double m_expected = mu * m0[i] + (f0[i] - s0[i]);
    double target = f0[i] + mu * (nesterov ? (kBf16Momentum ? m : m_expected) : m0[i]);
    double s_expected = alpha < 0.5 ? s0[i] + alpha * (target - s0[i]) : target - (target - s0[i]) * (1 - alpha);
    double magnitude = std::max({std::fabs(f0[i]), std::fabs(s0[i]), std::fabs(m0[i]), std::fabs(target)});
    if (kBf16Momentum) magnitude = std::max({magnitude, std::fabs(m), std::fabs(m_expected)});
    const double m_float = 4 * ulp<S>(magnitude);
    const double m_bound = m_float + (kBf16Momentum ? 0.5 * ulp<M>(std::fabs(m_expected) + m_float) : 0.0);
    if (f != to_double(from_double<F>(s))) fail(std::string(where) + ": fast is not slow cast");
    if (std::fabs(m - m_expected) > m_bound) fail(std::string(where) + ": momentum " + std::to_string(i));
    if (std::fabs(s - s_expected) > 8 * ulp<S>(magnitude)) fail(std::string(where) + ": slow " + std::to_string(i));
    if (mu == 0.0 && alpha == 0.0 && s != s0[i]) fail(std::string(where) + ": mu 0, alpha 0 moved slow");
    if (mu == 0.0 && alpha == 1.0 && s != to_double(from_double<S>(f0[i]))) {
      fail(std::string(where) + ": mu 0, alpha 1 is not the old fast");
    }
  }
}

// The compact sync (depth 3: fast, bfloat16 high parts, int8 residuals;
// see [NOTE: compact sync] in csrc/element_math.h), each tensor at its own offset: every element of all three written exactly
// once; the stored pair an encoding the encoder makes (its own fixed point); fast its decoded value
// cast exactly; alpha 0 leaves the pair unchanged, alpha 1 makes it encode(fast); otherwise the
// decoded value within 2 float32 ulp (the lerp) plus the encoding's bound of the float64 sync. The
// element math is the CPU kernel's, checked against the Python oracle bit for bit
// (tests/test_compact_sync.py, tests/test_bf16_int8.py); this checks the walk.
template <typename F>
void check_compact_case(int64_t n, int64_t offsets[3], double alpha, int grid_cap, int64_t chunk, std::mt19937& rng,
                        Kind kind = Kind::kSync) {
  Buffer<F> fast(n, offsets[0]);
  Buffer<uint16_t> high(n, offsets[1]);
  Buffer<int8_t> low(n, offsets[2]);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> f0(n), s0(n);
  std::vector<Bf16Int8> code0(n);
  for (int64_t i = 0; i < n; ++i) {
    fast.data[i] = from_double<F>(normal(rng));
    code0[i] = encode_bf16_int8(i % 3 == 0 ? float(to_double(fast.data[i])) : float(normal(rng)));
    high.data[i] = code0[i].high;
    low.data[i] = code0[i].residual;
    f0[i] = to_double(fast.data[i]);
    s0[i] = decode_bf16_int8(code0[i].high, code0[i].residual);
  }
  const int64_t code = compact_code_for<F>();
  const std::vector<int64_t> words = entry_table<3>({fast.data, high.data, low.data},
                                                        {sizeof(F), sizeof(uint16_t), sizeof(int8_t)}, n, code, chunk);
  const int64_t num_chunks = int64_t(words.size()) - entry_words(3);
  const int64_t step_value = kind == Kind::kGatedOff ? 7 : 6;
  const double alpha_value = alpha;
  StepGate gate{&step_value, 3, &alpha_value, true};
  const int64_t grid = std::min<int64_t>(num_chunks, grid_cap);
  if (kind == Kind::kSync) run_on_host(words, num_chunks, chunk, CompactSyncOp{alpha}, grid);
  else run_on_host(words, num_chunks, chunk, GatedCompactSyncOp{gate}, grid);
  char where[200];
  std::snprintf(where, sizeof where,
                "compact sync%s: code %lld, n %lld, offsets (%lld, %lld, %lld), alpha %.2f, chunk %lld",
                kind == Kind::kSync ? "" : (kind == Kind::kGatedOn ? " gated on" : " gated off"), (long long)code,
                (long long)n, (long long)offsets[0], (long long)offsets[1], (long long)offsets[2], alpha,
                (long long)chunk);
  const int expected_writes = kind == Kind::kGatedOff ? 0 : 1;
  for (int64_t i = 0; i < n; ++i) {
    for (const Tracked& t : tracked) {
      if (t.writes[i] != expected_writes) {
        fail(std::string(where) + ": element " + std::to_string(i) + " written " + std::to_string(t.writes[i]) + " times");
        return;
      }
    }
    if (kind == Kind::kGatedOff) {
      if (high.data[i] != code0[i].high || low.data[i] != code0[i].residual || to_double(fast.data[i]) != f0[i]) {
        fail(std::string(where) + ": element " + std::to_string(i) + " changed off the sync step");
      }
      continue;
    }
    const float decoded = decode_bf16_int8(high.data[i], low.data[i]);
    const Bf16Int8 again = encode_bf16_int8(decoded);
    if (again.high != high.data[i] || again.residual != low.data[i]) fail(std::string(where) + ": not an encoding");
    if (to_double(fast.data[i]) != to_double(from_double<F>(decoded))) fail(std::string(where) + ": fast is not slow cast");
    if (alpha == 0.0) {
      if (high.data[i] != code0[i].high || low.data[i] != code0[i].residual) fail(std::string(where) + ": alpha 0 moved slow");
      continue;
    }
    if (alpha == 1.0) {
      const Bf16Int8 expected = encode_bf16_int8(float(f0[i]));
      if (high.data[i] != expected.high || low.data[i] != expected.residual) fail(std::string(where) + ": alpha 1 is not fast");
      continue;
    }
    const double expected = alpha < 0.5 ? s0[i] + alpha * (f0[i] - s0[i]) : f0[i] - (f0[i] - s0[i]) * (1 - alpha);
    const double lerp_error = 2 * ulp<float>(std::max(std::fabs(f0[i]), std::fabs(s0[i])));
    const double bound = lerp_error + std::max(std::ldexp(std::fabs(expected) + lerp_error, -15), std::ldexp(1.0, -141));
    if (std::fabs(decoded - expected) > bound) fail(std::string(where) + ": element " + std::to_string(i));
  }
}

// AdamW's step with (sync) or without the sync, with (depth 6) or without (5) outer momentum, or
// without slow weights (depth 4: the step alone, whatever the row's sync flag says), on one
// entry: every element of param, exp_avg, exp_avg_sq written once, the grad never, the state tensors
// once on a sync step and never otherwise (a row with sync 0 leaves them as they were); values
// against a float64 evaluation (csrc/adamw.h), the param's update reading the moments as the kernel
// stored them. `offsets`: elements of the four fast tensors, the slow weight and the momentum. M is
// the momentum's storage: S, or bfloat16 beside float32 slow weights (codes 9-11), whose new momentum
// is within e + 4 float32 ulp + 1 bfloat16 ulp of |m_expected| of the float64 value (e: the param's
// budget), and whose Nesterov target reads the momentum as stored, so slow keeps S's budget.
template <typename F, typename S, typename M = S>
void check_adamw_case(int64_t n, std::array<int64_t, 3> offsets, bool sync, bool with_momentum, bool nesterov,
                      int grid_cap, int64_t chunk, std::mt19937& rng, bool with_slow = true) {
  constexpr bool kBf16Momentum = !std::is_same_v<M, S>;
  const int depth = !with_slow ? 4 : with_momentum ? 6 : 5;
  const bool row_sync = sync;
  sync = sync && with_slow;  // whether the state tensors sync
  Buffer<F> p(n, offsets[0]), g(n, offsets[0]), m(n, offsets[0]), v(n, offsets[0]);
  Buffer<S> s(n, offsets[1]);
  Buffer<M> b(n, offsets[2]);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> p0(n), g0(n), m0(n), v0(n), s0(n), b0(n);
  for (int64_t i = 0; i < n; ++i) {
    p.data[i] = from_double<F>(normal(rng));
    g.data[i] = from_double<F>(normal(rng));
    m.data[i] = from_double<F>(0.1 * normal(rng));
    v.data[i] = from_double<F>(0.01 + 0.1 * std::fabs(normal(rng)));
    s.data[i] = from_double<S>(normal(rng));
    b.data[i] = from_double<M>(0.1 * normal(rng));
    p0[i] = to_double(p.data[i]), g0[i] = to_double(g.data[i]), m0[i] = to_double(m.data[i]);
    v0[i] = to_double(v.data[i]), s0[i] = to_double(s.data[i]), b0[i] = to_double(b.data[i]);
  }
  const double lr = 1e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.1, step = 3, alpha = 0.5, mu = 0.9;
  const double hyper[kAdamWColumns] = {lr, beta1, beta2, eps, wd, step, alpha, row_sync ? 1.0 : 0.0, 0.0};
  const int64_t rows[1] = {0};
  uintptr_t addresses[6] = {reinterpret_cast<uintptr_t>(p.data), reinterpret_cast<uintptr_t>(g.data),
                            reinterpret_cast<uintptr_t>(m.data), reinterpret_cast<uintptr_t>(v.data),
                            reinterpret_cast<uintptr_t>(s.data), reinterpret_cast<uintptr_t>(b.data)};
  int64_t sizes[6] = {sizeof(F), sizeof(F), sizeof(F), sizeof(F), sizeof(S), sizeof(M)};
  std::vector<int64_t> words(addresses, addresses + depth);
  words.push_back(n);
  const int64_t code = !with_slow ? pair_code_for<F, F>() : with_momentum ? momentum_code_for<F, S, M>() : pair_code_for<F, S>();
  words.push_back(code | ((common_head(addresses, sizes, depth) + 1) << 8));
  for (int64_t c = 0; c * chunk < n; ++c) words.push_back(c);
  const int64_t num_chunks = int64_t(words.size()) - entry_words(depth);
  tracked.clear();
  for (int t = 0; t < depth; ++t) track(reinterpret_cast<const void*>(addresses[t]), n, size_t(sizes[t]));
  const int64_t grid = std::min<int64_t>(std::max<int64_t>(num_chunks, 1), grid_cap);
  if (!with_slow) {
    run_on_host(words, num_chunks, chunk, AdamWOp<4>{hyper, rows, 0.0, false}, grid);
  } else if (with_momentum) {
    run_on_host(words, num_chunks, chunk, AdamWOp<6>{hyper, rows, mu, nesterov}, grid);
  } else {
    run_on_host(words, num_chunks, chunk, AdamWOp<5>{hyper, rows, 0.0, false}, grid);
  }
  char where[200];
  std::snprintf(where, sizeof where,
                "adamw: depth %d, code %lld, n %lld, offsets (%lld, %lld, %lld), sync %d, momentum %d, nesterov %d, "
                "chunk %lld",
                depth, (long long)code, (long long)n, (long long)offsets[0], (long long)offsets[1],
                (long long)offsets[2], int(row_sync), int(with_momentum), int(nesterov), (long long)chunk);
  const double step_size = lr / (1 - std::pow(beta1, step)), bc2_sqrt = std::sqrt(1 - std::pow(beta2, step));
  for (int64_t i = 0; i < n; ++i) {
    for (int t = 0; t < depth; ++t) {
      const int expected_writes = t == 1 ? 0 : t < 4 ? 1 : int(sync);
      if (tracked[t].writes[i] != expected_writes) {
        fail(std::string(where) + ": tensor " + std::to_string(t) + " element " + std::to_string(i) + " written " +
             std::to_string(tracked[t].writes[i]) + " times");
        return;
      }
    }
    const double mi = to_double(m.data[i]), vi = to_double(v.data[i]);
    if (std::fabs(mi - (m0[i] + (1 - beta1) * (g0[i] - m0[i]))) > 2 * ulp<F>(std::max(std::fabs(m0[i]), std::fabs(g0[i])))) {
      fail(std::string(where) + ": exp_avg " + std::to_string(i));
    }
    if (std::fabs(vi - (beta2 * v0[i] + (1 - beta2) * g0[i] * g0[i])) > 4 * ulp<F>(std::max(v0[i], g0[i] * g0[i]))) {
      fail(std::string(where) + ": exp_avg_sq " + std::to_string(i));
    }
    const double update = step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
    const double p_expected = p0[i] * (1 - lr * wd) - update;
    const double fast_error = 8 * ulp<F>(std::max(std::fabs(p0[i]), std::fabs(update)));
    const double pi = to_double(p.data[i]), si = to_double(s.data[i]), bi = to_double(b.data[i]);
    if (!sync) {
      if (std::fabs(pi - p_expected) > fast_error) fail(std::string(where) + ": param " + std::to_string(i));
      if (si != s0[i] || bi != b0[i]) fail(std::string(where) + ": state moved off a sync step");
      continue;
    }
    if (pi != to_double(from_double<F>(si))) fail(std::string(where) + ": param is not slow cast");
    const double f = to_double(from_double<F>(p_expected));
    const double b_expected = with_momentum ? mu * b0[i] + (f - s0[i]) : 0.0;
    const double b_read = kBf16Momentum && nesterov ? bi : b_expected;  // the momentum the target reads
    const double target = f + (with_momentum ? mu * (nesterov ? b_read : b0[i]) : 0.0);
    const double s_expected = s0[i] + alpha * (target - s0[i]);
    double magnitude = std::max({std::fabs(f), std::fabs(s0[i]), std::fabs(b0[i]), std::fabs(target)});
    if (kBf16Momentum) magnitude = std::max({magnitude, std::fabs(b_expected), std::fabs(bi)});
    if (std::fabs(si - s_expected) > 2 * fast_error + 8 * ulp<S>(magnitude)) fail(std::string(where) + ": slow " + std::to_string(i));
    const double b_bound = fast_error + 4 * ulp<S>(magnitude) + (kBf16Momentum ? ulp<M>(std::fabs(b_expected)) : 0.0);
    if (with_momentum && std::fabs(bi - b_expected) > b_bound) {
      fail(std::string(where) + ": momentum " + std::to_string(i));
    }
  }
}

// The pseudo-gradient (depth 3: fast, slow, out in S;
// see [NOTE: pseudo-gradient] in csrc/element_math.h), each tensor at its own offset: fast and slow never written, every element of
// out written exactly once, and equal to fast - slow rounded to the opmath type (float64 for
// float64, else float32: the difference of these normal draws is exact in float64, so its float32
// cast is the correctly rounded subtraction), then to out's type O (S, or bfloat16 beside float32 S:
// the codes of LOOKAHEAD_BF16_MOMENTUM_PAIRS); NaN and Inf as IEEE arithmetic has them.
template <typename F, typename S, typename O = S>
void check_pseudo_gradient_case(int64_t n, const std::array<int64_t, 3>& offsets, int grid_cap, int64_t chunk,
                                std::mt19937& rng) {
  Buffer<F> fast(n, offsets[0]);
  Buffer<S> slow(n, offsets[1]);
  Buffer<O> out(n, offsets[2]);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int64_t i = 0; i < n; ++i) {
    fast.data[i] = from_double<F>(i % 97 == 5 ? NAN : i % 83 == 11 ? -INFINITY : normal(rng));
    slow.data[i] = from_double<S>(i % 3 == 0 ? to_double(fast.data[i]) : i % 89 == 7 ? INFINITY : normal(rng));
    out.data[i] = from_double<O>(NAN);
  }
  const int64_t code = momentum_code_for<F, S, O>();
  const std::vector<int64_t> words =
      entry_table<3>({fast.data, slow.data, out.data}, {sizeof(F), sizeof(S), sizeof(O)}, n, code, chunk);
  const int64_t num_chunks = int64_t(words.size()) - entry_words(3);
  run_on_host(words, num_chunks, chunk, PseudoGradientOp{}, std::min<int64_t>(num_chunks, grid_cap));
  char where[160];
  std::snprintf(where, sizeof where, "pseudo-gradient: pair code %lld, n %lld, offsets (%lld, %lld, %lld), chunk %lld",
                (long long)code, (long long)n, (long long)offsets[0], (long long)offsets[1], (long long)offsets[2],
                (long long)chunk);
  for (int64_t i = 0; i < n; ++i) {
    if (tracked[0].writes[i] != 0 || tracked[1].writes[i] != 0 || tracked[2].writes[i] != 1) {
      fail(std::string(where) + ": element " + std::to_string(i) + " written " + std::to_string(tracked[0].writes[i]) +
           " / " + std::to_string(tracked[1].writes[i]) + " / " + std::to_string(tracked[2].writes[i]) + " times");
      return;
    }
    const double exact = to_double(fast.data[i]) - to_double(slow.data[i]);
    const double opmath = std::is_same_v<S, double> ? exact : double(float(exact));
    const double want = to_double(from_double<O>(opmath)), got = to_double(out.data[i]);
    if (!((std::isnan(want) && std::isnan(got)) || (want == got && std::signbit(want) == std::signbit(got)))) {
      fail(std::string(where) + ": element " + std::to_string(i) + " is " + std::to_string(got) + ", want " +
           std::to_string(want));
    }
  }
}

// The compact momentum sync (depth 4: fast, bfloat16 high parts, int8 residuals, the momentum in M;
// see [NOTE: compact momentum sync] in csrc/element_math.h), each tensor at its own offset, gated or
// not: every element of all four written exactly once (none off the sync step), and each the element
// math applied to that element alone, bit for bit. The element math is checked against the float64
// momentum sync in tests/test_compact_momentum_sync.py (it is the CPU kernel's); this checks the walk.
template <typename F, typename M>
void check_compact_momentum_case(int64_t n, const std::array<int64_t, 4>& offsets, int grid_cap, int64_t chunk,
                                 std::mt19937& rng, Kind kind = Kind::kSync) {
  Buffer<F> fast(n, offsets[0]);
  Buffer<uint16_t> high(n, offsets[1]);
  Buffer<int8_t> low(n, offsets[2]);
  Buffer<M> momentum(n, offsets[3]);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<F> f0(n);
  std::vector<uint16_t> h0(n);
  std::vector<int8_t> q0(n);
  std::vector<M> m0(n);
  for (int64_t i = 0; i < n; ++i) {
    f0[i] = fast.data[i] = from_double<F>(normal(rng));
    const Bf16Int8 code = encode_bf16_int8(i % 3 == 0 ? float(to_double(f0[i])) : float(normal(rng)));
    h0[i] = high.data[i] = code.high;
    q0[i] = low.data[i] = code.residual;
    m0[i] = momentum.data[i] = from_double<M>(i % 5 == 0 ? 0.0 : 0.1 * normal(rng));
  }
  const int64_t code = std::is_same_v<M, float> ? compact_code_for<F>() : compact_bf16_momentum_code_for<F>();
  const std::vector<int64_t> words = entry_table<4>({fast.data, high.data, low.data, momentum.data},
                                                    {sizeof(F), sizeof(uint16_t), sizeof(int8_t), sizeof(M)}, n, code,
                                                    chunk);
  const int64_t num_chunks = int64_t(words.size()) - entry_words(4);
  const int64_t step_value = kind == Kind::kGatedOff ? 7 : 6;
  const double alpha = 0.7, mu = 0.9;
  const StepGate gate{&step_value, 3, &alpha, true};
  const int64_t grid = std::min<int64_t>(num_chunks, grid_cap);
  const CompactMomentumSyncOp op{alpha, mu, true};
  if (kind == Kind::kSync) run_on_host(words, num_chunks, chunk, op, grid);
  else run_on_host(words, num_chunks, chunk, GatedCompactMomentumSyncOp{gate, mu, true}, grid);
  char where[200];
  std::snprintf(where, sizeof where, "compact momentum sync: code %lld, n %lld, offsets (%lld, %lld, %lld, %lld), "
                "kind %d, chunk %lld", (long long)code, (long long)n, (long long)offsets[0], (long long)offsets[1],
                (long long)offsets[2], (long long)offsets[3], int(kind), (long long)chunk);
  const int expected_writes = kind == Kind::kGatedOff ? 0 : 1;
  for (int64_t i = 0; i < n; ++i) {
    for (const Tracked& t : tracked) {
      if (t.writes[i] != expected_writes) {
        fail(std::string(where) + ": element " + std::to_string(i) + " written " + std::to_string(t.writes[i]) + " times");
        return;
      }
    }
    F f = f0[i];
    uint16_t h = h0[i];
    int8_t q = q0[i];
    M m = m0[i];
    if (kind != Kind::kGatedOff) op.element(f, h, q, m);
    const bool same = h == high.data[i] && q == low.data[i] && std::memcmp(&f, &fast.data[i], sizeof f) == 0 &&
                      std::memcmp(&m, &momentum.data[i], sizeof m) == 0;
    if (!same) {
      fail(std::string(where) + ": element " + std::to_string(i) + " is not the element math's");
      return;
    }
    if (kind == Kind::kGatedOff) continue;
    // the element math against the float64 momentum sync, Nesterov's target reading m' as stored, within
    // float32's rounding (4 ulp for m', 8 for the slow weight), bfloat16's for m', and the encoding's bound
    const double s0 = decode_bf16_int8(h0[i], q0[i]), f64 = to_double(f0[i]), m64 = to_double(m0[i]);
    const double stored = to_double(momentum.data[i]), m_expected = mu * m64 + (f64 - s0);
    const double target = f64 + mu * stored;
    const double s_expected = target - (target - s0) * (1 - alpha);  // alpha >= 0.5: the lerp from the target's side
    const double magnitude = std::max({std::fabs(f64), std::fabs(s0), std::fabs(m64), std::fabs(target),
                                       std::fabs(m_expected)});
    const double float_bound = 4 * ulp<float>(magnitude);
    const double m_bound =
        float_bound + (std::is_same_v<M, float> ? 0.0 : 0.5 * ulp<M>(std::fabs(m_expected) + float_bound));
    const double lerp_bound = 8 * ulp<float>(magnitude);
    const double s_bound = lerp_bound + std::ldexp(std::fabs(s_expected) + lerp_bound, -15) + std::ldexp(1.0, -141);
    const double decoded = decode_bf16_int8(high.data[i], low.data[i]);
    if (std::fabs(stored - m_expected) > m_bound || std::fabs(decoded - s_expected) > s_bound) {
      fail(std::string(where) + ": element " + std::to_string(i) + " is off the float64 momentum sync");
      return;
    }
  }
}

// AdamW's step with the compact sync (depth 6) or the compact momentum sync (depth 7, its momentum in M;
// see [NOTE: AdamW compact step] in csrc/adamw.h), as the composition it must equal bit for bit:
// adamw_element with the moments and the new param rounded to F, then on a sync row the compact sync
// (or compact momentum sync) of that param, the param taking the slow weight as stored.
// Equal bits, or both NaN: a NaN's sign and payload are the compiler's choice (x * -1, the maximize sign,
// may compile to a negation).
template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(to_double(a)) && std::isnan(to_double(b)));
}

template <typename T>
struct RoundTo {  // round_to<T> for the element math, which is __host__ __device__ (a host lambda is not)
  LOOKAHEAD_KERNEL_FN float operator()(float x) const { return round_to<T>(x); }
};

template <typename F, typename M>
void adamw_compact_on_host(F& p, F g, F& m, F& v, uint16_t& high, int8_t& low, M* momentum, const double* row,
                           double mu, bool nesterov) {
  const AdamWConstants<float> c(row);
  float m_value = widen(m), v_value = widen(v);
  const F param = narrow<F>(adamw_element(float(widen(p)), float(widen(g)), m_value, v_value, c, RoundTo<F>{}));
  m = narrow<F>(m_value);
  v = narrow<F>(v_value);
  p = param;
  if (!c.syncs) return;
  const TwoSidedLerp<float, bool> lerp = two_sided_lerp<float>(c.alpha, lerp_from_slow(c.alpha));
  if (momentum == nullptr) {
    p = narrow<F>(compact_sync_element(float(widen(param)), high, low, lerp));
    return;
  }
  float outer = widen(*momentum);
  const MomentumSyncMath<float, bool, bool> math{lerp, float(mu), nesterov};
  const float slow = compact_momentum_sync_element(float(widen(param)), high, low, outer, math, RoundTo<M>{});
  *momentum = narrow<M>(outer);
  p = narrow<F>(slow);
}

// The tensors of one AdamW compact entry, each at its own element offset: param, grad, exp_avg, exp_avg_sq
// in F, the slow weight's high parts and residuals, and the outer momentum in M (not in the table at depth 6).
template <typename F, typename M>
struct AdamWCompactTensors {
  Buffer<F> p, g, m, v;
  Buffer<uint16_t> high;
  Buffer<int8_t> low;
  Buffer<M> momentum;
  AdamWCompactTensors(int64_t n, const std::array<int64_t, 7>& offsets)
      : p(n, offsets[0]),
        g(n, offsets[1]),
        m(n, offsets[2]),
        v(n, offsets[3]),
        high(n, offsets[4]),
        low(n, offsets[5]),
        momentum(n, offsets[6]) {}
  std::array<const void*, 7> data() const {
    return {p.data, g.data, m.data, v.data, high.data, low.data, momentum.data};
  }
};

// The AdamW compact ops (AdamWCompactOp<6>, and AdamWCompactOp<7> when M is not void) over two entries in
// one launch, of n and n * 5 / 3 + 3 elements, rows pointing one to a sync row and the other to a row
// with sync 0 (`sync_first`: entry 0's is the sync row), the rows' lerp sides and maximize apart; every
// tensor at `offsets`. Checks: each element of param, exp_avg, exp_avg_sq written once and the grad never;
// the slow weight and the momentum written once on the sync row's entry and never on the other; every
// element bit for bit adamw_compact_on_host's; the aligned bodies in 16-byte accesses.
template <typename F, typename M = void>
void check_adamw_compact_case(int64_t n0, const std::array<int64_t, 7>& offsets, double alpha, bool nesterov,
                              bool sync_first, int grid_cap, int64_t chunk, std::mt19937& rng) {
  constexpr bool kMomentum = !std::is_void_v<M>;
  using Momentum = std::conditional_t<kMomentum, M, float>;
  constexpr int depth = kMomentum ? 7 : 6;
  const int64_t code = !kMomentum                 ? compact_code_for<F>()
                       : std::is_same_v<M, float> ? compact_code_for<F>()
                                                  : compact_bf16_momentum_code_for<F>();
  const double mu = 0.9;
  const double hyper[2 * kAdamWColumns] = {1e-2, 0.9, 0.999, 1e-8, 0.1, 3, alpha, 1.0, 0.0,
                                           3e-3, 0.3, 0.99,  1e-6, 0.0, 7, 0.5,   0.0, 1.0};
  const int64_t rows[2] = {sync_first ? 0 : 1, sync_first ? 1 : 0};
  const int64_t sizes[2] = {n0, n0 * 5 / 3 + 3};
  std::vector<std::unique_ptr<AdamWCompactTensors<F, Momentum>>> entries;
  std::vector<std::vector<F>> p0(2), g0(2), m0(2), v0(2);
  std::vector<std::vector<uint16_t>> h0(2);
  std::vector<std::vector<int8_t>> q0(2);
  std::vector<std::vector<Momentum>> b0(2);
  std::normal_distribution<double> normal(0.0, 1.0);
  tracked.clear();
  std::vector<int64_t> words, chunk_words;
  int64_t heads[2];
  for (int e = 0; e < 2; ++e) {
    const int64_t n = sizes[e];
    entries.push_back(std::make_unique<AdamWCompactTensors<F, Momentum>>(n, offsets));
    AdamWCompactTensors<F, Momentum>& t = *entries.back();
    for (int64_t i = 0; i < n; ++i) {
      t.p.data[i] = from_double<F>(i % 83 == 11 ? INFINITY : normal(rng));
      t.g.data[i] = from_double<F>(i % 97 == 5 ? NAN : normal(rng));
      t.m.data[i] = from_double<F>(0.1 * normal(rng));
      t.v.data[i] = from_double<F>(0.01 + 0.1 * std::fabs(normal(rng)));
      const Bf16Int8 slow = encode_bf16_int8(i % 3 == 0 ? float(to_double(t.p.data[i])) : float(normal(rng)));
      t.high.data[i] = slow.high;
      t.low.data[i] = slow.residual;
      t.momentum.data[i] = from_double<Momentum>(i % 5 == 0 ? 0.0 : 0.1 * normal(rng));
    }
    p0[e].assign(t.p.data, t.p.data + n), g0[e].assign(t.g.data, t.g.data + n);
    m0[e].assign(t.m.data, t.m.data + n), v0[e].assign(t.v.data, t.v.data + n);
    h0[e].assign(t.high.data, t.high.data + n), q0[e].assign(t.low.data, t.low.data + n);
    b0[e].assign(t.momentum.data, t.momentum.data + n);
    const std::array<const void*, 7> data = t.data();
    const int64_t element_sizes[7] = {sizeof(F), sizeof(F), sizeof(F), sizeof(F), 2, 1, sizeof(Momentum)};
    uintptr_t addresses[7];
    for (int k = 0; k < depth; ++k) {
      addresses[k] = reinterpret_cast<uintptr_t>(data[k]);
      track(data[k], n, size_t(element_sizes[k]));
      words.push_back(int64_t(addresses[k]));
    }
    heads[e] = common_head(addresses, element_sizes, depth);
    words.push_back(n);
    words.push_back(code | ((heads[e] + 1) << 8));
    for (int64_t c = 0; c * chunk < n; ++c) chunk_words.push_back((int64_t(e) << kChunkBits) | c);
  }
  words.insert(words.end(), chunk_words.begin(), chunk_words.end());
  const int64_t num_chunks = int64_t(chunk_words.size());
  const int64_t grid = std::min<int64_t>(num_chunks, grid_cap);
  const int64_t vector_before = vector_accesses;
  const AdamWCompactOp<depth> op{hyper, rows, mu, nesterov};
  for (int64_t block = 0; block < grid; ++block) {
    for (int64_t tid = 0; tid < kThreads; ++tid) {
      table_thread<HostMemory>(words.data(), 2, num_chunks, chunk, op, block, grid, tid);
    }
  }
  char where[240];
  std::snprintf(where, sizeof where,
                "adamw compact: depth %d, code %lld, n %lld, offsets (%lld %lld %lld %lld %lld %lld %lld), alpha %.1f, "
                "nesterov %d, sync first %d, chunk %lld",
                depth, (long long)code, (long long)n0, (long long)offsets[0], (long long)offsets[1],
                (long long)offsets[2], (long long)offsets[3], (long long)offsets[4], (long long)offsets[5],
                (long long)offsets[6], alpha, int(nesterov), int(sync_first), (long long)chunk);
  for (int e = 0; e < 2; ++e) {
    const bool syncs = hyper[rows[e] * kAdamWColumns + kSyncFlag] != 0.0;
    const AdamWCompactTensors<F, Momentum>& t = *entries[e];
    for (int64_t i = 0; i < sizes[e]; ++i) {
      for (int k = 0; k < depth; ++k) {
        const int expected_writes = k == 1 ? 0 : k < 4 ? 1 : int(syncs);
        if (tracked[e * depth + k].writes[i] != expected_writes) {
          fail(std::string(where) + ": entry " + std::to_string(e) + " tensor " + std::to_string(k) + " element " +
               std::to_string(i) + " written " + std::to_string(tracked[e * depth + k].writes[i]) + " times");
          return;
        }
      }
      F p = p0[e][i], m = m0[e][i], v = v0[e][i];
      uint16_t h = h0[e][i];
      int8_t q = q0[e][i];
      Momentum b = b0[e][i];
      adamw_compact_on_host<F, Momentum>(p, g0[e][i], m, v, h, q, kMomentum ? &b : nullptr,
                                         hyper + rows[e] * kAdamWColumns, mu, nesterov);
      const bool slow_nan =
          std::isnan(decode_bf16_int8(h, q)) && std::isnan(decode_bf16_int8(t.high.data[i], t.low.data[i]));
      const bool same = same_bits(p, t.p.data[i]) && same_bits(m, t.m.data[i]) && same_bits(v, t.v.data[i]) &&
                        std::memcmp(&g0[e][i], &t.g.data[i], sizeof(F)) == 0 &&
                        ((h == t.high.data[i] && q == t.low.data[i]) || slow_nan) && same_bits(b, t.momentum.data[i]);
      if (!same) {
        fail(std::string(where) + ": entry " + std::to_string(e) + " (sync " + std::to_string(int(syncs)) +
             ") element " + std::to_string(i) + " is not the composition's");
        return;
      }
    }
  }
  const bool has_body = (heads[0] >= 0 && sizes[0] >= 48) || (heads[1] >= 0 && sizes[1] >= 48);
  if (has_body && vector_accesses == vector_before) fail(std::string(where) + ": no 16-byte access");
}

template <typename F>
void check_adamw_compact(std::mt19937& rng) {
  constexpr int64_t kStep = kVecBytes;  // elements of the sync row's vector step (int8 residuals)
  // element offsets of (param, grad, exp_avg, exp_avg_sq, high, low, momentum): aligned at once, later, or
  // never (the grad apart from the others, or the compact state apart from the fast tensors: scalar)
  for (auto offsets : {std::array<int64_t, 7>{0, 0, 0, 0, 0, 0, 0},
                       {1, 1, 1, 1, 1, 1, 1},
                       {2, 2, 2, 2, 2, 2, 2},
                       {5, 5, 5, 5, 5, 5, 5},
                       {0, 1, 0, 0, 0, 0, 0},
                       {0, 0, 0, 0, 3, 5, 1},
                       {3, 3, 3, 3, 3, 3, 0}}) {
    for (int64_t n : {int64_t(1), int64_t(7), kStep, int64_t(33), int64_t(1000), int64_t(kThreads) * kStep * 2 + 37}) {
      for (bool sync_first : {true, false}) {
        const double alpha = n % 2 ? 0.7 : 0.3;
        check_adamw_compact_case<F>(n, offsets, alpha, false, sync_first, 3, kMaxChunkElems, rng);
        for (bool nesterov : {false, true}) {
          check_adamw_compact_case<F, float>(n, offsets, alpha, nesterov, sync_first, 3, kMaxChunkElems, rng);
          check_adamw_compact_case<F, __nv_bfloat16>(n, offsets, alpha, nesterov, sync_first, 3, kMaxChunkElems, rng);
        }
      }
    }
    for (bool sync_first : {true, false}) {  // grid-stride over the chunks of both entries; alpha 1
      const int64_t n = 3 * kChunkQuantum + 5;
      check_adamw_compact_case<F>(n, offsets, 1.0, false, sync_first, 2, kChunkQuantum, rng);
      check_adamw_compact_case<F, float>(n, offsets, 1.0, sync_first, sync_first, 2, kChunkQuantum, rng);
      check_adamw_compact_case<F, __nv_bfloat16>(n, offsets, 0.7, !sync_first, sync_first, 2, kChunkQuantum, rng);
    }
  }
}

template <typename F, typename S>
void check_pair(std::mt19937& rng) {
  constexpr int64_t V = kVecBytes / sizeof(F);
  constexpr int64_t group = int64_t(kThreads) * kUnrollFor<2> * V;  // elements of one unrolled pass of a block
  const double alphas[] = {0.0, 0.3, 0.5, 0.7, 1.0};
  for (int64_t fast_offset = 0; fast_offset < kVecBytes / int64_t(sizeof(F)); ++fast_offset) {
    for (int64_t slow_offset = 0; slow_offset < kVecBytes / int64_t(sizeof(S)); ++slow_offset) {
      for (int64_t n : {int64_t(0), int64_t(1), V - 1, V, V + 1, 3 * V + 2, group - 1, group + V + 3, 2 * group + 7}) {
        for (double alpha : alphas) {
          check_case<F, S>(n, fast_offset, slow_offset, alpha, Kind::kSync, 3, kMaxChunkElems, rng);
        }
      }
    }
  }
  for (int64_t mo = 0; mo < kVecBytes / int64_t(sizeof(S)); mo += 3) {  // momentum offsets 0 and 3 (0..15 bytes apart)
    for (int64_t n : {int64_t(1), V + 1, group + V + 3, 2 * group + 7}) {
      for (double alpha : alphas) {
        for (double mu : {0.0, 0.9}) {
          for (bool nesterov : {false, true}) {
            int64_t offsets[3] = {mo % (kVecBytes / int64_t(sizeof(F))), 0, mo};
            check_momentum_case<F, S>(n, offsets, alpha, mu, nesterov, Kind::kSync, 3, kMaxChunkElems, rng);
          }
        }
      }
    }
  }
  for (Kind kind : {Kind::kGatedOn, Kind::kGatedOff}) {
    int64_t offsets[3] = {1, 1, 1};
    check_momentum_case<F, S>(3 * kChunkQuantum + 5, offsets, 0.7, 0.5, true, kind, 2, kChunkQuantum, rng);
  }
  if constexpr (std::is_same_v<S, float> && !std::is_same_v<F, double>) {  // a bfloat16 momentum (codes 9-11)
    using M = __nv_bfloat16;
    constexpr int64_t kStep = kVecBytes / sizeof(M);  // elements of its vector step
    constexpr int64_t bf16_group = int64_t(kThreads) * kUnrollFor<3> * kStep;
    // element offsets of (fast, slow, momentum): aligned together at once, later, or never (scalar)
    for (auto offsets : {std::array<int64_t, 3>{0, 0, 0}, {1, 1, 1}, {0, 0, 4}, {2, 2, 6}, {0, 0, 1}, {3, 1, 5},
                         {0, 2, 0}}) {
      for (int64_t n : {int64_t(0), int64_t(1), kStep - 1, kStep, kStep + 1, 3 * kStep + 2, bf16_group - 1,
                        bf16_group + kStep + 3, 2 * bf16_group + 7}) {
        for (double alpha : alphas) {
          for (double mu : {0.0, 0.9}) {
            for (bool nesterov : {false, true}) {
              check_momentum_case<F, S, M>(n, offsets.data(), alpha, mu, nesterov, Kind::kSync, 3, kMaxChunkElems, rng);
            }
          }
        }
      }
      for (bool nesterov : {false, true}) {  // grid-stride over chunks, then the gate on and off
        check_momentum_case<F, S, M>(3 * kChunkQuantum + 5, offsets.data(), 0.3, 0.9, nesterov, Kind::kSync, 2,
                                     kChunkQuantum, rng);
      }
      for (Kind kind : {Kind::kGatedOn, Kind::kGatedOff}) {
        check_momentum_case<F, S, M>(3 * kChunkQuantum + 5, offsets.data(), 0.7, 0.5, true, kind, 2, kChunkQuantum,
                                     rng);
      }
      constexpr int64_t adamw_group = int64_t(kThreads) * kUnrollFor<6> * kStep;
      for (int64_t n : {int64_t(0), int64_t(1), kStep - 1, kStep, kStep + 1, 3 * kStep + 2, adamw_group + kStep + 3,
                        3 * kChunkQuantum + 5}) {  // AdamW's step with the momentum sync (codes 9-11, depth 6)
        for (bool sync : {false, true}) {
          for (bool nesterov : {false, true}) {
            check_adamw_case<F, S, M>(n, offsets, sync, true, nesterov, 2, kChunkQuantum, rng);
          }
        }
      }
    }
  }
  if constexpr (std::is_same_v<S, float> && !std::is_same_v<F, double>) {  // the compact momentum sync's walk
    constexpr int64_t kCompactStep = kVecBytes;  // elements of its vector step (int8 residuals)
    for (auto offsets : {std::array<int64_t, 4>{0, 0, 0, 0}, {1, 1, 1, 1}, {0, 3, 5, 1}, {2, 2, 2, 0}}) {
      for (int64_t n : {int64_t(0), int64_t(1), kCompactStep - 1, kCompactStep + 1, int64_t(kThreads) * kCompactStep + 3,
                        3 * kChunkQuantum + 5}) {
        check_compact_momentum_case<F, float>(n, offsets, 2, kChunkQuantum, rng);
        check_compact_momentum_case<F, __nv_bfloat16>(n, offsets, 3, kMaxChunkElems, rng);
      }
      for (Kind kind : {Kind::kGatedOn, Kind::kGatedOff}) {
        check_compact_momentum_case<F, __nv_bfloat16>(kChunkQuantum + 37, offsets, 3, kMaxChunkElems, rng, kind);
      }
    }
  }
  if constexpr (std::is_same_v<S, float> && !std::is_same_v<F, double>) {  // once per fast dtype it takes
    constexpr int64_t kCompactStep = kVecBytes;  // elements of the compact sync's vector step (int8 residuals)
    constexpr int64_t compact_group = int64_t(kThreads) * kUnrollFor<3> * kCompactStep;
    for (auto offsets : {std::array<int64_t, 3>{0, 0, 0}, {1, 1, 1}, {0, 3, 5}, {2, 7, 15}}) {
      for (int64_t n : {int64_t(0), int64_t(1), kCompactStep - 1, kCompactStep + 1, compact_group + kCompactStep + 3,
                        2 * compact_group + 7}) {
        for (double alpha : alphas) check_compact_case<F>(n, offsets.data(), alpha, 3, kMaxChunkElems, rng);
      }
      check_compact_case<F>(3 * kChunkQuantum + 5, offsets.data(), 0.3, 2, kChunkQuantum, rng);
      for (Kind kind : {Kind::kGatedOn, Kind::kGatedOff}) {
        check_compact_case<F>(kChunkQuantum + 37, offsets.data(), 0.7, 3, kMaxChunkElems, rng, kind);
      }
    }
  }
  {  // the pseudo-gradient's vector step is one pack of the fast tensor
    constexpr int64_t pg_group = int64_t(kThreads) * kUnrollFor<3> * V;
    for (auto offsets : {std::array<int64_t, 3>{0, 0, 0}, {1, 1, 1}, {0, 0, 1}, {1, 0, 0}, {2, 2, 3}}) {
      for (int64_t n : {int64_t(0), int64_t(1), V - 1, V + 1, 3 * V + 2, pg_group + V + 3, 2 * pg_group + 7}) {
        check_pseudo_gradient_case<F, S>(n, offsets, 3, kMaxChunkElems, rng);
        if constexpr (std::is_same_v<S, float>) check_pseudo_gradient_case<F, S, __nv_bfloat16>(n, offsets, 3, kMaxChunkElems, rng);
      }
      check_pseudo_gradient_case<F, S>(3 * kChunkQuantum + 5, offsets, 2, kChunkQuantum, rng);
      if constexpr (std::is_same_v<S, float>) {  // out bfloat16: a step of 8 elements, two packs of float32 fast
        check_pseudo_gradient_case<F, S, __nv_bfloat16>(3 * kChunkQuantum + 5, offsets, 2, kChunkQuantum, rng);
        check_pseudo_gradient_case<F, S, __nv_bfloat16>(2 * pg_group + 8 * 3 + 5, offsets, 3, kMaxChunkElems, rng);
      }
    }
  }
  for (int64_t offset : {int64_t(0), int64_t(1)}) {
    for (int64_t n : {int64_t(1), V + 1, int64_t(kThreads) * V + 3, 3 * kChunkQuantum + 5}) {
      for (bool sync : {false, true}) {
        for (bool with_momentum : {false, true}) {
          check_adamw_case<F, S>(n, {offset, 0, 0}, sync, with_momentum, true, 2, kChunkQuantum, rng);
        }
        if constexpr (std::is_same_v<F, S>) {  // the step alone (depth 4), once per dtype
          check_adamw_case<F, S>(n, {offset, 0, 0}, sync, false, false, 2, kChunkQuantum, rng, /*with_slow=*/false);
        }
      }
    }
  }
  for (int64_t chunk : {kChunkQuantum, 3 * kChunkQuantum, kMaxChunkElems}) {  // sizes a plan takes (chunking.h)
    for (auto offsets : {std::pair<int64_t, int64_t>{0, 0}, {1, 1}, {1, 0}}) {
      for (int64_t n : {chunk - 1, chunk, chunk + 1, 3 * chunk + 5}) {
        for (int grid_cap : {2, 1000}) {  // grid-stride over the chunks, and one block per chunk
          check_case<F, S>(n, offsets.first, offsets.second, 0.3, Kind::kSync, grid_cap, chunk, rng);
        }
        check_case<F, S>(n, offsets.first, offsets.second, 0.7, Kind::kGatedOn, 3, chunk, rng);
        check_case<F, S>(n, offsets.first, offsets.second, 0.7, Kind::kGatedOff, 3, chunk, rng);
        check_case<F, S>(n, offsets.first, offsets.second, 0.0, Kind::kSwap, 3, chunk, rng);
      }
    }
  }
}

// A launch of any op but the momentum sync, AdamW's step with it (AdamWOp<6>) and the pseudo-gradient
// (bfloat16 out) over an entry with a bfloat16-momentum code aborts (traps on the GPU), run in a child process; with `traps` false, the
// launch of such an op exits normally. see [NOTE: bf16 momentum step] in csrc/cuda/table_kernel.cuh
template <typename Op>
void check_bf16_momentum_codes_trap(const Op& op, const char* name, bool traps = true) {
  std::vector<int64_t> codes;
#define LOOKAHEAD_TEST_COLLECT(code, fast_token, state_token) codes.push_back(code);
  LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_TEST_COLLECT)
#undef LOOKAHEAD_TEST_COLLECT
  constexpr int64_t n = 64;
  for (int64_t code : codes) {
    Buffer<float> buffer(n * kMaxDepth, 0);
    std::vector<int64_t> words;
    for (int t = 0; t < Op::kDepth; ++t) words.push_back(int64_t(reinterpret_cast<uintptr_t>(buffer.data + t * n)));
    words.push_back(n);
    words.push_back(code | (int64_t(1) << 8));  // head 0
    words.push_back(0);
    tracked = {{reinterpret_cast<uintptr_t>(buffer.data), reinterpret_cast<uintptr_t>(buffer.data + n * kMaxDepth),
                sizeof(float), std::vector<int>(n * kMaxDepth)}};
    std::fflush(nullptr);
    const pid_t child = fork();
    if (child == 0) {
      std::freopen("/dev/null", "w", stderr);
      table_thread<HostMemory>(words.data(), 1, 1, n, op, 0, 1, 0);
      std::_Exit(0);
    }
    int status = 0;
    const bool waited = child > 0 && waitpid(child, &status, 0) == child;
    const bool trapped = waited && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    const bool ran = waited && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (traps ? !trapped : !ran) {
      fail(std::string(name) + ": code " + std::to_string(code) + (traps ? " did not trap" : " trapped"));
    }
  }
}

}  // namespace

#ifndef LOOKAHEAD_HOST_EMULATION_PART
#define LOOKAHEAD_HOST_EMULATION_FIRST 1
#define LOOKAHEAD_HOST_EMULATION_SECOND 1
#else
#define LOOKAHEAD_HOST_EMULATION_FIRST (LOOKAHEAD_HOST_EMULATION_PART == 0)
#define LOOKAHEAD_HOST_EMULATION_SECOND (LOOKAHEAD_HOST_EMULATION_PART == 1)
#endif

int main() {
  std::mt19937 rng(0);
#if LOOKAHEAD_HOST_EMULATION_FIRST
  check_pair<float, float>(rng);
  check_pair<double, double>(rng);
  check_pair<__half, __half>(rng);
  check_pair<__nv_bfloat16, __nv_bfloat16>(rng);
  check_adamw_compact<float>(rng);
  check_adamw_compact<__half>(rng);
  check_adamw_compact<__nv_bfloat16>(rng);
#endif
#if LOOKAHEAD_HOST_EMULATION_SECOND
  check_pair<__half, float>(rng);
  check_pair<__nv_bfloat16, float>(rng);
  const int64_t step = 6;
  const double alpha = 0.5, hyper[kAdamWColumns] = {};
  const int64_t rows[1] = {0};
  const StepGate gate{&step, 3, &alpha, true};
  check_bf16_momentum_codes_trap(SyncOp{alpha}, "SyncOp");
  check_bf16_momentum_codes_trap(GatedSyncOp{gate}, "GatedSyncOp");
  check_bf16_momentum_codes_trap(SwapOp{}, "SwapOp");
  check_bf16_momentum_codes_trap(CompactSyncOp{alpha}, "CompactSyncOp");
  check_bf16_momentum_codes_trap(GatedCompactSyncOp{gate}, "GatedCompactSyncOp");
  check_bf16_momentum_codes_trap(PseudoGradientOp{}, "PseudoGradientOp", false);  // out bfloat16: the replicas' wire
  check_bf16_momentum_codes_trap(CompactMomentumSyncOp{alpha, 0.9, true}, "CompactMomentumSyncOp");
  check_bf16_momentum_codes_trap(AdamWOp<5>{hyper, rows, 0.0, false}, "AdamWOp<5>");
  check_bf16_momentum_codes_trap(AdamWOp<6>{hyper, rows, 0.9, false}, "AdamWOp<6>", false);
  check_bf16_momentum_codes_trap(AdamWCompactOp<6>{hyper, rows, 0.0, false}, "AdamWCompactOp<6>");
  check_bf16_momentum_codes_trap(AdamWCompactOp<7>{hyper, rows, 0.9, false}, "AdamWCompactOp<7>");
#endif
  if (failures) {
    std::fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  std::printf("the CUDA kernel body on the host: every case passed\n");
  return 0;
}
