"""A design study for issue 26's `slow_dtype="int8-delta"` before its kernels: does keeping the slow
weights as an int8 offset from the param cost quality, and does the decided bound hold in training?
Lookahead(AdamW) on scikit-learn's digits (robustness.py's split and 64-64-10 MLP, float32 params),
its slow weights kept four ways:

    exact       float32 slow weights (4 bytes)
    bf16+int8   slow_dtype="bf16+int8" (3 bytes)
    int8-delta  emulated here (Int8Delta below): the slow weight as param + codes x scale, int8 codes
                and one float32 scale per block of 256 elements of the flattened param (1.016 bytes),
                written again after every inner step from the value it decoded to, nearest rounding
                (docs/design.md, "Decision on int8-delta"); what LookaheadAdamW's pass would do
    bf16        the naive alternative: after each sync the slow weights (and the params) rounded to
                bfloat16, as a peer that keeps a bfloat16 copy stores them

AdamW (lr 1e-3, and a hot 1e-2, weight decay 0.01) inside, k=5, alpha=0.5; five seeds each (initial
weights and batch order); the validation loss of the slow weights after every epoch. For int8-delta
also, at every sync, the params' error against the exact sync of the true slow weights, over the
sync's displacement (max |fast - true slow| of the tensor: the issue's bound, 2 %) and over the
largest displacement of the period's steps (the decided rule's), the worst over tensors, syncs and
seeds.

    python bench/paper/int8_delta.py        # table + bench/paper/results/int8_delta.png
"""

from __future__ import annotations

import torch
from compact_slow_weights import ALPHA, K, round_slow_weights_to_bfloat16
from results_io import plot_seed_curves, run_seed_study
from robustness import digits_split, train

from lookahead_fused import bf16_int8
from lookahead_fused.slow_state import SLOW_PARAM

BLOCK = 256
SETTINGS = ["exact", bf16_int8.SLOW_DTYPE, "int8-delta", "bf16"]


def quantized(offset: torch.Tensor) -> torch.Tensor:
    """offset as int8 codes x a float32 scale per block of BLOCK (max |offset| / 127, nearest), decoded."""
    flat = offset.reshape(-1)
    padded = torch.nn.functional.pad(flat, (0, -flat.numel() % BLOCK)).view(-1, BLOCK)
    scale = padded.abs().amax(1, keepdim=True) / 127
    codes = torch.where(scale > 0, torch.round(padded / torch.where(scale > 0, scale, 1)), 0).clamp(-127, 127)
    return (codes * scale).reshape(-1)[: flat.numel()].view_as(offset)


class Int8Delta:
    """An after_step for robustness.train / char_lm.train: the slow weights of a Lookahead replaced by
    what int8-delta stores, param + quantized(slow - param), after every step; and the bound's ratios."""

    def __init__(self):
        self.true_slow: dict = {}  # the exact slow weight of each param since its last sync
        self.period_displacement: dict = {}  # the largest displacement of the period's steps so far
        self.decoded: dict = {}  # the slow weight each param's offset decoded to after the last step
        self.over_sync, self.over_period = 0.0, 0.0  # the worst ratios, over tensors and syncs

    @torch.no_grad()
    def __call__(self, opt) -> None:
        syncs = opt.step_count % opt.k == 0
        for group in opt.param_groups:
            for p in group["params"]:
                slow = opt.state[p][SLOW_PARAM]
                true = self.true_slow.setdefault(p, slow.detach().clone())
                if syncs:  # slow and p hold the sync of the decoded slow weight; true's sync for comparison
                    decoded = self.decoded[p]
                    fast = (slow.double() - (1 - ALPHA) * decoded.double()) / ALPHA
                    exact = true.double() + ALPHA * (fast - true.double())
                    error = (slow.double() - exact).abs().max()
                    at_sync = (fast - true.double()).abs().max()
                    largest = max(self.period_displacement.get(p, 0.0), float(at_sync))
                    self.over_sync = max(self.over_sync, float(error / at_sync) if at_sync > 0 else 0.0)
                    self.over_period = max(self.over_period, float(error) / largest if largest > 0 else 0.0)
                    true.copy_(slow)
                    self.period_displacement[p] = 0.0
                else:
                    displacement = float((p - true).abs().max())
                    self.period_displacement[p] = max(self.period_displacement.get(p, 0.0), displacement)
                slow.copy_(p + quantized(slow - p))
                self.decoded[p] = slow.clone()


def setting_options(setting: str) -> dict:
    return {"slow_dtype": setting} if setting == bf16_int8.SLOW_DTYPE else {}


def after_step_for(setting: str):
    return {"int8-delta": Int8Delta(), "bf16": round_slow_weights_to_bfloat16}.get(setting)


def study(lrs=(1e-3, 1e-2), seeds=range(5), epochs=30) -> dict:
    data = digits_split()
    out = {"lrs": list(lrs), "seeds": list(seeds), "epochs": epochs, "k": K, "alpha": ALPHA, "block": BLOCK,
           "runs": {}, "int8_delta_bound": {}}  # fmt: skip
    for lr in lrs:
        adamw = lambda params, lr=lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01)  # noqa: E731
        for setting in SETTINGS:
            curves, bounds = [], []
            for seed in seeds:
                hook = after_step_for(setting)
                curves.append(train(adamw, True, epochs, data, seed, alpha=ALPHA, after_step=hook,
                                    **setting_options(setting)))  # fmt: skip
                if isinstance(hook, Int8Delta):
                    bounds.append({"over_sync": hook.over_sync, "over_period": hook.over_period})
            out["runs"][f"{setting} @ lr {lr}"] = curves
            if bounds:
                out["int8_delta_bound"][f"lr {lr}"] = bounds
                print(f"int8-delta @ lr {lr}: worst error / the sync's displacement "
                      f"{max(b['over_sync'] for b in bounds):.4f}, / the period's largest "
                      f"{max(b['over_period'] for b in bounds):.4f}", flush=True)  # fmt: skip
    return out


def plot(data: dict, path) -> None:
    plot_seed_curves(data, path, SETTINGS, "inner AdamW")


def main(argv=None):
    run_seed_study("int8_delta", __doc__, study, plot, argv)


if __name__ == "__main__":
    main()
