"""The "reference" backend: a per-tensor Python loop, the pure-Python version benchmarks compare
against, and the float64 evaluation of the contract that the tests use as their oracle."""

from __future__ import annotations

import math
import sys

import torch

from .. import bf16_int8, int8_blocks
from ..contract import opmath_dtype
from .step_gate import masked_compact_int8_momentum_sync_on_step_ as compact_int8_momentum_sync_on_step_  # noqa: F401
from .step_gate import masked_compact_momentum_sync_on_step_ as compact_momentum_sync_on_step_  # noqa: F401
from .step_gate import masked_compact_sync_on_step_ as compact_sync_on_step_  # noqa: F401  (the fallback)
from .step_gate import masked_int8_momentum_sync_on_step_ as int8_momentum_sync_on_step_  # noqa: F401  (the fallback)
from .step_gate import masked_momentum_sync_on_step_ as momentum_sync_on_step_  # noqa: F401  (the fallback)
from .step_gate import masked_sync_on_step_ as sync_on_step_  # noqa: F401  (no gated kernel: the fallback)
from .step_gate import compact_int8_momentum_values, compact_momentum_values, int8_momentum_values
from .step_gate import momentum_and_target, two_sided_lerp


def sync_(fast: list[torch.Tensor], slow: list[torch.Tensor], alpha: float) -> None:
    for f, s in zip(fast, slow):
        # torch.lerp computes in opmath (float32 for half types) with the two-sided formula of the
        # contract; a float16/bfloat16 fast tensor is widened exactly when slow is float32.
        s.lerp_(f if f.dtype == s.dtype else f.to(s.dtype), alpha)
        f.copy_(s)


def momentum_sync_(fast, slow, momentum, alpha: float, mu: float, nesterov: bool) -> None:
    """The momentum sync (see [NOTE: momentum sync] in csrc/element_math.h) per tensor, in opmath: m <- mu m + (f -
    s), rounded as stored; slow <-
    lerp(slow, f + mu (nesterov ? m_new : m_old), alpha); fast <- slow."""
    for f, s, m in zip(fast, slow, momentum):
        opmath = opmath_dtype(s.dtype)
        so = s.to(opmath)
        m_new, target = momentum_and_target(f.to(opmath), so, m.to(opmath), m.dtype, mu, nesterov)
        s.copy_(torch.lerp(so, target, alpha))
        m.copy_(m_new)
        f.copy_(s)


def momentum_sync_float64(fast, slow, momentum, alpha: float, mu: float, nesterov: bool):
    """(new slow, new momentum) evaluated in float64 (not rounded): what every backend approximates."""
    f, s, m = fast.double(), slow.double(), momentum.double()
    m_new = mu * m + (f - s)
    return sync_float64(f + mu * (m_new if nesterov else m), s, alpha), m_new


def int8_momentum_sync_(fast, slow, momentum, scales, alpha: float, mu: float, nesterov: bool) -> None:
    """The momentum sync with the momentum kept as int8 blocks
    (see [NOTE: int8 momentum sync] in csrc/element_math.h) per tensor: decode, the momentum sync in
    float32, encode with int8_blocks' oracle."""
    w = torch.tensor(alpha, dtype=torch.float32)
    for f, s, q, sc in zip(fast, slow, momentum, scales):
        new_slow, new_codes, new_scales = int8_momentum_values(f, s, q, sc, w, mu, nesterov)
        s.copy_(int8_blocks.from_memory_order(new_slow, s))
        q.copy_(int8_blocks.from_memory_order(new_codes, q))
        sc.copy_(new_scales)
        f.copy_(s)


def int8_momentum_sync_float64(fast, slow, momentum, scales, alpha: float, mu: float, nesterov: bool):
    """(new slow, new momentum) in float64 from the stored values, the new momentum not encoded: what every
    backend approximates; each 1-D in memory order."""
    f, s = int8_blocks.memory_order(fast, slow).double(), int8_blocks.memory_order(slow).double()
    m = int8_blocks.decode(int8_blocks.memory_order(momentum), scales).double()
    m_new = mu * m + (f - s)
    return sync_float64(f + mu * (m_new if nesterov else m), s, alpha), m_new


