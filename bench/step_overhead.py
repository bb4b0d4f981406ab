"""Whole-step overhead: k inner AdamW steps with and without Lookahead on the same parameter set.

The physical floor of the overhead is the sync's bytes over the bytes of k inner steps: AdamW
reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg, exp_avg_sq (7 x 4 bytes per fp32
param), the sync moves 16, so with k = 5 the floor is 16 / (5 x 28) = 11.4 %.
"""

from __future__ import annotations

import itertools
import math

import torch

from lookahead_fused import Lookahead
from timing import paired_median_seconds

ADAMW_BYTES_PER_PARAM = 7 * 4
SYNC_BYTES_PER_PARAM = 16


def _params(shapes, device):
    params = [torch.nn.Parameter(torch.randn(shape, device=device)) for shape in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def inner_variants(device: torch.device) -> dict[str, dict]:
    variants = {"AdamW foreach": {"foreach": True}}
    try:
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1, device=device))], fused=True)
        variants["AdamW fused"] = {"fused": True}
    except (RuntimeError, ValueError):
        pass
    return variants


def measure(shapes, device: torch.device, k: int, reps: int) -> list[dict]:
    numel = sum(math.prod(s) for s in shapes)
    floor_pct = 100 * SYNC_BYTES_PER_PARAM / (k * ADAMW_BYTES_PER_PARAM)
    rows = []
    # "capturable": the step-gated sync runs every step (what CUDA graphs and torch.compile run)
    for (name, options), mode in itertools.product(inner_variants(device).items(), ("host branch", "capturable")):
        capturable = mode == "capturable"
        inner_options = dict(options, capturable=True) if capturable and device.type == "cuda" else options
        plain_params, wrapped_params = _params(shapes, device), _params(shapes, device)
        plain = torch.optim.AdamW(plain_params, lr=1e-4, **inner_options)
        wrapped = Lookahead(torch.optim.AdamW(wrapped_params, lr=1e-4, **inner_options), k=k, capturable=capturable)

        def k_steps(opt):
            for _ in range(k):
                opt.step()

        t_plain, t_wrapped = paired_median_seconds(
            lambda opt=plain: k_steps(opt), lambda opt=wrapped: k_steps(opt), device, reps
        )
        rows.append(
            {
                "inner": name,
                "lookahead": mode,
                "params": numel,
                "k": k,
                "k_steps_ms": 1e3 * t_plain,
                "k_steps_with_lookahead_ms": 1e3 * t_wrapped,
                "overhead_pct": 100 * (t_wrapped - t_plain) / t_plain,
                "floor_pct": floor_pct,
            }
        )
    return rows
