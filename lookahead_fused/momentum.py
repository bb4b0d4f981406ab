"""Which state entry holds an inner optimizer's first moment, for pullback_momentum="reset"/"pullback"."""

from __future__ import annotations

import torch

PULLBACK_MODES = ("none", "reset", "pullback")

# Subclasses match too (isinstance), so a user's AdamW variant keeps working.
_FIRST_MOMENT_KEY = (
    (torch.optim.SGD, "momentum_buffer"),
    (torch.optim.Adam, "exp_avg"),
    (torch.optim.AdamW, "exp_avg"),
    (torch.optim.NAdam, "exp_avg"),
    (torch.optim.RAdam, "exp_avg"),
)


def check_mode(mode) -> str:
    if mode not in PULLBACK_MODES:
        raise ValueError(f"pullback_momentum must be one of {', '.join(map(repr, PULLBACK_MODES))}, got {mode!r}")
    return mode


def first_moment_key(optimizer: torch.optim.Optimizer, mode: str) -> str | None:
    """The state key of the first-moment buffer, or None when mode is "none". Raises when unknown."""
    if mode == "none":
        return None
    for cls, key in _FIRST_MOMENT_KEY:
        if isinstance(optimizer, cls):
            return key
    known = ", ".join(cls.__name__ for cls, _ in _FIRST_MOMENT_KEY)
    raise ValueError(
        f"pullback_momentum={mode!r} needs an inner optimizer with a known first-moment buffer ({known}); "
        f"{type(optimizer).__name__} is not one of them. Use pullback_momentum='none'."
    )


def check_group_keeps_first_moment(optimizer: torch.optim.Optimizer, group: dict, mode: str, where: str) -> None:
    """SGD keeps no momentum buffer when momentum is 0, so there would be nothing to reset or pull back."""
    if mode != "none" and isinstance(optimizer, torch.optim.SGD):
        momentum = group.get("momentum", optimizer.defaults.get("momentum", 0))
        if not momentum:
            raise ValueError(
                f"pullback_momentum={mode!r}: {where} uses SGD with momentum={momentum}, which keeps no "
                "momentum buffer; give it momentum > 0 or use pullback_momentum='none'"
            )
