"""Where the paper scripts keep what they produce (bench/paper/results/NAME.json and NAME.png), and
the summaries and plot of the digits studies that run each setting over several seeds."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, data: dict, plot) -> None:
    """Write data as NAME.json and plot(data, path) as NAME.png, and say where."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    plot(data, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json and .png")


def final_summary(curves: list[list[float]]) -> tuple[float, float, float]:
    """(mean, min, max) over seeds of the final validation loss (inf if a run diverged)."""
    finals = [c[-1] for c in curves]
    mean = statistics.fmean(finals) if all(math.isfinite(v) for v in finals) else float("inf")
    return mean, min(finals), max(finals)


def best_summary(curves: list[list[float]]) -> float:
    """Mean over seeds of the best validation loss along the run (early stopping's view)."""
    return statistics.fmean(min(c) for c in curves)


def plot_seed_curves(data: dict, path, labels: list[str], inner: str, task: str = "digits MLP",
                     x_label: str = "epoch", x_step: int = 1) -> None:  # fmt: skip
    """One panel per learning rate (data["lrs"]): each label's validation loss per evaluation (every
    x_step x_labels), the mean over the seeds with their min-max band (data["runs"]["<label> @ lr
    <lr>"]: a curve per seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data["lrs"]), figsize=(6 * len(data["lrs"]), 4), squeeze=False)
    for ax, lr in zip(axes[0], data["lrs"]):
        for label in labels:
            curves = data["runs"][f"{label} @ lr {lr}"]
            epochs = range(x_step, x_step * len(curves[0]) + 1, x_step)
            mean = [statistics.fmean(values) for values in zip(*curves)]
            low = [min(values) for values in zip(*curves)]
            high = [max(values) for values in zip(*curves)]
            line = ax.plot(epochs, mean, label=label)[0]
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15)
        seeds = len(data["seeds"])
        title = f"{task}, {inner} lr={lr}, k={data['k']}, alpha={data['alpha']} ({seeds} seeds: mean, min-max)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(x_label)
        ax.set_ylabel("validation loss (Lookahead: its slow weights)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def run_seed_study(name: str, doc: str, study, plot, argv=None) -> None:
    """The command line of a digits study: --epochs and --seeds, then study(seeds=, epochs=) on one
    thread, its table of final and best validation losses, and NAME.json and NAME.png."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: threads only add noise
    data = study(seeds=range(args.seeds), epochs=args.epochs)
    print_summary(data)
    save(name, data, plot)


def run_lm_seed_study(name: str, doc: str, study, plot, argv=None, report=None) -> None:
    """The command line of a language-model study: --steps, --seeds and --lr, then study(lrs, seeds,
    steps) on one thread, the corpus, the table, report(data) if given, and NAME.json and NAME.png."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-3])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: threads only add noise
    data = study(args.lr, range(args.seeds), args.steps)
    print(f"corpus: {data['corpus']}")
    print_summary(data)
    if report is not None:
        report(data)
    save(name, data, plot)


def print_summary(data: dict) -> None:
    """The table of a seed study: each setting's final and best validation losses over the seeds."""
    print(f"{'setting':<32}{'final val loss: mean [min-max]':>34}{'best along the run (mean)':>28}")
    for setting, curves in data["runs"].items():
        mean, low, high = final_summary(curves)
        print(f"{setting:<32}{f'{mean:.4f} [{low:.4f}-{high:.4f}]':>34}{best_summary(curves):>28.4f}")
