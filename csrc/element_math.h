// The sync and the momentum sync on one element, shared by the CPU kernel (cpu/sync_cpu.cpp) and the
// CUDA kernel (cuda/table_kernel.cuh), so both compute the same thing by construction (AdamW's step
// is adamw.h). No torch headers.
//
// Each update works on the opmath values of an element: the fast value, and `state`, the entry's
// state values (the slow weight, then the outer momentum for the momentum sync), which it updates
// in place. The caller loads and widens, calls, then rounds each state value to the state dtype as
// it stores it; the new fast value is the new slow weight as stored. `round` rounds a value the
// update reads again (the new momentum) as storing it would.
//
// A flag of an update (the lerp's side, Nesterov) is uniform over a call. Its type says where it is
// decided: Fixed<value> at compile time, so that each value is a CPU loop of its own
// (see [NOTE: CPU vectorisation] in csrc/cpu/sync_cpu.cpp), or bool at run time, where a uniform
// branch costs nothing (the CUDA kernel).
#pragma once

#include <cmath>
#include <cstdint>

#include "bf16_int8.h"

#ifdef __CUDACC__
#define LOOKAHEAD_MATH_FN __host__ __device__ __forceinline__
#else
#define LOOKAHEAD_MATH_FN inline __attribute__((always_inline))
#endif

