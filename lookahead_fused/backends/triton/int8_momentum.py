"""The momentum sync with the momentum kept as int8 blocks (see [NOTE: int8 momentum sync] in csrc/element_math.h),
and its compact form, the slow weights kept as bf16+int8
(see [NOTE: compact int8 momentum sync] in csrc/element_math.h): one Triton launch per fast dtype and alignment
class, over the plans of plans.py. Each program takes whole blocks of 256 elements
(see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py): a chunk is ROWS blocks, the first at element 0 of
its tensor, viewed as a [ROWS, 256] tile whose rows are reduced for their scales. The two forms are two kernels
over one walk (_walk), so that the float32 form's kernel takes no residuals; they differ only in how the slow
weights are loaded and stored, the compact form's through compact.py's codec. Their sync of a tile
(int8_momentum_sync_rows) is also AdamW's int8 momentum step's (adamw_int8_momentum.py).

Every step is one IEEE float32 operation as the oracle orders it, so the launch turns off the compiler's
fusion of a multiply and an add (COMPILE_OPTIONS): the interpreter computes what a GPU does.
The block size is fixed (_GPU_CONFIG), as the compact sync's is."""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from ... import int8_blocks
from ...device_scalars import device_scalar
from .. import triton_interpreting
from .compact import ROUNDING_SHIFT, decode_bf16_int8, encode_bf16_int8
from .elementwise import ALPHA_ON_DEVICE, LARGE_ALPHA, SMALL_ALPHA, TL_DTYPES, round_to, two_sided_lerp
from .plans import CHUNK_BITS, INTERPRETER_CONFIG, Table, cached_plan, chunk_of, gate_is_open, launch_classes
from .plans import max_programs, run_plan

_GPU_CONFIG = (2048, 4)  # (BLOCK, num_warps); BLOCK a multiple of int8_blocks.BLOCK
COMPILE_OPTIONS = {"enable_fp_fusion": False}  # no multiply-add fused into one rounding


@triton.jit
def _encode(m, kept, finite, a, CODE_LIMIT: tl.constexpr, ROUNDING_SHIFT: tl.constexpr):
    """(codes, scales) of a [ROWS, QBLOCK] tile m, given per row whether it is kept, finite, and its a."""
    safe = tl.where(kept, a, 1.0)
    inv = tl.div_rn(CODE_LIMIT * 1.0, safe)  # IEEE-rounded, as the oracle's division
    scale = tl.where(kept, tl.div_rn(safe, CODE_LIMIT * 1.0), tl.where(finite, 0.0, float("nan")))
    units = (m * inv[:, None] + ROUNDING_SHIFT) - ROUNDING_SHIFT  # round half to even: |m inv| <= 127.5 < 2^22
    units = tl.minimum(tl.maximum(units, -CODE_LIMIT * 1.0), CODE_LIMIT * 1.0)
    return tl.where(kept[:, None], units, 0.0).to(tl.int8), scale


@triton.jit
def encode_rows(x, mask, CODE_LIMIT: tl.constexpr, FLUSH_BELOW: tl.constexpr, ROUNDING_SHIFT: tl.constexpr):
    """(codes, scales) of a [ROWS, QBLOCK] tile x, a block per row; `mask`: the elements that exist (None:
    all). See [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py."""
    if mask is not None:  # the tail past numel: zeros, which change no block's max
        x = tl.where(mask, x, 0.0)
    finite_values = tl.abs(x) < float("inf")  # false for inf and NaN
    finite = tl.min(finite_values.to(tl.int32), axis=1) == 1
    a = tl.max(tl.where(finite_values, tl.abs(x), 0.0), axis=1)
    return _encode(x, finite & (a >= FLUSH_BELOW), finite, a, CODE_LIMIT, ROUNDING_SHIFT)


