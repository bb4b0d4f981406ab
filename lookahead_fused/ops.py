"""Public ops: the Lookahead synchronisation and the fast<->slow swap over lists of tensors.

    lookahead_sync_(fast, slow, alpha)   slow <- lerp(slow, fast, alpha); fast <- slow
    swap_(a, b)                          exchange the contents of a[i] and b[i]

Both validate the whole call first (contract.py), then pick one backend per device (backends/),
so a rejected call writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import backends, contract
from .backends import BACKEND_NAMES, available_backends, unavailable_backends  # noqa: F401  (public)


def _plan_by_device(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor], backend: str):
    """[(backend module, firsts, seconds)] per device, every backend resolved before any runs."""
    per_device: dict[torch.device, tuple[list, list]] = {}
    for x, y in zip(first, second):
        xs, ys = per_device.setdefault(x.device, ([], []))
        xs.append(x)
        ys.append(y)
    return [(backends.resolve(backend, device.type), xs, ys) for device, (xs, ys) in per_device.items()]


@torch.no_grad()
def lookahead_sync_(
    fast: Sequence[torch.Tensor], slow: Sequence[torch.Tensor], alpha: float, *, backend: str = "auto"
) -> None:
    """For every pair: slow <- lerp(slow, fast, alpha) in opmath; fast <- slow (cast to fast's dtype).

    See ../shared/DESIGN.md, "The op contract". Raises TypeError/ValueError naming the pair and the
    problem, or BackendUnavailable for an explicit backend that cannot run here, before writing.
    """
    alpha = contract.check_sync_args(fast, slow, alpha)
    run_checked_sync_(fast, slow, alpha, backend=backend)


@torch.no_grad()
def run_checked_sync_(fast, slow, alpha: float, *, backend: str = "auto") -> None:
    """lookahead_sync_ for arguments that contract.check_sync_args has already accepted."""
    backends.check_backend_name(backend)
    for module, fasts, slows in _plan_by_device(fast, slow, backend):
        module.sync_(fasts, slows, alpha)


@torch.no_grad()
def swap_(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], *, backend: str = "auto") -> None:
    """Exchange the contents of a[i] and b[i] in place (same dtype, shape, strides, device)."""
    backends.check_backend_name(backend)
    contract.check_swap_args(a, b)
    for module, xs, ys in _plan_by_device(a, b, backend):
        module.swap_(xs, ys)
