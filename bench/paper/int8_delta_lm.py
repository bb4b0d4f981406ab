"""int8_delta.py's study on a language model: the character-level transformer of char_lm.py (float32
params) trained with Lookahead(AdamW), its slow weights kept the four ways of int8_delta.py (exact,
slow_dtype="bf16+int8", the emulated int8-delta, the naive bfloat16 copy), five seeds each (initial
weights and batches); the validation loss of the slow weights every EVERY steps, and int8-delta's
worst error at a sync over the sync's displacement and over the period's largest.

    python bench/paper/int8_delta_lm.py   # table + bench/paper/results/int8_delta_lm.png
"""

from __future__ import annotations

from char_lm import lookahead_adamw, study_data, train
from int8_delta import ALPHA, BLOCK, K, SETTINGS, Int8Delta, after_step_for, setting_options
from results_io import plot_seed_curves, run_lm_seed_study

EVERY = 50


def study(lrs, seeds, steps: int) -> dict:
    data, source = study_data()
    out = {"lrs": list(lrs), "seeds": list(seeds), "steps": steps, "every": EVERY, "k": K, "alpha": ALPHA,
           "block": BLOCK, "corpus": source, "runs": {}, "int8_delta_bound": {}}  # fmt: skip
    for lr in lrs:
        for setting in SETTINGS:
            curves, bounds = [], []
            for seed in seeds:
                hook = after_step_for(setting)
                curves.append(train(lookahead_adamw(lr, K, ALPHA, **setting_options(setting)), steps, EVERY, data, seed, hook))
                if isinstance(hook, Int8Delta):
                    bounds.append({"over_sync": hook.over_sync, "over_period": hook.over_period})
            out["runs"][f"{setting} @ lr {lr}"] = curves
            if bounds:
                out["int8_delta_bound"][f"lr {lr}"] = bounds
            print(f"done: {setting} @ lr {lr}" + (f"; int8-delta's worst error / the sync's displacement "
                  f"{max(b['over_sync'] for b in bounds):.4f}, / the period's largest "
                  f"{max(b['over_period'] for b in bounds):.4f}" if bounds else ""), flush=True)  # fmt: skip
    return out


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, SETTINGS, "inner AdamW", task="char-level transformer", x_label="step",
                     x_step=data["every"])  # fmt: skip


def main(argv=None):
    run_lm_seed_study("int8_delta_lm", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
