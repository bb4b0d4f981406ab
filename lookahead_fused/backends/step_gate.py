"""The step-gated updates (ops.lookahead_sync_on_step_) for the backends without a gated kernel
("reference", "foreach"): every pair is computed and then kept or dropped by a device-side
condition, so no host read decides it. It reads and writes every tensor on every step, so it is
the fallback; the "cpu", "cuda" and "triton" kernels skip the work off the sync steps.
"""

from __future__ import annotations

import torch

from .. import bf16_int8, int8_blocks
from ..contract import opmath_dtype


def two_sided_lerp(s: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The contract's two-sided lerp, as torch.lerp evaluates it, for a tensor w
    (see [NOTE: two-sided lerp] in csrc/element_math.h)."""
    return torch.where(w.abs() < 0.5, s + w * (t - s), t - (t - s) * (1 - w))


def momentum_and_target(fo, so, mo, momentum_dtype, mu: float, nesterov: bool):
    """The momentum sync (see [NOTE: momentum sync] in csrc/element_math.h) in opmath: m' = mu m + (f - s), rounded to
    `momentum_dtype` as storing
    it does, and the target t = f + mu (nesterov ? m' : m) that slow is lerped toward."""
    m_new = (mu * mo + (fo - so)).to(momentum_dtype)
    return m_new, fo + mu * (m_new.to(fo.dtype) if nesterov else mo)


def int8_momentum_values(f, s, codes, scales, alpha: torch.Tensor, mu: float, nesterov: bool):
    """The int8 momentum sync of one tensor (see [NOTE: int8 momentum sync] in csrc/element_math.h), its
    elements in memory order: (new slow, new codes, new scales), each 1-D. The new momentum is encoded
    by int8_blocks' oracle and Nesterov's target reads it decoded."""
    fo, so = int8_blocks.memory_order(f, s).float(), int8_blocks.memory_order(s)
    return _int8_momentum_in_order(fo, so, int8_blocks.memory_order(codes), scales, alpha, mu, nesterov)


def compact_int8_momentum_values(f, high, low, codes, scales, alpha: torch.Tensor, mu: float, nesterov: bool):
    """The compact int8 momentum sync of one tensor (see [NOTE: compact int8 momentum sync] in csrc/element_math.h),
    its elements in memory order: (new high parts, new residuals, new codes, new scales), each 1-D: the int8
    momentum sync of the decoded slow weights, its new slow weights encoded."""
    order = int8_blocks.memory_order
    so = bf16_int8.decode(order(high), order(low))
    new_slow, new_codes, new_scales = _int8_momentum_in_order(
        order(f, high).float(), so, order(codes), scales, alpha, mu, nesterov
    )
    return (*bf16_int8.encode(new_slow), new_codes, new_scales)


def _int8_momentum_in_order(fo, so, codes, scales, alpha: torch.Tensor, mu: float, nesterov: bool):
    """The int8 momentum sync of 1-D float32 fast and slow values and codes in memory order: (new slow,
    new codes, new scales)."""
    m_old = int8_blocks.decode(codes, scales)
    new_codes, new_scales = int8_blocks.encode(mu * m_old + (fo - so))
    target = fo + mu * (int8_blocks.decode(new_codes, new_scales) if nesterov else m_old)
    return two_sided_lerp(so, target, alpha.reshape(()).to(torch.float32)), new_codes, new_scales


def masked_int8_momentum_sync_on_step_(fast, slow, momentum, scales, alpha: torch.Tensor, step: torch.Tensor, k: int,
                                       mu: float, nesterov: bool) -> None:
    """The int8 momentum sync, kept or dropped by the gate."""
    syncs = step.reshape(()) % k == 0
    for f, s, q, sc in zip(fast, slow, momentum, scales):
        new_slow, new_codes, new_scales = int8_momentum_values(f, s, q, sc, alpha, mu, nesterov)
        s.copy_(torch.where(syncs, int8_blocks.from_memory_order(new_slow, s), s))
        q.copy_(torch.where(syncs, int8_blocks.from_memory_order(new_codes, q), q))
        sc.copy_(torch.where(syncs, new_scales, sc))
        f.copy_(torch.where(syncs, s.to(f.dtype), f))


def masked_compact_int8_momentum_sync_on_step_(fast, slow_high, slow_low, momentum, scales, alpha: torch.Tensor,
                                               step: torch.Tensor, k: int, mu: float, nesterov: bool) -> None:
    """The compact int8 momentum sync, kept or dropped by the gate."""
    syncs = step.reshape(()) % k == 0
    for f, high, low, q, sc in zip(fast, slow_high, slow_low, momentum, scales):
        new_high, new_low, new_codes, new_scales = compact_int8_momentum_values(f, high, low, q, sc, alpha, mu,
                                                                                nesterov)  # fmt: skip
        high.copy_(torch.where(syncs, int8_blocks.from_memory_order(new_high, high), high))
        low.copy_(torch.where(syncs, int8_blocks.from_memory_order(new_low, low), low))
        q.copy_(torch.where(syncs, int8_blocks.from_memory_order(new_codes, q), q))
        sc.copy_(torch.where(syncs, new_scales, sc))
        f.copy_(torch.where(syncs, bf16_int8.decode(high, low).to(f.dtype), f))


def masked_sync_on_step_(fast, slow, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
    syncs = step.reshape(()) % k == 0
    for f, s in zip(fast, slow):
        opmath = opmath_dtype(s.dtype)
        lerped = two_sided_lerp(s.to(opmath), f.to(opmath), alpha.reshape(()).to(opmath))
        s.copy_(torch.where(syncs, lerped.to(s.dtype), s))
        f.copy_(torch.where(syncs, s.to(f.dtype), f))


def masked_momentum_sync_on_step_(fast, slow, momentum, alpha: torch.Tensor, step: torch.Tensor, k: int, mu: float,
                                  nesterov: bool) -> None:
    """The momentum sync, kept or dropped by the gate."""
    syncs = step.reshape(()) % k == 0
    for f, s, m in zip(fast, slow, momentum):
        opmath = opmath_dtype(s.dtype)
        so = s.to(opmath)
        m_new, target = momentum_and_target(f.to(opmath), so, m.to(opmath), m.dtype, mu, nesterov)
        lerped = two_sided_lerp(so, target, alpha.reshape(()).to(opmath))
        s.copy_(torch.where(syncs, lerped.to(s.dtype), s))
        m.copy_(torch.where(syncs, m_new, m))
        f.copy_(torch.where(syncs, s.to(f.dtype), f))


def compact_momentum_values(f, high, low, m, alpha, mu: float, nesterov: bool):
    """The compact momentum sync of one tensor (see [NOTE: compact momentum sync] in csrc/element_math.h)
    in float32 torch ops: (new high parts, new residuals, new momentum rounded to m's dtype). `alpha`:
    a number or a one-element tensor."""
    so = bf16_int8.decode(high, low)
    m_new, target = momentum_and_target(f.float(), so, m.float(), m.dtype, mu, nesterov)
    w = alpha.reshape(()).to(torch.float32) if isinstance(alpha, torch.Tensor) else alpha
    return (*bf16_int8.encode(torch.lerp(so, target, w)), m_new)


def masked_compact_momentum_sync_on_step_(fast, slow_high, slow_low, momentum, alpha: torch.Tensor, step: torch.Tensor,
                                          k: int, mu: float, nesterov: bool) -> None:  # fmt: skip
    """The compact momentum sync, kept or dropped by the gate."""
    syncs = step.reshape(()) % k == 0
    for f, high, low, m in zip(fast, slow_high, slow_low, momentum):
        new_high, new_low, m_new = compact_momentum_values(f, high, low, m, alpha, mu, nesterov)
        high.copy_(torch.where(syncs, new_high, high))
        low.copy_(torch.where(syncs, new_low, low))
        m.copy_(torch.where(syncs, m_new, m))
        f.copy_(torch.where(syncs, bf16_int8.decode(high, low).to(f.dtype), f))


def masked_compact_sync_on_step_(fast, slow_high, slow_low, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
    """The compact sync (see [NOTE: compact sync] in csrc/element_math.h), kept or dropped by the gate;
    its lerp is torch.lerp's, as the reference backend's ungated compact sync computes it."""
    syncs = step.reshape(()) % k == 0
    w = alpha.reshape(()).to(torch.float32)
    for f, high, low in zip(fast, slow_high, slow_low):
        new_high, new_low = bf16_int8.encode(torch.lerp(bf16_int8.decode(high, low), f.float(), w))
        high.copy_(torch.where(syncs, new_high, high))
        low.copy_(torch.where(syncs, new_low, low))
        f.copy_(torch.where(syncs, bf16_int8.decode(high, low).to(f.dtype), f))
