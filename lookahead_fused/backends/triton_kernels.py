"""The "triton" backend: the sync and the swap as one Triton launch per dtype pair, for CUDA tensors
when the C++ extension is not built, and as a second implementation to check the CUDA kernel.

[NOTE: Triton plan] A plan per parameter set holds, per dtype pair, a device table of fast and slow
addresses and sizes plus a chunk map (pair index << 40 | chunk index, one program per chunk of
BLOCK elements). It is found again by content (addresses, sizes, dtypes), so steady state uploads
nothing. Triton fixes a pointer's element type at compile time, so each dtype pair is its own
launch, split once more into the pairs that start on 16-byte boundaries and the rest ([NOTE: Triton
vector accesses] in _table_kernel). The op is registered as the opaque custom op lookahead_fused::triton_sync_ (and
::triton_swap_), so torch.compile keeps it whole: tracing into the kernel would hand it fake
tensors, whose addresses a table cannot hold.

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

from ..contract import opmath_dtype
from ..device_scalars import device_scalar
from ..slow_state import VECTOR_BYTES
from . import BackendUnavailable, group_pairs, triton_interpreting

CHUNK_BITS = 40
_CANDIDATES = [(1024, 4), (2048, 4), (2048, 8), (4096, 8)]  # (BLOCK, num_warps)
_INTERPRETER_CONFIG = (8192, 1)  # few programs: the interpreter pays per program
_PROGRAMS_PER_SM = 8  # [NOTE: Triton grid]
_INTERPRETER_PROGRAMS = 3  # fewer programs than chunks, so the CPU tests stride too
_CACHED_PLANS = 8

_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32, torch.float64: tl.float64}

launch_count = 0  # launches of plans so far, not the block-size benchmark's (tests count launches per sync)
_captured: list = []  # plans that captured graphs launch with: [NOTE: Triton plans under capture]
_SMALL_ALPHA, _LARGE_ALPHA, _ALPHA_ON_DEVICE = 0, 1, 2  # LERP_SIDE: the lerp's side, if the host knows alpha


@triton.jit
def _round(x, DTYPE: tl.constexpr):
    """x (float32/float64) in DTYPE, rounded to nearest even. bfloat16 goes through integer math, bit
    for bit as c10::BFloat16 rounds (one canonical NaN): Triton's interpreter does not round it so."""
    if DTYPE == tl.bfloat16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        rounded = tl.where(x != x, 0x7FC0, rounded)
        return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE, fp_downcast_rounding="rtne")


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
        _sync_values(f.to(OPMATH), s.to(OPMATH), fast, slow, mom, offsets, mask, w, mu, FAST, SLOW, OPMATH, LERP_SIDE,
                     MOMENTUM, NESTEROV)  # fmt: skip


@triton.jit
def _sync_values(fo, so, fast, slow, mom, offsets, mask, w, mu, FAST, SLOW, OPMATH, LERP_SIDE, MOMENTUM, NESTEROV):
    """The sync of fast values `fo` (opmath) with slow values `so`: stores slow, fast and the momentum."""
    # [NOTE: two-sided lerp] as in the C++ kernels; exact at alpha 0 and 1.
    target = fo
    if MOMENTUM:  # [NOTE: momentum sync] a lerp toward f + mu * (nesterov ? m_new : m_old)
        mo = tl.load(mom + offsets, mask=mask).to(OPMATH)
        m_new = _round(mu * mo + (fo - so), SLOW)
        if NESTEROV:
            target = fo + mu * m_new.to(OPMATH)
        else:
            target = fo + mu * mo
        tl.store(mom + offsets, m_new, mask=mask)
    if LERP_SIDE == 0:  # _SMALL_ALPHA
        r = so + w * (target - so)
    elif LERP_SIDE == 1:  # _LARGE_ALPHA
        r = target - (target - so) * (1.0 - w)
    else:  # alpha is known only on the device
        r = tl.where(tl.abs(w) < 0.5, so + w * (target - so), target - (target - so) * (1.0 - w))
    new_slow = _round(r, SLOW)
    tl.store(slow + offsets, new_slow, mask=mask)
    tl.store(fast + offsets, _round(new_slow.to(OPMATH), FAST), mask=mask)


