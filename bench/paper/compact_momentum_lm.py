"""Does keeping the outer momentum compact (bfloat16, or block-scaled int8), or the slow weights beside
it (bf16+int8), cost quality on a language model? The character-level transformer of char_lm.py
(float32 params) trained with Lookahead(AdamW) and SNOO's outer momentum (mu 0.9, Nesterov), the
state kept the six ways of compact_momentum.py (exact float32; momentum_dtype=torch.bfloat16;
momentum_dtype="int8": int8 blocks of 256 with a float32 scale each; slow_dtype="bf16+int8" beside a
float32 momentum, beside a bfloat16 one and beside an int8 one), on the default backend; five seeds each (initial
weights and batches); the validation loss of the slow weights every EVERY steps, and the per-seed
differences of the final losses (each setting - exact) against the exact runs' spread.

    python bench/paper/compact_momentum_lm.py     # table + bench/paper/results/compact_momentum_lm.png
"""

from __future__ import annotations

from char_lm import lookahead_adamw, study_data, train
from compact_momentum import ALPHA, K, MU, SETTINGS, lookahead_options, print_differences
from results_io import plot_seed_curves, run_lm_seed_study

EVERY = 50


def make_optimizer(setting: str, lr: float):
    return lookahead_adamw(lr, K, ALPHA, **lookahead_options(setting))


def study(lrs, seeds, steps: int) -> dict:
    data, source = study_data()
    out = {"lrs": list(lrs), "seeds": list(seeds), "steps": steps, "every": EVERY, "k": K, "alpha": ALPHA,
           "outer_momentum": MU, "nesterov": True, "corpus": source, "runs": {}}  # fmt: skip
    for lr in lrs:
        for setting in SETTINGS:
            out["runs"][f"{setting} @ lr {lr}"] = [train(make_optimizer(setting, lr), steps, EVERY, data, seed)
                                                   for seed in seeds]  # fmt: skip
            print(f"done: {setting} @ lr {lr}", flush=True)
    return out


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, list(SETTINGS), "inner AdamW", task=f"char LM, mu={MU} Nesterov",
                     x_label="step", x_step=data["every"])  # fmt: skip


def main(argv=None):
    run_lm_seed_study("compact_momentum_lm", __doc__, study, plot, argv, report=print_differences)


if __name__ == "__main__":
    main()
