// AdamW's step on one element, shared by the CPU kernel (cpu/sync_cpu.cpp) and the CUDA kernel
// (cuda/table_kernel.cuh), so both compute the same thing by construction; the sync that may follow
// it is element_math.h. No torch headers.
//
// [NOTE: AdamW hyper table] The scalars of a fused AdamW step are a float64 table in the kernel's
// memory, one row per param group (or per group and step count, when params of a group have taken
// different numbers of steps), and an int64 row index per entry: the host writes it before the
// launch (lookahead_fused/adamw.py), or, with capturable=True, device ops do, so a captured graph
// reads the new lr, step and sync flag on every replay. The rows are checked on the host before a
// CPU launch (contract.cpp); for a device launch the writer is trusted (reading them would
// synchronise). `step` is the count after this step.
// The bias corrections are derived from the row once per chunk, in float64, as torch derives them
// on the host; the per-element math runs in the opmath type (float for 16-bit params), as torch's
// fused AdamW does, in the order of torch's single-tensor AdamW (decoupled weight decay first).
#pragma once

#include <cmath>
#include <cstdint>

#include "element_math.h"
#include "table.h"

namespace lookahead_fused {

// The columns of a row, in order, with the names Python gives them (contract.ADAMW_COLUMNS, which a
// test compares with build_info()'s "adamw_columns"); maximize is 1 to ascend (torch's
// maximize=True), sync is 1 on a sync step.
#define LOOKAHEAD_ADAMW_COLUMNS(X) \
  X(kLr, "lr")                     \
  X(kBeta1, "beta1")               \
  X(kBeta2, "beta2")               \
  X(kEps, "eps")                   \
  X(kWeightDecay, "weight_decay")  \
  X(kStep, "step")                 \
  X(kAlpha, "alpha")               \
  X(kSyncFlag, "sync")             \
  X(kMaximize, "maximize")

enum AdamWColumn : int64_t {
#define LOOKAHEAD_COLUMN_TOKEN(token, name) token,
  LOOKAHEAD_ADAMW_COLUMNS(LOOKAHEAD_COLUMN_TOKEN)
#undef LOOKAHEAD_COLUMN_TOKEN
  kAdamWColumns
};

// One row, resolved for the elements of an entry, in the opmath type T.
template <typename T>
struct AdamWConstants {
  T decay;                      // 1 - lr * weight_decay
  // exp_avg <- lerp(exp_avg, grad, w1 = 1 - beta1), two-sided like torch.lerp: m + w1 (g - m) for
  // w1 < 0.5, else g - (g - m)(1 - w1), which is g + beta1 (m - g) exactly; so both are from + w (to -
  // from) with (from, to, w) = (m, g, w1) or (g, m, beta1), picked by selects the vectoriser keeps
  // (a branch between two formulas left the loop scalar: "control flow in loop")
  T m_weight;
  bool small_w1;
  T beta2, one_minus_beta2;
  T eps, step_size, bc2_sqrt;   // lr / (1 - beta1^step), sqrt(1 - beta2^step)
  T grad_sign;                  // -1 with maximize
  double alpha;                 // the sync's, when `syncs`
  bool syncs;

