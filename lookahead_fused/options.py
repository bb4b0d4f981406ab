"""Lookahead's constructor options: checked into the optimizer's defaults, and shown in its repr."""

from __future__ import annotations

import torch

from . import backends, bf16_int8, contract, first_moment, int8_blocks
from .adaptive_alpha import ADAPTIVE
from .sharded import check_int8_shardable, is_sharded
from .slow_state import ALPHA_KEY, is_compact, is_int8_momentum, momentum_dtype_fits, slow_value_dtype_for


def check_nesterov(nesterov, outer_momentum) -> bool:
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
    if nesterov and not outer_momentum:
        raise ValueError("nesterov=True needs outer_momentum > 0 (as torch.optim.SGD's nesterov needs momentum)")
    return nesterov


def check_slow_dtype(slow_dtype):
    if not (slow_dtype is None or slow_dtype is torch.float32 or is_compact(slow_dtype)):
        raise ValueError(
            f"slow_dtype must be None (the param's dtype), {bf16_int8.SLOW_DTYPE!r} (3 bytes a weight: "
            f"docs/design.md, 'Compact slow weights') or torch.float32 (fp32 slow weights for float16/bfloat16 "
            f"params), got {slow_dtype!r}"
        )
    return slow_dtype


# [NOTE: what compact slow weights support] slow_dtype="bf16+int8" has the host-decided sync and the
# step-gated one (capturable=True, torch.compile), each one fused launch of the compact sync (with
# outer momentum, of the compact momentum sync: see [NOTE: compact momentum sync] in csrc/element_math.h),
# checkpoints, slow_weights(), every pullback mode ("pullback" keeps its slow momenta exact, in the
# first moments' dtype, synced in a launch of their own beside the compact one) and alpha="adaptive"
# (chosen from the slow weights decoded one tensor at a time). Its outer momentum is float32 (the
# slow weights' values are) or, with momentum_dtype=torch.bfloat16, bfloat16; momentum_dtype="int8"
# is refused at construction, before anything is built (the int8 momentum sync reads float32 slow
# weights). LookaheadAdamW takes it too: its fused pass then runs AdamW's step alone (the op without
# slow weights) and a sync step adds the compact (momentum) sync's launch after it, two launches
# there, as with an int8 outer momentum (see [NOTE: int8 outer momentum] in lookahead_fused/options.py).
_COMPACT_REFUSES = {
    "momentum_dtype": lambda options: is_int8_momentum(options["momentum_dtype"]),
}


def check_compact_options(defaults: dict) -> None:
    """see [NOTE: what compact slow weights support] in lookahead_fused/options.py"""
    if not is_compact(defaults["slow_dtype"]):
        return
    for name, refused in _COMPACT_REFUSES.items():
        if refused(defaults):
            raise ValueError(
                f"slow_dtype={bf16_int8.SLOW_DTYPE!r} does not support {name}={defaults[name]!r} yet; beside it the "
                "outer momentum is float32 (momentum_dtype=None) or torch.bfloat16 (or use slow_dtype=None or "
                "torch.float32)"
            )


# [NOTE: bf16 outer momentum] momentum_dtype=torch.bfloat16 keeps each outer momentum in bfloat16
# (2 bytes) beside float32 or bf16+int8 slow weights (bfloat16 slow weights keep theirs in bfloat16
# anyway): the momentum sync computes in float32 and rounds the new momentum to nearest even as it
# stores it, in the same one launch (table codes LOOKAHEAD_BF16_MOMENTUM_PAIRS in csrc/table.h;
# beside bf16+int8 ones, LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS). Each sync's
# rounding error is at most 2^-9 of |m|, within 0.2 % of the tensor's max |m|. Params whose slow
# weights are float64 or float16 are refused when they join (one made float16 later and then loaded
# keeps its momentum in its slow weights' dtype), as is momentum_dtype without outer momentum.
# LookaheadAdamW runs the same math inside its fused AdamW pass.
#
# [NOTE: int8 outer momentum] momentum_dtype="int8" keeps each outer momentum as int8 codes with one
# float32 scale per block of 256 (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py), 1.016
# bytes an element, beside float32 slow weights (float32 params, or float16/bfloat16 ones with
# slow_dtype=torch.float32): the int8 momentum sync (see [NOTE: int8 momentum sync] in csrc/element_math.h)
# decodes, computes in float32 and encodes each block as it stores it, one launch per device. Each
# sync's error is at most 0.4 % of the block's max |m|. The same refusals as bfloat16 at join, and
# DTensors laid out other than FSDP2's Shard(0) on a 1-D mesh
# (see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py). LookaheadAdamW runs it as a
# launch of its own after its AdamW pass on sync steps (the pass keeps a momentum beside AdamW's
# moments only in a dtype, not encoded): two launches there.
MOMENTUM_DTYPES = (None, torch.bfloat16, int8_blocks.MOMENTUM_DTYPE)


