"""The step-gated updates (ops.lookahead_sync_on_step_) for the backends without a gated kernel
("reference", "foreach"): every pair is computed and then kept or dropped by a device-side
condition, so no host read decides it. It reads and writes every tensor on every step, so it is
the fallback; the "cpu", "cuda" and "triton" kernels skip the work off the sync steps.
"""

from __future__ import annotations

import torch

from ..contract import opmath_dtype


def masked_sync_on_step_(fast, slow, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
    syncs = step.reshape(()) % k == 0
    for f, s in zip(fast, slow):
        opmath = opmath_dtype(s.dtype)
        w = alpha.reshape(()).to(opmath)
        so, fo = s.to(opmath), f.to(opmath)
        # [NOTE: two-sided lerp] the contract's formula, as torch.lerp evaluates it
        lerped = torch.where(w.abs() < 0.5, so + w * (fo - so), fo - (fo - so) * (1 - w))
        s.copy_(torch.where(syncs, lerped.to(s.dtype), s))
        f.copy_(torch.where(syncs, s.to(f.dtype), f))


def masked_momentum_sync_on_step_(fast, slow, momentum, alpha: torch.Tensor, step: torch.Tensor, k: int, mu: float,
                                  nesterov: bool) -> None:
    """The momentum sync ([NOTE: momentum sync] in reference.py), kept or dropped by the gate."""
    syncs = step.reshape(()) % k == 0
    for f, s, m in zip(fast, slow, momentum):
        opmath = opmath_dtype(s.dtype)
        w = alpha.reshape(()).to(opmath)
        so, fo, mo = s.to(opmath), f.to(opmath), m.to(opmath)
        m_new = (mu * mo + (fo - so)).to(m.dtype)
        target = fo + mu * (m_new.to(opmath) if nesterov else mo)
        lerped = torch.where(w.abs() < 0.5, so + w * (target - so), target - (target - so) * (1 - w))
        s.copy_(torch.where(syncs, lerped.to(s.dtype), s))
        m.copy_(torch.where(syncs, m_new, m))
        f.copy_(torch.where(syncs, s.to(f.dtype), f))
