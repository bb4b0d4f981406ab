"""The element math the Triton kernels share (the sync's, AdamW's, the compact and int8 momentum
syncs'): rounding to a storage dtype, the two-sided lerp, and the (momentum) sync of one block of
values."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32, torch.float64: tl.float64}
SMALL_ALPHA, LARGE_ALPHA, ALPHA_ON_DEVICE = 0, 1, 2  # LERP_SIDE: the lerp's side, if the host knows alpha


@triton.jit
def two_sided_lerp(s, t, w, LERP_SIDE: tl.constexpr):
    """lerp(s, t, w) by the two-sided formula (see [NOTE: two-sided lerp] in csrc/element_math.h), its side
    SMALL_ALPHA or LARGE_ALPHA known on the host, else chosen on the device from w."""
    if LERP_SIDE == 0:  # SMALL_ALPHA
        r = s + w * (t - s)
    elif LERP_SIDE == 1:  # LARGE_ALPHA
        r = t - (t - s) * (1.0 - w)
    else:  # alpha is known only on the device
        r = tl.where(tl.abs(w) < 0.5, s + w * (t - s), t - (t - s) * (1.0 - w))
    return r


@triton.jit
def round_to(x, DTYPE: tl.constexpr):
    """x (float32/float64) in DTYPE, rounded to nearest even. bfloat16 goes through integer math, bit
    for bit as c10::BFloat16 rounds (one canonical NaN): Triton's interpreter does not round it so."""
    if DTYPE == tl.bfloat16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        rounded = tl.where(x != x, 0x7FC0, rounded)
        return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE, fp_downcast_rounding="rtne")


@triton.jit
def momentum_target(fo, so, mom, offsets, mask, mu, OPMATH, NESTEROV):
    """The outer momentum's part of a sync: loads m from `mom`, stores m' = mu m + (f - s) rounded to
    `mom`'s own dtype, and returns the target f + mu (nesterov ? m' : m) that slow is lerped toward
    (see [NOTE: momentum sync] in csrc/element_math.h)."""
    mo = tl.load(mom + offsets, mask=mask).to(OPMATH)
    m_new = round_to(mu * mo + (fo - so), mom.dtype.element_ty)
    tl.store(mom + offsets, m_new, mask=mask)
    if NESTEROV:
        target = fo + mu * m_new.to(OPMATH)
    else:
        target = fo + mu * mo
    return target


@triton.jit
def sync_values(fo, so, fast, slow, mom, offsets, mask, w, mu, FAST, SLOW, OPMATH, LERP_SIDE, MOMENTUM, NESTEROV):
    """The sync of fast values `fo` (opmath) with slow values `so`: stores slow, fast and the momentum
    (in `mom`'s own dtype: see [NOTE: entry dtypes] in csrc/table.h)."""
    # The two-sided lerp as in the C++ kernels (see [NOTE: two-sided lerp] in csrc/element_math.h).
    target = fo
    if MOMENTUM:
        target = momentum_target(fo, so, mom, offsets, mask, mu, OPMATH, NESTEROV)
    r = two_sided_lerp(so, target, w, LERP_SIDE)
    new_slow = round_to(r, SLOW)
    tl.store(slow + offsets, new_slow, mask=mask)
    tl.store(fast + offsets, round_to(new_slow.to(OPMATH), FAST), mask=mask)