def check_momentum_dtype(momentum_dtype, outer_momentum):
    """see [NOTE: bf16 outer momentum] in lookahead_fused/options.py"""
    if not (is_int8_momentum(momentum_dtype) or any(momentum_dtype is accepted for accepted in MOMENTUM_DTYPES)):
        raise ValueError(
            "momentum_dtype must be None (the slow weights' dtype), torch.bfloat16 or "
            f"{int8_blocks.MOMENTUM_DTYPE!r} (int8 blocks: docs/design.md), got {momentum_dtype!r}"
        )
    if momentum_dtype is not None and not outer_momentum:
        raise ValueError(f"momentum_dtype={momentum_dtype} needs outer_momentum > 0: without it there is no outer momentum")
    return momentum_dtype


def check_momentum_dtype_of(param: torch.Tensor, defaults: dict, *, where: str) -> None:
    """A param joining a Lookahead with momentum_dtype: its slow weights must take it (float32 or bfloat16
    for torch.bfloat16, float32 for "int8"); an int8 momentum takes DTensors laid out by FSDP2
    (see [NOTE: int8 outer momentum] in lookahead_fused/options.py)."""
    wanted = defaults["momentum_dtype"]
    if wanted is None:
        return
    slow = slow_value_dtype_for(param, defaults["slow_dtype"])
    if not momentum_dtype_fits(wanted, slow):
        beside = "float32" if is_int8_momentum(wanted) else "float32 or bfloat16"
        raise ValueError(
            f"{where}: its slow weights are {slow}; momentum_dtype={wanted} keeps the outer momentum beside {beside} "
            "slow weights (for a float16 or bfloat16 param pass slow_dtype=torch.float32)"
        )
    if is_int8_momentum(wanted) and is_sharded(param):
        check_int8_shardable(param, where)


def checked_defaults(
    *, k, alpha, pullback_momentum, momentum_key, outer_momentum, nesterov, slow_dtype, backend, capturable,
    momentum_dtype=None,
) -> dict:
    """The defaults of a Lookahead with these options, each checked; `backend` must be available."""
    defaults = {
        "k": contract.check_k(k),
        ALPHA_KEY: ADAPTIVE if alpha == ADAPTIVE else contract.check_alpha(alpha),
        "pullback_momentum": first_moment.check_mode(pullback_momentum),
        "momentum_key": momentum_key,
        "outer_momentum": contract.check_mu(outer_momentum),
        "nesterov": check_nesterov(nesterov, outer_momentum),
        "slow_dtype": check_slow_dtype(slow_dtype),
        "momentum_dtype": check_momentum_dtype(momentum_dtype, outer_momentum),
        "backend": backends.check_backend_name(backend),
        "capturable": bool(capturable),
    }
    check_compact_options(defaults)
    backends.require_available(backend)
    if alpha == ADAPTIVE and defaults["outer_momentum"]:
        raise ValueError(
            "alpha='adaptive' chooses the alpha of the plain interpolation (the paper's section 3.1); it is not "
            "defined with outer_momentum > 0: pass a number alpha, or outer_momentum=0"
        )
    return defaults


def describe(defaults: dict, optimizer) -> str:
    """Lookahead's repr: its options and the inner optimizer's repr."""
    return (
        f"Lookahead(k={defaults['k']}, alpha={defaults[ALPHA_KEY]}, "
        f"pullback_momentum={defaults['pullback_momentum']!r}, slow_dtype={defaults['slow_dtype']}, "
        f"outer_momentum={defaults['outer_momentum']}, nesterov={defaults['nesterov']}, "
        f"momentum_dtype={defaults['momentum_dtype']}, "
        f"backend={defaults['backend']!r}, capturable={defaults['capturable']},\n"
        f"  optimizer={optimizer!r})"
    )
