"""Lookahead's constructor options: checked into the optimizer's defaults, and shown in its repr."""

from __future__ import annotations

import torch

from . import backends, contract, first_moment
from .adaptive_alpha import ADAPTIVE
from .slow_state import ALPHA_KEY


def check_nesterov(nesterov, outer_momentum) -> bool:
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
    if nesterov and not outer_momentum:
        raise ValueError("nesterov=True needs outer_momentum > 0 (as torch.optim.SGD's nesterov needs momentum)")
    return nesterov


def check_slow_dtype(slow_dtype):
    if slow_dtype not in (None, torch.float32):
        raise ValueError(
            f"slow_dtype must be None (the param's dtype) or torch.float32 (fp32 slow weights for "
            f"float16/bfloat16 params), got {slow_dtype!r}"
        )
    return slow_dtype


def checked_defaults(
    *, k, alpha, pullback_momentum, momentum_key, outer_momentum, nesterov, slow_dtype, backend, capturable
) -> dict:
    """The defaults of a Lookahead with these options, each checked; `backend` must be available."""
    defaults = {
        "k": contract.check_k(k),
        ALPHA_KEY: ADAPTIVE if alpha == ADAPTIVE else contract.check_alpha(alpha),
        "pullback_momentum": first_moment.check_mode(pullback_momentum),
        "momentum_key": momentum_key,
        "outer_momentum": contract.check_mu(outer_momentum),
        "nesterov": check_nesterov(nesterov, outer_momentum),
        "slow_dtype": check_slow_dtype(slow_dtype),
        "backend": backends.check_backend_name(backend),
        "capturable": bool(capturable),
    }
    backends.require_available(backend)
    if alpha == ADAPTIVE and defaults["outer_momentum"]:
        raise ValueError(
            "alpha='adaptive' chooses the alpha of the plain interpolation (the paper's section 3.1); it is not "
            "defined with outer_momentum > 0: pass a number alpha, or outer_momentum=0"
        )
    return defaults


def describe(defaults: dict, optimizer) -> str:
    """Lookahead's repr: its options and the inner optimizer's repr."""
    return (
        f"Lookahead(k={defaults['k']}, alpha={defaults[ALPHA_KEY]}, "
        f"pullback_momentum={defaults['pullback_momentum']!r}, slow_dtype={defaults['slow_dtype']}, "
        f"backend={defaults['backend']!r}, capturable={defaults['capturable']},\n"
        f"  optimizer={optimizer!r})"
    )
