"""The "foreach" backend: torch._foreach_lerp_ then torch._foreach_copy_, grouped by device and
dtype pair. This is what the best existing ports do; it moves 20 % more bytes than one fused pass."""

from __future__ import annotations

import torch

from . import group_pairs

# Swapping (for slow_weights()) is not on the hot path: one tensor at a time bounds the extra memory.
from .reference import swap_  # noqa: F401
from .step_gate import masked_sync_on_step_ as sync_on_step_  # noqa: F401  (no gated kernel: the fallback)


def sync_(fast: list[torch.Tensor], slow: list[torch.Tensor], alpha: float) -> None:
    for fasts, slows in group_pairs(fast, slow):
        if fasts[0].dtype == slows[0].dtype:
            ends = fasts
        else:  # float16/bfloat16 fast with float32 slow: widen (exact) so lerp sees one dtype
            ends = [f.to(slows[0].dtype) for f in fasts]
        torch._foreach_lerp_(slows, ends, alpha)
        torch._foreach_copy_(fasts, slows)
