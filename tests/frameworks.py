"""What the training-framework tests share: the two optimizers under test (built on the param
groups a framework hands over), and a run's end state (params, slow weights, counter) to compare
bit for bit with another run's."""

from __future__ import annotations

import os

import torch

from lookahead_fused import Lookahead, LookaheadAdamW, lookahead_of
from lookahead_fused.slow_state import SLOW_PARAM

from .helpers import assert_bitwise_equal, snapshot

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests build their models from configs
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

K = 5
SAVE_AT = 7  # mid-period: two steps after the sync at 5
LR = 1e-2
# name -> (class built as cls(param_groups, **kwargs), its kwargs)
OPTIMIZERS = {
    "lookahead-adamw": (Lookahead.wrapping(torch.optim.AdamW, k=K, alpha=0.5), {"lr": LR}),
    "LookaheadAdamW": (LookaheadAdamW, {"lr": LR, "k": K, "alpha": 0.5}),
}


def build_optimizer(name: str, params):
    cls, kwargs = OPTIMIZERS[name]
    return cls(params, **kwargs)


def _params(lookahead) -> list:
    return [p for group in lookahead.param_groups for p in group["params"]]


def end_state(handle) -> dict:
    """The params, slow weights and counter of the Lookahead behind `handle`, copied."""
    lookahead = lookahead_of(handle)
    return {
        "params": snapshot(_params(lookahead)),
        "slow": snapshot([lookahead.state[p][SLOW_PARAM] for p in _params(lookahead)]),
        "step_count": lookahead.step_count,
    }


def params_equal(handle, expected: list) -> bool:
    """Whether the params of the Lookahead behind `handle` equal `expected` (e.g. a copy of the
    slow weights taken before a slow_weights() window, in which they trade places with the params)."""
    return all(torch.equal(p, e) for p, e in zip(_params(lookahead_of(handle)), expected, strict=True))


def assert_same_end_state(resumed: dict, uninterrupted: dict) -> None:
    assert resumed["step_count"] == uninterrupted["step_count"]
    assert_bitwise_equal(resumed["params"], uninterrupted["params"])
    assert_bitwise_equal(resumed["slow"], uninterrupted["slow"])
    assert not all(torch.equal(p, s) for p, s in zip(resumed["params"], resumed["slow"])), "ends on a sync step"


def assert_saved_with_slow_weights(saved: dict, handle, module: torch.nn.Module) -> None:
    """`saved` (a state_dict) is `module`'s with the slow weights of the Lookahead behind `handle`,
    which differ from the fast ones the module holds."""
    with lookahead_of(handle).slow_weights():
        expected = {name: t.clone() for name, t in module.state_dict().items()}
    assert saved.keys() == expected.keys() and all(torch.equal(saved[n], expected[n]) for n in saved)
    assert not all(torch.equal(saved[n], t) for n, t in module.state_dict().items())
