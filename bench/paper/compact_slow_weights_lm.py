"""Does keeping the slow weights in 3 bytes cost quality on a language model? The character-level
transformer of char_lm.py (float32 params) trained with Lookahead(AdamW), its slow weights kept
the three ways of compact_slow_weights.py (exact float32, slow_dtype="bf16+int8", and the naive
bfloat16 copy), five seeds each (initial weights and batches); the validation loss of the slow
weights every EVERY steps.

    python bench/paper/compact_slow_weights_lm.py   # table + bench/paper/results/compact_slow_weights_lm.png
"""

from __future__ import annotations

from char_lm import lookahead_adamw, study_data, train
from compact_slow_weights import ALPHA, K, SETTINGS, round_slow_weights_to_bfloat16
from results_io import plot_seed_curves, run_lm_seed_study

from lookahead_fused import bf16_int8

EVERY = 50


def make_optimizer(setting: str, lr: float):
    slow_dtype = setting if setting == bf16_int8.SLOW_DTYPE else None
    return lookahead_adamw(lr, K, ALPHA, slow_dtype=slow_dtype)


def study(lrs, seeds, steps: int) -> dict:
    data, source = study_data()
    out = {"lrs": list(lrs), "seeds": list(seeds), "steps": steps, "every": EVERY, "k": K, "alpha": ALPHA,
           "corpus": source, "runs": {}}  # fmt: skip
    for lr in lrs:
        for setting in SETTINGS:
            after_step = round_slow_weights_to_bfloat16 if setting == "bf16" else None
            out["runs"][f"{setting} @ lr {lr}"] = [
                train(make_optimizer(setting, lr), steps, EVERY, data, seed, after_step) for seed in seeds
            ]
            print(f"done: {setting} @ lr {lr}", flush=True)
    return out


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, SETTINGS, "inner AdamW", task="char-level transformer", x_label="step",
                     x_step=data["every"])  # fmt: skip


def main(argv=None):
    run_lm_seed_study("compact_slow_weights_lm", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
