"""int8_delta_snoo.py's study on a language model: the character-level transformer of char_lm.py
(float32 params) trained with LookaheadAdamW and SNOO's outer momentum (lr 3e-3, weight decay 0.01,
k=5, alpha=0.5, mu 0.9, Nesterov, 1500 steps), its state kept the five ways of int8_delta_snoo.py
(exact, int8-delta beside an int8, a float32 or a bfloat16 momentum, the naive bfloat16 copies), five seeds each (initial
weights and batches); the validation loss of the slow weights every EVERY steps (int8_delta_kernel_lm.py's
study with these settings).

    python bench/paper/int8_delta_snoo_lm.py   # table + bench/paper/results/int8_delta_snoo_lm.png
"""

from __future__ import annotations

import functools

import int8_delta_kernel_lm
from int8_delta_snoo import SETTINGS, SNOO
from results_io import plot_seed_curves, run_lm_seed_study

study = functools.partial(int8_delta_kernel_lm.study, **SNOO)


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, list(SETTINGS), "LookaheadAdamW + SNOO", task="char-level transformer",
                     x_label="step", x_step=data["every"])  # fmt: skip


def main(argv=None):
    run_lm_seed_study("int8_delta_snoo_lm", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