def compact_int8_momentum_sync_(fast, slow_high, slow_low, momentum, scales, alpha: float, mu: float,
                                nesterov: bool) -> None:  # fmt: skip
    """The int8 momentum sync of slow weights kept as bf16+int8
    (see [NOTE: compact int8 momentum sync] in csrc/element_math.h) per tensor: decode, the int8 momentum
    sync in float32, encode both."""
    w = torch.tensor(alpha, dtype=torch.float32)
    for f, high, low, q, sc in zip(fast, slow_high, slow_low, momentum, scales):
        new_high, new_low, new_codes, new_scales = compact_int8_momentum_values(f, high, low, q, sc, w, mu, nesterov)
        high.copy_(int8_blocks.from_memory_order(new_high, high))
        low.copy_(int8_blocks.from_memory_order(new_low, low))
        q.copy_(int8_blocks.from_memory_order(new_codes, q))
        sc.copy_(new_scales)
        f.copy_(bf16_int8.decode(high, low))


def compact_int8_momentum_sync_float64(fast, slow_high, slow_low, momentum, scales, alpha: float, mu: float,
                                       nesterov: bool):  # fmt: skip
    """(new slow, new momentum) in float64 from the stored values, neither encoded, as
    int8_momentum_sync_float64 with the slow weights decoded; each 1-D in memory order."""
    return int8_momentum_sync_float64(fast, bf16_int8.decode(slow_high, slow_low), momentum, scales, alpha, mu, nesterov)


def adamw_constants(row) -> tuple:
    """(decay, beta1, beta2, eps, step_size, bc2_sqrt, alpha, syncs, grad_sign) of one row, in
    float64 as torch.optim.AdamW derives them on the host."""
    lr, beta1, beta2, eps, weight_decay, step, alpha, syncs, maximize = row
    step_size = lr / (1.0 - beta1**step)
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    return 1.0 - lr * weight_decay, beta1, beta2, eps, step_size, bc2_sqrt, alpha, bool(syncs), -1.0 if maximize else 1.0


def _adamw_param(p, g, m, v, constants) -> torch.Tensor:
    """AdamW's new param in opmath (not stored), m and v updated in place: the math of csrc/adamw.h."""
    decay, beta1, beta2, eps, step_size, bc2_sqrt, _, _, sign = constants
    opmath = opmath_dtype(p.dtype)
    go = g.to(opmath) * sign
    m.copy_(torch.lerp(m.to(opmath), go, 1.0 - beta1))
    v.copy_(v.to(opmath) * beta2 + (1.0 - beta2) * (go * go))
    denom = v.to(opmath).sqrt() / bc2_sqrt + eps
    return p.to(opmath) * decay - step_size * (m.to(opmath) / denom)


def _adamw_steps(params, grads, exp_avgs, exp_avg_sqs, hyper, rows, sync_row) -> None:
    """AdamW's step for every param, per tensor with torch ops in opmath: the math of csrc/adamw.h
    (decoupled weight decay, bias correction, the moments rounded as stored before the param's update
    reads them); then, on a sync row, sync_row(i, alpha) syncs the new param i."""
    table, row_of = hyper.tolist(), rows.tolist()
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, strict=True)):
        constants = adamw_constants(table[row_of[i]])
        alpha, syncs = constants[6:8]
        p.copy_(_adamw_param(p, g, m, v, constants))
        if syncs:
            sync_row(i, alpha)


def adamw_step_(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu: float, nesterov: bool) -> None:
    """AdamW's step for every param (_adamw_steps), and on a sync row the sync of the new param.
    momentum: [] without outer momentum; slow: [] for AdamW's step alone."""

    def sync_row(i: int, alpha: float) -> None:
        if momentum:
            momentum_sync_([params[i]], [slow[i]], [momentum[i]], alpha, mu, nesterov)
        elif slow:
            sync_([params[i]], [slow[i]], alpha)

    _adamw_steps(params, grads, exp_avgs, exp_avg_sqs, hyper, rows, sync_row)


