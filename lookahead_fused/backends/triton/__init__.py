"""The "triton" backend: every op as one Triton launch per dtype pair, for CUDA tensors when the C++
extension is not built, and as a second implementation to check the CUDA kernel. plans.py holds
the tables, the plan cache and the launch loop; elementwise.py the element math both kernels share;
sync.py the sync, momentum sync and swap; adamw.py AdamW's fused step.

[NOTE: Triton plan] A plan per parameter set holds, per dtype pair, a device table of fast and slow
addresses and sizes plus a chunk map (pair index << 40 | chunk index, one program per chunk of
BLOCK elements). It is found again by content (addresses, sizes, dtypes), so steady state uploads
nothing. Triton fixes a pointer's element type at compile time, so each dtype pair is its own
launch, split once more into the pairs that start on 16-byte boundaries and the rest
(see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py).
"""

from __future__ import annotations

import torch

from .. import BackendUnavailable, triton_interpreting
from .adamw import adamw_step_
from .sync import triton_momentum_sync_, triton_momentum_sync_on_step_, triton_swap_, triton_sync_, triton_sync_on_step_


class TritonBackend:
    """Trusts its inputs: lookahead_fused.ops checks the contract in Python first."""

    name = "triton"

    def sync_(self, fast, slow, alpha: float) -> None:
        triton_sync_(list(fast), list(slow), float(alpha))

    def sync_on_step_(self, fast, slow, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
        triton_sync_on_step_(list(fast), list(slow), alpha, step, int(k))

    def swap_(self, first, second) -> None:
        triton_swap_(list(first), list(second))

    def momentum_sync_(self, fast, slow, momentum, alpha: float, mu: float, nesterov: bool) -> None:
        triton_momentum_sync_(list(fast), list(slow), list(momentum), float(alpha), float(mu), bool(nesterov))

    def momentum_sync_on_step_(self, fast, slow, momentum, alpha, step, k: int, mu: float, nesterov: bool) -> None:
        triton_momentum_sync_on_step_(list(fast), list(slow), list(momentum), alpha, step, int(k), float(mu),
                                      bool(nesterov))

    def adamw_step_(self, params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu, nesterov) -> None:
        adamw_step_(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, float(mu), bool(nesterov))


def load() -> TritonBackend:
    if not (torch.cuda.is_available() or triton_interpreting()):
        raise BackendUnavailable("no CUDA GPU is available (TRITON_INTERPRET=1 runs it on the CPU, for tests)")
    return TritonBackend()
