"""Does keeping the outer momentum compact (bfloat16, or block-scaled int8), or the slow weights beside
it (bf16+int8), cost quality? Lookahead with SNOO's outer momentum (mu 0.9, Nesterov) on
scikit-learn's digits (robustness.py's split and 64-64-10 MLP, float32 params), its state kept six ways:

    exact              float32 slow weights and outer momentum (8 bytes)
    bf16               momentum_dtype=torch.bfloat16: 2 bytes, rounded to nearest even at each sync
    int8               momentum_dtype="int8": int8 codes with a float32 scale per block of 256 (1.016
                       bytes), re-encoded at each sync (lookahead_fused/int8_blocks.py)
    bf16+int8          slow_dtype="bf16+int8" (3 bytes) beside a float32 momentum: 7 bytes
    bf16+int8, bf16    slow_dtype="bf16+int8" and momentum_dtype=torch.bfloat16: 5 bytes
    bf16+int8, int8    slow_dtype="bf16+int8" and momentum_dtype="int8": 4.016 bytes

Adam (lr 1e-3, and a hot 1e-2) inside, k=5, alpha=0.5; five seeds each (initial weights and batch
order); the validation loss of the slow weights after every epoch, and the per-seed difference of
the final losses (bf16 - exact, int8 - exact) against the exact runs' spread over the seeds. The
default backend ("cpu" here); the chaotic lr 1e-2 runs move by up to 0.2 between backends whose
exact sync differs by an ulp (a contracted multiply-add), int8's has the same bits on every backend.

    python bench/paper/compact_momentum.py        # table + bench/paper/results/compact_momentum.png
"""

from __future__ import annotations

import json
import statistics

import torch
from results_io import RESULTS, plot_seed_curves, run_seed_study
from robustness import digits_split, train

K, ALPHA, MU = 5, 0.5, 0.9
SETTINGS = {  # label: Lookahead's options for the slow state
    "exact": {},
    "bf16": {"momentum_dtype": torch.bfloat16},
    "int8": {"momentum_dtype": "int8"},
    "bf16+int8": {"slow_dtype": "bf16+int8"},
    "bf16+int8, bf16": {"slow_dtype": "bf16+int8", "momentum_dtype": torch.bfloat16},
    "bf16+int8, int8": {"slow_dtype": "bf16+int8", "momentum_dtype": "int8"},
}


def lookahead_options(setting: str) -> dict:
    return {"outer_momentum": MU, "nesterov": True, **SETTINGS[setting]}


def curve(setting: str, lr: float, seed: int, epochs: int, data) -> list[float]:
    adam = lambda params: torch.optim.Adam(params, lr=lr)  # noqa: E731
    return train(adam, True, epochs, data, seed, alpha=ALPHA, **lookahead_options(setting))


def study(lrs=(1e-3, 1e-2), seeds=range(5), epochs=30) -> dict:
    data = digits_split()
    out = {"lrs": list(lrs), "seeds": list(seeds), "epochs": epochs, "k": K, "alpha": ALPHA, "outer_momentum": MU,
           "nesterov": True, "runs": {}}  # fmt: skip
    for lr in lrs:
        for setting in SETTINGS:
            out["runs"][f"{setting} @ lr {lr}"] = [curve(setting, lr, seed, epochs, data) for seed in seeds]
    return out


def print_differences(data: dict) -> None:
    """Per lr: each seed's final loss, each compact setting - exact, against the exact runs' spread over the seeds."""
    for lr in data["lrs"]:
        exact = [c[-1] for c in data["runs"][f"exact @ lr {lr}"]]
        print(f"lr {lr}: exact's std over seeds {statistics.stdev(exact):.4f}, range {max(exact) - min(exact):.4f}")
        for setting in (s for s in SETTINGS if s != "exact"):
            diffs = [c[-1] - e for c, e in zip(data["runs"][f"{setting} @ lr {lr}"], exact)]
            print(f"  {setting} - exact per seed: {' '.join(f'{d:+.4f}' for d in diffs)}; "
                  f"mean {statistics.fmean(diffs):+.4f}")  # fmt: skip


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, list(SETTINGS), "inner Adam")  # mu and Nesterov: in the json; a longer title overlaps


def main(argv=None):
    run_seed_study("compact_momentum", __doc__, study, plot, argv)
    print_differences(json.loads((RESULTS / "compact_momentum.json").read_text()))


if __name__ == "__main__":
    main()
