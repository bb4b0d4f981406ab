"""Lookahead across data-parallel replicas (DiLoCo): `Lookahead(..., replicas=group)`.

[NOTE: replicas] Each replica (a rank of `group`) runs its own inner steps on its own data, with no
communication between syncs. At a sync every replica packs its pseudo-gradient d_r = fast_r - slow
(one launch of the pseudo-gradient op per launch of the sync;
see [NOTE: pseudo-gradient] in csrc/element_math.h) into flat buffers, one per (device, slow dtype), the whole buffer
all-reduced (SUM) bucket by bucket, asynchronously, in the wire dtype (`replica_dtype`: None, the
slow weights' own dtype, never rounded; torch.float32; torch.bfloat16, each replica's d rounded to
bfloat16 and summed in bfloat16 by the collective; "int8", int8 blocks all-gathered and summed in
float32 by every replica; the bounds are in docs/design.md, "Lookahead across replicas"). The pack
writes d in the wire dtype where the op can (the slow dtype, or bfloat16 beside float32 slow
weights: buffers of their own, kept beside the slow-dtype ones), else in the slow dtype, cast to
the wire dtype before the collective. SUM is the
reduction every backend has for these dtypes (gloo has no AVG). Then, in the slow-dtype buffers, the averaged fast
weights slow + sum / R, and the usual fused (momentum) sync of those against the slow weights: one
launch per alpha and device, as without replicas; the params take the new slow weights, cast. The
slow weights, the outer momenta and the params come out bit for bit the same on every replica: each
starts from the same values (checked when a param group joins) and runs the same operations on the
same reduced buffer. A group of one replica is today's sync (no buffers, no collective). A replica's
checkpoint is its own (its fast weights and inner state differ from the others' mid-period): resume by
building the model and the optimizer from the same start on every replica, then loading each
replica's model and optimizer state.

Rules: every replica constructs the optimizer, adds param groups, steps and calls sync_lookahead()
the same number of times, with the same k and the same params in the same order. A sync all-reduces
each replica's step count and k first (one small collective) and raises on every replica when they
differ, before anything changes; a replica that stops stepping altogether leaves the others waiting
in that collective (the process group's timeout applies), as with DDP. The buffers, one slow-dtype
copy of the params (and, with a bfloat16 wire, a bfloat16 twin of the float32 ones), are allocated
at the first sync and kept. Sharded params (FSDP2 inside each
replica, HSDP on a 2-D mesh, `group` the "replicate" dimension's): each rank does all of this on its
local shards, with its peers that hold the same shards. Not built yet, refused when the
optimizer is built: capturable=True, alpha="adaptive" (each replica would choose its own),
slow_dtype="bf16+int8", momentum_dtype="int8", and a compiled step();
LookaheadAdamW with replicas runs its AdamW pass without the sync, then this one. With fragments or
a delay, each fragment's sync is this one on its own params, sent and landed at its own steps, in
buffers of its own (see [NOTE: streaming] in lookahead_fused/streaming.py).
"""

from __future__ import annotations

import dataclasses

import torch

from . import int8_blocks, ops, streaming
from .backends import reference
from .contract import allowed_pseudo_gradient_dtypes
from .sharded import local_shards, local_tensor, mesh_groups
from .slow_state import ALPHA_KEY, is_compact, is_int8_delta, is_int8_momentum

WIRE_DTYPES = (None, torch.float32, torch.bfloat16, int8_blocks.MOMENTUM_DTYPE)  # "int8": int8 blocks
BUCKET_BYTES = 32 * 2**20  # each all-reduce's share of a buffer: the collectives overlap the next ones' start
_OP = "lookahead_sync_"  # the lists' names in local_shards' messages
_VECTOR_BYTES = 16  # each view starts in its slow weight's 16-byte phase, so the fused kernel keeps its vectors


def check_replica_options(replicas, replica_dtype, defaults: dict) -> None:
    """Refuse, before anything is built, what replicas do not take (see [NOTE: replicas] in lookahead_fused/replicas.py)."""
    if replicas is None:
        if replica_dtype is not None:
            raise ValueError(f"replica_dtype={replica_dtype} needs replicas=<a ProcessGroup>; without replicas nothing is sent")
        return
    import torch.distributed as dist

    if not isinstance(replicas, dist.ProcessGroup):
        raise TypeError(f"replicas must be a torch.distributed ProcessGroup or None, got {type(replicas).__name__}")
    if not (is_int8_wire(replica_dtype) or any(replica_dtype is accepted for accepted in WIRE_DTYPES)):
        raise ValueError(
            f"replica_dtype must be None (the slow weights' dtype), torch.float32, torch.bfloat16 or "
            f"{int8_blocks.MOMENTUM_DTYPE!r} (int8 blocks), got {replica_dtype!r}"
        )
    refused = {
        "capturable=True": defaults["capturable"],
        "alpha='adaptive'": isinstance(defaults[ALPHA_KEY], str),
        "slow_dtype='bf16+int8'": is_compact(defaults["slow_dtype"]),
        "slow_dtype='int8-delta'": is_int8_delta(defaults["slow_dtype"]),
        "momentum_dtype='int8'": is_int8_momentum(defaults["momentum_dtype"]),
    }
    for name, found in refused.items():
        if found:
            raise ValueError(f"replicas do not support {name} yet (see docs/design.md, 'Lookahead across replicas')")


