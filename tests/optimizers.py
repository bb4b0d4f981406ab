"""The one table of optimizers the optimizer-level tests run: the inner optimizers (INNERS, with the
state key of each one's first moment) and the optimizer records built on them (RECORDS: Lookahead
around each inner optimizer, option variants, and LookaheadAdamW), each saying what it supports.
tests/test_optimizer_matrix.py runs the generic behaviours over every record that supports them;
other tests take the inner optimizers from INNERS (by name, a subset where they need one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from lookahead_fused import Lookahead, LookaheadAdamW


@dataclass(frozen=True)
class Inner:
    """An inner optimizer: `build(params)`, and the state key of its first moment (pullback's buffer)."""

    name: str
    build: Callable[[list], torch.optim.Optimizer]
    momentum_key: str | None


ADAMW_HYPER = {"lr": 0.05, "weight_decay": 0.01}  # torch.optim.AdamW's and LookaheadAdamW's, the same

INNERS = {
    inner.name: inner
    for inner in (
        Inner("sgd-momentum", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9), "momentum_buffer"),
        Inner("adam", lambda ps: torch.optim.Adam(ps, lr=0.01), "exp_avg"),
        Inner("adamw", lambda ps: torch.optim.AdamW(ps, **ADAMW_HYPER), "exp_avg"),
        Inner("nadam", lambda ps: torch.optim.NAdam(ps, lr=0.05), "exp_avg"),
        Inner("radam", lambda ps: torch.optim.RAdam(ps, lr=0.01), "exp_avg"),
    )
}


def inners(*names: str) -> dict[str, Inner]:
    """The named inner optimizers (all of them without names), for tests that need a subset."""
    return {name: INNERS[name] for name in names or INNERS}


@dataclass(frozen=True)
class OptimizerRecord:
    """One optimizer configuration: `inner` (for LookaheadAdamW, the torch.optim.AdamW it equals,
    which the float64 oracle and the peers wrap), the Lookahead `options`, and what it supports:
    capturable=True, torch.compile of its step, loading timm / pytorch_optimizer checkpoints, and
    evaluation by tests/helpers.PlainLookahead (Algorithm 1 in float64, which has no adaptive alpha)."""

    name: str
    inner: Inner
    options: dict = field(default_factory=dict)  # k, alpha, pullback_momentum, outer_momentum, nesterov
    fused_adamw: bool = False  # LookaheadAdamW instead of Lookahead(inner)
    capturable: bool = True
    compile: bool = True
    peer_checkpoints: bool = True
    float64_oracle: bool = True
    dtype: torch.dtype = torch.float64  # the params' dtype where a test needs no float64 oracle

    def __post_init__(self):
        if self.fused_adamw and self.inner.name != "adamw":
            raise ValueError(f"{self.name}: LookaheadAdamW equals Lookahead(AdamW), not Lookahead({self.inner.name})")

    @property
    def k(self) -> int:
        return self.options["k"]

    @property
    def alpha(self) -> float | str:
        return self.options["alpha"]

    def build(self, params, **overrides):
        """The optimizer over `params` (a list of tensors or of param groups); `overrides` (backend,
        capturable, ...) are passed to the Lookahead on top of the record's options."""
        options = {**self.options, **overrides}
        if self.fused_adamw:
            return LookaheadAdamW(params, **ADAMW_HYPER, **options)
        return Lookahead(self.inner.build(params), **options)

    def oracle_options(self) -> dict:
        """The options of tests/helpers.PlainLookahead (the float64 Algorithm 1) for this record."""
        return {
            "k": self.k,
            "alpha": self.alpha,
            "pullback": self.options.get("pullback_momentum", "none"),
            "momentum_key": self.inner.momentum_key,
            "outer_momentum": self.options.get("outer_momentum", 0.0),
            "nesterov": self.options.get("nesterov", False),
        }


def _lookahead(inner: str, name: str = "", **options) -> OptimizerRecord:
    return OptimizerRecord(f"lookahead-{inner}{name}", INNERS[inner], {"k": 3, "alpha": 0.5, **options})