  LOOKAHEAD_MATH_FN explicit AdamWConstants(const double* row) {
    const double beta1 = row[kBeta1], beta2_d = row[kBeta2], step = row[kStep];
    decay = T(1.0 - row[kLr] * row[kWeightDecay]);
    small_w1 = 1.0 - beta1 < 0.5;
    m_weight = small_w1 ? T(1.0 - beta1) : T(beta1);
    beta2 = T(beta2_d);
    one_minus_beta2 = T(1.0 - beta2_d);
    eps = T(row[kEps]);
    step_size = T(row[kLr] / (1.0 - pow(beta1, step)));
    bc2_sqrt = T(sqrt(1.0 - pow(beta2_d, step)));
    grad_sign = row[kMaximize] != 0.0 ? T(-1) : T(1);
    alpha = row[kAlpha];
    syncs = row[kSyncFlag] != 0.0;
  }
};

// The new param (not yet rounded) from param p and grad g; m and v are updated and rounded to their
// storage by `round`, and the param's update uses the rounded moments (as torch's AdamW, which
// stores them before it reads them).
template <typename T, typename Round>
LOOKAHEAD_MATH_FN T adamw_element(T p, T g, T& m, T& v, const AdamWConstants<T>& c, Round round) {
  using std::sqrt;
  g = g * c.grad_sign;
  const T from = c.small_w1 ? m : g, to = c.small_w1 ? g : m;
  m = round(from + c.m_weight * (to - from));
  v = round(c.beta2 * v + c.one_minus_beta2 * (g * g));
  const T denom = sqrt(v) / c.bc2_sqrt + c.eps;
  return p * c.decay - c.step_size * (m / denom);
}

// [NOTE: AdamW compact step] LookaheadAdamW(slow_dtype="bf16+int8") syncs inside AdamW's pass
// (TableOp::kAdamWCompact, kAdamWCompactMomentum): per element, p' = AdamW's new param
// (adamw_element), rounded to the param's dtype; on a sync row the compact sync of p'
// (see [NOTE: compact sync] in csrc/element_math.h), or with an outer momentum the compact momentum sync
// (see [NOTE: compact momentum sync] in csrc/element_math.h), and the param takes the slow weight as
// stored, cast to its dtype; off a sync row the slow weight and the momentum are neither read nor
// written. So it is, bit for bit, AdamW's step alone followed on the sync rows by the compact sync's op.

// [NOTE: AdamW int8 momentum step] LookaheadAdamW(momentum_dtype="int8") beside float32 or bf16+int8
// slow weights syncs inside AdamW's pass (the op adamw_int8_momentum_step_): per block of kInt8Block
// elements of a param in memory order, p' = AdamW's new param (adamw_element) for each element,
// rounded to the param's dtype and stored with the moments; on a sync row then the int8 momentum sync
// of p' (see [NOTE: int8 momentum sync] in csrc/element_math.h; beside bf16+int8 slow weights
// see [NOTE: compact int8 momentum sync] in csrc/element_math.h) with the row's alpha in float32, and
// the param takes the slow weight as stored, cast to its dtype; off a sync row the slow weights, the
// momentum codes and their scales are neither read nor written. So it is, bit for bit, AdamW's step
// alone followed on the sync rows by the int8 momentum sync's op, as a block's scale needs every new
// param of the block first.

// [NOTE: int8-delta] LookaheadAdamW(slow_dtype="int8-delta") keeps no slow weight: it keeps the
// offset of the slow weight from the param as int8 blocks, codes q beside the param and one float32
// scale per block of 256 of its elements in memory order
// (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py), and writes it again in every step of
// AdamW's pass. Per element, in
// float32, each arithmetic step one IEEE operation (ieee_add and friends, as the int8 momentum sync):
//     s  = p + q scale                   the slow weight, from the stored param and the old offset
//     p' = AdamW's new param (adamw_element), rounded to the param's dtype
//     on a sync step:  s = lerp(s, p', alpha) (two-sided, the float32 alpha);  p' = s rounded
//     d  = s - p'                        the new offset
// and per block (q, scale) <- encode(d), the block's largest |d| known first; p <- p'. A non-finite d
// makes its block's scale NaN and its codes 0 (the block's slow weights are lost, loudly). The
// offset is encoded again every step from the value it decoded to, so a period of k steps adds up to
// k roundings of at most half a code each (docs/design.md, "int8-delta").
// Pass 1 of one element: the new param to store (a value of the param's dtype, as `round` gives it),
// m and v updated and rounded by `round`, `delta` the new offset. Pass 2 is int8_code (element_math.h).
// `syncs` is c.syncs, as a Fixed flag on the CPU (see [NOTE: CPU vectorisation] in csrc/cpu/sync_cpu.cpp).
template <class Small, class Syncs, class Round>
LOOKAHEAD_MATH_FN float int8_delta_element(float p, float g, float& m, float& v, int8_t code, float old_scale,
                                           const AdamWConstants<float>& c, const TwoSidedLerp<float, Small>& lerp,
                                           Syncs syncs, Round round, float& delta) {
  float slow = ieee_add(p, ieee_mul(static_cast<float>(code), old_scale));
  float kept = round(adamw_element(p, g, m, v, c, round));
  if (syncs) {
    slow = ieee_lerp(lerp, slow, kept);
    kept = round(slow);
  }
  delta = ieee_sub(slow, kept);
  return kept;
}

// [NOTE: int8-delta outer momentum] With an outer momentum kept as int8 blocks beside the offsets
// (see [NOTE: int8 momentum sync] in csrc/element_math.h), a sync step's block takes three passes,
// each arithmetic step one IEEE operation:
//     pass 1: s = p + q scale;  p' = AdamW's new param, rounded;  m = mu m_old + (p' - s)
//     (q_m, scale_m) <- encode(m over the block)
//     pass 2: t = p' + mu (nesterov ? q_m scale_m : m_old);  s = lerp(s, t, alpha);  p' = s rounded;  d = s - p'
//     (q, scale) <- encode(d over the block);  p <- p'
// which is the int8 momentum sync of (p', s) followed by the offset's encoding; off a sync step the
// momentum is neither read nor written. mu and Nesterov are uniform over a call (DeltaMomentumArgs).
struct DeltaMomentumArgs {
  float mu;
  bool nesterov;
};

// How an int8-delta entry keeps its outer momentum: none, int8 blocks (the note above), or float32 or
// bfloat16 values (see [NOTE: int8-delta float momentum] in csrc/adamw.h). contract.h's
// delta_momentum_dtype_of reads it from checked lists.
enum class DeltaMomentumDtype : uint8_t { kNone, kInt8, kF32, kBF16 };

// [NOTE: int8-delta float momentum] With an outer momentum kept in float32 or bfloat16 beside the
// offsets (LookaheadAdamW(slow_dtype="int8-delta", outer_momentum=mu, momentum_dtype=None or
// torch.bfloat16)), a sync step's element, each arithmetic step one IEEE float32 operation:
//     s  = p + q scale;  p' = AdamW's new param, rounded to the param's dtype
//     m' = mu m + (p' - s), rounded to the momentum's dtype;  t = p' + mu (nesterov ? m' : m)
//     s  = lerp(s, t, alpha);  p' = s rounded;  d = s - p'
// and per block (q, scale) <- encode(d); m <- m', p <- p'. It is the momentum sync
// (see [NOTE: momentum sync] in csrc/element_math.h) of (p', s) in IEEE operations followed by the
// offset's encoding, in the two passes per block of the step without momentum; off a sync step the
// momentum is neither read nor written. Each momentum tensor's dtype is its own (float32 or bfloat16).
template <class Small, class Nesterov>
struct DeltaFloatMomentumMath {
  TwoSidedLerp<float, Small> lerp;
  float mu;
  Nesterov nesterov;
  // The new slow weight; `momentum` holds m on entry and m' on return, rounded by `round_momentum`.
  template <class RoundMomentum>
  LOOKAHEAD_MATH_FN float operator()(float kept, float slow, float& momentum, RoundMomentum round_momentum) const {
    const float updated = round_momentum(ieee_add(ieee_mul(mu, momentum), ieee_sub(kept, slow)));
    const float target = ieee_add(kept, ieee_mul(mu, nesterov ? updated : momentum));
    momentum = updated;
    return ieee_lerp(lerp, slow, target);
  }
};

// Pass 1 of one element on a sync step with a float momentum: int8_delta_element's, its sync through
// `math` (DeltaFloatMomentumMath). Returns the new param; `momentum` as math's, `delta` the new offset.
template <class Math, class Round, class RoundMomentum>
LOOKAHEAD_MATH_FN float int8_delta_float_momentum_element(float p, float g, float& m, float& v, int8_t code,
                                                          float old_scale, float& momentum,
                                                          const AdamWConstants<float>& c, const Math& math, Round round,
                                                          RoundMomentum round_momentum, float& delta) {
  const float slow = ieee_add(p, ieee_mul(static_cast<float>(code), old_scale));
  const float kept = round(adamw_element(p, g, m, v, c, round));
  const float synced = math(kept, slow, momentum, round_momentum);
  const float param = round(synced);
  delta = ieee_sub(synced, param);
  return param;
}

// Pass 1 of one element: returns the new momentum, `kept` the new param before the sync and `slow` the
// slow weight decoded.
template <class Round>
LOOKAHEAD_MATH_FN float int8_delta_momentum_of(float p, float g, float& m, float& v, int8_t code, float old_scale,
                                               int8_t momentum_code, float old_momentum_scale, float mu,
                                               const AdamWConstants<float>& c, Round round, float& kept, float& slow) {
  slow = ieee_add(p, ieee_mul(static_cast<float>(code), old_scale));
  kept = round(adamw_element(p, g, m, v, c, round));
  return int8_momentum_of(kept, slow, momentum_code, old_momentum_scale, mu);
}

// Pass 2 of one element: the momentum's new code (from `momentum`, 0 in a block not kept), the sync,
// and the new offset `delta`; returns the new param. `momentum_code` holds the old code on entry.
template <class Math, class Round>
LOOKAHEAD_MATH_FN float int8_delta_momentum_sync(float kept, float slow, float momentum, int8_t& momentum_code,
                                                 float old_momentum_scale, const Int8BlockScale& block,
                                                 const Math& math, Round round, float& delta) {
  const float synced = math(kept, slow, block.kept ? momentum : 0.0f, momentum_code, old_momentum_scale, block);
  const float param = round(synced);
  delta = ieee_sub(synced, param);
  return param;
}

}  // namespace lookahead_fused
