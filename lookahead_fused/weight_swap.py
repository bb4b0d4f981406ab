"""The slow weights put into the params for a block, and the fast ones put back after it."""

from __future__ import annotations

import contextlib

import torch

from . import ops
from .backends import reference


@contextlib.contextmanager
def slow_weights_in(params: list, slow: list, split_strided, backend: str):
    """Put each slow weight into its param for the block; the fast ones come back on exit, also on an
    exception. Same-dtype pairs are swapped in place: the fused op, and the reference loop for the
    strided pairs that `split_strided` (Sync.split_strided) sets apart. Params with float32 slow
    weights are set from them (rounded) and restored from a copy of the params."""
    swapped = [(p, s) for p, s in zip(params, slow) if s.dtype == p.dtype]
    widened = [(p, s) for p, s in zip(params, slow) if s.dtype != p.dtype]
    (fused_params, fused_slow), (strided_params, strided_slow) = split_strided(
        [p for p, _ in swapped], [s for _, s in swapped]
    )
    with torch.no_grad():
        held_fast = [p.clone() for p, _ in widened]
        ops.swap_(fused_params, fused_slow, backend=backend)
        reference.swap_(strided_params, strided_slow)
        for p, s in widened:
            p.copy_(s)
    try:
        yield
    finally:
        with torch.no_grad():
            ops.swap_(fused_params, fused_slow, backend=backend)
            reference.swap_(strided_params, strided_slow)
            for (p, _), fast in zip(widened, held_fast):
                p.copy_(fast)
