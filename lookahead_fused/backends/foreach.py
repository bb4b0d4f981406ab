"""The "foreach" backend: torch._foreach_lerp_ then torch._foreach_copy_, grouped by device and
dtype pair. This is what the best existing ports do; it moves 20 % more bytes than one fused pass."""

from __future__ import annotations

import sys

import torch

from ..contract import opmath_dtype
from . import group_pairs

# Swapping (for slow_weights()) is not on the hot path: one tensor at a time bounds the extra memory.
# AdamW's fused step: the per-tensor loop (a foreach version would group by hyper row and dtype pair
# and still make several passes; the point of the op is the kernels' one pass).
# The compact sync, the int8 momentum sync and AdamW's int8-delta, compact and int8 momentum steps: their
# encodings have no foreach op, so the per-tensor loop.
from .reference import adamw_compact_step_, adamw_delta_step_, adamw_int8_momentum_step_, adamw_step_  # noqa: F401
from .reference import compact_momentum_sync_, compact_sync_  # noqa: F401
from .reference import compact_int8_momentum_sync_, int8_momentum_sync_, swap_  # noqa: F401
from .step_gate import masked_compact_int8_momentum_sync_on_step_ as compact_int8_momentum_sync_on_step_  # noqa: F401
from .step_gate import masked_compact_momentum_sync_on_step_ as compact_momentum_sync_on_step_  # noqa: F401
from .step_gate import masked_compact_sync_on_step_ as compact_sync_on_step_  # noqa: F401  (the fallback)
from .step_gate import masked_int8_momentum_sync_on_step_ as int8_momentum_sync_on_step_  # noqa: F401
from .step_gate import masked_momentum_sync_on_step_ as momentum_sync_on_step_  # noqa: F401
from .step_gate import masked_sync_on_step_ as sync_on_step_  # noqa: F401  (no gated kernel: the fallback)


def _written(*lists) -> None:
    """Bump the version of every tensor the op wrote (see [NOTE: versions] in csrc/ops.cpp): on CUDA torch's
    foreach ops leave some as they were (torch 2.11, a sync of lists that hold an empty tensor)."""
    for tensors in lists:
        torch.autograd.graph.increment_version(tensors)  # inference tensors have none: skipped


def sync_(fast: list[torch.Tensor], slow: list[torch.Tensor], alpha: float) -> None:
    for fasts, slows in group_pairs(fast, slow):
        if fasts[0].dtype == slows[0].dtype:
            ends = fasts
        else:  # float16/bfloat16 fast with float32 slow: widen (exact) so lerp sees one dtype
            ends = [f.to(slows[0].dtype) for f in fasts]
        torch._foreach_lerp_(slows, ends, alpha)
        torch._foreach_copy_(fasts, slows)
    _written(fast, slow)


def momentum_sync_(fast, slow, momentum, alpha: float, mu: float, nesterov: bool) -> None:
    """The momentum sync as a user writes it with foreach ops
    (see [NOTE: momentum sync] in csrc/element_math.h): one pass per op, in the opmath of each group (copies for
    16-bit state)."""
    for fasts, slows, moms in group_pairs(fast, slow, momentum):
        opmath = opmath_dtype(slows[0].dtype)
        fo, so, mo = ([t.to(opmath) for t in tensors] for tensors in (fasts, slows, moms))  # no copy if opmath
        m_new = torch._foreach_add(torch._foreach_mul(mo, mu), torch._foreach_sub(fo, so))
        if moms[0].dtype != opmath:  # rounded as stored
            m_new = [t.to(moms[0].dtype).to(opmath) for t in m_new]
        target = torch._foreach_add(fo, torch._foreach_mul(m_new if nesterov else mo, mu))
        torch._foreach_copy_(slows, torch._foreach_lerp(so, target, alpha))
        torch._foreach_copy_(moms, m_new)
        torch._foreach_copy_(fasts, slows)
    _written(fast, slow, momentum)


def pseudo_gradient_(fast, slow, out) -> None:
    """out <- fast - slow as a user writes it with foreach ops: a copy (widening 16-bit fast tensors
    beside float32 slow weights, exactly), then a subtraction in place, one pass each; a bfloat16 out
    beside float32 slow weights takes the difference in float32, then a copy."""
    for fasts, slows, outs in group_pairs(fast, slow, out):
        if outs[0].dtype == slows[0].dtype:
            torch._foreach_copy_(outs, fasts)
            torch._foreach_sub_(outs, slows)
        else:
            widened = fasts if fasts[0].dtype == slows[0].dtype else [f.to(slows[0].dtype) for f in fasts]
            torch._foreach_copy_(outs, torch._foreach_sub(widened, slows))
    _written(out)


def load():
    """This module is the backend (see [NOTE: backend protocol] in lookahead_fused/backends/__init__.py)."""
    return sys.modules[__name__]
