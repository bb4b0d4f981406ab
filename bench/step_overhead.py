"""Whole-step overhead: k inner AdamW steps with and without Lookahead on the same parameter set.

Two floors. By bytes: AdamW reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg,
exp_avg_sq (7 x 4 bytes per fp32 param), the sync moves 16, so with k = 5 the floor is
16 / (5 x 28) = 11.4 %; it assumes AdamW runs at the memory limit. By time: the sync's bytes at the
memory bandwidth measured in the same round, over the measured k plain steps; an overhead below it
is a measurement error. Plain, host-branch and capturable steps of every inner AdamW and the two
bandwidth timings run in interleaved rounds (timing.py); each ratio is taken per round.

LookaheadAdamW (AdamW and the sync in one pass) is measured against the fused AdamW (foreach where
there is none): its sync adds only the slow weight's read and write, 8 bytes, so its bytes floor is
8 / (k x 28) = 5.7 % at k = 5. With slow_dtype="int8-delta" (k <= 5) its pass reads and writes the
offset's codes and scales at every step, 2 x (1 + 4 / 256) bytes, k times a period: 10.2 / (5 x 28) =
7.3 % at k = 5. With SNOO's outer momentum (mu 0.9, Nesterov) the exact LookaheadAdamW's sync moves 16
bytes (slow weight and momentum, each read and written): 11.4 % at k = 5; beside int8-delta offsets
an int8 momentum adds 2 x (1 + 4 / 256) bytes at the sync: 12.2 / (5 x 28) = 8.7 %, a bfloat16 one 2 x 2:
14.2 / (5 x 28) = 10.1 %, a float32 one 2 x 4: 18.2 / (5 x 28) = 13.0 %.
"""

from __future__ import annotations

import functools
import math

import torch

from lookahead_fused import Lookahead, LookaheadAdamW, int8_blocks
from timing import per_round, rounds_with_bandwidth, summary

ADAMW_BYTES_PER_PARAM = 7 * 4
SYNC_BYTES_PER_PARAM = 16
FUSED_SYNC_BYTES_PER_PARAM = 8  # LookaheadAdamW: slow's read and write inside AdamW's pass
INT8_DELTA_BYTES_PER_STEP = 2 * int8_blocks.BYTES_PER_ELEMENT  # its offset's read and write, at every step
INT8_DELTA_MODE = "LookaheadAdamW int8-delta"
SNOO_OPTIONS = {"outer_momentum": 0.9, "nesterov": True}
SNOO_MODE = "LookaheadAdamW SNOO"
# SNOO beside int8-delta offsets: mode -> (momentum_dtype, the momentum's bytes read and written at a sync)
SNOO_DELTA_MODES = {
    "LookaheadAdamW SNOO int8-delta + int8 momentum": (int8_blocks.MOMENTUM_DTYPE, INT8_DELTA_BYTES_PER_STEP),
    "LookaheadAdamW SNOO int8-delta + bf16 momentum": (torch.bfloat16, 2 * 2),
    "LookaheadAdamW SNOO int8-delta + fp32 momentum": (None, 2 * 4),
}


def params_with_grads(shapes, device):
    params = [torch.nn.Parameter(torch.randn(shape, device=device)) for shape in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def fastest_adamw(device: torch.device) -> tuple[str, dict]:
    """(name, options) of torch's fastest AdamW here: the fused one, else foreach."""
    return list(inner_variants(device).items())[-1]


def inner_variants(device: torch.device) -> dict[str, dict]:
    variants = {"AdamW foreach": {"foreach": True}}
    try:
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1, device=device))], fused=True)
        variants["AdamW fused"] = {"fused": True}
    except (RuntimeError, ValueError):
        pass
    return variants


