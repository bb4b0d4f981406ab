"""AdamW's fused step with the sync for the "triton" backend: one launch per dtype pair and alignment
class, the math of csrc/adamw.h (see [NOTE: Triton AdamW] in lookahead_fused/backends/triton/adamw.py).

[NOTE: Triton AdamW] The plan is the sync's (see [NOTE: Triton plan] in lookahead_fused/backends/triton/__init__.py: the
same
table builder, cache and launch loop, so also its stream and capture keep-alive) with seven address
tables (param, grad, exp_avg, exp_avg_sq, slow, the slow weights' int8 residual, outer momentum) and
each entry's row of the hyper table. The bias corrections and the other per-row constants are derived from the hyper
table by torch ops on its device before the launch (a few tiny kernels, which a CUDA graph
captures), so the kernel loads them instead of computing pow: float64, as the C++ kernels derive
them. Square roots and divisions are IEEE-rounded (tl.sqrt_rn, tl.div_rn), like the C++ kernels'.
On a non-sync row the slow weights are not read; a call without slow weights (AdamW's step alone)
compiles without the sync (HAS_SLOW), its slow and momentum tables exp_avg_sq's, never read. The block size is not tuned for this op (BLOCK
1024, 4 warps on a GPU): unmeasured on a GPU.

AdamW's step with bf16+int8 slow weights (see [NOTE: AdamW compact step] in csrc/adamw.h) is the same
kernel with COMPACT: the slow table holds the bfloat16 high parts, the residual table their int8
residuals, the momentum is float32 or bfloat16 (one launch per momentum dtype too), and a sync row
runs compact.py's compact (momentum) sync of the new param as stored, so the launch gives the bits of
AdamW's step alone followed by the compact sync. Its block is the compact sync's (2048, 4 warps on a
GPU), so that the residuals' accesses are 16 bytes too.
"""
from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from ...contract import opmath_dtype
from ...device_scalars import device_scalar
from .. import triton_interpreting
from .compact import GPU_CONFIG as COMPACT_GPU_CONFIG  # the compact sync's: 16 elements a thread
from .compact import ROUNDING_SHIFT, compact_sync_values
from .elementwise import ALPHA_ON_DEVICE, TL_DTYPES, round_to, sync_values
from .plans import CHUNK_BITS, INTERPRETER_CONFIG, Table, cached_plan, chunk_of, max_programs, on_vector_boundary
from .plans import run_plan

_GPU_CONFIG = (1024, 4)
# The derived columns, per row (see derived_table): the kernel's view of csrc/adamw.h's AdamWConstants.
_DECAY, _M_WEIGHT, _SMALL_W1, _BETA2, _ONE_MINUS_BETA2, _EPS, _STEP_SIZE, _BC2_SQRT, _SIGN, ALPHA_COLUMN, SYNC_COLUMN = (
    tl.constexpr(i) for i in range(11)
)
DERIVED_COLUMNS = 11
_SIDE_FROM_ROW, _ROUNDING_SHIFT = tl.constexpr(ALPHA_ON_DEVICE), tl.constexpr(ROUNDING_SHIFT)


def derived_table(hyper: torch.Tensor) -> torch.Tensor:
    """The per-row constants of csrc/adamw.h from the hyper table, in float64 on its device."""
    lr, beta1, beta2, eps, weight_decay, step, alpha, syncs, maximize = hyper.unbind(1)
    small = (1.0 - beta1) < 0.5
    columns = [
        1.0 - lr * weight_decay, torch.where(small, 1.0 - beta1, beta1), small.double(), beta2, 1.0 - beta2, eps,
        lr / (1.0 - torch.pow(beta1, step)), torch.sqrt(1.0 - torch.pow(beta2, step)), 1.0 - 2.0 * maximize, alpha, syncs,
    ]  # fmt: skip
    return torch.stack(columns, 1).contiguous()


@triton.jit
def _sqrt_rn(x, OPMATH: tl.constexpr):
    """IEEE-rounded square root: sqrt_rn for float32 (tl.sqrt may be approximate); float64's is exact."""
    if OPMATH == tl.float64:
        return tl.sqrt(x)
    else:
        return tl.sqrt_rn(x)


