"""Does keeping the slow weights in 3 bytes cost quality? Lookahead on scikit-learn's digits
(robustness.py's split and 64-64-10 MLP, float32 params) with its slow weights kept three ways:

    exact       float32 slow weights (slow_dtype=None)
    bf16+int8   slow_dtype="bf16+int8": 3 bytes, within 2^-15 of the float32 value after each sync
    bf16        the naive alternative: after each sync the slow weights (and so the params) rounded
                to bfloat16, as a peer that keeps slow weights in a bfloat16 copy stores them

Adam (lr 1e-3, and a hot 1e-2) inside, k=5, alpha=0.5; five seeds each (initial weights and batch
order); the validation loss of the slow weights after every epoch.

    python bench/paper/compact_slow_weights.py    # table + bench/paper/results/compact_slow_weights.png
"""

from __future__ import annotations

import torch
from results_io import plot_seed_curves, run_seed_study
from robustness import digits_split, train

from lookahead_fused import bf16_int8
from lookahead_fused.slow_state import SLOW_PARAM

K, ALPHA = 5, 0.5
SETTINGS = ["exact", bf16_int8.SLOW_DTYPE, "bf16"]


@torch.no_grad()
def round_slow_weights_to_bfloat16(opt) -> None:
    """After a sync: the slow weights (and the params, which equal them) rounded to bfloat16."""
    if opt.step_count % opt.k == 0:
        for group in opt.param_groups:
            for p in group["params"]:
                slow = opt.state[p][SLOW_PARAM]
                slow.copy_(slow.to(torch.bfloat16))
                p.copy_(slow)


def curve(setting: str, lr: float, seed: int, epochs: int, data) -> list[float]:
    adam = lambda params: torch.optim.Adam(params, lr=lr)  # noqa: E731
    if setting == bf16_int8.SLOW_DTYPE:
        return train(adam, True, epochs, data, seed, alpha=ALPHA, slow_dtype=setting)
    after_step = round_slow_weights_to_bfloat16 if setting == "bf16" else None
    return train(adam, True, epochs, data, seed, alpha=ALPHA, after_step=after_step)


def study(lrs=(1e-3, 1e-2), seeds=range(5), epochs=30) -> dict:
    data = digits_split()
    out = {"lrs": list(lrs), "seeds": list(seeds), "epochs": epochs, "k": K, "alpha": ALPHA, "runs": {}}
    for lr in lrs:
        for setting in SETTINGS:
            out["runs"][f"{setting} @ lr {lr}"] = [curve(setting, lr, seed, epochs, data) for seed in seeds]
    return out


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, SETTINGS, "inner Adam")


def main(argv=None):
    run_seed_study("compact_slow_weights", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