namespace lookahead_fused {

template <bool kValue>
struct Fixed {
  LOOKAHEAD_MATH_FN constexpr operator bool() const { return kValue; }
};

// [NOTE: two-sided lerp] The contract's formula, the one torch.lerp uses: s + w (f - s) for |w| < 0.5,
// else f - (f - s)(1 - w); exact at w = 0 and w = 1.
LOOKAHEAD_MATH_FN bool lerp_from_slow(double alpha) { return fabs(alpha) < 0.5; }

template <class T, class Small>
struct TwoSidedLerp {
  T w, one_minus_w;
  Small small;  // lerp_from_slow(alpha)
  LOOKAHEAD_MATH_FN T operator()(T s, T f) const { return small ? s + w * (f - s) : f - (f - s) * one_minus_w; }
};

template <class T, class Small>
LOOKAHEAD_MATH_FN TwoSidedLerp<T, Small> two_sided_lerp(double alpha, Small small) {
  return {T(alpha), T(1) - T(alpha), small};
}

// slow <- lerp(slow, fast, alpha); fast <- slow.
template <class T, class Small>
struct SyncMath {
  static constexpr int kStates = 1;
  TwoSidedLerp<T, Small> lerp;
  template <class Round>
  LOOKAHEAD_MATH_FN void operator()(T fast, T* state, Round) const {
    state[0] = lerp(state[0], fast);
  }
};

// [NOTE: momentum sync] m <- mu m + (f - s); u <- d + mu m if nesterov, else m; s <- s + alpha u.
// Written as a lerp of s toward the target t = s + u = f + mu (nesterov ? m_new : m_old), so that
// mu = 0 gives t = f exactly and the update is the plain sync bit for bit.
template <class T, class Small, class Nesterov>
struct MomentumSyncMath {
  static constexpr int kStates = 2;
  TwoSidedLerp<T, Small> lerp;
  T mu;
  Nesterov nesterov;
  template <class Round>
  LOOKAHEAD_MATH_FN void operator()(T fast, T* state, Round round) const {
    const T momentum = round(mu * state[1] + (fast - state[0]));
    const T target = fast + mu * (nesterov ? momentum : state[1]);
    state[0] = lerp(state[0], target);
    state[1] = momentum;
  }
};

// [NOTE: pseudo-gradient] A replica's pseudo-gradient (see [NOTE: replicas] in lookahead_fused/replicas.py):
// out <- fast - slow, in the opmath type T of the slow dtype (the fast value widened to T, which is
// exact), rounded once to out's dtype: the slow dtype (what torch's out.copy_(fast); out.sub_(slow)
// computes, in one pass), or bfloat16 beside float32 slow weights (the replicas' bfloat16 wire: what
// out.copy_(fast - slow) computes, one rounding from float32). fast and slow are read, never written.
template <class T>
LOOKAHEAD_MATH_FN T pseudo_gradient(T fast, T slow) {
  return fast - slow;
}

// A new slow weight `slow` stored as bf16+int8 into (high, residual); returns the value stored,
// decode(high, residual), which the caller casts to the fast dtype.
LOOKAHEAD_MATH_FN float store_compact_slow(float slow, uint16_t& high, int8_t& residual) {
  const Bf16Int8 code = encode_bf16_int8(slow);
  high = code.high;
  residual = code.residual;
  return decode_bf16_int8(code.high, code.residual);
}

// [NOTE: compact sync] The sync of a slow weight kept as bf16+int8
// (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py):
// s = decode(high, residual); s' = lerp(s, fast, alpha) in float32; (high, residual) <- encode(s').
// Returns decode(high, residual), the slow weight as stored, which the caller casts to the fast dtype.
template <class Small>
LOOKAHEAD_MATH_FN float compact_sync_element(float fast, uint16_t& high, int8_t& residual,
                                             const TwoSidedLerp<float, Small>& lerp) {
  return store_compact_slow(lerp(decode_bf16_int8(high, residual), fast), high, residual);
}

// [NOTE: compact momentum sync] The momentum sync (see [NOTE: momentum sync] in csrc/element_math.h)
// of a slow weight kept as bf16+int8, in float32: s = decode(high, residual); the momentum sync of
// (fast, s, m), its new momentum rounded as its storage (float32 or bfloat16) rounds it, through
// `round`; (high, residual) <- encode(s'). `momentum` holds m on entry and the new, rounded momentum
// on return. Returns decode(high, residual), the slow weight as stored, which the caller casts to
// the fast dtype. With mu = 0 it is the compact sync, as the momentum sync is the sync.
template <class Math, class Round>
LOOKAHEAD_MATH_FN float compact_momentum_sync_element(float fast, uint16_t& high, int8_t& residual, float& momentum,
                                                      const Math& math, Round round) {
  float state[2] = {decode_bf16_int8(high, residual), momentum};
  math(fast, state, round);
  momentum = state[1];
  return store_compact_slow(state[0], high, residual);
}

// [NOTE: int8 momentum sync] The momentum sync (see [NOTE: momentum sync] in csrc/element_math.h) with
// the outer momentum kept as int8 blocks (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py),
// in float32, per block of kInt8Block elements in memory order:
//   m_old = q * scale                                    (the stored momentum, decoded)
//   m     = mu m_old + (f - s)                           (int8_momentum_of)
//   (q', scale') = encode(m over the block)              (int8_block_scale, then int8_code)
//   t     = f + mu (nesterov ? q' scale' : m_old);  s <- lerp(s, t, alpha);  fast <- s
// Two passes over a block, since its scale needs the new momentum of every element before any is
// encoded. Every operation is one float32 IEEE operation, none fused (the oracle, reference.py's
// int8_momentum_sync_, rounds each product), so a kernel must not contract a product and a sum into
// an FMA: the math below spells each operation out (ieee_mul and the others). A block whose new
// momentum is not finite gets scale NaN and codes 0: its momentum decodes to NaN from then on, and
// so does every slow weight that reads it.
constexpr int kInt8Block = 256;
constexpr float kInt8CodeLimit = 127.0f;
constexpr uint32_t kFloatInfinityBits = 0x7F800000u;
constexpr uint32_t kFloatNanBits = 0x7FC00000u;
constexpr uint32_t kInt8FlushBelowBits = 0x0F800000u;  // 2^-96: a smaller block largest magnitude is stored as 0

// One float32 IEEE operation each, never contracted with another: on the device the _rn intrinsics,
// which the compiler does not fuse into an FMA; on the host plain operators (the CPU kernel is
// compiled without FMA, see csrc/cpu/int8_momentum_cpu.cpp).
LOOKAHEAD_MATH_FN float ieee_add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
LOOKAHEAD_MATH_FN float ieee_sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
LOOKAHEAD_MATH_FN float ieee_mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
LOOKAHEAD_MATH_FN float ieee_div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// TwoSidedLerp's formula in those operations.
template <class Small>
LOOKAHEAD_MATH_FN float ieee_lerp(const TwoSidedLerp<float, Small>& lerp, float s, float f) {
  return lerp.small ? ieee_add(s, ieee_mul(lerp.w, ieee_sub(f, s)))
                    : ieee_sub(f, ieee_mul(ieee_sub(f, s), lerp.one_minus_w));
}

// |x|'s bits: ordered as the magnitudes are, and >= kFloatInfinityBits for an x that is not finite,
// so one integer max over a block gives both its largest magnitude and whether all of it is finite.
LOOKAHEAD_MATH_FN uint32_t magnitude_bits(float x) {
  uint32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  return bits & 0x7FFFFFFFu;
}

// The new momentum of one element: mu m_old + (f - s), m_old decoded from its code and block scale.
LOOKAHEAD_MATH_FN float int8_momentum_of(float fast, float slow, int8_t code, float scale, float mu) {
  return ieee_add(ieee_mul(mu, ieee_mul(static_cast<float>(code), scale)), ieee_sub(fast, slow));
}

struct Int8BlockScale {
  float scale;  // what the block stores: a / 127, 0 (flushed) or NaN (not finite)
  float inv;    // 127 / a, or 0 where the codes are all 0
  bool kept;    // the codes are quantised (otherwise every code is 0)
};

// The scale of a block whose max magnitude_bits is `largest_bits`.
LOOKAHEAD_MATH_FN Int8BlockScale int8_block_scale(uint32_t largest_bits) {
  if (largest_bits >= kFloatInfinityBits) return {float_of_bits(kFloatNanBits), 0.0f, false};
  if (largest_bits < kInt8FlushBelowBits) return {0.0f, 0.0f, false};
  const float largest = float_of_bits(largest_bits);
  return {ieee_div(largest, kInt8CodeLimit), ieee_div(kInt8CodeLimit, largest), true};
}

// The code of x in a kept block, as a float: round half to even of x inv, clamped to [-127, 127].
// Adding and subtracting 1.5 2^23 rounds a float32 of magnitude below 2^22 to an integer, to nearest
// even, as rint does; unlike rint it vectorises without SSE4.1. |x inv| <= 127.5 here. x must be
// finite (a block that is not has inv 0 and its momenta replaced by 0: see the callers).
LOOKAHEAD_MATH_FN float int8_code(float x, float inv) {
  constexpr float kRoundingShift = 12582912.0f;  // 1.5 2^23
  const float q = ieee_sub(ieee_add(ieee_mul(x, inv), kRoundingShift), kRoundingShift);
  const float low = q < -kInt8CodeLimit ? -kInt8CodeLimit : q;
  return low > kInt8CodeLimit ? kInt8CodeLimit : low;
}

// The second pass on one element: its code from its new momentum, then the target and the lerp.
// Returns the new slow weight; `code` holds the old code on entry and the new one on return.
template <class Small, class Nesterov>
struct Int8MomentumSyncMath {
  TwoSidedLerp<float, Small> lerp;
  float mu;
  Nesterov nesterov;
  LOOKAHEAD_MATH_FN float operator()(float fast, float slow, float momentum, int8_t& code, float old_scale,
                                     const Int8BlockScale& block) const {
    const float old_momentum = ieee_mul(static_cast<float>(code), old_scale);
    const float q = int8_code(momentum, block.inv);
    code = static_cast<int8_t>(static_cast<int32_t>(q));
    const float target = ieee_add(fast, ieee_mul(mu, nesterov ? ieee_mul(q, block.scale) : old_momentum));
    return ieee_lerp(lerp, slow, target);
  }
};

// [NOTE: compact int8 momentum sync] The int8 momentum sync of slow weights kept as bf16+int8
// (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py): s = decode(high, residual),
// exact; the int8 momentum sync's two passes on s, unchanged; then (high, residual) <- encode(s')
// (store_compact_slow) and fast <- decode(high, residual) cast to the fast dtype. The codec is exact
// float32 arithmetic, so this is the int8 momentum sync of the decoded slow weights followed by the
// encoding, bit for bit on every device: what the oracle computes (reference.py).

}  // namespace lookahead_fused
