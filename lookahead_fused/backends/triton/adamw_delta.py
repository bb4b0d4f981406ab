"""AdamW's step with int8-delta slow weights (see [NOTE: int8-delta] in csrc/adamw.h): one Triton launch
per param dtype and alignment class, over AdamW's plans with the offset codes and block scales in place
of the slow weights (see [NOTE: Triton AdamW] in lookahead_fused/backends/triton/adamw.py). Each program takes whole blocks of 256 elements, a chunk of ROWS blocks viewed as a
[ROWS, 256] tile whose rows are reduced for their scales, as the int8 momentum sync's kernel does.
AdamW's part is adamw.py's, its multiply-adds explicit fmas
(see [NOTE: Triton AdamW fmas] in lookahead_fused/backends/triton/adamw.py);
the offset's every step is one IEEE float32 operation, so the launch turns off the compiler's fusion of a
multiply and an add (COMPILE_OPTIONS). An outer momentum is int8 blocks (codes and scales) or float32 or
bfloat16 values (no scales), MOM its element dtype: one launch per momentum dtype too."""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from ... import int8_blocks
from ...device_scalars import device_scalar
from .adamw import ALPHA_COLUMN, DERIVED_COLUMNS, SYNC_COLUMN, AdamWPlan, adamw_param, derived_table
from .compact import ROUNDING_SHIFT
from .elementwise import ALPHA_ON_DEVICE, TL_DTYPES, momentum_target, round_to, two_sided_lerp
from .int8_momentum import COMPILE_OPTIONS, encode_rows, momentum_rows
from .plans import CHUNK_BITS, Table, cached_plan, chunk_of, max_programs, run_plan

_GPU_CONFIG = (2048, 4)  # (BLOCK, num_warps); BLOCK a multiple of int8_blocks.BLOCK
_SIDE_FROM_ROW = tl.constexpr(ALPHA_ON_DEVICE)  # the lerp's side from the row's alpha, on the device
MOMENTUM_ELEMENTS = {**TL_DTYPES, torch.int8: tl.int8}  # MOM: int8 codes, or a float momentum's own dtype


