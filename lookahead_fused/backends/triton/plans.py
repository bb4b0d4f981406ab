"""What every Triton launch of this backend shares: the device tables of a plan, the plan cache,
and the launch loop (see [NOTE: Triton plan] in lookahead_fused/backends/triton/__init__.py)."""

from __future__ import annotations

import functools
import operator
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from ...slow_state import VECTOR_BYTES
from .. import group_pairs, triton_interpreting

CHUNK_BITS = 40
INTERPRETER_CONFIG = (8192, 1)  # (BLOCK, num_warps): few programs, as the interpreter pays per program
# a tunable (bench/triton_sync_time.py varies it)
PROGRAMS_PER_SM = 8  # see [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py
_INTERPRETER_PROGRAMS = 3  # fewer programs than chunks, so the CPU tests stride too
_CACHED_PLANS = 8

_ADDRESS, _NUMEL, _DTYPE = torch.Tensor.data_ptr, torch.Tensor.numel, operator.attrgetter("dtype")
launch_count = 0  # launches of plans so far, not the block-size benchmark's (tests count launches per sync)
# [NOTE: Triton plans under capture] A captured graph launches with the device tables of the plan that
# was current at capture; the plan cache may evict that plan later, so every plan a capture used is
# kept here for the life of the process (a Triton plan has no CUDA user object to tie it to the graph).
_captured: list = []


@triton.jit
def gate_is_open(step_ptr, k, GATED: tl.constexpr):
    """Whether a launch runs: always, or when GATED, on a sync step (step % k == 0, read on the device;
    see [NOTE: step gate] in csrc/table.h)."""
    go = True
    if GATED:
        go = tl.load(step_ptr) % k == 0
    return go


@triton.jit
def chunk_of(chunks, c, CHUNK_BITS: tl.constexpr, BLOCK: tl.constexpr):
    """(entry index, first element, the offsets of its BLOCK elements) of chunk word c of a table
    (entry << CHUNK_BITS | chunk index; int64, as the offsets are), with the hints that the 16-byte accesses need
    (see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py)."""
    packed = tl.load(chunks + c)
    start = tl.multiple_of((packed & ((1 << CHUNK_BITS) - 1)) * BLOCK, BLOCK)
    return packed >> CHUNK_BITS, start, tl.max_contiguous(tl.multiple_of(start + tl.arange(0, BLOCK), BLOCK), BLOCK)


def on_vector_boundary(*tensors) -> bool:
    """Whether every tensor of an entry starts on a 16-byte boundary
    (see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py)."""
    return all(t.data_ptr() % VECTOR_BYTES == 0 for t in tensors)


def launch_classes(lists) -> list[list[list]]:
    """The lists' non-empty entries split into launches, one per combination of every list's dtype
    and per alignment class (see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py),
    in first-seen order: each launch's lists."""
    entries = [tensors for tensors in zip(*lists) if tensors[0].numel()]
    launches = []
    for columns in group_pairs(*zip(*entries)):  # one device here
        for aligned in (True, False):
            chosen = [tensors for tensors in zip(*columns) if on_vector_boundary(*tensors) == aligned]
            if chosen:
                launches.append([list(column) for column in zip(*chosen)])
    return launches


class Table:
    """The tables of one launch on its device (see [NOTE: Triton plan] in lookahead_fused/backends/triton/__init__.py):
    per entry the address of each
    list's tensor, then each entry's numel, then `extra` (one word per entry, if any), then the chunk
    map. `state_index`: the list that holds the slow weights (its dtype is the launch's state dtype)."""

    def __init__(self, lists, block, device, state_index, extra=None):
        first = lists[0]
        self.fast_dtype, self.slow_dtype = first[0].dtype, lists[state_index][0].dtype
        self.dtypes = tuple(tensors[0].dtype for tensors in lists)  # each list's: one per launch (launch_classes)
        self.aligned = all(map(on_vector_boundary, *lists))
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


def cached_plan(plans: OrderedDict, lists, build, op: str):
    """The plan of `lists` from `plans` (an LRU of _CACHED_PLANS), keyed by content: every address,
    the sizes, and every tensor's dtype; build(lists, device) on a miss."""
    device = lists[0][0].device
    # one map per list and field: each a loop in C, not a Python generator per entry
    key = (device, *(tuple(map(_ADDRESS, tensors)) for tensors in lists), tuple(map(_NUMEL, lists[0])),
           *(tuple(map(_DTYPE, tensors)) for tensors in lists))  # fmt: skip
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


@functools.cache
def max_programs(device) -> int:
    if triton_interpreting() or device.type != "cuda":
        return _INTERPRETER_PROGRAMS
    return PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count


def run_plan(plan, device: torch.device, launch) -> None:
    """launch(group, block, warps) for each launch of `plan` (its `.groups`), on `device`'s current
    stream: an evicted plan's tables stay alive for the launch, and a captured graph keeps its plan
    (see [NOTE: Triton plans under capture] in lookahead_fused/backends/triton/plans.py)."""
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