@triton.jit
def _div_rn(a, b, OPMATH: tl.constexpr):
    """IEEE-rounded division (float32's `/` may be approximate; float64's is rounded)."""
    if OPMATH == tl.float64:
        return a / b
    else:
        return tl.div_rn(a, b)


@triton.jit
def adamw_table_kernel(
    param_addresses, grad_addresses, exp_avg_addresses, exp_avg_sq_addresses, slow_addresses, low_addresses,
    mom_addresses, numels, row_of, chunks, num_chunks, derived, mu_ptr,
    FAST: tl.constexpr, SLOW: tl.constexpr, OPMATH: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr,
    CHUNK_BITS: tl.constexpr, MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr, COLUMNS: tl.constexpr, MOM: tl.constexpr,
    HAS_SLOW: tl.constexpr, COMPACT: tl.constexpr,
):  # fmt: skip
    """The tables that a launch's lists lack are exp_avg_sq's, never read: slow_addresses without HAS_SLOW,
    low_addresses without COMPACT, mom_addresses without MOMENTUM. With COMPACT, slow_addresses hold the
    slow weights' bfloat16 high parts and low_addresses their int8 residuals."""
    # See [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py
    for c in range(tl.program_id(0), num_chunks, tl.num_programs(0)):
        entry, start, offsets = chunk_of(chunks, c, CHUNK_BITS, BLOCK)
        row = derived + tl.load(row_of + entry) * COLUMNS
        param = tl.load(param_addresses + entry).to(tl.pointer_type(FAST))
        grad = tl.load(grad_addresses + entry).to(tl.pointer_type(FAST))
        exp_avg = tl.load(exp_avg_addresses + entry).to(tl.pointer_type(FAST))
        exp_avg_sq = tl.load(exp_avg_sq_addresses + entry).to(tl.pointer_type(FAST))
        slow = tl.load(slow_addresses + entry).to(tl.pointer_type(SLOW))
        low = tl.load(low_addresses + entry).to(tl.pointer_type(tl.int8))
        mom = tl.load(mom_addresses + entry).to(tl.pointer_type(MOM))
        if ALIGNED:  # See [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py
            param = tl.multiple_of(param, 16)
            grad = tl.multiple_of(grad, 16)
            exp_avg = tl.multiple_of(exp_avg, 16)
            exp_avg_sq = tl.multiple_of(exp_avg_sq, 16)
            slow = tl.multiple_of(slow, 16)
            low = tl.multiple_of(low, 16)
            mom = tl.multiple_of(mom, 16)
        numel = tl.load(numels + entry)
        # unmasked, so aligned entries get 16-byte accesses
        # (see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py)
        if start + BLOCK <= numel:
            _adamw_block(param, grad, exp_avg, exp_avg_sq, slow, low, mom, offsets, None, row, mu_ptr, FAST, SLOW,
                         OPMATH, MOMENTUM, NESTEROV, HAS_SLOW, COMPACT)  # fmt: skip
        else:
            _adamw_block(param, grad, exp_avg, exp_avg_sq, slow, low, mom, offsets, offsets < numel, row, mu_ptr, FAST,
                         SLOW, OPMATH, MOMENTUM, NESTEROV, HAS_SLOW, COMPACT)  # fmt: skip


