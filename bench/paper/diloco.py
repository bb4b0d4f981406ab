"""DiLoCo (Lookahead with replicas=group) against DDP on scikit-learn's digits: validation loss against
the bytes each replica hands to all-reduce, 4 replicas on gloo (CPU).

Same task (robustness.py's split and 64-64-10 MLP, float32), same total batch (64 a step, 16 per
replica) and the same number of steps (600) for every setting:

    DDP            DistributedDataParallel, AdamW (lr 1e-3) on the averaged gradient of the 64
    DiLoCo k, wire each replica AdamW (lr 1e-3) on its own 16, and every k steps the replicas'
                   average and the outer Nesterov step (alpha 0.7, mu 0.9), k in 5, 20, 50, with the
                   pseudo-gradients sent in float32, bfloat16 or int8 blocks (replica_dtype)

three seeds each (initial weights and batch order; the replicas' batches are the four quarters of
the global batch). Bytes: every byte of every tensor one replica hands to the collectives over the
run (bench/replicas.py's count: DDP's gradients; DiLoCo's buffers, its int8 codes and scales, and
its 32-byte step check), and the most of them in any one step. Streaming k=20: DiLoCo at k = 20 in
4 fragments (fragments=4), sent at their own phases, landing at once or 2 steps later (delay=2),
then mixed half and half with the local progress (delay_mix=0.5) or not. The loss: cross entropy on
the 397 held-out digits, of the slow weights after the last step (the same on every replica; with
one fragment, the params after that sync step).

    python bench/paper/diloco.py [--seeds 3] [--steps 600]   # table + bench/paper/results/diloco.{json,png}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for its collective counter
from replicas import CountingCollectives  # noqa: E402
from results_io import save  # noqa: E402
from robustness import digits_split, make_model, val_loss  # noqa: E402

from lookahead_fused import Lookahead  # noqa: E402

WORLD, GLOBAL_BATCH, LR = 4, 64, 1e-3
ALPHA, MU = 0.7, 0.9
KS = (5, 20, 50)
WIRES = {"float32": None, "bfloat16": torch.bfloat16, "int8": "int8"}


STREAMS = {"F=4": {"fragments": 4}, "F=4 delay=2": {"fragments": 4, "delay": 2},
           "F=4 delay=2 mix=0.5": {"fragments": 4, "delay": 2, "delay_mix": 0.5}}  # fmt: skip
STREAM_K = 20


def settings() -> list[tuple[str, int | None, object, dict]]:
    """(label, k or None for DDP, wire dtype, streaming options)."""
    return ([("DDP", None, None, {})] + [(f"DiLoCo k={k} {name}", k, wire, {}) for k in KS for name, wire in WIRES.items()]
            + [(f"Streaming k={STREAM_K} {name}", STREAM_K, None, options) for name, options in STREAMS.items()])  # fmt: skip


def batches(seed: int, steps: int, rank: int):
    """This replica's quarter of each global batch, epoch after epoch in a seeded order."""
    g = torch.Generator().manual_seed(seed)
    (x, y), _ = DATA
    done = 0
    while done < steps:
        for idx in torch.randperm(len(y), generator=g).split(GLOBAL_BATCH):
            if len(idx) < GLOBAL_BATCH or done == steps:
                continue
            mine = idx.view(WORLD, -1)[rank]
            yield x[mine], y[mine]
            done += 1


def run(rank: int, label: str, k, wire, stream: dict, seed: int, steps: int) -> tuple[float, int, int]:
    """(final validation loss, bytes handed to the collectives, the most of them in one step)."""
    model = make_model(seed)
    if k is None:
        trained = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.AdamW(trained.parameters(), lr=LR)
    else:
        trained = model
        opt = Lookahead(torch.optim.AdamW(model.parameters(), lr=LR), k=k, alpha=ALPHA, outer_momentum=MU,
                        nesterov=True, replicas=dist.group.WORLD, replica_dtype=wire, **stream)  # fmt: skip
    peak = 0
    with CountingCollectives() as counted:
        for x, y in batches(seed, steps, rank):
            before = counted.bytes
            opt.zero_grad()
            torch.nn.functional.cross_entropy(trained(x), y).backward()
            opt.step()
            peak = max(peak, counted.bytes - before)
    if k is None:  # DDP hands its gradient buckets to the reducer in C++: count them as the gradients' bytes
        peak = sum(p.numel() * p.element_size() for p in model.parameters())
        return val_loss(model, DATA[1]), steps * peak, peak
    with opt.slow_weights():  # the replicas' shared weights (with fragments, each as its last sync left it)
        return val_loss(model, DATA[1]), counted.bytes, peak


def worker(rank, world, init_file, out_path, seeds, steps):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = {}
    for label, k, wire, stream in settings():
        results[label] = [run(rank, label, k, wire, stream, seed, steps) for seed in seeds]
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


def plot(data: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, runs in data["runs"].items():
        losses = [loss for loss, _, _ in runs]
        mean = statistics.fmean(losses)
        ax.errorbar(runs[0][1], mean, yerr=[[mean - min(losses)], [max(losses) - mean]], fmt="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("bytes handed to all-reduce per replica, whole run")
    ax.set_ylabel("final validation loss (mean, min-max over seeds)")
    ax.set_title(f"digits MLP, {WORLD} replicas, {data['steps']} steps, batch {GLOBAL_BATCH}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        mp.spawn(worker, args=(WORLD, os.path.join(tmp, "init"), out, seeds, args.steps), nprocs=WORLD)
        with open(out) as f:
            runs = json.load(f)
    data = {"world": WORLD, "steps": args.steps, "global_batch": GLOBAL_BATCH, "seeds": seeds, "runs": runs}
    ddp_bytes = runs["DDP"][0][1]
    print(f"{'setting':<32}{'final val loss: mean [min-max]':>34}{'bytes per replica':>20}{'fewer than DDP':>16}"
          f"{'most in a step':>16}")  # fmt: skip
    for label, results in runs.items():
        losses = [loss for loss, _, _ in results]
        nbytes, peak = results[0][1], results[0][2]
        print(f"{label:<32}{f'{statistics.fmean(losses):.4f} [{min(losses):.4f}-{max(losses):.4f}]':>34}"
              f"{nbytes:>20}{ddp_bytes / nbytes:>15.1f}x{peak:>16}")  # fmt: skip
    save("diloco", data, plot)


DATA = digits_split()

if __name__ == "__main__":
    main()
