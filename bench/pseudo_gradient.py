"""The pack of Lookahead across replicas: a replica's pseudo-gradient fast - slow into the views of its
flat buffer, by the fused op against the two foreach passes it replaces, on the device present.

    python bench/pseudo_gradient.py [--rounds 30] [--json out.json]

    fused    ops.lookahead_pseudo_gradient_(params, slow, views): one pass, fast and slow read, out
             written (see [NOTE: pseudo-gradient] in csrc/element_math.h)
    foreach  torch._foreach_copy_(views, params); torch._foreach_sub_(views, slow): what the pack was
             before, a copy then a subtraction in place
    bf16     the bfloat16 wire (replica_dtype=torch.bfloat16): the op writing bfloat16 views of a kept
             bfloat16 buffer, what the pack does now
    cast     the op into the float32 views, then flat.to(torch.bfloat16): what the bfloat16 wire was
             before, a pack then a cast into a new buffer every sync

Bytes per element, float32 slow weights (p the param's bytes): fused p + 4 + 4 (+ 4 where a CPU store
first reads its line, write-allocate); foreach (p + 4) + (4 + 4 + 4) (+ 4 + 0 the same way); bf16
p + 4 + 2 (+ 2); cast p + 4 + 4 (+ 4), then 4 + 2 (+ 2, and the new buffer's first touch). Interleaved
rounds (bench/timing.py), the time of each and the ratios foreach / fused and cast / bf16 per round,
median [p10-p90].
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


def views_of(flat, like):
    views, start = [], 0
    for s in like:
        views.append(flat[start : start + s.numel()].view(s.shape))
        start += s.numel()
    return views


def lists_for(shapes, param_dtype, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.randn(s, generator=g).to(device=device, dtype=param_dtype) for s in shapes]
    slow = [p.float() + 0.01 for p in params]
    numel = sum(p.numel() for p in params)
    flat, wire = torch.zeros(numel, device=device), torch.zeros(numel, device=device, dtype=torch.bfloat16)
    return params, slow, flat, views_of(flat, slow), wire, views_of(wire, slow)


def measure(shapes, param_dtype, device, rounds: int) -> dict:
    params, slow, flat, views, wire, wire_views = lists_for(shapes, param_dtype, device)

    def fused():
        ops.lookahead_pseudo_gradient_(params, slow, views)

    def foreach():
        torch._foreach_copy_(views, params)
        torch._foreach_sub_(views, slow)

    def bf16():
        ops.lookahead_pseudo_gradient_(params, slow, wire_views)

    def cast():
        ops.lookahead_pseudo_gradient_(params, slow, views)
        return flat.to(torch.bfloat16)

    fused()
    want = [v.clone() for v in views]
    foreach()
    assert all(map(torch.equal, views, want)), "the fused pack and the foreach passes disagree"
    bf16()
    assert torch.equal(wire, cast()), "the bfloat16 pack and the pack then cast disagree"
    variants = {"fused": fused, "foreach": foreach, "bf16": bf16, "cast": cast}
    samples = interleaved_rounds(variants, device, rounds)
    return {
        **{f"{name}_ms": summary(samples[name], 1e3) for name in variants},
        "foreach_over_fused": summary(per_round(lambda a, b: b / a, samples["fused"], samples["foreach"])),
        "cast_over_bf16": summary(per_round(lambda a, b: b / a, samples["bf16"], samples["cast"])),
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
            spans = {key: f"{v['median']:.2f} [{v['p10']:.2f}-{v['p90']:.2f}]" for key, v in row.items() if key != "set"
                     and isinstance(v, dict)}  # fmt: skip
            print(f"{name:12s} {str(param_dtype):15s} " + "  ".join(f"{k} {v}" for k, v in spans.items()), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