@triton.jit
def _table_kernel(
    fast_addresses, slow_addresses, mom_addresses, numels, chunks, num_chunks, alpha_ptr, mu_ptr, step_ptr, k,
    FAST: tl.constexpr, SLOW: tl.constexpr, OPMATH: tl.constexpr, SWAP: tl.constexpr,
    LERP_SIDE: tl.constexpr, GATED: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr,
    CHUNK_BITS: tl.constexpr, MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr,
):  # fmt: skip
    """[NOTE: Triton vector accesses] Addresses loaded from an int64 table carry no alignment, and a
    mask that depends on numel is not uniform over a vector, so Triton emits 2- and 4-byte accesses.
    A launch whose pairs all start on 16-byte boundaries (ALIGNED) says so with multiple_of, and a
    chunk that lies wholly inside its tensor runs unmasked: 16-byte accesses. Only a tensor's last
    chunk runs masked.

    [NOTE: Triton grid] A fixed grid of at most _PROGRAMS_PER_SM programs per SM strides over the
    chunks, so a gated launch off the sync steps is that many programs returning at once, not one
    program per chunk (about a million for a 1B-parameter model at BLOCK 1024)."""
    go = True
    if GATED:  # [NOTE: step gate] off the sync steps every program returns at once
        go = tl.load(step_ptr) % k == 0
    if go:
        for c in range(tl.program_id(0), num_chunks, tl.num_programs(0)):  # [NOTE: Triton grid]
            packed = tl.load(chunks + c)
            pair = packed >> CHUNK_BITS
            chunk = packed & ((1 << CHUNK_BITS) - 1)
            fast = tl.load(fast_addresses + pair).to(tl.pointer_type(FAST))
            slow = tl.load(slow_addresses + pair).to(tl.pointer_type(SLOW))
            mom = tl.load(mom_addresses + pair).to(tl.pointer_type(SLOW))  # slow's own table without MOMENTUM
            if ALIGNED:
                fast = tl.multiple_of(fast, 16)
                slow = tl.multiple_of(slow, 16)
                mom = tl.multiple_of(mom, 16)
            start = tl.multiple_of(chunk * BLOCK, BLOCK)  # int64: chunk is
            offsets = tl.max_contiguous(tl.multiple_of(start + tl.arange(0, BLOCK), BLOCK), BLOCK)
            numel = tl.load(numels + pair)
            if start + BLOCK <= numel:
                _sync_block(fast, slow, mom, offsets, None, alpha_ptr, mu_ptr, FAST, SLOW, OPMATH, SWAP, LERP_SIDE,
                            MOMENTUM, NESTEROV)  # fmt: skip
            else:
                _sync_block(fast, slow, mom, offsets, offsets < numel, alpha_ptr, mu_ptr, FAST, SLOW, OPMATH, SWAP,
                            LERP_SIDE, MOMENTUM, NESTEROV)  # fmt: skip


def _on_vector_boundary(*tensors) -> bool:
    """Whether every tensor of an entry starts on a 16-byte boundary ([NOTE: Triton vector accesses])."""
    return all(t.data_ptr() % VECTOR_BYTES == 0 for t in tensors)


class _Table:
    """The tables of one launch on its device ([NOTE: Triton plan]): per entry the address of each
    list's tensor, then each entry's numel, then `extra` (one word per entry, if any), then the chunk
    map. `state_index`: the list that holds the slow weights (its dtype is the launch's state dtype)."""

    def __init__(self, lists, block, device, state_index, extra=None):
        first = lists[0]
        self.fast_dtype, self.slow_dtype = first[0].dtype, lists[state_index][0].dtype
        self.aligned = all(map(_on_vector_boundary, *lists))
        chunk_words = [(i << CHUNK_BITS) | c for i, f in enumerate(first) for c in range(triton.cdiv(f.numel(), block))]
        self.num_chunks = len(chunk_words)
        words = [t.data_ptr() for tensors in lists for t in tensors] + [f.numel() for f in first]
        words += (extra or []) + chunk_words
        table = self.tables = torch.tensor(words, dtype=torch.int64).to(device)
        self.stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
        n, depth = len(first), len(lists)
        self.addresses = [table[i * n : (i + 1) * n] for i in range(depth)]
        self.numels = table[depth * n : (depth + 1) * n]
        self.extra = table[(depth + 1) * n : (depth + 2) * n] if extra is not None else None
        self.chunks = table[(depth + 1 + (extra is not None)) * n :]