RECORDS = [
    *(_lookahead(name) for name in INNERS),
    _lookahead("sgd-momentum", "-pullback", pullback_momentum="pullback"),
    _lookahead("sgd-momentum", "-outer-nesterov", outer_momentum=0.9, nesterov=True, alpha=0.7),
    _lookahead("adam", "-reset", pullback_momentum="reset", alpha=0.4),
    _lookahead("adamw", "-outer", outer_momentum=0.5, pullback_momentum="pullback"),
    # alpha="adaptive" is chosen on the host at each sync: refused with capturable=True, and not
    # compiled here; a peer's per-group alpha would replace it; the oracle has no adaptive alpha
    OptimizerRecord("lookahead-adam-adaptive", INNERS["adam"], {"k": 3, "alpha": "adaptive"}, capturable=False,
                    compile=False, peer_checkpoints=False, float64_oracle=False),  # fmt: skip
    # slow weights kept as bf16+int8
    # (see [NOTE: what compact slow weights support] in lookahead_fused/options.py): float32 params; no exact float64 oracle (the encoding rounds to 2^-15;
    # tests/test_compact_slow_weights.py bounds it), so no peer check either, which compares slow weights exactly
    OptimizerRecord("lookahead-adam-bf16+int8", INNERS["adam"], {"k": 3, "alpha": 0.5, "slow_dtype": "bf16+int8"},
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("lookahead-adam-adaptive-bf16+int8", INNERS["adam"],
                    {"k": 3, "alpha": "adaptive", "slow_dtype": "bf16+int8"}, capturable=False, compile=False,
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    # ... with outer momentum, float32 or bfloat16 (see [NOTE: compact momentum sync] in csrc/element_math.h)
    OptimizerRecord("lookahead-sgd-momentum-outer-nesterov-bf16+int8", INNERS["sgd-momentum"],
                    {"k": 3, "alpha": 0.7, "outer_momentum": 0.9, "nesterov": True, "slow_dtype": "bf16+int8"},
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("lookahead-adam-outer-pullback-bf16+int8-bf16-momentum", INNERS["adam"],
                    {"k": 3, "alpha": 0.5, "outer_momentum": 0.5, "pullback_momentum": "pullback",
                     "slow_dtype": "bf16+int8", "momentum_dtype": torch.bfloat16},
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    # ... or as int8 blocks (see [NOTE: compact int8 momentum sync] in csrc/element_math.h)
    OptimizerRecord("lookahead-sgd-momentum-outer-nesterov-bf16+int8-int8-momentum", INNERS["sgd-momentum"],
                    {"k": 3, "alpha": 0.7, "outer_momentum": 0.9, "nesterov": True, "slow_dtype": "bf16+int8",
                     "momentum_dtype": "int8"},
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("lookahead-sgd-momentum-pullback-bf16+int8", INNERS["sgd-momentum"],
                    {"k": 3, "alpha": 0.5, "pullback_momentum": "pullback", "slow_dtype": "bf16+int8"},
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    # the outer momentum in bfloat16 (see [NOTE: bf16 outer momentum] in lookahead_fused/options.py): float32 params;
    # no exact float64 oracle (the momentum rounds to 2^-8; tests/test_bf16_momentum.py bounds it)
    OptimizerRecord("lookahead-sgd-momentum-outer-nesterov-bf16-momentum", INNERS["sgd-momentum"],
                    {"k": 3, "alpha": 0.7, "outer_momentum": 0.9, "nesterov": True, "momentum_dtype": torch.bfloat16},
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    # the outer momentum as int8 blocks (see [NOTE: int8 outer momentum] in lookahead_fused/options.py): float32 params;
    # no exact float64 oracle (tests/test_int8_momentum.py bounds it)
    OptimizerRecord("lookahead-sgd-momentum-outer-nesterov-int8-momentum", INNERS["sgd-momentum"],
                    {"k": 3, "alpha": 0.7, "outer_momentum": 0.9, "nesterov": True, "momentum_dtype": "int8"},
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW", INNERS["adamw"], {"k": 3, "alpha": 0.5}, fused_adamw=True),
    OptimizerRecord("LookaheadAdamW-outer-nesterov", INNERS["adamw"], {"k": 3, "alpha": 0.6, "outer_momentum": 0.9,
                    "nesterov": True}, fused_adamw=True),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-outer-nesterov-bf16-momentum", INNERS["adamw"],
                    {"k": 3, "alpha": 0.6, "outer_momentum": 0.9, "nesterov": True, "momentum_dtype": torch.bfloat16},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-outer-nesterov-int8-momentum", INNERS["adamw"],
                    {"k": 3, "alpha": 0.6, "outer_momentum": 0.9, "nesterov": True, "momentum_dtype": "int8"},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-pullback", INNERS["adamw"], {"k": 3, "alpha": 0.5, "pullback_momentum": "pullback"},
                    fused_adamw=True),  # fmt: skip
    # the compact sync in its pass (see [NOTE: what compact slow weights support] in lookahead_fused/options.py)
    OptimizerRecord("LookaheadAdamW-pullback-bf16+int8", INNERS["adamw"],
                    {"k": 3, "alpha": 0.5, "pullback_momentum": "pullback", "slow_dtype": "bf16+int8"}, fused_adamw=True,
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-outer-nesterov-bf16+int8", INNERS["adamw"],
                    {"k": 3, "alpha": 0.6, "outer_momentum": 0.9, "nesterov": True, "slow_dtype": "bf16+int8"},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-outer-bf16+int8-bf16-momentum", INNERS["adamw"],
                    {"k": 3, "alpha": 0.5, "outer_momentum": 0.9, "slow_dtype": "bf16+int8", "momentum_dtype": torch.bfloat16},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-outer-bf16+int8-int8-momentum", INNERS["adamw"],
                    {"k": 3, "alpha": 0.5, "outer_momentum": 0.5, "slow_dtype": "bf16+int8", "momentum_dtype": "int8"},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    # slow weights as int8-delta offsets, written in its pass
    # (see [NOTE: what int8-delta supports] in lookahead_fused/options.py): float32 params; no exact float64
    # oracle (every step re-encodes the offset; tests/test_int8_delta_optimizer.py bounds it), so no peer check
    OptimizerRecord("LookaheadAdamW-int8-delta", INNERS["adamw"], {"k": 3, "alpha": 0.5, "slow_dtype": "int8-delta"},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-pullback-int8-delta", INNERS["adamw"],
                    {"k": 3, "alpha": 0.5, "pullback_momentum": "pullback", "slow_dtype": "int8-delta"}, fused_adamw=True,
                    peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    # ... beside an int8 outer momentum, synced in the same pass (see [NOTE: int8-delta outer momentum] in csrc/adamw.h)
    OptimizerRecord("LookaheadAdamW-outer-nesterov-int8-delta-int8-momentum", INNERS["adamw"],
                    {"k": 3, "alpha": 0.6, "outer_momentum": 0.9, "nesterov": True, "slow_dtype": "int8-delta",
                     "momentum_dtype": "int8"},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    # ... or a float32 or bfloat16 one (see [NOTE: int8-delta float momentum] in csrc/adamw.h)
    OptimizerRecord("LookaheadAdamW-outer-int8-delta-fp32-momentum", INNERS["adamw"],
                    {"k": 3, "alpha": 0.5, "outer_momentum": 0.5, "slow_dtype": "int8-delta"},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
    OptimizerRecord("LookaheadAdamW-outer-nesterov-int8-delta-bf16-momentum", INNERS["adamw"],
                    {"k": 3, "alpha": 0.6, "outer_momentum": 0.9, "nesterov": True, "slow_dtype": "int8-delta",
                     "momentum_dtype": torch.bfloat16},
                    fused_adamw=True, peer_checkpoints=False, float64_oracle=False, dtype=torch.float32),  # fmt: skip
]


def records(*supporting: str) -> list[OptimizerRecord]:
    """The records whose flags `supporting` (e.g. "capturable") are all set; all without flags."""
    return [r for r in RECORDS if all(getattr(r, flag) for flag in supporting)]