def measure(shapes, device: torch.device, k: int, rounds: int | None = None, budget_s: float = 16.0) -> list[dict]:
    numel = sum(math.prod(s) for s in shapes)
    variants = {}
    keys = []

    def k_steps(opt):
        for _ in range(k):
            opt.step()

    for name, options in inner_variants(device).items():
        variants[name] = functools.partial(k_steps, torch.optim.AdamW(params_with_grads(shapes, device), lr=1e-4, **options))
        # "capturable": on a GPU the step-gated sync runs every step (what CUDA graphs replay); on the
        # CPU the sync steps only (see [NOTE: a gate the host can read] in lookahead_fused/optimizer.py)
        for mode in ("host branch", "capturable"):
            capturable = mode == "capturable"
            inner_options = dict(options, capturable=True) if capturable and device.type == "cuda" else options
            wrapped = Lookahead(torch.optim.AdamW(params_with_grads(shapes, device), lr=1e-4, **inner_options), k=k, capturable=capturable)
            variants[f"{name} + Lookahead {mode}"] = functools.partial(k_steps, wrapped)
            keys.append((name, mode))
    baseline = fastest_adamw(device)[0]
    for mode in ("host branch", "capturable"):
        fused_adamw = LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=k, capturable=mode == "capturable")
        variants[f"LookaheadAdamW {mode}"] = functools.partial(k_steps, fused_adamw)
    fused_modes = ["LookaheadAdamW host branch", "LookaheadAdamW capturable"]
    sync_bytes_of = dict.fromkeys(fused_modes, FUSED_SYNC_BYTES_PER_PARAM)
    if k <= 5:  # int8-delta's largest k (see [NOTE: what int8-delta supports] in lookahead_fused/options.py)
        delta = LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=k, slow_dtype=int8_blocks.DELTA_SLOW_DTYPE)
        variants[INT8_DELTA_MODE] = functools.partial(k_steps, delta)
        fused_modes.append(INT8_DELTA_MODE)
        sync_bytes_of[INT8_DELTA_MODE] = k * INT8_DELTA_BYTES_PER_STEP
        snoo = LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=k, **SNOO_OPTIONS)
        variants[SNOO_MODE] = functools.partial(k_steps, snoo)
        fused_modes.append(SNOO_MODE)
        sync_bytes_of[SNOO_MODE] = 2 * FUSED_SYNC_BYTES_PER_PARAM
        for mode, (momentum_dtype, momentum_bytes) in SNOO_DELTA_MODES.items():
            snoo_delta = LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=k,
                                        slow_dtype=int8_blocks.DELTA_SLOW_DTYPE, momentum_dtype=momentum_dtype,
                                        **SNOO_OPTIONS)  # fmt: skip
            variants[mode] = functools.partial(k_steps, snoo_delta)
            fused_modes.append(mode)
            sync_bytes_of[mode] = k * INT8_DELTA_BYTES_PER_STEP + momentum_bytes
    samples, bandwidth = rounds_with_bandwidth(variants, device, rounds, budget_s, 7, 200)
    rows = []
    for name, mode in keys + [(baseline, fused_mode) for fused_mode in fused_modes]:
        fused = mode.startswith("LookaheadAdamW")
        sync_bytes = sync_bytes_of[mode] if fused else SYNC_BYTES_PER_PARAM
        sync_floor = per_round(lambda bytes_per_second: numel * sync_bytes / bytes_per_second, bandwidth)
        floor_pct = 100 * sync_bytes / (k * ADAMW_BYTES_PER_PARAM)
        plain, wrapped = samples[name], samples[mode if fused else f"{name} + Lookahead {mode}"]
        rows.append(
            {
                "inner": name,
                "lookahead": mode,
                "params": numel,
                "k": k,
                "k_steps": summary(plain, 1e3, "ms"),
                "k_steps_with_lookahead": summary(wrapped, 1e3, "ms"),
                "overhead_pct": summary(per_round(lambda p, w: 100 * (w - p) / p, plain, wrapped)),
                "floor_pct": floor_pct,
                "time_floor_pct": summary(per_round(lambda f, p: 100 * f / p, sync_floor, plain)),
            }
        )
    return rows
