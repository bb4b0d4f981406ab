"""Lookahead across replicas (DiLoCo) on gloo: the outer step against the per-parameter loop, and the
bytes on the wire against DDP's gradient all-reduce.

    python bench/replicas.py [--world 2] [--models resnet50 many-small] [--rounds 10] [--json out.json]

(b) The outer step, in interleaved rounds on every rank (rank 0's times are reported):
    ours       Lookahead(..., outer_momentum=0.9, nesterov=True, replicas=group).sync_lookahead():
               pack into flat buffers, all-reduce them asynchronously, one fused momentum sync
    per-param  what torchft's and prime's DiLoCo run: per param a pseudo-gradient slow - fast
               (allocated), its all-reduce (asynchronous, all in flight, then waited), the mean, then
               torch.optim.SGD(nesterov=True).step() on the slow weights and a copy into the params.
(a) Bytes on the wire, counted from the collectives of one sync (every byte of every tensor a
    replica hands to torch.distributed.all_reduce, and of its own tensor to all_gather, which the
    int8 wire uses; the step check included), per inner step at k, against DDP's all-reduce of
    every float32 gradient at every step.
(c) Streaming DiLoCo: the same count for each inner step of a k = 20 cycle with fragments=1 and 4
    (delay 1): the bytes per cycle, how many steps send, and the most in one step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from model_shapes import MODELS
from timing import interleaved_rounds, per_round, summary

from lookahead_fused import Lookahead

ALPHA, MU = 0.7, 0.9
KS = (5, 20, 50)
FRAGMENTS, STREAM_K = (1, 4), 20
SHAPES = {"resnet50": lambda: MODELS["resnet50"](), "many-small": lambda: [(4096,)] * 2000}


class PerParamDiLoCo:
    """The outer step as torchft's and prime's DiLoCo write it, over `params` (the replica's model)."""

    def __init__(self, params: list[torch.Tensor], group):
        self.params, self.group, self.size = params, group, dist.get_world_size(group)
        self.slow = [torch.nn.Parameter(p.detach().clone()) for p in params]
        self.outer = torch.optim.SGD(self.slow, lr=ALPHA, momentum=MU, nesterov=True)

    @torch.no_grad()
    def sync(self) -> None:
        works = []
        for p, s in zip(self.params, self.slow):
            s.grad = s.detach() - p.detach()  # the pseudo-gradient, one allocation per param
            works.append(dist.all_reduce(s.grad, group=self.group, async_op=True))
        for work in works:
            work.wait()
        for s in self.slow:
            s.grad.div_(self.size)
        self.outer.step()
        for p, s in zip(self.params, self.slow):
            p.copy_(s)


def params_of(shapes, seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in shapes]


def moved(params, rank: int) -> None:
    """Each replica's fast weights drift by their own amount between syncs (so the average is not trivial)."""
    with torch.no_grad():
        for p in params:
            p.add_(1e-3 * (rank + 1))


class CountingCollectives:
    """While entered, counts the bytes a replica hands to torch.distributed.all_reduce (its tensor)
    and all_gather (its own tensor, the second argument), in `.bytes`."""

    def __enter__(self):
        self.bytes, self.real = 0, (dist.all_reduce, dist.all_gather)

        def all_reduce(tensor, *args, **kwargs):
            self.bytes += tensor.numel() * tensor.element_size()
            return self.real[0](tensor, *args, **kwargs)

        def all_gather(outputs, tensor, *args, **kwargs):
            self.bytes += tensor.numel() * tensor.element_size()
            return self.real[1](outputs, tensor, *args, **kwargs)

        dist.all_reduce, dist.all_gather = all_reduce, all_gather
        return self

    def __exit__(self, *exc):
        dist.all_reduce, dist.all_gather = self.real


def wire_bytes(sync) -> int:
    """Bytes handed to the collectives during one call of `sync`."""
    with CountingCollectives() as counted:
        sync()
    return counted.bytes


def streaming_bytes(shapes, rank: int, fragments: int) -> dict:
    """(c) Streaming: the bytes handed to the collectives in each of STREAM_K inner steps (after the
    first STREAM_K, so every fragment is in its cycle) with `fragments` and delay 1."""
    params = params_of(shapes, 0)
    opt = Lookahead(torch.optim.SGD(params, lr=0.0), k=STREAM_K, alpha=ALPHA, outer_momentum=MU, nesterov=True,
                    replicas=dist.group.WORLD, fragments=fragments, delay=1)  # fmt: skip
    per_step = []
    for step in range(2 * STREAM_K):
        moved(params, rank)
        per_step.append(wire_bytes(opt.step))
    cycle = per_step[STREAM_K:]
    return {"most_in_a_step": max(cycle), "steps_sending": sum(b > 0 for b in cycle), "per_k_steps": sum(cycle)}


def worker(rank, world, init_file, out_path, models: dict, rounds: int):
    """One replica: each of `models` ({name: shapes}) timed and counted; rank 0 writes the JSON."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = {}
    for name, shapes in models.items():
        ours_params, loop_params = params_of(shapes, 0), params_of(shapes, 0)
        numel = sum(p.numel() for p in ours_params)
        ours = Lookahead(torch.optim.SGD(ours_params, lr=0.0), k=5, alpha=ALPHA, outer_momentum=MU, nesterov=True,
                         replicas=dist.group.WORLD)  # fmt: skip
        loop = PerParamDiLoCo(loop_params, dist.group.WORLD)
        variants = {
            "ours": lambda: (moved(ours_params, rank), ours.sync_lookahead()),
            "per-param": lambda: (moved(loop_params, rank), loop.sync()),
        }
        samples = interleaved_rounds(variants, torch.device("cpu"), rounds, warmup=1)
        same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(ours_params, loop_params))
        wire = {}
        for wire_dtype in (None, torch.bfloat16, "int8"):
            opt = Lookahead(torch.optim.SGD(params_of(shapes, 0), lr=0.0), k=5, alpha=ALPHA, outer_momentum=MU,
                            nesterov=True, replicas=dist.group.WORLD, replica_dtype=wire_dtype)  # fmt: skip
            wire[str(wire_dtype)] = wire_bytes(opt.sync_lookahead)
        results[name] = {
            "params": numel, "tensors": len(shapes), "rounds": rounds, "same_result": same,
            "sync_ms": {k: summary(v, 1e3, "ms") for k, v in samples.items()},
            "speedup": summary(per_round(lambda o, p: p / o, samples["ours"], samples["per-param"])),
            "wire_bytes_per_sync": wire, "ddp_bytes_per_step": 4 * numel,
            "streaming": {fragments: streaming_bytes(shapes, rank, fragments) for fragments in FRAGMENTS},
        }  # fmt: skip
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"world": world, "models": results}, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


def run(models: dict, world: int, rounds: int) -> dict:
    """The results of `world` replicas over `models` ({name: shapes})."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        mp.spawn(worker, args=(world, os.path.join(tmp, "init"), out, models, rounds), nprocs=world)
        with open(out) as f:
            return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run({name: SHAPES[name]() for name in args.models}, args.world, args.rounds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(f"{result['world']} replicas on gloo (CPU)")
    for name, r in result["models"].items():
        ms = r["sync_ms"]
        print(f"{name}: {r['params']} params in {r['tensors']} tensors, {r['rounds']} rounds; outer step (ms) ours "
              f"{ms['ours']['median_ms']:.1f} [{ms['ours']['p10_ms']:.1f}-{ms['ours']['p90_ms']:.1f}], per-param "
              f"{ms['per-param']['median_ms']:.1f} [{ms['per-param']['p10_ms']:.1f}-{ms['per-param']['p90_ms']:.1f}]; "
              f"per-param / ours {r['speedup']['median']:.2f} [{r['speedup']['p10']:.2f}-{r['speedup']['p90']:.2f}]; "
              f"same result: {r['same_result']}")  # fmt: skip
        for wire_dtype, nbytes in r["wire_bytes_per_sync"].items():
            ratios = ", ".join(f"k={k}: {k * r['ddp_bytes_per_step'] / nbytes:.1f}x" for k in KS)
            print(f"  wire {wire_dtype}: {nbytes} bytes a sync; fewer than DDP's float32 gradients: {ratios}")
        for fragments, counted in r["streaming"].items():
            print(f"  k={STREAM_K}, fragments={fragments}, delay=1: {counted['per_k_steps']} bytes per {STREAM_K} steps, "
                  f"sent in {counted['steps_sending']} of them, at most {counted['most_in_a_step']} in one")


if __name__ == "__main__":
    main()
