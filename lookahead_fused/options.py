"""Lookahead's constructor options: checked into the optimizer's defaults, and shown in its repr."""

from __future__ import annotations

import torch

from . import backends, bf16_int8, contract, first_moment, int8_blocks
from .adaptive_alpha import ADAPTIVE
from .sharded import check_int8_shardable, is_sharded
from .slow_state import ALPHA_KEY, is_compact, is_int8_delta, is_int8_momentum, momentum_dtype_fits
from .slow_state import slow_value_dtype_for


def check_nesterov(nesterov, outer_momentum) -> bool:
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
    if nesterov and not outer_momentum:
        raise ValueError("nesterov=True needs outer_momentum > 0 (as torch.optim.SGD's nesterov needs momentum)")
    return nesterov


def check_slow_dtype(slow_dtype, steps_itself: bool):
    """`steps_itself`: whether the optimizer's inner step is its own fused pass (LookaheadAdamW), which
    int8-delta needs."""
    if not (slow_dtype is None or slow_dtype is torch.float32 or is_compact(slow_dtype) or is_int8_delta(slow_dtype)):
        raise ValueError(
            f"slow_dtype must be None (the param's dtype), {bf16_int8.SLOW_DTYPE!r} (3 bytes a weight: "
            f"docs/design.md, 'Compact slow weights'), for LookaheadAdamW {int8_blocks.DELTA_SLOW_DTYPE!r} (about 1 "
            f"byte a weight: docs/design.md, 'int8-delta'), or torch.float32 (fp32 slow weights for float16/bfloat16 "
            f"params), got {slow_dtype!r}"
        )
    if is_int8_delta(slow_dtype) and not steps_itself:
        raise ValueError(
            f"slow_dtype={int8_blocks.DELTA_SLOW_DTYPE!r} keeps each slow weight as an offset from its param that "
            "the inner step writes again as it moves the param, which only LookaheadAdamW's own pass does; use "
            f"LookaheadAdamW(..., slow_dtype={int8_blocks.DELTA_SLOW_DTYPE!r}), or slow_dtype={bf16_int8.SLOW_DTYPE!r} "
            "here"
        )
    return slow_dtype


# [NOTE: what compact slow weights support] slow_dtype="bf16+int8" has the host-decided sync and the
# step-gated one (capturable=True, torch.compile), each one fused launch of the compact sync (with
# outer momentum, of the compact momentum sync: see [NOTE: compact momentum sync] in csrc/element_math.h),
# checkpoints, slow_weights(), every pullback mode ("pullback" keeps its slow momenta exact, in the
# first moments' dtype, synced in a launch of their own beside the compact one) and alpha="adaptive"
# (chosen from the slow weights decoded one tensor at a time). Its outer momentum is float32 (the
# slow weights' values are) or, with momentum_dtype=torch.bfloat16, bfloat16, or with
# momentum_dtype="int8" int8 blocks, synced by the compact int8 momentum sync in the same one launch
# (see [NOTE: compact int8 momentum sync] in csrc/element_math.h): 4.016 bytes a weight in all.
# LookaheadAdamW takes it too, and syncs it inside AdamW's pass, one launch per step
# (see [NOTE: AdamW compact step] in csrc/adamw.h; with an int8 outer momentum,
# see [NOTE: AdamW int8 momentum step] in csrc/adamw.h).


# [NOTE: what int8-delta supports] slow_dtype="int8-delta" (see [NOTE: int8-delta] in csrc/adamw.h) is
# LookaheadAdamW's alone: its pass writes each param's offset again as it moves the param, so the step
# and the sync are one launch whatever the step, host-decided or gated on the device (capturable=True).
# k is at most INT8_DELTA_MAX_K: the error each step's re-encoding adds is bounded per step, and the
# decided bound is for periods of at most 5 steps (docs/design.md, "int8-delta"). Params without a grad,
# strided params and sync_lookahead() sync through the reference's per-tensor loop; slow_weights()
# decodes into float32 copies; checkpoints keep the codes and scales bit for bit, and convert to and
# from the other slow dtypes against the params as they are when the checkpoint loads (load the model
# first). Pullback momenta sync in a launch of their own. An outer momentum syncs in the same pass:
# as int8 blocks (momentum_dtype="int8"; see [NOTE: int8-delta outer momentum] in csrc/adamw.h), 2.03
# bytes a weight in all, or in float32 (momentum_dtype=None, the slow weights' value dtype) or
# bfloat16 (see [NOTE: int8-delta float momentum] in csrc/adamw.h), 5.02 and 3.02 bytes. Replicas are
# refused, in lookahead_fused/replicas.py.
INT8_DELTA_MAX_K = 5


