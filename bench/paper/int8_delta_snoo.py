"""SNOO at about 2 bytes a weight: does LookaheadAdamW with its slow weights as int8-delta offsets and
its outer momentum as int8 blocks, both synced in AdamW's own pass (docs/design.md, "int8-delta"),
cost quality against SNOO's exact state? LookaheadAdamW with outer momentum mu 0.9, Nesterov, its
state kept five ways:

    exact       float32 slow weights and outer momentum (8 bytes)
    int8        slow_dtype="int8-delta", momentum_dtype="int8", the package's kernels (2.03 bytes)
    delta+fp32  slow_dtype="int8-delta" beside a float32 outer momentum (5.02 bytes)
    delta+bf16  slow_dtype="int8-delta", momentum_dtype=torch.bfloat16 (3.02 bytes)
    bf16        the naive alternative: momentum_dtype=torch.bfloat16 and, after each sync, the slow
                weights (and the params) rounded to bfloat16, as a peer that keeps bfloat16 copies (4 bytes)

robustness.py's split and 64-64-10 MLP (float32 params), AdamW lr 1e-3 and 1e-2 with weight decay
0.01, k=5, alpha=0.5, 30 epochs, five seeds each; the validation loss of the slow weights after every
epoch (int8_delta_kernel.py's study with these settings).

    python bench/paper/int8_delta_snoo.py     # table + bench/paper/results/int8_delta_snoo.png
"""

from __future__ import annotations

import functools

import int8_delta_kernel
import torch
from compact_slow_weights import ALPHA, K
from results_io import plot_seed_curves, run_seed_study

from lookahead_fused import LookaheadAdamW, int8_blocks

MU = 0.9
SETTINGS = {  # label: LookaheadAdamW's options for the slow state
    "exact": {},
    "int8": {"slow_dtype": int8_blocks.DELTA_SLOW_DTYPE, "momentum_dtype": int8_blocks.MOMENTUM_DTYPE},
    "delta+fp32": {"slow_dtype": int8_blocks.DELTA_SLOW_DTYPE},
    "delta+bf16": {"slow_dtype": int8_blocks.DELTA_SLOW_DTYPE, "momentum_dtype": torch.bfloat16},
    "bf16": {"momentum_dtype": torch.bfloat16},  # and int8_delta_kernel.after_step_for's rounding
}


def snoo_adamw(setting: str, lr: float):
    """The optimizer of `setting` for robustness.train / char_lm.train: a LookaheadAdamW with SNOO's outer momentum."""
    return lambda params: LookaheadAdamW(params, lr=lr, weight_decay=int8_delta_kernel.WEIGHT_DECAY, k=K, alpha=ALPHA,
                                         outer_momentum=MU, nesterov=True, **SETTINGS[setting])  # fmt: skip


# the options every setting shares, as the record keeps them
SNOO = {"settings": list(SETTINGS), "optimizer_of": snoo_adamw, "outer_momentum": MU, "nesterov": True}
study = functools.partial(int8_delta_kernel.study, **SNOO)


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, list(SETTINGS), "LookaheadAdamW + SNOO")


def main(argv=None):
    run_seed_study("int8_delta_snoo", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
