"""Streaming DiLoCo on gloo: does a delay hide the all-reduce behind real inner steps?

    python bench/streaming_overlap.py [--world 2] [--rounds 5] [--work-ms 40] [--json out.json]

Each replica holds ResNet-50's parameter shapes (25.6 M float32, the sync's bytes) and runs k = 20
inner steps per cycle; an inner step is `--work-ms` of compute (float32 matrix products on the
replica's one thread, standing in for a forward and backward pass) then `step()` of
Lookahead(SGD(lr=0), outer_momentum=0.9, nesterov=True, replicas=group). The wall time of one whole
cycle, k steps with nothing in flight at its start or its end (steps 2 to k + 1 of a period, so every
sync sent in it, at step k and before, with delay 1 lands in it), for:

    plain         fragments=1, delay=0: the all-reduce blocks the sync step
    delay         fragments=1, delay=1: the all-reduce runs during the next inner step
    fragments     fragments=4, delay=1: a quarter of the bytes a time, each during the next step

in interleaved rounds (rank 0's times), with the compute of k steps alone measured in the same
rounds: (cycle - compute) is what the syncs cost beyond it, and hidden = 1 - that cost / plain's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from model_shapes import MODELS
from timing import summary

from lookahead_fused import Lookahead

K = 20
VARIANTS = {"plain": {}, "delay": {"delay": 1}, "fragments": {"fragments": 4, "delay": 1}}


def calibrated_work(ms: float):
    """A function that computes for about `ms` milliseconds on this thread (matrix products)."""
    a = torch.randn(256, 256)

    def work(times: int) -> None:
        for _ in range(times):
            a.copy_(torch.tanh(a @ a * 1e-2))

    work(20)
    start = time.perf_counter()
    work(200)
    per = (time.perf_counter() - start) / 200
    times = max(1, round(ms / 1e3 / per))
    return lambda: work(times)


def worker(rank, world, init_file, out_path, rounds: int, work_ms: float):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    shapes = MODELS["resnet50"]()
    work = calibrated_work(work_ms)
    runs = {}
    for name, options in VARIANTS.items():
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
        opt = Lookahead(torch.optim.SGD(params, lr=0.0), k=K, alpha=0.7, outer_momentum=0.9, nesterov=True,
                        replicas=dist.group.WORLD, **options)  # fmt: skip

        def steps(n: int, params=params, opt=opt) -> None:
            for _ in range(n):
                work()
                with torch.no_grad():
                    params[0].add_(1e-3 * (rank + 1))  # the replicas drift apart between syncs
                opt.step()

        steps(2 * K + 1)  # warm-up: every buffer and plan built; then each cycle starts at step 2 of a period
        runs[name] = lambda steps=steps: steps(K)
    runs["compute"] = lambda: [work() for _ in range(K)]
    samples = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            dist.barrier()
            start = time.perf_counter()
            runs[name]()
            samples[name].append(time.perf_counter() - start)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"world": world, "work_ms": work_ms, "k": K, "samples_s": samples}, f)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work-ms", type=float, default=40.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        mp.spawn(worker, args=(args.world, os.path.join(tmp, "init"), out, args.rounds, args.work_ms), nprocs=args.world)
        with open(out) as f:
            result = json.load(f)
    samples = result["samples_s"]
    compute = summary(samples["compute"], 1e3, "ms")
    cost = {name: [c - w for c, w in zip(samples[name], samples["compute"])] for name in VARIANTS}
    result["cycle_ms"] = {name: summary(samples[name], 1e3, "ms") for name in VARIANTS}
    result["sync_cost_ms"] = {name: summary(cost[name], 1e3, "ms") for name in VARIANTS}
    plain = result["sync_cost_ms"]["plain"]["median_ms"]
    result["hidden"] = {name: 1 - result["sync_cost_ms"][name]["median_ms"] / plain for name in VARIANTS}
    print(f"{result['world']} replicas on gloo, ResNet-50 shapes, k={K}, {args.work_ms:.0f} ms of compute a step; "
          f"compute of a cycle {compute['median_ms']:.0f} ms [{compute['p10_ms']:.0f}-{compute['p90_ms']:.0f}]")  # fmt: skip
    for name in VARIANTS:
        c, s = result["cycle_ms"][name], result["sync_cost_ms"][name]
        print(f"  {name:10s} cycle {c['median_ms']:.0f} ms [{c['p10_ms']:.0f}-{c['p90_ms']:.0f}], beyond the compute "
              f"{s['median_ms']:.0f} ms [{s['p10_ms']:.0f}-{s['p90_ms']:.0f}], hidden {result['hidden'][name]:.2f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