def adamw_compact_step_(params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum, hyper, rows, mu: float,
                        nesterov: bool) -> None:  # fmt: skip
    """AdamW's step with bf16+int8 slow weights (see [NOTE: AdamW compact step] in csrc/adamw.h): AdamW's
    step for every param (_adamw_steps), and on a sync row the compact sync of the new param (with
    `momentum`, the compact momentum sync)."""

    def sync_row(i: int, alpha: float) -> None:
        triple = ([params[i]], [slow_high[i]], [slow_low[i]])
        if momentum:
            compact_momentum_sync_(*triple, [momentum[i]], alpha, mu, nesterov)
        else:
            compact_sync_(*triple, alpha)

    _adamw_steps(params, grads, exp_avgs, exp_avg_sqs, hyper, rows, sync_row)


def adamw_int8_momentum_step_(params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales, hyper, rows,
                              mu: float, nesterov: bool) -> None:  # fmt: skip
    """AdamW's step with an int8 outer momentum (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h): AdamW's
    step for every param (_adamw_steps), and on a sync row the int8 momentum sync of the new param, beside
    float32 slow weights (`slow_low` empty) or bf16+int8 ones (`slow` their high parts)."""

    def sync_row(i: int, alpha: float) -> None:
        if slow_low:
            compact_int8_momentum_sync_([params[i]], [slow[i]], [slow_low[i]], [momentum[i]], [scales[i]], alpha, mu,
                                        nesterov)  # fmt: skip
        else:
            int8_momentum_sync_([params[i]], [slow[i]], [momentum[i]], [scales[i]], alpha, mu, nesterov)

    _adamw_steps(params, grads, exp_avgs, exp_avg_sqs, hyper, rows, sync_row)


def adamw_delta_step_(params, grads, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales, hyper, rows,
                      mu: float, nesterov: bool) -> None:  # fmt: skip
    """AdamW's step for every param with its slow weight kept as an int8 offset from the param
    (see [NOTE: int8-delta] in csrc/adamw.h), per tensor in float32 torch ops, each arithmetic step one
    rounding as in the kernels, the new offsets encoded by int8_blocks' oracle; with `momentum` (else
    []) a sync row runs the momentum sync: of int8 blocks with their `momentum_scales`
    (see [NOTE: int8-delta outer momentum] in csrc/adamw.h), or of float32 or bfloat16 momenta with
    `momentum_scales` empty (see [NOTE: int8-delta float momentum] in csrc/adamw.h). Any layout: a param
    is walked in its codes' memory order."""
    table, row_of = hyper.tolist(), rows.tolist()
    for i, (p, g, m, v, q, sc) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, delta, scales, strict=True)):
        constants = adamw_constants(table[row_of[i]])
        alpha, syncs = constants[6:8]
        kept = _adamw_param(p, g, m, v, constants).to(p.dtype)
        outer = _delta_outer(momentum, momentum_scales, i, mu, nesterov)
        _store_delta_step(p, q, sc, int8_blocks.memory_order(kept, q).float(), syncs, alpha, outer)


def _delta_outer(momentum, momentum_scales, i: int, mu: float, nesterov: bool):
    """The outer momentum of entry i of an int8-delta call, as _store_delta_step takes it: None, or
    (its momentum, its block scales or None for a float one, mu, nesterov)."""
    if not momentum:
        return None
    return momentum[i], momentum_scales[i] if momentum_scales else None, mu, nesterov


def int8_delta_sync_(fast, delta, scales, alpha: float, momentum=(), momentum_scales=(), mu: float = 0.0,
                     nesterov: bool = False) -> None:  # fmt: skip
    """The sync of params whose slow weights are int8-delta offsets, without AdamW's step (a param without
    a grad, sync_lookahead()): adamw_delta_step_'s sync of each param as it is."""
    for i, (p, q, sc) in enumerate(zip(fast, delta, scales, strict=True)):
        outer = _delta_outer(momentum, momentum_scales, i, mu, nesterov)
        _store_delta_step(p, q, sc, int8_blocks.memory_order(p, q).float(), True, alpha, outer)


