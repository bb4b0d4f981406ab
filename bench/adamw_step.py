"""LookaheadAdamW against torch's fused AdamW, step by step: what a non-sync step and a sync step cost.

    python bench/adamw_step.py [MODEL ...]   (default resnet50; also in bash bench/run.sh)

Variants, each a real optimizer step over the same parameter set (fp32, grads set once):

    adamw                  torch.optim.AdamW(fused=True) (foreach where there is no fused one)
    lookahead_adamw        LookaheadAdamW on a non-sync step (k = 10**9)
    lookahead_adamw_sync   LookaheadAdamW on a sync step (k = 1)
    lookahead_sync         Lookahead(AdamW(fused=True)) on a sync step (k = 1): AdamW, then the sync
    compact                LookaheadAdamW(slow_dtype="bf16+int8") on a non-sync step
    compact_sync           the same on a sync step: the compact sync inside AdamW's pass

Timed in interleaved rounds with the two bandwidth timings (timing.py). Per round, the whole-step
overhead at k = 5 is composed from that round's steps: LookaheadAdamW (4 x lookahead_adamw +
lookahead_adamw_sync) / (5 x adamw) - 1, Lookahead(AdamW) (4 x adamw + lookahead_sync) /
(5 x adamw) - 1 and the compact one (4 x compact + compact_sync) / (5 x adamw) - 1, against their
floors by bytes (8, 16 and 6 bytes of sync over 5 x 28 bytes of AdamW: 5.7 %, 11.4 % and 4.3 %) and by time (those bytes at the round's bandwidth over 5 adamw steps). Composing
from single steps drops the k-step variance of step_overhead.py (one sample per five steps) and
assumes steps are independent, which they are here (no allocation, the same tensors each step).
"""

from __future__ import annotations

import math

import torch
from step_overhead import (
    ADAMW_BYTES_PER_PARAM, FUSED_SYNC_BYTES_PER_PARAM, SYNC_BYTES_PER_PARAM, fastest_adamw, params_with_grads,
)  # fmt: skip
from timing import interleaved_rounds, per_round, rounds_with_bandwidth, summary

from lookahead_fused import Lookahead, LookaheadAdamW, bf16_int8

K = 5
NEVER = 10**9
COMPACT = bf16_int8.SLOW_DTYPE
# the compact sync inside AdamW's pass: the 3-byte slow weight read and written
COMPACT_SYNC_BYTES_PER_PARAM = 2 * bf16_int8.BYTES_PER_ELEMENT


def measure(shapes, device: torch.device, rounds: int | None = None, budget_s: float = 8.0) -> dict:
    numel = sum(math.prod(s) for s in shapes)
    adamw_name, options = fastest_adamw(device)
    optimizers = {
        "adamw": torch.optim.AdamW(params_with_grads(shapes, device), lr=1e-4, **options),
        "lookahead_adamw": LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=NEVER),
        "lookahead_adamw_sync": LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=1),
        "lookahead_sync": Lookahead(torch.optim.AdamW(params_with_grads(shapes, device), lr=1e-4, **options), k=1),
        "compact": LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=NEVER, slow_dtype=COMPACT),
        "compact_sync": LookaheadAdamW(params_with_grads(shapes, device), lr=1e-4, k=1, slow_dtype=COMPACT),
    }
    samples, bandwidth = rounds_with_bandwidth({name: opt.step for name, opt in optimizers.items()}, device, rounds,
                                               budget_s, 7, 400)  # fmt: skip
    adamw = samples["adamw"]
    fused = per_round(lambda a, n, s: 100 * ((K - 1) * n + s) / (K * a) - 100, adamw, samples["lookahead_adamw"],
                      samples["lookahead_adamw_sync"])  # fmt: skip
    composed = per_round(lambda a, s: 100 * ((K - 1) * a + s) / (K * a) - 100, adamw, samples["lookahead_sync"])
    compact = per_round(lambda a, n, s: 100 * ((K - 1) * n + s) / (K * a) - 100, adamw, samples["compact"],
                        samples["compact_sync"])  # fmt: skip
    time_floor = lambda nbytes: per_round(lambda bw, a: 100 * numel * nbytes / bw / (K * a), bandwidth, adamw)  # noqa: E731
    return {
        "params": numel,
        "k": K,
        "adamw": adamw_name,
        "step_ms": {name: summary(series, 1e3, "ms") for name, series in samples.items() if name in optimizers},
        "lookahead_adamw_overhead_pct": summary(fused),
        "lookahead_adamw_floor_pct": 100 * FUSED_SYNC_BYTES_PER_PARAM / (K * ADAMW_BYTES_PER_PARAM),
        "lookahead_adamw_time_floor_pct": summary(time_floor(FUSED_SYNC_BYTES_PER_PARAM)),
        "lookahead_overhead_pct": summary(composed),
        "lookahead_floor_pct": 100 * SYNC_BYTES_PER_PARAM / (K * ADAMW_BYTES_PER_PARAM),
        "lookahead_time_floor_pct": summary(time_floor(SYNC_BYTES_PER_PARAM)),
        "compact_overhead_pct": summary(compact),
        "compact_floor_pct": 100 * COMPACT_SYNC_BYTES_PER_PARAM / (K * ADAMW_BYTES_PER_PARAM),
        "compact_time_floor_pct": summary(time_floor(COMPACT_SYNC_BYTES_PER_PARAM)),
    }


def host_overhead(count: int = 161, numel: int = 8, rounds: int = 300) -> dict:
    """Microseconds per step on `count` tiny params (ResNet-50 has 161 tensors): the host work of a
    step, kernels aside. torch's fused AdamW against LookaheadAdamW on a non-sync and a sync step."""
    device = torch.device("cpu")
    shapes = [(numel,)] * count
    optimizers = {
        "adamw": torch.optim.AdamW(params_with_grads(shapes, device), **fastest_adamw(device)[1]),
        "lookahead_adamw": LookaheadAdamW(params_with_grads(shapes, device), k=NEVER),
        "lookahead_adamw_sync": LookaheadAdamW(params_with_grads(shapes, device), k=1),
    }
    samples = interleaved_rounds({name: opt.step for name, opt in optimizers.items()}, device, rounds)
    return {name: summary(samples[name], 1e6, "us") for name in optimizers}


if __name__ == "__main__":
    import sys

    from model_shapes import MODELS

    for model in sys.argv[1:] or ["resnet50"]:
        r = measure(MODELS[model](), torch.device("cpu"), budget_s=20.0)
        show = lambda s: f"{s['median']:.1f} [{s['p10']:.1f}-{s['p90']:.1f}]"  # noqa: E731
        print(f"{model}: steps (ms) " + ", ".join(f"{k} {v['median_ms']:.2f}" for k, v in r["step_ms"].items()))
        for name, key in (("LookaheadAdamW", "lookahead_adamw"), ("Lookahead(AdamW)", "lookahead"),
                          ("LookaheadAdamW, bf16+int8", "compact")):
            print(f"  {name}: overhead {show(r[key + '_overhead_pct'])} % over {r['step_ms']['adamw']['reps']} rounds; "
                  f"floors {r[key + '_floor_pct']:.1f} % (bytes), {show(r[key + '_time_floor_pct'])} % (time)")  # fmt: skip
    print("host work per step, 161 params of 8 elements (us): "
          + ", ".join(f"{k} {v['median_us']:.0f} [{v['p10_us']:.0f}-{v['p90_us']:.0f}]" for k, v in host_overhead().items()))  # fmt: skip
