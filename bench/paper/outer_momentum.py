"""A small, honest experiment with outer momentum: does momentum on the slow weights (SNOO, with
Nesterov) help Lookahead on scikit-learn's digits (robustness.py's split and 64-64-10 MLP)?

Adam (lr 1e-3, and a hot 1e-2) as the inner optimizer, k=5, alpha=0.5; outer momentum mu in
{0 (plain Lookahead), 0.5, 0.9}, Nesterov off and on; plain Adam for reference. Five seeds each
(initial weights and batch order); the validation loss of the slow weights after every epoch.

    python bench/paper/outer_momentum.py          # table + bench/paper/results/outer_momentum.png
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from results_io import save
from robustness import digits_split, train

SETTINGS = [  # (label, outer momentum or None for plain Adam, nesterov)
    ("Adam", None, False),
    ("Lookahead", 0.0, False),
    ("mu 0.5", 0.5, False),
    ("mu 0.5 Nesterov", 0.5, True),
    ("mu 0.9", 0.9, False),
    ("mu 0.9 Nesterov", 0.9, True),
]


def curve(lr: float, mu, nesterov: bool, seed: int, epochs: int, data) -> list[float]:
    """robustness.train with inner Adam: plain Adam when mu is None, else Lookahead with outer momentum mu."""
    adam = lambda params: torch.optim.Adam(params, lr=lr)  # noqa: E731
    if mu is None:
        return train(adam, False, epochs, data, seed)
    return train(adam, True, epochs, data, seed, outer_momentum=mu, nesterov=nesterov)


def study(lrs=(1e-3, 1e-2), seeds=range(5), epochs=30) -> dict:
    data = digits_split()
    out = {"lrs": list(lrs), "seeds": list(seeds), "epochs": epochs, "k": 5, "alpha": 0.5, "runs": {}}
    for lr in lrs:
        for label, mu, nesterov in SETTINGS:
            out["runs"][f"{label} @ lr {lr}"] = [curve(lr, mu, nesterov, seed, epochs, data) for seed in seeds]
    return out


def final_summary(curves: list[list[float]]) -> tuple[float, float, float]:
    """(mean, min, max) over seeds of the final validation loss (inf if a run diverged)."""
    finals = [c[-1] for c in curves]
    mean = statistics.fmean(finals) if all(math.isfinite(v) for v in finals) else float("inf")
    return mean, min(finals), max(finals)


def best_summary(curves: list[list[float]]) -> float:
    """Mean over seeds of the best validation loss along the run (early stopping's view)."""
    return statistics.fmean(min(c) for c in curves)


def plot(data: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data["lrs"]), figsize=(6 * len(data["lrs"]), 4), squeeze=False)
    for ax, lr in zip(axes[0], data["lrs"]):
        for label, _, _ in SETTINGS:
            curves = data["runs"][f"{label} @ lr {lr}"]
            epochs = range(1, len(curves[0]) + 1)
            mean = [statistics.fmean(values) for values in zip(*curves)]
            low = [min(values) for values in zip(*curves)]
            high = [max(values) for values in zip(*curves)]
            line = ax.plot(epochs, mean, label=label)[0]
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15)
        ax.set_title(f"digits MLP, inner Adam lr={lr}, k=5, alpha=0.5 ({len(data['seeds'])} seeds: mean, min-max)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss (Lookahead: its slow weights)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: threads only add noise
    data = study(seeds=range(args.seeds), epochs=args.epochs)
    print(f"{'setting':<32}{'final val loss: mean [min-max]':>34}{'best along the run (mean)':>28}")
    for name, curves in data["runs"].items():
        mean, low, high = final_summary(curves)
        print(f"{name:<32}{f'{mean:.4f} [{low:.4f}-{high:.4f}]':>34}{best_summary(curves):>28.4f}")
    save("outer_momentum", data, plot)


if __name__ == "__main__":
    main()
