"""The inner optimizer's first moment (its momentum buffer or exp_avg: not the outer momentum on the
slow weights): which state entry holds it, for pullback_momentum="reset"/"pullback",
named by the user (momentum_key=), or known for torch's optimizers and common third-party ones."""

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
    (torch.optim.Adamax, "exp_avg"),
    (torch.optim.RMSprop, "momentum_buffer"),  # only with momentum > 0; else nothing to reset
)

# Third-party optimizers, by (top-level package, class name), so neither package is imported here.
# Keys read from their sources (timm 1.0, pytorch_optimizer 3.9/4.1), 2026-11-24. MADGRAD is left
# out on purpose: its "s" is a dual-averaging sum, not a momentum to pull back.
_THIRD_PARTY_FIRST_MOMENT_KEY = {
    **{("timm", name): "exp_avg" for name in (
        "AdamP", "Lamb", "Lion", "Adan", "LaProp", "NAdamW", "AdaBelief", "Mars", "Adopt", "AdamWLegacy",
        "NvNovoGrad", "RAdamLegacy", "NAdamLegacy")},
    **{("timm", name): "momentum_buffer" for name in ("Lars", "RMSpropTF", "SGDW")},
    ("timm", "SGDP"): "momentum",
    **{("pytorch_optimizer", name): "exp_avg" for name in (
        "AdamP", "Lamb", "Lion", "Adan", "AdaBelief", "Ranger", "ADOPT", "RAdam", "DiffGrad")},
    **{("pytorch_optimizer", name): "momentum_buffer" for name in ("LARS", "SGDW")},
    ("pytorch_optimizer", "SGDP"): "momentum",
}  # fmt: skip


def known_key(optimizer: torch.optim.Optimizer) -> str | None:
    """The first-moment state key this package knows for `optimizer`'s class, or None."""
    for cls, key in _FIRST_MOMENT_KEY:
        if isinstance(optimizer, cls):
            return key
    for cls in type(optimizer).__mro__:
        key = _THIRD_PARTY_FIRST_MOMENT_KEY.get((cls.__module__.split(".")[0], cls.__name__))
        if key is not None:
            return key
    return None


def check_mode(mode) -> str:
    if mode not in PULLBACK_MODES:
        raise ValueError(f"pullback_momentum must be one of {', '.join(map(repr, PULLBACK_MODES))}, got {mode!r}")
    return mode


def first_moment_key(optimizer: torch.optim.Optimizer, mode: str, momentum_key: str | None = None) -> str | None:
    """The state key of the first-moment buffer (`momentum_key` if given), or None when mode is
    "none". Raises when it is neither given nor known."""
    if momentum_key is not None and not isinstance(momentum_key, str):
        raise TypeError(f"momentum_key must be a str (a state key of the inner optimizer) or None, got {momentum_key!r}")
    if mode == "none":
        return None
    key = momentum_key or known_key(optimizer)
    if key is None:
        known = ", ".join(cls.__name__ for cls, _ in _FIRST_MOMENT_KEY)
        raise ValueError(
            f"pullback_momentum={mode!r} needs the state key of the inner optimizer's first-moment buffer; "
            f"{type(optimizer).__name__} is not one this package knows (torch's {known}, and timm's and "
            "pytorch_optimizer's common ones). Pass momentum_key='<its key>' (e.g. 'exp_avg'), or use "
            "pullback_momentum='none'."
        )
    return key


def check_group_keeps_first_moment(optimizer: torch.optim.Optimizer, group: dict, mode: str, where: str) -> None:
    """SGD keeps no momentum buffer when momentum is 0, so there would be nothing to reset or pull back."""
    if mode != "none" and isinstance(optimizer, torch.optim.SGD):
        momentum = group.get("momentum", optimizer.defaults.get("momentum", 0))
        if not momentum:
            raise ValueError(
                f"pullback_momentum={mode!r}: {where} uses SGD with momentum={momentum}, which keeps no "
                "momentum buffer; give it momentum > 0 or use pullback_momentum='none'"
            )
