"""int8_delta.py's digits study again, with the kernel: LookaheadAdamW(slow_dtype="int8-delta") (its
offsets written in AdamW's own pass: docs/design.md, "int8-delta") against LookaheadAdamW with its slow
weights kept three other ways:

    exact       float32 slow weights (4 bytes)
    bf16+int8   slow_dtype="bf16+int8" (3 bytes)
    int8-delta  slow_dtype="int8-delta", the package's kernel (1.016 bytes)
    bf16        the naive alternative: after each sync the slow weights (and the params) rounded to
                bfloat16 (compact_slow_weights.round_slow_weights_to_bfloat16)

robustness.py's split and 64-64-10 MLP (float32 params), AdamW lr 1e-3 and 1e-2 with weight decay
0.01, k=5, alpha=0.5, 30 epochs, five seeds each; the validation loss of the slow weights after every
epoch.

    python bench/paper/int8_delta_kernel.py     # table + bench/paper/results/int8_delta_kernel.png
"""

from __future__ import annotations

from compact_slow_weights import ALPHA, K, round_slow_weights_to_bfloat16
from results_io import plot_seed_curves, run_seed_study
from robustness import digits_split, train

from lookahead_fused import LookaheadAdamW, bf16_int8, int8_blocks

SETTINGS = ["exact", bf16_int8.SLOW_DTYPE, int8_blocks.DELTA_SLOW_DTYPE, "bf16"]
WEIGHT_DECAY = 0.01


def lookahead_adamw(setting: str, lr: float):
    """The optimizer of `setting` for robustness.train / char_lm.train: a LookaheadAdamW."""
    slow_dtype = setting if setting in (bf16_int8.SLOW_DTYPE, int8_blocks.DELTA_SLOW_DTYPE) else None
    return lambda params: LookaheadAdamW(params, lr=lr, weight_decay=WEIGHT_DECAY, k=K, alpha=ALPHA,
                                         slow_dtype=slow_dtype)  # fmt: skip


def after_step_for(setting: str):
    return round_slow_weights_to_bfloat16 if setting == "bf16" else None


def study(lrs=(1e-3, 1e-2), seeds=range(5), epochs=30, settings=SETTINGS, optimizer_of=lookahead_adamw,
          **about) -> dict:  # fmt: skip
    """Each of `settings` trained with optimizer_of(setting, lr) at each lr and seed; `about`: more
    entries of the record (the options every setting shares)."""
    data = digits_split()
    out = {"lrs": list(lrs), "seeds": list(seeds), "epochs": epochs, "k": K, "alpha": ALPHA, **about, "runs": {}}
    for lr in lrs:
        for setting in settings:
            out["runs"][f"{setting} @ lr {lr}"] = [
                train(optimizer_of(setting, lr), False, epochs, data, seed, after_step=after_step_for(setting))
                for seed in seeds
            ]
    return out


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, SETTINGS, "LookaheadAdamW")


def main(argv=None):
    run_seed_study("int8_delta_kernel", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
