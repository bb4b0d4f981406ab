"""int8_delta_kernel.py's study on a language model: the character-level transformer of char_lm.py
(float32 params) trained with LookaheadAdamW (lr 3e-3, weight decay 0.01, k=5, alpha=0.5, 1500 steps),
its slow weights kept the four ways of int8_delta_kernel.py (exact, slow_dtype="bf16+int8",
slow_dtype="int8-delta" with the package's kernel, the naive bfloat16 copy), five seeds each (initial
weights and batches); the validation loss of the slow weights every EVERY steps.

    python bench/paper/int8_delta_kernel_lm.py   # table + bench/paper/results/int8_delta_kernel_lm.png
"""

from __future__ import annotations

from char_lm import study_data, train
from int8_delta_kernel import ALPHA, K, SETTINGS, after_step_for, lookahead_adamw
from results_io import plot_seed_curves, run_lm_seed_study

EVERY = 50


def study(lrs, seeds, steps: int, settings=SETTINGS, optimizer_of=lookahead_adamw, **about) -> dict:
    """Each of `settings` trained with optimizer_of(setting, lr) at each lr and seed; `about`: more
    entries of the record (the options every setting shares)."""
    data, source = study_data()
    out = {"lrs": list(lrs), "seeds": list(seeds), "steps": steps, "every": EVERY, "k": K, "alpha": ALPHA, **about,
           "corpus": source, "runs": {}}  # fmt: skip
    for lr in lrs:
        for setting in settings:
            out["runs"][f"{setting} @ lr {lr}"] = [
                train(optimizer_of(setting, lr), steps, EVERY, data, seed, after_step_for(setting)) for seed in seeds
            ]
            print(f"done: {setting} @ lr {lr}", flush=True)
    return out


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, SETTINGS, "LookaheadAdamW", task="char-level transformer", x_label="step",
                     x_step=data["every"])  # fmt: skip


def main(argv=None):
    run_lm_seed_study("int8_delta_kernel_lm", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