@triton.jit
def momentum_rows(f, s, codes, scales, offsets, rows, mask, row_mask, mu, NESTEROV: tl.constexpr,
                  CODE_LIMIT: tl.constexpr, FLUSH_BELOW: tl.constexpr, ROUNDING_SHIFT: tl.constexpr):  # fmt: skip
    """The int8 momentum sync's new momentum of a [ROWS, QBLOCK] tile, from its fast and slow values and
    its stored codes and scales, encoded and stored; returns the target the slow weights move toward
    (see [NOTE: int8 momentum sync] in csrc/element_math.h)."""
    q = tl.load(codes + offsets, mask=mask)
    old_scale = tl.load(scales + rows, mask=row_mask)
    m_old = q.to(tl.float32) * old_scale[:, None]
    m = mu * m_old + (f - s)
    new_codes, new_scale = encode_rows(m, mask, CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)
    tl.store(codes + offsets, new_codes, mask=mask)
    tl.store(scales + rows, new_scale, mask=row_mask)
    if NESTEROV:
        target = f + mu * (new_codes.to(tl.float32) * new_scale[:, None])
    else:
        target = f + mu * m_old
    return target


@triton.jit
def int8_momentum_sync_rows(f, fast, slow, low, codes, scales, offsets, rows, mask, row_mask, w, mu, FAST, LERP_SIDE,
                            NESTEROV, COMPACT: tl.constexpr, CODE_LIMIT: tl.constexpr, FLUSH_BELOW: tl.constexpr,
                            ROUNDING_SHIFT: tl.constexpr):  # fmt: skip
    """The int8 momentum sync of a [ROWS, QBLOCK] tile of fast values `f` (float32), stored at `fast`. With
    COMPACT, `slow` holds the high parts and `low` the residuals; fast takes the decoded new slow value, what
    the slow weights now hold."""
    if COMPACT:
        s = decode_bf16_int8(tl.load(slow + offsets, mask=mask).to(tl.uint16, bitcast=True),
                             tl.load(low + offsets, mask=mask))  # fmt: skip
    else:
        s = tl.load(slow + offsets, mask=mask)
    target = momentum_rows(f, s, codes, scales, offsets, rows, mask, row_mask, mu, NESTEROV, CODE_LIMIT, FLUSH_BELOW,
                           ROUNDING_SHIFT)  # fmt: skip
    r = two_sided_lerp(s, target, w, LERP_SIDE)
    if COMPACT:
        new_high, new_low = encode_bf16_int8(r, ROUNDING_SHIFT)
        tl.store(slow + offsets, new_high.to(tl.bfloat16, bitcast=True), mask=mask)
        tl.store(low + offsets, new_low, mask=mask)
        r = decode_bf16_int8(new_high, new_low)
    else:
        tl.store(slow + offsets, r, mask=mask)
    tl.store(fast + offsets, round_to(r, FAST), mask=mask)


