"""The pack of Lookahead across replicas: a replica's pseudo-gradient fast - slow into the views of its
flat buffer, by the fused op against the two foreach passes it replaces, on the device present.

    python bench/pseudo_gradient.py [--rounds 30] [--json out.json]

    fused    ops.lookahead_pseudo_gradient_(params, slow, views): one pass, fast and slow read, out
             written (see [NOTE: pseudo-gradient] in csrc/element_math.h)
    foreach  torch._foreach_copy_(views, params); torch._foreach_sub_(views, slow): what the pack was
             before, a copy then a subtraction in place

Bytes per element, float32 slow weights (p the param's bytes): fused p + 4 + 4 (+ 4 where a CPU store
first reads its line, write-allocate); foreach (p + 4) + (4 + 4 + 4) (+ 4 + 0 the same way). Interleaved
rounds (bench/timing.py), the time of each and the ratio foreach / fused per round, median [p10-p90].
"""

from __future__ import annotations

import argparse
import json

import torch
from model_shapes import MODELS
from timing import interleaved_rounds, per_round, summary

from lookahead_fused import ops

SETS = {"resnet50": MODELS["resnet50"], "2000 x 4096": lambda: [(4096,)] * 2000}
PARAM_DTYPES = (torch.float32, torch.bfloat16)


def lists_for(shapes, param_dtype, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.randn(s, generator=g).to(device=device, dtype=param_dtype) for s in shapes]
    slow = [p.float() + 0.01 for p in params]
    flat = torch.zeros(sum(p.numel() for p in params), device=device)
    views, start = [], 0
    for s in slow:
        views.append(flat[start : start + s.numel()].view(s.shape))
        start += s.numel()
    return params, slow, views


def measure(shapes, param_dtype, device, rounds: int) -> dict:
    params, slow, views = lists_for(shapes, param_dtype, device)

    def fused():
        ops.lookahead_pseudo_gradient_(params, slow, views)

    def foreach():
        torch._foreach_copy_(views, params)
        torch._foreach_sub_(views, slow)

    fused()
    want = [v.clone() for v in views]
    foreach()
    assert all(map(torch.equal, views, want)), "the fused pack and the foreach passes disagree"
    samples = interleaved_rounds({"fused": fused, "foreach": foreach}, device, rounds)
    return {
        "fused_ms": summary(samples["fused"], 1e3),
        "foreach_ms": summary(samples["foreach"], 1e3),
        "foreach_over_fused": summary(per_round(lambda a, b: b / a, samples["fused"], samples["foreach"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "rows": []}
    for name, shapes in SETS.items():
        for param_dtype in PARAM_DTYPES:
            row = {"set": name, "param_dtype": str(param_dtype), **measure(shapes(), param_dtype, device, args.rounds)}
            results["rows"].append(row)
            f, b, r = row["fused_ms"], row["foreach_ms"], row["foreach_over_fused"]
            print(f"{name:12s} {str(param_dtype):15s} fused {f['median']:8.2f} ms [{f['p10']:.2f}-{f['p90']:.2f}]  "
                  f"foreach {b['median']:8.2f} ms [{b['p10']:.2f}-{b['p90']:.2f}]  "
                  f"foreach/fused {r['median']:.2f} [{r['p10']:.2f}-{r['p90']:.2f}]", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
