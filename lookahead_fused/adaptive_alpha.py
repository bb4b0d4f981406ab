"""Adaptive alpha (paper, section 3.1): the alpha that minimises a quadratic model of the loss on the
line from the slow weights theta_0 to the fast ones theta_k.

    alpha* = (theta_0 - theta*)^T A (theta_0 - theta_k) / ((theta_0 - theta_k)^T A (theta_0 - theta_k))

with A a diagonal curvature estimate and theta* a Newton step from theta_k, theta_k - A^-1 g, which
turns it into alpha* = 1 + d.g / (d^T A d), d = theta_0 - theta_k. It is clipped to the user's bounds.

Curvature: a user function param -> tensor, or for Adam-family inner optimizers their bias-corrected
second-moment estimate (the empirical Fisher diagonal, a curvature proxy for likelihood losses).
Gradient at theta_k: a user function param -> tensor, or param.grad, which after the k-th inner step
holds the gradient that step used (at theta_{k-1}): an approximation, exact only when supplied.
The sums are formed on the device; the one host read per sync is the chosen alpha itself.
"""

from __future__ import annotations

import math

import torch

from . import contract

ADAPTIVE = "adaptive"
_ADAM_FAMILY = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam)


def check_alpha_or_adaptive(alpha, adaptive_enabled: bool, *, where: str):
    """A number in [0, 1], or "adaptive" where the optimizer was built with alpha="adaptive" (its
    curvature and gradient functions are code: a group or a checkpoint cannot bring them)."""
    if isinstance(alpha, str) and alpha == ADAPTIVE:
        if not adaptive_enabled:
            raise ValueError(f"{where} is 'adaptive': build the optimizer with alpha='adaptive' to use it")
        return ADAPTIVE
    return contract.check_alpha(alpha, where=where)


def check_bounds(bounds) -> tuple[float, float]:
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"alpha_bounds must be a pair (low, high), got {bounds!r}")
    low = contract.check_alpha(bounds[0], where="alpha_bounds[0]")
    high = contract.check_alpha(bounds[1], where="alpha_bounds[1]")
    if low > high:
        raise ValueError(f"alpha_bounds must have low <= high, got {bounds!r}")
    return low, high


class AdaptiveAlpha:
    def __init__(self, optimizer: torch.optim.Optimizer, bounds=(0.0, 1.0), curvature=None, gradient=None):
        self.optimizer = optimizer
        self.bounds = check_bounds(bounds)
        if curvature is None and not isinstance(optimizer, _ADAM_FAMILY):
            raise ValueError(
                f"alpha='adaptive' needs a curvature estimate: {type(optimizer).__name__} keeps none, so pass "
                "curvature=lambda param: <diagonal curvature tensor> (Adam-family optimizers use their second moment)"
            )
        for name, fn in (("curvature", curvature), ("gradient", gradient)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a function param -> tensor, got {type(fn).__name__}")
        self.curvature = curvature or self._second_moment
        self.gradient = gradient or (lambda p: p.grad)
        self.last_alpha: float | None = None

    def _second_moment(self, p: torch.Tensor):
        state = self.optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            return None
        beta2 = next(g["betas"][1] for g in self.optimizer.param_groups if any(q is p for q in g["params"]))
        return state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))

    @torch.no_grad()
    def choose(self, fast, slow) -> float:
        """alpha* for the params `fast` (theta_k) and their slow weights (theta_0), clipped."""
        numerators, denominators = [], []
        for p, s in zip(fast, slow):
            g, a = self.gradient(p), self.curvature(p)
            if g is None or a is None:
                continue
            wide = torch.promote_types(p.dtype, torch.float32)
            d = s.to(wide) - p.to(wide)
            numerators.append(torch.sum(d * g.to(wide)))
            denominators.append(torch.sum(d * a.to(wide) * d))
        low, high = self.bounds
        if not numerators:
            alpha = high
        else:
            device = numerators[0].device
            numerator = torch.stack([n.to(device) for n in numerators]).sum()
            denominator = torch.stack([n.to(device) for n in denominators]).sum()
            alpha, denominator = torch.stack([1 + numerator / denominator, denominator]).tolist()  # one host read
            if not math.isfinite(alpha) or denominator <= 0:
                alpha = high  # no curvature along d (or theta_0 == theta_k): take the full step allowed
        self.last_alpha = min(max(alpha, low), high)
        return self.last_alpha
