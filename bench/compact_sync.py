"""The compact sync (slow weights kept as bf16+int8, 3 bytes) against the exact sync, and their momentum
syncs (outer momentum 0.9, Nesterov) against the exact momentum sync, in the same rounds.

    python bench/compact_sync.py                         # gpt2-small and 2000x4096, fp32 and bf16 params
    python bench/compact_sync.py --models resnet50 --dtypes fp32 --budget 30 --json out.json

    exact                  ops.lookahead_sync_ with float32 slow weights: 2 x (fast bytes + 4) per param
    compact                ops.lookahead_compact_sync_: 2 x (fast bytes + 3) per param (docs/design.md,
                           "Compact slow weights")
    loop                   the compact sync per tensor in PyTorch ops (the "reference" backend, the oracle)
    exact-momentum         the momentum sync, float32 slow weights and momentum: 2 x (fast bytes + 8)
    compact-momentum       the compact momentum sync, float32 momentum: 2 x (fast bytes + 7)
    compact-bf16-momentum  the same with a bfloat16 momentum: 2 x (fast bytes + 5)
    compact-int8-momentum  the same with an int8 momentum, a scale per 256: 2 x (fast bytes + 4 + 4/256)

Timed in interleaved rounds with the two bandwidth timings (timing.py); each variant's % of the
memory limit is of its own bytes, and time / exact is the ratio of its time to its exact
counterpart's (the exact sync's, or the exact momentum sync's) in each round.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_shapes import MODELS  # noqa: E402
from timing import per_round, rounds_with_bandwidth, span, summary  # noqa: E402

from lookahead_fused import bf16_int8, int8_blocks, ops  # noqa: E402

ALPHA = 0.5
PARAM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MU = 0.9
COMPACT_BYTES = bf16_int8.BYTES_PER_ELEMENT
# each variant's slow state bytes per param, and the exact variant its time is compared with
SLOW_BYTES = {"exact": 4, "compact": COMPACT_BYTES, "loop": COMPACT_BYTES, "exact-momentum": 8,
              "compact-momentum": COMPACT_BYTES + 4, "compact-bf16-momentum": COMPACT_BYTES + 2,
              "compact-int8-momentum": COMPACT_BYTES + 1 + 4 / int8_blocks.BLOCK}  # fmt: skip
EXACT_OF = {name: "exact-momentum" if name.endswith("momentum") else "exact" for name in SLOW_BYTES}


def _variants(shapes, param_dtype, device):
    fast = [torch.randn(shape, device=device).to(param_dtype) for shape in shapes]
    slow = [f.float() + 0.01 for f in fast]
    encoded = [bf16_int8.encode(s) for s in slow]
    high, low = [h for h, _ in encoded], [q for _, q in encoded]
    loop_fast, loop_high, loop_low = ([t.clone() for t in ts] for ts in (fast, high, low))
    exact_fast = [f.clone() for f in fast]
    m_fast, m_slow, c_fast, c_high, c_low = ([t.clone() for t in ts] for ts in (fast, slow, fast, high, low))
    b_fast, b_high, b_low = ([t.clone() for t in ts] for ts in (fast, high, low))
    momentum = [torch.zeros_like(s) for s in slow]
    compact_momentum = [torch.zeros_like(s) for s in slow]
    bf16_momentum = [torch.zeros_like(s, dtype=torch.bfloat16) for s in slow]
    i_fast, i_high, i_low = ([t.clone() for t in ts] for ts in (fast, high, low))
    int8_momentum = [torch.zeros_like(s, dtype=torch.int8) for s in slow]
    int8_scales = [torch.zeros(int8_blocks.scale_count(s.numel()), device=device) for s in slow]
    nesterov = {"mu": MU, "nesterov": True}
    return {
        "exact": lambda: ops.lookahead_sync_(exact_fast, slow, ALPHA),
        "compact": lambda: ops.lookahead_compact_sync_(fast, high, low, ALPHA),
        "loop": lambda: ops.lookahead_compact_sync_(loop_fast, loop_high, loop_low, ALPHA, backend="reference"),
        "exact-momentum": lambda: ops.lookahead_sync_(m_fast, m_slow, ALPHA, momentum=momentum, **nesterov),
        "compact-momentum": lambda: ops.lookahead_compact_sync_(c_fast, c_high, c_low, ALPHA, momentum=compact_momentum,
                                                                **nesterov),  # fmt: skip
        "compact-bf16-momentum": lambda: ops.lookahead_compact_sync_(b_fast, b_high, b_low, ALPHA,
                                                                     momentum=bf16_momentum, **nesterov),  # fmt: skip
        "compact-int8-momentum": lambda: ops.lookahead_compact_sync_(i_fast, i_high, i_low, ALPHA, momentum=int8_momentum,
                                                                     momentum_scales=int8_scales, **nesterov),  # fmt: skip
    }


def measure(model: str, dtype_name: str, device: torch.device, budget_s: float) -> dict:
    shapes = MODELS[model]()
    params = sum(math.prod(s) for s in shapes)
    fast_bytes = torch.empty(0, dtype=PARAM_DTYPES[dtype_name]).element_size()
    variants = _variants(shapes, PARAM_DTYPES[dtype_name], device)
    samples, bandwidth = rounds_with_bandwidth(variants, device, None, budget_s, 5, 100)
    case = {"model": model, "dtypes": dtype_name, "params": params, "device": str(device),
            "memory_bandwidth": summary(bandwidth, 1e-9, "GBps"), "variants": {}}  # fmt: skip
    for name in variants:
        nbytes = params * 2 * (fast_bytes + SLOW_BYTES[name])
        floor = per_round(lambda bytes_per_second, n=nbytes: n / bytes_per_second, bandwidth)
        case["variants"][name] = {
            "bytes": nbytes,
            "time": summary(samples[name], 1e3, "ms"),
            "pct_of_bandwidth": summary(per_round(lambda f, t: 100 * f / t, floor, samples[name])),
            "time_vs_exact": summary(per_round(lambda t, e: t / e, samples[name], samples[EXACT_OF[name]])),
        }
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gpt2-small", "2000x4096"], choices=sorted(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=list(PARAM_DTYPES), choices=list(PARAM_DTYPES))
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of rounds per case")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cases = [measure(model, dtype_name, device, args.budget) for model in args.models for dtype_name in args.dtypes]
    print(f"compact (bf16+int8) vs exact (float32) slow weights, one sync on {device}; median [p10-p90] over the rounds")
    print(f"{'model':<12}{'params':<7}{'variant':<22}{'ms':>24}{'% of its limit':>18}{'time / exact':>24}")
    for case in cases:
        for name, r in case["variants"].items():
            print(f"{case['model']:<12}{case['dtypes']:<7}{name:<22}{span(r['time'], 'ms'):>24}"
                  f"{span(r['pct_of_bandwidth'], digits=0):>18} {span(r['time_vs_exact']):>23}")  # fmt: skip
        print(f"{'':<32}{case['variants']['exact']['time']['reps']} rounds, memory bandwidth "
              f"{span(case['memory_bandwidth'], 'GBps', digits=1)} GB/s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