# [NOTE: Triton AdamW fmas] AdamW's three multiply-adds are explicit tl.fma, each rounded once, so that
# the kernels that share adamw_param compute the same bits whether or not their launch lets the compiler
# fuse a multiply and an add: adamw_table_kernel compiles with fusion on, adamw_delta.py's and
# adamw_int8_momentum.py's kernels with it off (int8_momentum.COMPILE_OPTIONS), and the op contract wants
# their AdamW step bit for bit adamw_table_kernel's (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h).
# The forms are those LLVM chose in adamw_table_kernel's sm_80/sm_90 PTX when they were plain products and sums
# (Triton 3.8; every variant's stored values traced through its PTX, before and after the change):
#     m' = fma(w, high - low, low)                      low + w (high - low), everywhere
#     p' = fma(p, decay, -(step_size (m' / denom)))    p decay fused, the step's product rounded, everywhere
#     v' = fma(beta2, v, (1 - beta2) (g g))             beta2 v fused, (1 - beta2) g^2 rounded: everywhere but
#          bfloat16 params on sm_90, where LLVM had fused the other product, fma(1 - beta2, g g, beta2 v), in
#          some code paths (one of the whole and tail chunks' paths, both when misaligned): now the common form.
# tests/test_triton_aot.py checks that the int8 kernels' only fmas are these three an element. The interpreter's
# tl.fma is numpy's x * y + z, rounded twice, as an unfused step: the interpreter's bits differ from a GPU's by
# these fmas' single rounding, as they did before the fmas were explicit (no test compares the two).
@triton.jit
def adamw_param(param, grad, exp_avg, exp_avg_sq, offsets, mask, row, FAST, OPMATH):
    """AdamW's step on a block: stores the new moments and returns the new param rounded to FAST (not stored).
    Its multiply-adds are explicit fmas (see [NOTE: Triton AdamW fmas] in lookahead_fused/backends/triton/adamw.py)."""
    g = tl.load(grad + offsets, mask=mask).to(OPMATH) * tl.load(row + _SIGN).to(OPMATH)
    m = tl.load(exp_avg + offsets, mask=mask).to(OPMATH)
    small = tl.load(row + _SMALL_W1) != 0.0  # lerp(m, g, 1 - beta1) from m, else from g
    low = tl.where(small, m, g)
    high = tl.where(small, g, m)
    m_new = round_to(tl.fma(tl.load(row + _M_WEIGHT).to(OPMATH), high - low, low), FAST)
    v = tl.load(exp_avg_sq + offsets, mask=mask).to(OPMATH)
    v_new = round_to(tl.fma(tl.load(row + _BETA2).to(OPMATH), v, tl.load(row + _ONE_MINUS_BETA2).to(OPMATH) * (g * g)),
                     FAST)  # fmt: skip
    tl.store(exp_avg + offsets, m_new, mask=mask)
    tl.store(exp_avg_sq + offsets, v_new, mask=mask)
    denom = _div_rn(_sqrt_rn(v_new.to(OPMATH), OPMATH), tl.load(row + _BC2_SQRT).to(OPMATH), OPMATH) + tl.load(row + _EPS).to(OPMATH)
    p = tl.load(param + offsets, mask=mask).to(OPMATH)
    step = tl.load(row + _STEP_SIZE).to(OPMATH) * _div_rn(m_new.to(OPMATH), denom, OPMATH)
    return round_to(tl.fma(p, tl.load(row + _DECAY).to(OPMATH), -step), FAST)


@triton.jit
def _adamw_block(param, grad, exp_avg, exp_avg_sq, slow, low, mom, offsets, mask, row, mu_ptr, FAST, SLOW, OPMATH,
                 MOMENTUM, NESTEROV, HAS_SLOW: tl.constexpr, COMPACT: tl.constexpr):  # fmt: skip
    p_stored = adamw_param(param, grad, exp_avg, exp_avg_sq, offsets, mask, row, FAST, OPMATH)
    if HAS_SLOW:
        if tl.load(row + SYNC_COLUMN) != 0.0:  # the sync of the param as stored
            w = tl.load(row + ALPHA_COLUMN).to(OPMATH)
            if COMPACT:  # float32 opmath: the compact sync's
                compact_sync_values(p_stored.to(tl.float32), param, slow, low, mom, offsets, mask, w, tl.load(mu_ptr),
                                    FAST, _SIDE_FROM_ROW, _ROUNDING_SHIFT, MOMENTUM, NESTEROV)  # fmt: skip
            else:
                so = tl.load(slow + offsets, mask=mask).to(OPMATH)
                sync_values(p_stored.to(OPMATH), so, param, slow, mom, offsets, mask, w, tl.load(mu_ptr), FAST, SLOW,
                            OPMATH, _SIDE_FROM_ROW, MOMENTUM, NESTEROV)  # fmt: skip
        else:
            tl.store(param + offsets, p_stored, mask=mask)
    else:
        tl.store(param + offsets, p_stored, mask=mask)


