"""A small, honest experiment with outer momentum: does momentum on the slow weights (SNOO, with
Nesterov) help Lookahead on scikit-learn's digits (robustness.py's split and 64-64-10 MLP)?

Adam (lr 1e-3, and a hot 1e-2) as the inner optimizer, k=5, alpha=0.5; outer momentum mu in
{0 (plain Lookahead), 0.5, 0.9}, Nesterov off and on; plain Adam for reference. Five seeds each
(initial weights and batch order); the validation loss of the slow weights after every epoch.

    python bench/paper/outer_momentum.py          # table + bench/paper/results/outer_momentum.png
"""

from __future__ import annotations

import torch
from results_io import plot_seed_curves, run_seed_study
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


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, [label for label, _, _ in SETTINGS], "inner Adam")


def main(argv=None):
    run_seed_study("outer_momentum", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
