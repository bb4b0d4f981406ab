"""Lookahead's per-param state: the keys it uses and how its tensors follow the params."""

from __future__ import annotations

import torch

from . import contract

ALPHA_KEY = "lookahead_alpha"  # a param group may carry its own alpha under this key
SLOW_PARAM = "slow_param"  # the slow weight of a param (optimizer.state[p])
SLOW_MOMENTUM = "slow_momentum"  # the slow copy of its first-moment buffer, for "pullback"


def copy_as(tensor: torch.Tensor, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor holding `tensor`'s values in `dtype`, with the device and memory order of `like`."""
    return torch.empty_like(like, dtype=dtype, memory_format=torch.preserve_format).copy_(tensor)


def rehome(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`tensor` itself, or a copy moved to `like`'s device and memory order (after model.to(), a load)."""
    if tensor.device == like.device and contract.same_layout(tensor, like):
        return tensor
    return copy_as(tensor, like, tensor.dtype)
