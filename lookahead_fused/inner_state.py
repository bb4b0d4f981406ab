"""The inner optimizer's per-param state, created before its first real step."""

from __future__ import annotations

import torch


@torch.no_grad()
def create_inner_state(optimizer: torch.optim.Optimizer, params: list) -> None:
    """One step of `optimizer` with zero grads and a zero learning rate, so it creates its per-param
    state as its first step would and no param changes; the grads and learning rates are put back."""
    held_grads = [p.grad for p in params]
    held_lrs = [group.get("lr") for group in optimizer.param_groups]
    try:
        for p in params:
            p.grad = torch.zeros_like(p)
        for group, lr in zip(optimizer.param_groups, held_lrs):
            if lr is not None:
                group["lr"] = torch.zeros_like(lr) if isinstance(lr, torch.Tensor) else 0.0
        optimizer.step()
    finally:
        for p, grad in zip(params, held_grads):
            p.grad = grad
        for group, lr in zip(optimizer.param_groups, held_lrs):
            if lr is not None:
                group["lr"] = lr
