"""AdamW's step with an int8 outer momentum beside float32 or bf16+int8 slow weights
(see [NOTE: AdamW int8 momentum step] in csrc/adamw.h): one Triton launch per param dtype and alignment
class, over AdamW's plans with the slow weights, the momentum's codes and their block scales beside each
param (see [NOTE: Triton AdamW] in lookahead_fused/backends/triton/adamw.py). Each program takes whole
blocks of 256 elements, a chunk of ROWS blocks viewed as a [ROWS, 256] tile, as the int8 momentum sync's
kernel does: AdamW's part is adamw.py's (adamw_param), and a sync row's tile then runs int8_momentum.py's
sync of the new params as stored (int8_momentum_sync_rows), its alpha and lerp side the row's, in float32.
The launch turns off the compiler's fusion of a multiply and an add (COMPILE_OPTIONS), as the int8
momentum sync's does; AdamW's multiply-adds are explicit fmas, as in the fused launch of adamw.py
(see [NOTE: Triton AdamW fmas] in lookahead_fused/backends/triton/adamw.py). With COMPACT the slow table holds the bfloat16 high parts and the residual table
their int8 residuals; without, the residual table is the slow table, never read."""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from ... import int8_blocks
from ...contract import ADAMW_INT8_MOMENTUM_OP
from ...device_scalars import device_scalar
from .adamw import ALPHA_COLUMN, DERIVED_COLUMNS, SYNC_COLUMN, AdamWPlan, adamw_param, derived_table
from .compact import ROUNDING_SHIFT
from .elementwise import ALPHA_ON_DEVICE, TL_DTYPES
from .int8_momentum import COMPILE_OPTIONS, int8_momentum_sync_rows
from .plans import CHUNK_BITS, Table, cached_plan, chunk_of, max_programs, run_plan

GPU_CONFIG = (2048, 4)  # (BLOCK, num_warps): the int8 momentum sync's, BLOCK a multiple of int8_blocks.BLOCK
_SIDE_FROM_ROW = tl.constexpr(ALPHA_ON_DEVICE)  # the lerp's side from the row's alpha, on the device


@triton.jit
def _step_rows(param, grad, exp_avg, exp_avg_sq, slow, low, codes, scales, offsets, rows, mask, row_mask, row, mu,
               FAST, NESTEROV, COMPACT, CODE_LIMIT: tl.constexpr, FLUSH_BELOW: tl.constexpr,
               ROUNDING_SHIFT: tl.constexpr):  # fmt: skip
    kept = adamw_param(param, grad, exp_avg, exp_avg_sq, offsets, mask, row, FAST, tl.float32)
    if tl.load(row + SYNC_COLUMN) != 0.0:  # the sync of the param as stored
        w = tl.load(row + ALPHA_COLUMN).to(tl.float32)
        int8_momentum_sync_rows(kept.to(tl.float32), param, slow, low, codes, scales, offsets, rows, mask, row_mask, w,
                                mu, FAST, _SIDE_FROM_ROW, NESTEROV, COMPACT, CODE_LIMIT, FLUSH_BELOW,
                                ROUNDING_SHIFT)  # fmt: skip
    else:
        tl.store(param + offsets, kept, mask=mask)