class _AdamWGroup(Table):
    """The tables of one launch: entries of one dtype pair and alignment class, and each entry's
    position in the call (`extra`), by which it finds its row of the hyper table. Lists: params, grads,
    exp_avgs, exp_avg_sqs[, slow weights (with `compact`, their high parts and residuals)[, momenta]]."""

    def __init__(self, lists, entries, block, device, compact=False):
        self.has_slow, self.compact = len(lists) > 4, compact  # no slow: AdamW's step alone, the params' state dtype
        super().__init__(lists, block, device, 4 if self.has_slow else 3, extra=entries)
        tables, never_read = dict(enumerate(self.addresses)), self.addresses[3]
        momentum_index = 6 if compact else 5
        self.momentum = len(lists) > momentum_index
        # bfloat16 beside float32 slow weights, float32 or bfloat16 beside compact ones; else slow's
        self.mom_dtype = lists[momentum_index][0].dtype if self.momentum else self.slow_dtype
        low = tables.get(5, never_read) if compact else never_read
        self.addresses = [*self.addresses[:4], tables.get(4, never_read), low, tables.get(momentum_index, never_read)]


class AdamWPlan:
    """The launches of a call: one per dtype combination and alignment class
    (see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py), each a
    `group(lists, entries, block, device)` of the entries' positions in the call (their rows)."""

    def __init__(self, lists, device, group=_AdamWGroup, gpu_config=_GPU_CONFIG):
        block, warps = INTERPRETER_CONFIG if triton_interpreting() or device.type != "cuda" else gpu_config
        classes: dict[tuple, list] = {}
        for n, tensors in enumerate(zip(*lists)):
            if tensors[0].numel():
                key = (*(t.dtype for t in tensors[4:]), tensors[0].dtype, on_vector_boundary(*tensors))
                classes.setdefault(key, []).append((n, *tensors))
        self.groups = []
        for chosen in classes.values():
            entries, *columns = (list(column) for column in zip(*chosen))
            self.groups.append((group(columns, entries, block, device), block, warps))


_adamw_plans: OrderedDict = OrderedDict()
_compact_plans: OrderedDict = OrderedDict()
_build_compact_plan = functools.partial(AdamWPlan, group=functools.partial(_AdamWGroup, compact=True),
                                        gpu_config=COMPACT_GPU_CONFIG)  # fmt: skip


def _run(lists, plans, build, op: str, hyper, rows, mu: float, nesterov: bool) -> None:
    if not lists[0]:
        return
    device = lists[0][0].device
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        derived = derived_table(hyper)

        def launch(group, block, warps):
            opmath = opmath_dtype(group.slow_dtype)
            adamw_table_kernel[(min(group.num_chunks, max_programs(device)),)](
                *group.addresses, group.numels, rows[group.extra], group.chunks, group.num_chunks, derived,
                device_scalar(float(mu), opmath, device),
                FAST=TL_DTYPES[group.fast_dtype], SLOW=TL_DTYPES[group.slow_dtype], OPMATH=TL_DTYPES[opmath],
                ALIGNED=group.aligned, BLOCK=block, CHUNK_BITS=CHUNK_BITS, MOMENTUM=group.momentum,
                NESTEROV=bool(nesterov), COLUMNS=DERIVED_COLUMNS, MOM=TL_DTYPES[group.mom_dtype], HAS_SLOW=group.has_slow,
                COMPACT=group.compact, num_warps=warps,
            )  # fmt: skip

        run_plan(cached_plan(plans, lists, build, op), device, launch)


def adamw_step_(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu: float, nesterov: bool) -> None:
    lists = [list(params), list(grads), list(exp_avgs), list(exp_avg_sqs)]
    lists += ([list(slow)] if slow else []) + ([list(momentum)] if momentum else [])
    _run(lists, _adamw_plans, AdamWPlan, "lookahead_adamw_step_", hyper, rows, mu, nesterov)


def adamw_compact_step_(params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum, hyper, rows, mu: float,
                        nesterov: bool) -> None:  # fmt: skip
    lists = [list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), list(slow_high), list(slow_low)]
    lists += [list(momentum)] if momentum else []
    _run(lists, _compact_plans, _build_compact_plan, "lookahead_adamw_compact_step_", hyper, rows, mu, nesterov)