def _store_delta_step(p, q, sc, kept, syncs: bool, alpha: float, outer=None) -> None:
    """Stores a step of int8-delta slow weights: the new param `kept` (1-D float32 in q's memory order,
    values of p's dtype) and, on a sync step, the lerp of the slow weight toward it, or with `outer`
    (the momentum, its block scales or None, mu, nesterov) the int8 or float momentum sync; then the offset."""
    slow = int8_blocks.memory_order(p, q).float() + int8_blocks.decode(int8_blocks.memory_order(q), sc)
    w = torch.tensor(alpha, dtype=torch.float32)
    if syncs and outer is not None and outer[1] is None:
        momentum, _, mu, nesterov = outer
        m_new, target = momentum_and_target(kept, slow, int8_blocks.memory_order(momentum, q).float(), momentum.dtype,
                                            mu, nesterov)  # fmt: skip
        slow = two_sided_lerp(slow, target, w)
        momentum.copy_(int8_blocks.from_memory_order(m_new, momentum))
    elif syncs and outer is not None:
        momentum, momentum_scales, mu, nesterov = outer
        slow, codes, new_scales = int8_momentum_values(kept, slow, momentum, momentum_scales, w, mu, nesterov)
        momentum.copy_(int8_blocks.from_memory_order(codes, momentum))
        momentum_scales.copy_(new_scales)
    elif syncs:
        slow = two_sided_lerp(slow, kept, w)
    if syncs:
        kept = slow.to(p.dtype).float()
    codes, new_scales = int8_blocks.encode(slow - kept)
    p.copy_(int8_blocks.from_memory_order(kept, q))
    q.copy_(int8_blocks.from_memory_order(codes, q))
    sc.copy_(new_scales)


def compact_sync_(fast, slow_high, slow_low, alpha: float) -> None:
    """The sync of slow weights kept as bf16+int8 (see [NOTE: compact sync] in csrc/element_math.h) per
    tensor: decode, lerp in float32, encode with the oracle of bf16_int8.py; fast <- the decoded value."""
    for f, high, low in zip(fast, slow_high, slow_low):
        new_high, new_low = bf16_int8.encode(torch.lerp(bf16_int8.decode(high, low), f.float(), alpha))
        high.copy_(new_high)
        low.copy_(new_low)
        f.copy_(bf16_int8.decode(new_high, new_low))


def compact_momentum_sync_(fast, slow_high, slow_low, momentum, alpha: float, mu: float, nesterov: bool) -> None:
    """The momentum sync of slow weights kept as bf16+int8
    (see [NOTE: compact momentum sync] in csrc/element_math.h) per tensor: decode, the momentum sync in
    float32, encode with the oracle of bf16_int8.py; the momentum rounded to its dtype; fast <- the
    decoded value."""
    for f, high, low, m in zip(fast, slow_high, slow_low, momentum):
        new_high, new_low, m_new = compact_momentum_values(f, high, low, m, alpha, mu, nesterov)
        high.copy_(new_high)
        low.copy_(new_low)
        m.copy_(m_new)
        f.copy_(bf16_int8.decode(new_high, new_low))


def compact_sync_float64(fast, slow_high, slow_low, alpha: float) -> torch.Tensor:
    """The new slow weight in float64 before it is encoded: what every backend's decoded result approximates."""
    return sync_float64(fast.double(), bf16_int8.decode(slow_high, slow_low).double(), alpha)


def pseudo_gradient_(fast, slow, out) -> None:
    """out <- fast - slow per tensor, in the slow dtype's opmath, rounded once to out's dtype (the slow
    dtype, or bfloat16; see [NOTE: pseudo-gradient] in csrc/element_math.h); fast and slow are only read."""
    for f, s, o in zip(fast, slow, out):
        opmath = opmath_dtype(s.dtype)
        o.copy_(torch.sub(f.to(opmath), s.to(opmath)))


def swap_(first: list[torch.Tensor], second: list[torch.Tensor]) -> None:
    for x, y in zip(first, second):
        held = x.clone()  # one tensor at a time: never a full copy of the model
        x.copy_(y)
        y.copy_(held)


def sync_float64(fast: torch.Tensor, slow: torch.Tensor, alpha: float) -> torch.Tensor:
    """The new slow value evaluated in float64 (not rounded): what every backend approximates."""
    f, s = fast.double(), slow.double()
    if abs(alpha) < 0.5:
        return s + alpha * (f - s)
    return f - (f - s) * (1.0 - alpha)


def load():
    """This module is the backend (see [NOTE: backend protocol] in lookahead_fused/backends/__init__.py)."""
    return sys.modules[__name__]