def is_int8_wire(replica_dtype) -> bool:
    return isinstance(replica_dtype, str) and replica_dtype == int8_blocks.MOMENTUM_DTYPE


class Replicas:
    """The replicas of one Lookahead: its group, wire dtype and step counter, and the sync's buffers."""

    def __init__(self, group, wire_dtype, counter: torch.Tensor, k_of, backend_of, fragments=1, delay=0, delay_mix=0.0):
        import torch.distributed as dist

        self.dist = dist
        self.group = group
        self.size = dist.get_world_size(group)
        self.averages = self.size > 1  # a group of one replica syncs as without replicas
        self.wire_dtype = wire_dtype
        self.counter = counter  # the optimizer's step counter
        self.k_of = k_of  # () -> the optimizer's k
        self.backend_of = backend_of  # () -> the optimizer's backend name
        self._layouts: dict = {}  # (slot, wire) -> (key, flat buffers, views in the order of the pairs)
        # fragments and delay (see [NOTE: streaming] in lookahead_fused/streaming.py), or None
        self.stream = streaming.Stream(self, fragments, delay, delay_mix, k_of) if streaming.streams(fragments, delay) else None

    def __getstate__(self) -> dict:
        raise TypeError("a Lookahead with replicas cannot be copied or pickled: it holds a process group")

    # -- the start ---------------------------------------------------------------------------------
    @torch.no_grad()
    def check_identical(self, params: list, where: str) -> None:
        """Raise ValueError on every replica, naming the first param whose bits differ from the first
        replica's (one broadcast per dtype and device, one small all-reduce)."""
        if not self.averages or not params:
            return
        first_differing = len(params)
        for indices in _by_device_and_dtype(params).values():
            local = torch.cat([local_tensor(params[i].detach()).reshape(-1) for i in indices])
            theirs = local.clone()
            self.dist.broadcast(theirs, src=self.dist.get_global_rank(self.group, 0), group=self.group)
            bits = _bit_view(local) != _bit_view(theirs)
            if bool(bits.any()):
                ends = torch.tensor([local_tensor(params[i]).numel() for i in indices]).cumsum(0)
                first = int(torch.searchsorted(ends, int(bits.nonzero()[0]), right=True))
                first_differing = min(first_differing, indices[first])
        found = torch.tensor([first_differing], dtype=torch.int64, device=params[0].device)  # NCCL: on the GPU
        for group in [self.group, *mesh_groups(params)]:  # sharded params: every shard of every replica agrees
            self.dist.all_reduce(found, op=self.dist.ReduceOp.MIN, group=group)
        if int(found) < len(params):
            raise ValueError(
                f"{where}: param {int(found)} (in group order) differs between the replicas; replicas must start from "
                "identical params (load or broadcast the same weights on every rank before building the optimizer)"
            )

    # -- a sync ------------------------------------------------------------------------------------
    @torch.no_grad()
    def average(self, launches: list) -> tuple[list, tuple[list, list]]:
        """The launches with their fast weights replaced by the replicas' average, in buffers of the
        slow dtype (see [NOTE: replicas] in lookahead_fused/replicas.py), strided params among them (a
        buffer is dense); and (params, buffers) for write_back after the sync."""
        finish, _, views = self.send(launches, slot=None)
        finish()
        return self.with_averages(launches, views)

    @torch.no_grad()
    def send(self, launches: list, slot) -> tuple[object, list, list]:
        """Pack the pseudo-gradients fast - slow of `launches` into the buffers of `slot` (a fragment,
        or None for every param) and start their reduction: (finish, the params, their views), where
        finish() waits for it and leaves the mean over the replicas in the views."""
        pairs = _pairs_of(launches)
        self._check_in_step(pairs[0][0].device if pairs else torch.device("cpu"))
        params = [p for p, _ in pairs]
        local_params, slows = local_shards(params, [s for _, s in pairs], op=_OP)
        buffers, views = self._buffers_for(slows, (slot, False), lambda slow_dtype: slow_dtype)
        packed, packed_views = buffers, views
        if self.averages and any(self._pack_dtype(s.dtype) != s.dtype for s in slows):
            packed, packed_views = self._buffers_for(slows, (slot, True), self._pack_dtype, beside=buffers)
        self._pack(launches, local_params, slows, packed_views)
        waits = self._start_sum(packed) if self.averages else []

        def finish() -> None:
            for wait in waits:
                wait()
            for flat, wire in zip(buffers, packed):
                if wire is not flat:
                    flat.copy_(wire)
            if self.averages:
                for flat in buffers:
                    flat.div_(self.size)

        return finish, params, views

    def _pack_dtype(self, slow_dtype: torch.dtype) -> torch.dtype:
        """The dtype the pack writes the pseudo-gradients of `slow_dtype` slow weights in: the wire
        dtype where the pseudo-gradient op writes it, else the slow dtype (then _start_sum casts)."""
        wire = self.wire_dtype
        if wire is None or is_int8_wire(wire) or wire not in allowed_pseudo_gradient_dtypes(slow_dtype):
            return slow_dtype
        return wire

    def _pack(self, launches: list, params: list, slows: list, views: list) -> None:
        """views <- params - slows (the lists in the order of _pairs_of): each launch's fused entries in
        one launch of the pseudo-gradient op, its strided params (which no fused kernel takes) through the
        reference loop, as the sync runs them."""
        start = 0
        for launch in launches:
            fused, strided = len(launch.fused[0]), len(launch.strided[0])
            dense, rest = slice(start, start + fused), slice(start + fused, start + fused + strided)
            ops.lookahead_pseudo_gradient_(params[dense], slows[dense], views[dense], backend=self.backend_of())
            reference.pseudo_gradient_(params[rest], slows[rest], views[rest])
            start += fused + strided

    @torch.no_grad()
    def with_averages(self, launches: list, views: list) -> tuple[list, tuple[list, list]]:
        """`launches` with the averaged fast weights slow + mean d (`views`, one per param of the
        launches in order, holding mean d) as their fast list; and (params, views) for write_back.
        Sharded lists become their local shards, which the ops take as plain tensors."""
        averaged, params, start = [], [], 0
        for launch in launches:
            fast, slow, *rest = local_shards(*(a + b for a, b in zip(launch.fused, launch.strided)), op=_OP)
            mine = views[start : start + len(fast)]
            start += len(fast)
            if mine:
                torch._foreach_add_(mine, slow)
            params += fast
            empty = tuple([] for _ in launch.fused)
            averaged.append(dataclasses.replace(launch, fused=(mine, slow, *rest), strided=empty))
        return averaged, (params, views)

    def _check_in_step(self, device: torch.device) -> None:
        """Every replica at the same step with the same k, or a RuntimeError on every one (the small
        tensor on the params' `device`, where NCCL needs it)."""
        count, k = int(self.counter), self.k_of()
        seen = torch.tensor([count, -count, k, -k], dtype=torch.int64, device=device)
        self.dist.all_reduce(seen, op=self.dist.ReduceOp.MAX, group=self.group)
        if int(seen[0]) != -int(seen[1]) or int(seen[2]) != -int(seen[3]):
            raise RuntimeError(
                f"replicas out of step: this replica is at step {count} with k={k}; the replicas are at steps "
                f"{-int(seen[1])} to {int(seen[0])} with k from {-int(seen[3])} to {int(seen[2])}. Every replica must "
                "step (and call sync_lookahead()) the same number of times, with the same k"
            )

    def _start_sum(self, buffers: list[torch.Tensor]) -> list:
        """Start the SUM over the replicas, each buffer in pieces of BUCKET_BYTES, all in flight at once;
        a buffer whose wire dtype is another is sent as a copy in that dtype. The waits that finish it,
        in order (the last reads the copies back)."""
        if is_int8_wire(self.wire_dtype):
            return self._start_int8_sum(buffers)
        works, casts = [], []
        for flat in buffers:
            wire = flat if self.wire_dtype in (None, flat.dtype) else flat.to(self.wire_dtype)
            if wire is not flat:
                casts.append((flat, wire))
            step = max(1, BUCKET_BYTES // wire.element_size())
            for start in range(0, wire.numel(), step):
                works.append(self.dist.all_reduce(wire[start : start + step], group=self.group, async_op=True))

        def read_back() -> None:
            for flat, wire in casts:
                flat.copy_(wire)

        return [work.wait for work in works] + [read_back]

    def _start_int8_sum(self, buffers: list[torch.Tensor]) -> list:
        """The SUM of _start_sum with int8 blocks on the wire
        (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py): each replica's buffer encoded in float32, every replica's codes
        and scales all-gathered (int8 codes under different scales cannot be summed by a reduction),
        then decoded and summed in float32 in rank order by every replica, so all get the same bits."""
        gathered = []
        for flat in buffers:
            codes, scales = int8_blocks.encode(flat.float().reshape(-1))
            theirs = ([torch.empty_like(codes) for _ in range(self.size)], [torch.empty_like(scales) for _ in range(self.size)])
            works = [self.dist.all_gather(theirs[0], codes, group=self.group, async_op=True),
                     self.dist.all_gather(theirs[1], scales, group=self.group, async_op=True)]  # fmt: skip
            gathered.append((flat, theirs, works))

        def sum_in_rank_order() -> None:
            for flat, (codes, scales), works in gathered:
                for work in works:
                    work.wait()
                total = torch.zeros(flat.shape, dtype=torch.float32, device=flat.device)
                for replica_codes, replica_scales in zip(codes, scales):
                    total += int8_blocks.decode(replica_codes, replica_scales)
                flat.copy_(total)

        return [sum_in_rank_order]

    def _buffers_for(
        self, slows: list[torch.Tensor], slot, dtype_of, beside: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Flat buffers (one per device and slow dtype, in dtype_of(slow dtype), zero where no view lies)
        and a view of them per slow weight, with its shape and strides, in the slow weight's 16-byte
        phase; built once per set of slow weights of each `slot` (a fragment's buffers stay its own
        while its sync is in flight; the slot also says which dtypes). The offsets do not depend on
        dtype_of: a slow-dtype buffer and its wire twin are copied into each other whole. `beside`: the
        slow-dtype buffers of the same slows; a group whose dtype_of is its slow dtype shares its
        buffer instead of taking a twin."""
        key = tuple((id(s), s.data_ptr(), s.dtype, s.device, tuple(s.shape), s.stride()) for s in slows)
        held = self._layouts.get(slot)
        if held is not None and held[0] == key:
            return held[1], held[2]
        offsets, ends = [], {}
        for s in slows:
            where = (s.device, s.dtype)
            # the slow weight's phase in elements, in a buffer whose element is no wider than the slow
            # weight's: some index is on a 16-byte boundary in both (see [NOTE: table layout] in csrc/table.h)
            width = min(s.element_size(), self._pack_dtype(s.dtype).itemsize)
            start = _round_up(ends.get(where, 0), _VECTOR_BYTES // width)
            start += (s.data_ptr() % _VECTOR_BYTES) // s.element_size()
            offsets.append(start)
            ends[where] = start + s.numel()
        shared = dict(zip(ends, beside)) if beside is not None else {}
        flats = {
            where: shared[where] if where in shared and dtype_of(where[1]) == where[1]
            else torch.zeros(end, dtype=dtype_of(where[1]), device=where[0])
            for where, end in ends.items()
        }  # fmt: skip
        views = [flats[(s.device, s.dtype)][start : start + s.numel()].as_strided(s.shape, s.stride())
                 for s, start in zip(slows, offsets)]  # fmt: skip
        self._layouts[slot] = (key, list(flats.values()), views)
        return self._layouts[slot][1], views


def write_back(params: list, views: list, mix: float = 0.0) -> None:
    """The params (local shards, as with_averages gives them) take the new slow weights (the buffers after the sync), cast to their dtype; with
    `mix` > 0, (1 - mix) new slow weights + mix their own values
    (see [NOTE: streaming] in lookahead_fused/streaming.py), computed in the slow weights' dtype."""
    if not params:
        return
    if mix and all(view.dtype == p.dtype for view, p in zip(views, params)):
        torch._foreach_lerp_(views, params, mix)
    elif mix:  # params in another dtype than their slow weights: each cast first
        for view, p in zip(views, params):
            view.lerp_(p.to(view.dtype), mix)
    torch._foreach_copy_(params, views)


def _pairs_of(launches: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(param, slow weight) of every entry of `launches`, fused then strided, launch by launch."""
    return [(lists[0][i], lists[1][i]) for launch in launches for lists in (launch.fused, launch.strided)
            for i in range(len(lists[0]))]  # fmt: skip


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _by_device_and_dtype(params: list) -> dict:
    found: dict = {}
    for i, p in enumerate(params):
        found.setdefault((p.device, p.dtype), []).append(i)
    return found


def _bit_view(t: torch.Tensor) -> torch.Tensor:
    """`t`'s bits as integers of its width, so that comparing them compares bits (NaN, -0.0)."""
    return t.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