@triton.jit
def _int8_momentum_rows(fast, slow, low, codes, scales, offsets, rows, mask, row_mask, w, mu, FAST, LERP_SIDE, NESTEROV,
                        COMPACT: tl.constexpr, CODE_LIMIT: tl.constexpr, FLUSH_BELOW: tl.constexpr,
                        ROUNDING_SHIFT: tl.constexpr):  # fmt: skip
    f = tl.load(fast + offsets, mask=mask).to(tl.float32)
    int8_momentum_sync_rows(f, fast, slow, low, codes, scales, offsets, rows, mask, row_mask, w, mu, FAST, LERP_SIDE,
                            NESTEROV, COMPACT, CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip


@triton.jit
def _walk(fast_addresses, slow_addresses, low_addresses, codes_addresses, scales_addresses, numels, chunks, num_chunks,
          alpha_ptr, mu_ptr, step_ptr, k, FAST: tl.constexpr, LERP_SIDE: tl.constexpr, GATED: tl.constexpr,
          ALIGNED: tl.constexpr, NESTEROV: tl.constexpr, COMPACT: tl.constexpr, BLOCK: tl.constexpr,
          QBLOCK: tl.constexpr, CHUNK_BITS: tl.constexpr, CODE_LIMIT: tl.constexpr, FLUSH_BELOW: tl.constexpr,
          ROUNDING_SHIFT: tl.constexpr):  # fmt: skip
    """The table walk of the sync's kernel over chunks of BLOCK = ROWS * QBLOCK elements:
    see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py, and
    see [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py. With COMPACT, slow_addresses are the
    high parts' and low_addresses the residuals'; without, low_addresses is None."""
    ROWS: tl.constexpr = BLOCK // QBLOCK
    w = tl.load(alpha_ptr)
    mu = tl.load(mu_ptr)
    if gate_is_open(step_ptr, k, GATED):  # off the sync steps every program returns at once
        for c in range(tl.program_id(0), num_chunks, tl.num_programs(0)):
            pair, start, _ = chunk_of(chunks, c, CHUNK_BITS, BLOCK)
            rows = start // QBLOCK + tl.arange(0, ROWS)
            offsets = start + tl.arange(0, ROWS)[:, None] * QBLOCK + tl.arange(0, QBLOCK)[None, :]
            fast = tl.load(fast_addresses + pair).to(tl.pointer_type(FAST))
            low = None
            if COMPACT:
                slow = tl.load(slow_addresses + pair).to(tl.pointer_type(tl.bfloat16))
                low = tl.load(low_addresses + pair).to(tl.pointer_type(tl.int8))
            else:
                slow = tl.load(slow_addresses + pair).to(tl.pointer_type(tl.float32))
            codes = tl.load(codes_addresses + pair).to(tl.pointer_type(tl.int8))
            scales = tl.load(scales_addresses + pair).to(tl.pointer_type(tl.float32))
            if ALIGNED:
                fast = tl.multiple_of(fast, 16)
                slow = tl.multiple_of(slow, 16)
                if COMPACT:
                    low = tl.multiple_of(low, 16)
                codes = tl.multiple_of(codes, 16)
                scales = tl.multiple_of(scales, 16)
            numel = tl.load(numels + pair)
            if start + BLOCK <= numel:
                _int8_momentum_rows(fast, slow, low, codes, scales, offsets, rows, None, None, w, mu, FAST, LERP_SIDE,
                                    NESTEROV, COMPACT, CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip
            else:
                _int8_momentum_rows(fast, slow, low, codes, scales, offsets, rows, offsets < numel,
                                    rows < (numel + QBLOCK - 1) // QBLOCK, w, mu, FAST, LERP_SIDE, NESTEROV, COMPACT,
                                    CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip


@triton.jit
def int8_momentum_kernel(
    fast_addresses, slow_addresses, codes_addresses, scales_addresses, numels, chunks, num_chunks, alpha_ptr, mu_ptr,
    step_ptr, k,
    FAST: tl.constexpr, LERP_SIDE: tl.constexpr, GATED: tl.constexpr, ALIGNED: tl.constexpr, NESTEROV: tl.constexpr,
    BLOCK: tl.constexpr, QBLOCK: tl.constexpr, CHUNK_BITS: tl.constexpr, CODE_LIMIT: tl.constexpr,
    FLUSH_BELOW: tl.constexpr, ROUNDING_SHIFT: tl.constexpr,
):  # fmt: skip
    """The int8 momentum sync of float32 slow weights (_walk)."""
    _walk(fast_addresses, slow_addresses, None, codes_addresses, scales_addresses, numels, chunks, num_chunks,
          alpha_ptr, mu_ptr, step_ptr, k, FAST, LERP_SIDE, GATED, ALIGNED, NESTEROV, False, BLOCK, QBLOCK, CHUNK_BITS,
          CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip


@triton.jit
def compact_int8_momentum_kernel(
    fast_addresses, high_addresses, low_addresses, codes_addresses, scales_addresses, numels, chunks, num_chunks,
    alpha_ptr, mu_ptr, step_ptr, k,
    FAST: tl.constexpr, LERP_SIDE: tl.constexpr, GATED: tl.constexpr, ALIGNED: tl.constexpr, NESTEROV: tl.constexpr,
    BLOCK: tl.constexpr, QBLOCK: tl.constexpr, CHUNK_BITS: tl.constexpr, CODE_LIMIT: tl.constexpr,
    FLUSH_BELOW: tl.constexpr, ROUNDING_SHIFT: tl.constexpr,
):  # fmt: skip
    """The int8 momentum sync of bf16+int8 slow weights (_walk)."""
    _walk(fast_addresses, high_addresses, low_addresses, codes_addresses, scales_addresses, numels, chunks, num_chunks,
          alpha_ptr, mu_ptr, step_ptr, k, FAST, LERP_SIDE, GATED, ALIGNED, NESTEROV, True, BLOCK, QBLOCK, CHUNK_BITS,
          CODE_LIMIT, FLUSH_BELOW, ROUNDING_SHIFT)  # fmt: skip


class _Plan:
    """One Table per fast dtype and alignment class; lists: fast, slow, codes, scales, or fast, slow_high,
    slow_low, codes, scales."""

    def __init__(self, lists, device):
        block, warps = INTERPRETER_CONFIG if triton_interpreting() or device.type != "cuda" else _GPU_CONFIG
        assert block % int8_blocks.BLOCK == 0, "a chunk holds whole int8 blocks"
        self.groups = [(Table(launch, block, device, 1), block, warps) for launch in launch_classes(lists)]


int8_momentum_plans: OrderedDict = OrderedDict()  # the LRU of cached_plan, of both forms (keyed by their lists)


def lerp_side(alpha: float) -> int:
    """The lerp's side for a host alpha, decided on alpha in float32 as the kernel (and the oracle) hold it."""
    return SMALL_ALPHA if abs(torch.tensor(alpha, dtype=torch.float32).item()) < 0.5 else LARGE_ALPHA


def _launch(table: Table, block: int, warps: int, alpha, mu: float, nesterov: bool, gate=None) -> None:
    """alpha: a float, or with `gate` = (step, k) a one-element tensor read on the device. A table of five
    lists runs the compact form."""
    device = table.chunks.device
    kernel = compact_int8_momentum_kernel if len(table.addresses) == 5 else int8_momentum_kernel
    if gate is None:
        alpha_tensor, side = device_scalar(float(alpha), torch.float32, device), lerp_side(alpha)
        step, k = table.chunks, 1  # any int64 pointer: the ungated kernel reads no step
    else:
        alpha_tensor, (step, k), side = alpha.reshape(1).to(torch.float32), gate, ALPHA_ON_DEVICE
    kernel[(min(table.num_chunks, max_programs(device)),)](
        *table.addresses, table.numels, table.chunks, table.num_chunks, alpha_tensor,
        device_scalar(float(mu), torch.float32, device), step, k,
        FAST=TL_DTYPES[table.fast_dtype], LERP_SIDE=side, GATED=gate is not None, ALIGNED=table.aligned,
        NESTEROV=bool(nesterov), BLOCK=block, QBLOCK=int8_blocks.BLOCK, CHUNK_BITS=CHUNK_BITS,
        CODE_LIMIT=int8_blocks.CODE_LIMIT, FLUSH_BELOW=int8_blocks.FLUSH_BELOW, ROUNDING_SHIFT=ROUNDING_SHIFT,
        num_warps=warps, **COMPILE_OPTIONS,
    )  # fmt: skip


def _run(lists, alpha, mu: float, nesterov: bool, gate=None) -> None:
    if not lists[0]:
        return
    device = lists[0][0].device
    op = "triton_compact_int8_momentum_sync_" if len(lists) == 5 else "triton_int8_momentum_sync_"
    plan = cached_plan(int8_momentum_plans, lists, _Plan, op)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        run_plan(plan, device, lambda table, block, warps: _launch(table, block, warps, alpha, mu, nesterov, gate))


def int8_momentum_sync_(fast, slow, momentum, scales, alpha: float, mu: float, nesterov: bool) -> None:
    _run([fast, slow, momentum, scales], alpha, mu, nesterov)


def int8_momentum_sync_on_step_(fast, slow, momentum, scales, alpha: torch.Tensor, step: torch.Tensor, k: int,
                                mu: float, nesterov: bool) -> None:  # fmt: skip
    _run([fast, slow, momentum, scales], alpha, mu, nesterov, gate=(step.reshape(1), k))


def compact_int8_momentum_sync_(fast, slow_high, slow_low, momentum, scales, alpha: float, mu: float,
                                nesterov: bool) -> None:  # fmt: skip
    _run([fast, slow_high, slow_low, momentum, scales], alpha, mu, nesterov)


def compact_int8_momentum_sync_on_step_(fast, slow_high, slow_low, momentum, scales, alpha: torch.Tensor,
                                        step: torch.Tensor, k: int, mu: float, nesterov: bool) -> None:  # fmt: skip
    _run([fast, slow_high, slow_low, momentum, scales], alpha, mu, nesterov, gate=(step.reshape(1), k))