class _Group(_Table):
    """The tables of one dtype pair: what one launch needs. `lists`: fast, slow[, momentum]."""

    def __init__(self, lists, block, device):
        super().__init__(lists, block, device, 1)
        self.momentum = len(lists) == 3
        self.fast_addresses, self.slow_addresses = self.addresses[:2]
        self.mom_addresses = self.addresses[2] if self.momentum else self.slow_addresses


class _Plan:
    def __init__(self, lists, device):
        entries = [tensors for tensors in zip(*lists) if tensors[0].numel()]
        self.groups = []
        for columns in group_pairs(*zip(*entries)):  # one device here
            block, warps = _config(device, columns[0][0].dtype, columns[1][0].dtype)
            for aligned in (True, False):  # [NOTE: Triton vector accesses]
                chosen = [tensors for tensors in zip(*columns) if _on_vector_boundary(*tensors) == aligned]
                if chosen:
                    self.groups.append((_Group([list(column) for column in zip(*chosen)], block, device), block, warps))


_plans: OrderedDict = OrderedDict()


def cached_plan(plans: OrderedDict, lists, state_index: int, build, op: str):
    """The plan of `lists` from `plans` (an LRU of _CACHED_PLANS), keyed by content: every address,
    the sizes, and the dtypes of lists[0] and lists[state_index]; build(lists, device) on a miss."""
    device = lists[0][0].device
    key = (device, len(lists), tuple((*(t.data_ptr() for t in tensors), tensors[0].numel(), tensors[0].dtype,
                                      tensors[state_index].dtype) for tensors in zip(*lists)))  # fmt: skip
    plan = plans.get(key)
    if plan is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                f"{op}: these tensors have no kernel plan yet, and one cannot be built while a CUDA graph is "
                "being captured (its upload is a blocking host-to-device copy). Run the same step once eagerly "
                "before capturing (warm-up), with the same tensors."
            )
        plan = plans[key] = build(lists, device)
        if len(plans) > _CACHED_PLANS:
            plans.popitem(last=False)
    else:
        plans.move_to_end(key)
    return plan


def _plan_for(lists) -> _Plan:
    return cached_plan(_plans, lists, 1, _Plan, "triton_sync_")


def _launch(group: _Group, block, warps, alpha, swap, gate=None, mu=0.0, nesterov=False):
    """alpha: a float, or with `gate` = (step, k) a one-element tensor read on the device."""
    opmath = opmath_dtype(group.slow_dtype)
    device = group.chunks.device
    if gate is None:
        alpha_tensor, step, k = device_scalar(float(alpha), opmath, device), group.chunks, 1
        side = _SMALL_ALPHA if abs(alpha) < 0.5 else _LARGE_ALPHA
    else:
        (step, k), alpha_tensor, side = gate, alpha.reshape(1).to(opmath), _ALPHA_ON_DEVICE
    mu_tensor = device_scalar(float(mu), opmath, device)
    _table_kernel[(min(group.num_chunks, _max_programs(device)),)](
        group.fast_addresses, group.slow_addresses, group.mom_addresses, group.numels, group.chunks, group.num_chunks,
        alpha_tensor, mu_tensor, step, k,
        FAST=_TL_DTYPES[group.fast_dtype], SLOW=_TL_DTYPES[group.slow_dtype], OPMATH=_TL_DTYPES[opmath],
        SWAP=swap, LERP_SIDE=side, GATED=gate is not None, ALIGNED=group.aligned, BLOCK=block, CHUNK_BITS=CHUNK_BITS,
        MOMENTUM=group.momentum, NESTEROV=bool(nesterov), num_warps=warps,
    )  # fmt: skip


@functools.cache
def _max_programs(device) -> int:
    if triton_interpreting() or device.type != "cuda":
        return _INTERPRETER_PROGRAMS
    return _PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count


@functools.cache
def _config(device, fast_dtype, slow_dtype) -> tuple[int, int]:
    """(BLOCK, num_warps) for a dtype pair on a device: see [NOTE: Triton block size]."""
    if triton_interpreting() or device.type != "cuda":
        return _INTERPRETER_CONFIG
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


def run_plan(plan, device: torch.device, launch) -> None:
    """launch(group, block, warps) for each launch of `plan` (its `.groups`), on `device`'s current
    stream: an evicted plan's tables stay alive for the launch, and a captured graph keeps its plan
    ([NOTE: Triton plans under capture])."""
    global launch_count
    on_gpu = device.type == "cuda"
    stream = torch.cuda.current_stream() if on_gpu else None
    for group, block, warps in plan.groups:
        if stream is not None and stream != group.stream:
            group.tables.record_stream(stream)
        launch(group, block, warps)
        launch_count += 1
    if on_gpu and torch.cuda.is_current_stream_capturing():
        _captured.append(plan)


