"""The "reference" backend: a per-tensor Python loop, the pure-Python version benchmarks compare
against, and the float64 evaluation of the contract that the tests use as their oracle."""

from __future__ import annotations

import torch

from .step_gate import masked_sync_on_step_ as sync_on_step_  # noqa: F401  (no gated kernel: the fallback)


def sync_(fast: list[torch.Tensor], slow: list[torch.Tensor], alpha: float) -> None:
    for f, s in zip(fast, slow):
        # torch.lerp computes in opmath (float32 for half types) with the two-sided formula of the
        # contract; a float16/bfloat16 fast tensor is widened exactly when slow is float32.
        s.lerp_(f if f.dtype == s.dtype else f.to(s.dtype), alpha)
        f.copy_(s)


def swap_(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b):
        held = x.clone()  # one tensor at a time: never a full copy of the model
        x.copy_(y)
        y.copy_(held)


def sync_float64(fast: torch.Tensor, slow: torch.Tensor, alpha: float) -> torch.Tensor:
    """The new slow value evaluated in float64 (not rounded): what every backend approximates."""
    f, s = fast.double(), slow.double()
    if abs(alpha) < 0.5:
        return s + alpha * (f - s)
    return f - (f - s) * (1.0 - alpha)