def check_int8_delta_options(defaults: dict) -> None:
    """see [NOTE: what int8-delta supports] in lookahead_fused/options.py"""
    if not is_int8_delta(defaults["slow_dtype"]):
        return
    if defaults["k"] > INT8_DELTA_MAX_K:
        raise ValueError(
            f"slow_dtype={int8_blocks.DELTA_SLOW_DTYPE!r} takes k <= {INT8_DELTA_MAX_K}, got k={defaults['k']}: its "
            "offset is encoded again at every step, and its error bound holds for periods of at most "
            f"{INT8_DELTA_MAX_K} steps (docs/design.md, 'int8-delta'); use slow_dtype={bf16_int8.SLOW_DTYPE!r} for a "
            "longer period"
        )


# [NOTE: bf16 outer momentum] momentum_dtype=torch.bfloat16 keeps each outer momentum in bfloat16
# (2 bytes) beside float32 or bf16+int8 slow weights (bfloat16 slow weights keep theirs in bfloat16
# anyway): the momentum sync computes in float32 and rounds the new momentum to nearest even as it
# stores it, in the same one launch (table codes LOOKAHEAD_BF16_MOMENTUM_PAIRS in csrc/table.h;
# beside bf16+int8 ones, LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS). Each sync's
# rounding error is at most 2^-9 of |m|, within 0.2 % of the tensor's max |m|. Params whose slow
# weights are float64 or float16 are refused when they join (one made float16 later and then loaded
# keeps its momentum in its slow weights' dtype), as is momentum_dtype without outer momentum.
# LookaheadAdamW runs the same math inside its fused AdamW pass, also beside int8-delta offsets
# (see [NOTE: int8-delta float momentum] in csrc/adamw.h).
#
# [NOTE: int8 outer momentum] momentum_dtype="int8" keeps each outer momentum as int8 codes with one
# float32 scale per block of 256 (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py), 1.016
# bytes an element, beside float32 slow weights (float32 params, or float16/bfloat16 ones with
# slow_dtype=torch.float32) or bf16+int8 ones: the int8 momentum sync (see [NOTE: int8 momentum sync] in csrc/element_math.h;
# beside bf16+int8 slow weights, see [NOTE: compact int8 momentum sync] in csrc/element_math.h)
# decodes, computes in float32 and encodes each block as it stores it, one launch per device. Each
# sync's error is at most 0.4 % of the block's max |m|. The same refusals as bfloat16 at join, and
# DTensors laid out other than FSDP2's Shard(0) on a 1-D mesh
# (see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py). LookaheadAdamW syncs it inside
# its AdamW pass, one launch per step (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h; beside
# int8-delta offsets, see [NOTE: int8-delta outer momentum] in csrc/adamw.h).
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
        check_int8_shardable(param, where, "momentum_dtype='int8'")


def check_slow_dtype_of(param: torch.Tensor, defaults: dict, *, where: str) -> None:
    """A param joining a Lookahead whose slow_dtype is an encoding: float32, float16 or bfloat16, and for
    int8-delta a DTensor laid out by FSDP2 (see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py)."""
    slow_dtype = defaults["slow_dtype"]
    if not isinstance(slow_dtype, str):
        return
    if param.dtype not in contract.ENCODED_PARAM_DTYPES:
        raise ValueError(
            f"{where} has dtype {param.dtype}; slow_dtype={slow_dtype!r} keeps the slow weights of float32, float16 "
            "and bfloat16 params"
        )
    if is_int8_delta(slow_dtype) and is_sharded(param):
        check_int8_shardable(param, where, f"slow_dtype={slow_dtype!r}")


def checked_defaults(
    *, k, alpha, pullback_momentum, momentum_key, outer_momentum, nesterov, slow_dtype, backend, capturable,
    momentum_dtype=None, steps_itself=False,
) -> dict:
    """The defaults of a Lookahead with these options, each checked; `backend` must be available.
    `steps_itself`: the optimizer's inner step is its own fused pass (LookaheadAdamW)."""
    defaults = {
        "k": contract.check_k(k),
        ALPHA_KEY: ADAPTIVE if alpha == ADAPTIVE else contract.check_alpha(alpha),
        "pullback_momentum": first_moment.check_mode(pullback_momentum),
        "momentum_key": momentum_key,
        "outer_momentum": contract.check_mu(outer_momentum),
        "nesterov": check_nesterov(nesterov, outer_momentum),
        "slow_dtype": check_slow_dtype(slow_dtype, steps_itself),
        "momentum_dtype": check_momentum_dtype(momentum_dtype, outer_momentum),
        "backend": backends.check_backend_name(backend),
        "capturable": bool(capturable),
    }
    check_int8_delta_options(defaults)
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