@triton.jit
def _delta_rows(param, grad, exp_avg, exp_avg_sq, codes, scales, momentum, momentum_scales, offsets, rows, mask,
                row_mask, row, mu, FAST, MOMENTUM: tl.constexpr, MOM: tl.constexpr, NESTEROV: tl.constexpr,
                CODE_LIMIT: tl.constexpr, FLUSH_BELOW: tl.constexpr, ROUNDING_SHIFT: tl.constexpr):  # fmt: skip
    p = tl.load(param + offsets, mask=mask).to(tl.float32)
    q = tl.load(codes + offsets, mask=mask)
    old_scale = tl.load(scales + rows, mask=row_mask)
    slow = p + q.to(tl.float32) * old_scale[:, None]
    kept = adamw_param(param, grad, exp_avg, exp_avg_sq, offsets, mask, row, FAST, tl.float32).to(tl.float32)
    if tl.load(row + SYNC_COLUMN) != 0.0:
        w = tl.load(row + ALPHA_COLUMN).to(tl.float32)
        target = kept
        if MOMENTUM and MOM == tl.int8:  # see [NOTE: int8-delta outer momentum] in csrc/adamw.h
            target = momentum_rows(kept, slow, momentum, momentum_scales, offsets, rows, mask, row_mask, mu, NESTEROV,
                                   CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip
        elif MOMENTUM:  # see [NOTE: int8-delta float momentum] in csrc/adamw.h
            target = momentum_target(kept, slow, momentum, offsets, mask, mu, tl.float32, NESTEROV)
        slow = two_sided_lerp(slow, target, w, _SIDE_FROM_ROW)
        kept = round_to(slow, FAST).to(tl.float32)
    new_codes, new_scale = encode_rows(slow - kept, mask, CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)
    tl.store(param + offsets, round_to(kept, FAST), mask=mask)
    tl.store(codes + offsets, new_codes, mask=mask)
    tl.store(scales + rows, new_scale, mask=row_mask)


@triton.jit
def adamw_delta_kernel(
    param_addresses, grad_addresses, exp_avg_addresses, exp_avg_sq_addresses, codes_addresses, scales_addresses,
    momentum_addresses, momentum_scales_addresses, numels, row_of, chunks, num_chunks, derived, mu_ptr,
    FAST: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr, QBLOCK: tl.constexpr, CHUNK_BITS: tl.constexpr,
    COLUMNS: tl.constexpr, MOMENTUM: tl.constexpr, MOM: tl.constexpr, NESTEROV: tl.constexpr, CODE_LIMIT: tl.constexpr,
    FLUSH_BELOW: tl.constexpr, ROUNDING_SHIFT: tl.constexpr,
):  # fmt: skip
    """AdamW's table walk over chunks of BLOCK = ROWS * QBLOCK elements
    (see [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py). Without MOMENTUM the momentum
    addresses are not read, nor the momentum's scales beside a float momentum (MOM not tl.int8)."""
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
        codes = tl.load(codes_addresses + entry).to(tl.pointer_type(tl.int8))
        scales = tl.load(scales_addresses + entry).to(tl.pointer_type(tl.float32))
        momentum = tl.load(momentum_addresses + entry).to(tl.pointer_type(MOM))
        momentum_scales = tl.load(momentum_scales_addresses + entry).to(tl.pointer_type(tl.float32))
        if ALIGNED:  # See [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py
            param = tl.multiple_of(param, 16)
            grad = tl.multiple_of(grad, 16)
            exp_avg = tl.multiple_of(exp_avg, 16)
            exp_avg_sq = tl.multiple_of(exp_avg_sq, 16)
            codes = tl.multiple_of(codes, 16)
            scales = tl.multiple_of(scales, 16)
            momentum = tl.multiple_of(momentum, 16)
            momentum_scales = tl.multiple_of(momentum_scales, 16)
        numel = tl.load(numels + entry)
        if start + BLOCK <= numel:
            _delta_rows(param, grad, exp_avg, exp_avg_sq, codes, scales, momentum, momentum_scales, offsets, rows, None,
                        None, row, mu, FAST, MOMENTUM, MOM, NESTEROV, CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip
        else:
            _delta_rows(param, grad, exp_avg, exp_avg_sq, codes, scales, momentum, momentum_scales, offsets, rows,
                        offsets < numel, rows < (numel + QBLOCK - 1) // QBLOCK, row, mu, FAST, MOMENTUM, MOM, NESTEROV,
                        CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip


class _DeltaGroup(Table):
    """The tables of one launch (lists: params, grads, exp_avgs, exp_avg_sqs, codes, scales[, the outer
    momentum's codes and scales, or its float values]) and each entry's position in the call, by which it
    finds its row of the hyper table. The kernel takes eight address tables: those the lists lack are the
    offsets' own, never read."""

    def __init__(self, lists, entries, block, device):
        assert block % int8_blocks.BLOCK == 0, "a chunk holds whole int8 blocks"
        super().__init__(lists, block, device, 0, extra=entries)
        self.momentum_dtype = lists[6][0].dtype if len(lists) > 6 else torch.int8  # MOM (int8 also without momentum)
        if len(lists) == 6:  # no momentum
            self.addresses += self.addresses[4:6]
        elif len(lists) == 7:  # a float momentum, without scales
            self.addresses.append(self.addresses[5])


_delta_plans: OrderedDict = OrderedDict()
_build_plan = functools.partial(AdamWPlan, group=_DeltaGroup, gpu_config=_GPU_CONFIG)


def adamw_delta_step_(params, grads, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales, hyper, rows,
                      mu: float, nesterov: bool) -> None:  # fmt: skip
    lists = [list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), list(delta), list(scales)]
    lists += [list(momentum)] if momentum else []
    lists += [list(momentum_scales)] if momentum_scales else []  # none beside a float momentum
    if not lists[0]:
        return
    device = lists[0][0].device
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        derived = derived_table(hyper)
        mu_tensor = device_scalar(float(mu), torch.float32, device)

        def launch(group, block, warps):
            adamw_delta_kernel[(min(group.num_chunks, max_programs(device)),)](
                *group.addresses, group.numels, rows[group.extra], group.chunks, group.num_chunks, derived, mu_tensor,
                FAST=TL_DTYPES[group.fast_dtype], ALIGNED=group.aligned, BLOCK=block, QBLOCK=int8_blocks.BLOCK,
                CHUNK_BITS=CHUNK_BITS, COLUMNS=DERIVED_COLUMNS, MOMENTUM=bool(momentum),
                MOM=MOMENTUM_ELEMENTS[group.momentum_dtype], NESTEROV=bool(nesterov),
                CODE_LIMIT=int8_blocks.CODE_LIMIT, FLUSH_BELOW=int8_blocks.FLUSH_BELOW, ROUNDING_SHIFT=ROUNDING_SHIFT,
                num_warps=warps, **COMPILE_OPTIONS,
            )  # fmt: skip

        run_plan(cached_plan(_delta_plans, lists, _build_plan, "lookahead_adamw_delta_step_"), device, launch)