def _run(lists, alpha, swap, gate=None, mu=0.0, nesterov=False):
    if not lists[0]:
        return
    device = lists[0][0].device
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        run_plan(_plan_for(lists), device, lambda group, block, warps: _launch(group, block, warps, alpha, swap, gate,
                                                                               mu, nesterov))  # fmt: skip


@torch.library.custom_op("lookahead_fused::triton_sync_", mutates_args=("fast", "slow"))
def triton_sync_(fast: list[torch.Tensor], slow: list[torch.Tensor], alpha: float) -> None:
    _run([fast, slow], alpha, swap=False)


@triton_sync_.register_fake
def _(fast, slow, alpha):
    return None


@torch.library.custom_op("lookahead_fused::triton_sync_on_step_", mutates_args=("fast", "slow"))
def triton_sync_on_step_(
    fast: list[torch.Tensor], slow: list[torch.Tensor], alpha: torch.Tensor, step: torch.Tensor, k: int
) -> None:
    _run([fast, slow], alpha, swap=False, gate=(step.reshape(1), k))


@triton_sync_on_step_.register_fake
def _(fast, slow, alpha, step, k):
    return None


@torch.library.custom_op("lookahead_fused::triton_swap_", mutates_args=("first", "second"))
def triton_swap_(first: list[torch.Tensor], second: list[torch.Tensor]) -> None:
    _run([first, second], 0.0, swap=True)


@triton_swap_.register_fake
def _(first, second):
    return None


@torch.library.custom_op("lookahead_fused::triton_momentum_sync_", mutates_args=("fast", "slow", "momentum"))
def triton_momentum_sync_(
    fast: list[torch.Tensor], slow: list[torch.Tensor], momentum: list[torch.Tensor], alpha: float, mu: float,
    nesterov: bool,
) -> None:  # fmt: skip
    _run([fast, slow, momentum], alpha, swap=False, mu=mu, nesterov=nesterov)


@triton_momentum_sync_.register_fake
def _(fast, slow, momentum, alpha, mu, nesterov):
    return None


@torch.library.custom_op("lookahead_fused::triton_momentum_sync_on_step_", mutates_args=("fast", "slow", "momentum"))
def triton_momentum_sync_on_step_(
    fast: list[torch.Tensor], slow: list[torch.Tensor], momentum: list[torch.Tensor], alpha: torch.Tensor,
    step: torch.Tensor, k: int, mu: float, nesterov: bool,
) -> None:  # fmt: skip
    _run([fast, slow, momentum], alpha, swap=False, gate=(step.reshape(1), k), mu=mu, nesterov=nesterov)


@triton_momentum_sync_on_step_.register_fake
def _(fast, slow, momentum, alpha, step, k, mu, nesterov):
    return None


class TritonBackend:
    """Trusts its inputs: lookahead_fused.ops checks the contract in Python first."""

    name = "triton"

    def sync_(self, fast, slow, alpha: float) -> None:
        triton_sync_(list(fast), list(slow), float(alpha))

    def sync_on_step_(self, fast, slow, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
        triton_sync_on_step_(list(fast), list(slow), alpha, step, int(k))

    def swap_(self, first, second) -> None:
        triton_swap_(list(first), list(second))

    def momentum_sync_(self, fast, slow, momentum, alpha: float, mu: float, nesterov: bool) -> None:
        triton_momentum_sync_(list(fast), list(slow), list(momentum), float(alpha), float(mu), bool(nesterov))

    def momentum_sync_on_step_(self, fast, slow, momentum, alpha, step, k: int, mu: float, nesterov: bool) -> None:
        triton_momentum_sync_on_step_(list(fast), list(slow), list(momentum), alpha, step, int(k), float(mu), bool(nesterov))

    def adamw_step_(self, params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu, nesterov) -> None:
        from .triton_adamw import adamw_step_  # [NOTE: Triton AdamW]

        adamw_step_(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, float(mu), bool(nesterov))


def load() -> TritonBackend:
    if not (torch.cuda.is_available() or triton_interpreting()):
        raise BackendUnavailable("no CUDA GPU is available (TRITON_INTERPRET=1 runs it on the CPU, for tests)")
    return TritonBackend()
