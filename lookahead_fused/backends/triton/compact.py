"""The compact sync (see [NOTE: compact sync] in csrc/element_math.h) and its momentum sync
(see [NOTE: compact momentum sync] in csrc/element_math.h): slow weights kept as bf16+int8, one
Triton launch per fast dtype, momentum dtype and alignment class, over the plans of plans.py. Its encoding is
integer and exact float32 arithmetic, bit for bit the oracle's
(see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py), so the interpreter computes what a GPU does.
Its element math (compact_sync_values) is also AdamW's compact step's
(see [NOTE: Triton AdamW] in lookahead_fused/backends/triton/adamw.py).

The block size is fixed (GPU_CONFIG), not timed per device as the sync's is
(see [NOTE: Triton block size] in lookahead_fused/backends/triton/sync.py)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from .. import triton_interpreting
from .elementwise import ALPHA_ON_DEVICE, LARGE_ALPHA, SMALL_ALPHA, TL_DTYPES, momentum_target, round_to
from .elementwise import two_sided_lerp
from .plans import CHUNK_BITS, INTERPRETER_CONFIG, Table, cached_plan, chunk_of, gate_is_open, launch_classes
from .plans import max_programs, run_plan

GPU_CONFIG = (2048, 4)  # (BLOCK, num_warps)
ROUNDING_SHIFT = 12582912.0  # 1.5 * 2^23: (t + it) - it rounds t to an integer, half to even, for |t| < 2^22


@triton.jit
def _residual_unit(high_bits):
    """u = 2^(E - 15) for bfloat16 bits, from its own bits (csrc/bf16_int8.h's residual_unit)."""
    biased = ((high_bits >> 7) & 0xFF).to(tl.int32)
    b = tl.maximum(biased, 1)
    bits = tl.where(b > 15, (b - 15) << 23, 1 << tl.minimum(b + 7, 30))
    return bits.to(tl.uint32).to(tl.float32, bitcast=True)


@triton.jit
def decode_bf16_int8(high_bits, residual):
    """hi + q u, or hi itself when q = 0."""
    value = (high_bits.to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    return tl.where(residual == 0, value, value + residual.to(tl.float32) * _residual_unit(high_bits))


@triton.jit
def encode_bf16_int8(x, ROUNDING_SHIFT: tl.constexpr):
    """(bfloat16 bits, int8 residual) of float32 x."""
    high_bits = round_to(x, tl.bfloat16).to(tl.uint16, bitcast=True)
    value = (high_bits.to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    units = tl.div_rn(x - value, _residual_unit(high_bits))  # IEEE-rounded (exact: u is a power of two)
    units = tl.minimum(tl.maximum((units + ROUNDING_SHIFT) - ROUNDING_SHIFT, -127.0), 127.0)
    finite = ((high_bits >> 7) & 0xFF) != 0xFF
    return high_bits, tl.where(finite, units, 0.0).to(tl.int8)


@triton.jit
def compact_sync_values(f, fast, high, low, mom, offsets, mask, w, mu, FAST, LERP_SIDE, ROUNDING_SHIFT: tl.constexpr,
                        MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr):  # fmt: skip
    """The compact (momentum) sync of float32 fast values `f`: loads the slow weights from `high` and
    `low` (and the momentum from `mom`), stores them and fast's new value, the decoded slow weight."""
    h = tl.load(high + offsets, mask=mask).to(tl.uint16, bitcast=True)
    q = tl.load(low + offsets, mask=mask)
    s = decode_bf16_int8(h, q)
    target = f
    if MOMENTUM:
        target = momentum_target(f, s, mom, offsets, mask, mu, tl.float32, NESTEROV)
    r = two_sided_lerp(s, target, w, LERP_SIDE)
    new_high, new_low = encode_bf16_int8(r, ROUNDING_SHIFT)
    tl.store(high + offsets, new_high.to(tl.bfloat16, bitcast=True), mask=mask)
    tl.store(low + offsets, new_low, mask=mask)
    tl.store(fast + offsets, round_to(decode_bf16_int8(new_high, new_low), FAST), mask=mask)


@triton.jit
def _compact_block(fast, high, low, mom, offsets, mask, w, mu, FAST, LERP_SIDE, ROUNDING_SHIFT: tl.constexpr,
                   MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr):  # fmt: skip
    f = tl.load(fast + offsets, mask=mask).to(tl.float32)
    compact_sync_values(f, fast, high, low, mom, offsets, mask, w, mu, FAST, LERP_SIDE, ROUNDING_SHIFT, MOMENTUM,
                        NESTEROV)  # fmt: skip


@triton.jit
def compact_kernel(
    fast_addresses, high_addresses, low_addresses, mom_addresses, numels, chunks, num_chunks, alpha_ptr, mu_ptr,
    step_ptr, k, FAST: tl.constexpr, LERP_SIDE: tl.constexpr, GATED: tl.constexpr, ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr, CHUNK_BITS: tl.constexpr, ROUNDING_SHIFT: tl.constexpr, MOMENTUM: tl.constexpr,
    NESTEROV: tl.constexpr, MOM: tl.constexpr,
):  # fmt: skip
    """The table walk of the sync's kernel:
    see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py, and
    see [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py. Without MOMENTUM, mom_addresses
    is any table (never read)."""
    w = tl.load(alpha_ptr)
    mu = tl.load(mu_ptr)
    if gate_is_open(step_ptr, k, GATED):  # off the sync steps every program returns at once
        for c in range(tl.program_id(0), num_chunks, tl.num_programs(0)):
            pair, start, offsets = chunk_of(chunks, c, CHUNK_BITS, BLOCK)
            fast = tl.load(fast_addresses + pair).to(tl.pointer_type(FAST))
            high = tl.load(high_addresses + pair).to(tl.pointer_type(tl.bfloat16))
            low = tl.load(low_addresses + pair).to(tl.pointer_type(tl.int8))
            mom = tl.load(mom_addresses + pair).to(tl.pointer_type(MOM))
            if ALIGNED:
                fast = tl.multiple_of(fast, 16)
                high = tl.multiple_of(high, 16)
                low = tl.multiple_of(low, 16)
                mom = tl.multiple_of(mom, 16)
            numel = tl.load(numels + pair)
            if start + BLOCK <= numel:
                _compact_block(fast, high, low, mom, offsets, None, w, mu, FAST, LERP_SIDE, ROUNDING_SHIFT, MOMENTUM,
                               NESTEROV)  # fmt: skip
            else:
                _compact_block(fast, high, low, mom, offsets, offsets < numel, w, mu, FAST, LERP_SIDE, ROUNDING_SHIFT,
                               MOMENTUM, NESTEROV)  # fmt: skip


class _Plan:
    """One Table per fast dtype (and momentum dtype) and alignment class."""

    def __init__(self, lists, device):
        block, warps = INTERPRETER_CONFIG if triton_interpreting() or device.type != "cuda" else GPU_CONFIG
        self.groups = [(Table(launch, block, device, 1), block, warps) for launch in launch_classes(lists)]


compact_plans: OrderedDict = OrderedDict()  # the LRU of cached_plan


def _launch(table: Table, block: int, warps: int, alpha, gate=None, mu=0.0, nesterov=False) -> None:
    """alpha: a float, or with `gate` = (step, k) a one-element tensor read on the device. A table of four
    lists runs the momentum sync."""
    device = table.chunks.device
    high_addresses, low_addresses = table.addresses[1:3]
    momentum = len(table.addresses) == 4
    mom_addresses = table.addresses[3] if momentum else high_addresses
    if gate is None:
        alpha_tensor, (step, k) = torch.full((1,), alpha, dtype=torch.float32, device=device), (table.chunks, 1)
        side = SMALL_ALPHA if abs(alpha) < 0.5 else LARGE_ALPHA
    else:
        alpha_tensor, (step, k), side = alpha.reshape(1).to(torch.float32), gate, ALPHA_ON_DEVICE
    compact_kernel[(min(table.num_chunks, max_programs(device)),)](
        table.addresses[0], high_addresses, low_addresses, mom_addresses, table.numels, table.chunks,
        table.num_chunks, alpha_tensor, torch.full((1,), mu, dtype=torch.float32, device=device), step, k,
        FAST=TL_DTYPES[table.fast_dtype], LERP_SIDE=side, GATED=gate is not None, ALIGNED=table.aligned, BLOCK=block,
        CHUNK_BITS=CHUNK_BITS, ROUNDING_SHIFT=ROUNDING_SHIFT, MOMENTUM=momentum, NESTEROV=bool(nesterov),
        MOM=TL_DTYPES[table.dtypes[3] if momentum else torch.bfloat16], num_warps=warps,
    )  # fmt: skip


def _run(lists, alpha, gate=None, mu=0.0, nesterov=False) -> None:
    if not lists[0]:
        return
    device = lists[0][0].device
    plan = cached_plan(compact_plans, lists, _Plan, "triton_compact_sync_")
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        run_plan(plan, device, lambda table, block, warps: _launch(table, block, warps, alpha, gate, mu, nesterov))


def compact_sync_(fast, slow_high, slow_low, alpha: float) -> None:
    _run([fast, slow_high, slow_low], alpha)


def compact_sync_on_step_(fast, slow_high, slow_low, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
    _run([fast, slow_high, slow_low], alpha, gate=(step.reshape(1), k))



def compact_momentum_sync_(fast, slow_high, slow_low, momentum, alpha: float, mu: float, nesterov: bool) -> None:
    _run([fast, slow_high, slow_low, momentum], alpha, mu=mu, nesterov=nesterov)


def compact_momentum_sync_on_step_(fast, slow_high, slow_low, momentum, alpha: torch.Tensor, step: torch.Tensor, k: int,
                                   mu: float, nesterov: bool) -> None:  # fmt: skip
    _run([fast, slow_high, slow_low, momentum], alpha, gate=(step.reshape(1), k), mu=mu, nesterov=nesterov)
