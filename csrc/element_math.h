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

// [NOTE: compact sync] The sync of a slow weight kept as bf16+int8
// (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py):
// s = decode(high, residual); s' = lerp(s, fast, alpha) in float32; (high, residual) <- encode(s').
// Returns decode(high, residual), the slow weight as stored, which the caller casts to the fast dtype.
template <class Small>
LOOKAHEAD_MATH_FN float compact_sync_element(float fast, uint16_t& high, int8_t& residual,
                                             const TwoSidedLerp<float, Small>& lerp) {
  const Bf16Int8 code = encode_bf16_int8(lerp(decode_bf16_int8(high, residual), fast));
  high = code.high;
  residual = code.residual;
  return decode_bf16_int8(code.high, code.residual);
}

}  // namespace lookahead_fused
