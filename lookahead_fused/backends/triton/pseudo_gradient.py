"""The pseudo-gradient (see [NOTE: pseudo-gradient] in csrc/element_math.h): out <- fast - slow in the slow
dtype or bfloat16, one Triton launch per dtype triple and alignment class, over the plans of plans.py, with the block
size fixed as the compact sync's is."""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from ...contract import opmath_dtype
from .. import triton_interpreting
from .elementwise import TL_DTYPES, round_to
from .plans import CHUNK_BITS, INTERPRETER_CONFIG, Table, cached_plan, chunk_of, launch_classes, max_programs, run_plan

_GPU_CONFIG = (2048, 4)  # (BLOCK, num_warps)


@triton.jit
def _pseudo_gradient_block(fast, slow, out, offsets, mask, OUT, OPMATH):
    f = tl.load(fast + offsets, mask=mask).to(OPMATH)
    s = tl.load(slow + offsets, mask=mask).to(OPMATH)
    tl.store(out + offsets, round_to(f - s, OUT), mask=mask)


@triton.jit
def pseudo_gradient_kernel(
    fast_addresses, slow_addresses, out_addresses, numels, chunks, num_chunks,
    FAST: tl.constexpr, SLOW: tl.constexpr, OUT: tl.constexpr, OPMATH: tl.constexpr, ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK_BITS: tl.constexpr,
):  # fmt: skip
    """The table walk of the sync's kernel:
    see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py, and
    see [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py."""
    for c in range(tl.program_id(0), num_chunks, tl.num_programs(0)):
        pair, start, offsets = chunk_of(chunks, c, CHUNK_BITS, BLOCK)
        fast = tl.load(fast_addresses + pair).to(tl.pointer_type(FAST))
        slow = tl.load(slow_addresses + pair).to(tl.pointer_type(SLOW))
        out = tl.load(out_addresses + pair).to(tl.pointer_type(OUT))
        if ALIGNED:
            fast = tl.multiple_of(fast, 16)
            slow = tl.multiple_of(slow, 16)
            out = tl.multiple_of(out, 16)
        numel = tl.load(numels + pair)
        if start + BLOCK <= numel:
            _pseudo_gradient_block(fast, slow, out, offsets, None, OUT, OPMATH)
        else:
            _pseudo_gradient_block(fast, slow, out, offsets, offsets < numel, OUT, OPMATH)


class _Plan:
    """One Table per dtype triple and alignment class."""

    def __init__(self, lists, device):
        block, warps = INTERPRETER_CONFIG if triton_interpreting() or device.type != "cuda" else _GPU_CONFIG
        self.groups = [(Table(launch, block, device, 1), block, warps) for launch in launch_classes(lists)]


pseudo_gradient_plans: OrderedDict = OrderedDict()  # the LRU of cached_plan


def _launch(table: Table, block: int, warps: int) -> None:
    pseudo_gradient_kernel[(min(table.num_chunks, max_programs(table.chunks.device)),)](
        *table.addresses, table.numels, table.chunks, table.num_chunks,
        FAST=TL_DTYPES[table.fast_dtype], SLOW=TL_DTYPES[table.slow_dtype], OUT=TL_DTYPES[table.dtypes[2]],
        OPMATH=TL_DTYPES[opmath_dtype(table.slow_dtype)], ALIGNED=table.aligned, BLOCK=block, CHUNK_BITS=CHUNK_BITS,
        num_warps=warps,
    )  # fmt: skip


def pseudo_gradient_(fast, slow, out) -> None:
    if not fast:
        return
    device = fast[0].device
    plan = cached_plan(pseudo_gradient_plans, [fast, slow, out], _Plan, "triton_pseudo_gradient_")
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        run_plan(plan, device, _launch)
