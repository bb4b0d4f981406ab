"""The sync, the momentum sync and the swap: one Triton launch per dtype pair and alignment class.
The package registers them as custom ops
(see [NOTE: Triton custom ops] in lookahead_fused/backends/triton/__init__.py).

[NOTE: Triton block size] triton.autotune would re-run an in-place kernel on the caller's tensors.
Instead, the first launch for a dtype pair on a GPU times each candidate (BLOCK, num_warps) on
scratch buffers of its own (do_bench) and keeps the fastest for the process. Under the
interpreter (TRITON_INTERPRET=1, the CPU tests) a fixed large block is used: it pays per program.
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
from .elementwise import ALPHA_ON_DEVICE, LARGE_ALPHA, SMALL_ALPHA, TL_DTYPES, sync_values
from .plans import CHUNK_BITS, INTERPRETER_CONFIG, Table, cached_plan, chunk_of, gate_is_open, launch_classes
from .plans import max_programs, run_plan

_CANDIDATES = [(1024, 4), (2048, 4), (2048, 8), (4096, 8)]  # (BLOCK, num_warps)


@triton.jit
def _sync_block(fast, slow, mom, offsets, mask, alpha_ptr, mu_ptr, FAST, SLOW, OPMATH, SWAP, LERP_SIDE, MOMENTUM,
                NESTEROV):  # fmt: skip
    f = tl.load(fast + offsets, mask=mask)
    s = tl.load(slow + offsets, mask=mask)
    if SWAP:
        tl.store(fast + offsets, s, mask=mask)
        tl.store(slow + offsets, f, mask=mask)
    else:
        w = tl.load(alpha_ptr)
        mu = tl.load(mu_ptr) if MOMENTUM else w
        sync_values(f.to(OPMATH), s.to(OPMATH), fast, slow, mom, offsets, mask, w, mu, FAST, SLOW, OPMATH, LERP_SIDE,
                     MOMENTUM, NESTEROV)  # fmt: skip


@triton.jit
def table_kernel(
    fast_addresses, slow_addresses, mom_addresses, numels, chunks, num_chunks, alpha_ptr, mu_ptr, step_ptr, k,
    FAST: tl.constexpr, SLOW: tl.constexpr, OPMATH: tl.constexpr, SWAP: tl.constexpr,
    LERP_SIDE: tl.constexpr, GATED: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr,
    CHUNK_BITS: tl.constexpr, MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr, MOM: tl.constexpr,
):  # fmt: skip
    """[NOTE: Triton vector accesses] Addresses loaded from an int64 table carry no alignment, and a
    mask that depends on numel is not uniform over a vector, so Triton emits 2- and 4-byte accesses.
    A launch whose pairs all start on 16-byte boundaries (ALIGNED) says so with multiple_of, and a
    chunk that lies wholly inside its tensor runs unmasked: 16-byte accesses. Only a tensor's last
    chunk runs masked.

    [NOTE: Triton grid] A fixed grid of at most PROGRAMS_PER_SM programs per SM strides over the
    chunks, so a gated launch off the sync steps is that many programs returning at once, not one
    program per chunk (about a million for a 1B-parameter model at BLOCK 1024)."""
    if gate_is_open(step_ptr, k, GATED):  # off the sync steps every program returns at once
        # See [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py
        for c in range(tl.program_id(0), num_chunks, tl.num_programs(0)):
            pair, start, offsets = chunk_of(chunks, c, CHUNK_BITS, BLOCK)
            fast = tl.load(fast_addresses + pair).to(tl.pointer_type(FAST))
            slow = tl.load(slow_addresses + pair).to(tl.pointer_type(SLOW))
            mom = tl.load(mom_addresses + pair).to(tl.pointer_type(MOM))  # slow's own table without MOMENTUM
            if ALIGNED:
                fast = tl.multiple_of(fast, 16)
                slow = tl.multiple_of(slow, 16)
                mom = tl.multiple_of(mom, 16)
            numel = tl.load(numels + pair)
            if start + BLOCK <= numel:
                _sync_block(fast, slow, mom, offsets, None, alpha_ptr, mu_ptr, FAST, SLOW, OPMATH, SWAP, LERP_SIDE,
                            MOMENTUM, NESTEROV)  # fmt: skip
            else:
                _sync_block(fast, slow, mom, offsets, offsets < numel, alpha_ptr, mu_ptr, FAST, SLOW, OPMATH, SWAP,
                            LERP_SIDE, MOMENTUM, NESTEROV)  # fmt: skip


class _Group(Table):
    """The tables of one dtype pair: what one launch needs. `lists`: fast, slow[, momentum]."""

    def __init__(self, lists, block, device):
        super().__init__(lists, block, device, 1)
        self.momentum = len(lists) == 3
        self.fast_addresses, self.slow_addresses = self.addresses[:2]
        self.mom_addresses = self.addresses[2] if self.momentum else self.slow_addresses
        self.mom_dtype = lists[2][0].dtype if self.momentum else self.slow_dtype  # bfloat16 beside float32 slow, or slow's


class _Plan:
    def __init__(self, lists, device):
        self.groups = []
        for launch in launch_classes(lists):
            block, warps = _config(device, launch[0][0].dtype, launch[1][0].dtype)
            self.groups.append((_Group(launch, block, device), block, warps))


sync_plans: OrderedDict = OrderedDict()  # the LRU of cached_plan; tests read it


def _plan_for(lists) -> _Plan:
    return cached_plan(sync_plans, lists, _Plan, "triton_sync_")


def _launch(group: _Group, block, warps, alpha, swap, gate=None, mu=0.0, nesterov=False):
    """alpha: a float, or with `gate` = (step, k) a one-element tensor read on the device."""
    opmath = opmath_dtype(group.slow_dtype)
    device = group.chunks.device
    if gate is None:
        alpha_tensor, step, k = device_scalar(float(alpha), opmath, device), group.chunks, 1
        side = SMALL_ALPHA if abs(alpha) < 0.5 else LARGE_ALPHA
    else:
        (step, k), alpha_tensor, side = gate, alpha.reshape(1).to(opmath), ALPHA_ON_DEVICE
    mu_tensor = device_scalar(float(mu), opmath, device)
    table_kernel[(min(group.num_chunks, max_programs(device)),)](
        group.fast_addresses, group.slow_addresses, group.mom_addresses, group.numels, group.chunks, group.num_chunks,
        alpha_tensor, mu_tensor, step, k,
        FAST=TL_DTYPES[group.fast_dtype], SLOW=TL_DTYPES[group.slow_dtype], OPMATH=TL_DTYPES[opmath],
        SWAP=swap, LERP_SIDE=side, GATED=gate is not None, ALIGNED=group.aligned, BLOCK=block, CHUNK_BITS=CHUNK_BITS,
        MOMENTUM=group.momentum, NESTEROV=bool(nesterov), MOM=TL_DTYPES[group.mom_dtype], num_warps=warps,
    )  # fmt: skip


@functools.cache
def _config(device, fast_dtype, slow_dtype) -> tuple[int, int]:
    """(BLOCK, num_warps) for a dtype pair on a device:
    see [NOTE: Triton block size] in lookahead_fused/backends/triton/sync.py."""
    if triton_interpreting() or device.type != "cuda":
        return INTERPRETER_CONFIG
    numel = 8 * 2**20  # 8 tensors of 8M elements: long enough to be bandwidth-bound
    try:  # the scratch buffers and do_bench's own cache-flush buffer (256 MB)
        fast = [torch.zeros(numel // 8, dtype=fast_dtype, device=device) for _ in range(8)]
        slow = [torch.zeros(numel // 8, dtype=slow_dtype, device=device) for _ in range(8)]
        timings = {}
        for block, warps in _CANDIDATES:
            group = _Group([fast, slow], block, device)
            timings[(block, warps)] = triton.testing.do_bench(lambda g=group, b=block, w=warps: _launch(g, b, w, 0.5, False))
    except torch.OutOfMemoryError:
        return _CANDIDATES[0]
    return min(timings, key=timings.get)


def _run(lists, alpha, swap, gate=None, mu=0.0, nesterov=False):
    if not lists[0]:
        return
    device = lists[0][0].device
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        run_plan(_plan_for(lists), device, lambda group, block, warps: _launch(group, block, warps, alpha, swap, gate,
                                                                               mu, nesterov))  # fmt: skip


def sync_(fast, slow, alpha: float) -> None:
    _run([fast, slow], alpha, swap=False)


def sync_on_step_(fast, slow, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
    _run([fast, slow], alpha, swap=False, gate=(step.reshape(1), k))


def swap_(first, second) -> None:
    _run([first, second], 0.0, swap=True)


def momentum_sync_(fast, slow, momentum, alpha: float, mu: float, nesterov: bool) -> None:
    _run([fast, slow, momentum], alpha, swap=False, mu=mu, nesterov=nesterov)


def momentum_sync_on_step_(fast, slow, momentum, alpha: torch.Tensor, step: torch.Tensor, k: int, mu: float,
                           nesterov: bool) -> None:  # fmt: skip
    _run([fast, slow, momentum], alpha, swap=False, gate=(step.reshape(1), k), mu=mu, nesterov=nesterov)