@triton.jit
def adamw_int8_momentum_kernel(
    param_addresses, grad_addresses, exp_avg_addresses, exp_avg_sq_addresses, slow_addresses, low_addresses,
    codes_addresses, scales_addresses, numels, row_of, chunks, num_chunks, derived, mu_ptr,
    FAST: tl.constexpr, ALIGNED: tl.constexpr, COMPACT: tl.constexpr, NESTEROV: tl.constexpr, BLOCK: tl.constexpr,
    QBLOCK: tl.constexpr, CHUNK_BITS: tl.constexpr, COLUMNS: tl.constexpr, CODE_LIMIT: tl.constexpr,
    FLUSH_BELOW: tl.constexpr, ROUNDING_SHIFT: tl.constexpr,
):  # fmt: skip
    """AdamW's table walk over chunks of BLOCK = ROWS * QBLOCK elements
    (see [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py)."""
    ROWS: tl.constexpr = BLOCK // QBLOCK
    mu = tl.load(mu_ptr)
    for c in range(tl.program_id(0), num_chunks, tl.num_programs(0)):
        entry, start, _ = chunk_of(chunks, c, CHUNK_BITS, BLOCK)
        row = derived + tl.load(row_of + entry) * COLUMNS
        rows = start // QBLOCK + tl.arange(0, ROWS)
        offsets = start + tl.arange(0, ROWS)[:, None] * QBLOCK + tl.arange(0, QBLOCK)[None, :]
        param = tl.load(param_addresses + entry).to(tl.pointer_type(FAST))
        grad = tl.load(grad_addresses + entry).to(tl.pointer_type(FAST))
        exp_avg = tl.load(exp_avg_addresses + entry).to(tl.pointer_type(FAST))
        exp_avg_sq = tl.load(exp_avg_sq_addresses + entry).to(tl.pointer_type(FAST))
        if COMPACT:
            slow = tl.load(slow_addresses + entry).to(tl.pointer_type(tl.bfloat16))
        else:
            slow = tl.load(slow_addresses + entry).to(tl.pointer_type(tl.float32))
        low = tl.load(low_addresses + entry).to(tl.pointer_type(tl.int8))
        codes = tl.load(codes_addresses + entry).to(tl.pointer_type(tl.int8))
        scales = tl.load(scales_addresses + entry).to(tl.pointer_type(tl.float32))
        if ALIGNED:  # See [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py
            param = tl.multiple_of(param, 16)
            grad = tl.multiple_of(grad, 16)
            exp_avg = tl.multiple_of(exp_avg, 16)
            exp_avg_sq = tl.multiple_of(exp_avg_sq, 16)
            slow = tl.multiple_of(slow, 16)
            low = tl.multiple_of(low, 16)
            codes = tl.multiple_of(codes, 16)
            scales = tl.multiple_of(scales, 16)
        numel = tl.load(numels + entry)
        if start + BLOCK <= numel:
            _step_rows(param, grad, exp_avg, exp_avg_sq, slow, low, codes, scales, offsets, rows, None, None, row, mu,
                       FAST, NESTEROV, COMPACT, CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip
        else:
            _step_rows(param, grad, exp_avg, exp_avg_sq, slow, low, codes, scales, offsets, rows, offsets < numel,
                       rows < (numel + QBLOCK - 1) // QBLOCK, row, mu, FAST, NESTEROV, COMPACT, CODE_LIMIT,
                       FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip


class _Int8MomentumGroup(Table):
    """The tables of one launch (lists: params, grads, exp_avgs, exp_avg_sqs, slow weights (or their high
    parts and residuals), codes, scales) and each entry's position in the call, by which it finds its row of
    the hyper table."""

    def __init__(self, lists, entries, block, device):
        assert block % int8_blocks.BLOCK == 0, "a chunk holds whole int8 blocks"
        super().__init__(lists, block, device, 4, extra=entries)
        self.compact = len(lists) == 8
        if not self.compact:  # no residuals: the slow table in their place, never read
            self.addresses.insert(5, self.addresses[4])


_plans: OrderedDict = OrderedDict()
_build_plan = functools.partial(AdamWPlan, group=_Int8MomentumGroup, gpu_config=GPU_CONFIG)


def adamw_int8_momentum_step_(params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales, hyper, rows,
                              mu: float, nesterov: bool) -> None:  # fmt: skip
    lists = [list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), list(slow)]
    lists += ([list(slow_low)] if slow_low else []) + [list(momentum), list(scales)]
    if not lists[0]:
        return
    device = lists[0][0].device
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        derived = derived_table(hyper)
        mu_tensor = device_scalar(float(mu), torch.float32, device)

        def launch(group, block, warps):
            adamw_int8_momentum_kernel[(min(group.num_chunks, max_programs(device)),)](
                *group.addresses, group.numels, rows[group.extra], group.chunks, group.num_chunks, derived, mu_tensor,
                FAST=TL_DTYPES[group.fast_dtype], ALIGNED=group.aligned, COMPACT=group.compact,
                NESTEROV=bool(nesterov), BLOCK=block, QBLOCK=int8_blocks.BLOCK, CHUNK_BITS=CHUNK_BITS,
                COLUMNS=DERIVED_COLUMNS, CODE_LIMIT=int8_blocks.CODE_LIMIT, FLUSH_BELOW=int8_blocks.FLUSH_BELOW,
                ROUNDING_SHIFT=ROUNDING_SHIFT, num_warps=warps, **COMPILE_OPTIONS,
            )  # fmt: skip

        run_plan(cached_plan(_plans, lists, _build_plan, ADAMW_INT8_MOMENTUM_OP), device, launch)
