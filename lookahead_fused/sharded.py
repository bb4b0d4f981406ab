"""Sharded tensors (DTensor: FSDP2's fully_shard, tensor parallel) in the ops. The sync and the swap
are elementwise, so a pair of DTensors with the same mesh and placements pairs up shard by shard:
the op runs on the local shards, and the slow weights stay sharded like their params."""

from __future__ import annotations

from itertools import chain

import torch

from .contract import ADAMW_LIST_NAMES, COMPACT_LIST_NAMES, COMPACT_OP, SYNC_LIST_NAMES


def dtensor_type():
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (writing it writes the DTensor), or a plain tensor itself."""
    dtensor = dtensor_type()
    return t.to_local() if dtensor is not None and isinstance(t, dtensor) else t


def sharded_like(local: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`local` (a shard of `param`'s local shape) as a DTensor laid out like `param`, sharing its
    memory; `local` itself beside a plain param."""
    dtensor = dtensor_type()
    if dtensor is None or not isinstance(param, dtensor):
        return local
    return dtensor.from_local(local, param.device_mesh, param.placements, run_check=False, shape=param.shape,
                              stride=param.stride())  # fmt: skip


def mesh_groups(tensors) -> list:
    """The process groups of every mesh dimension of the DTensors among `tensors`, each once, in the
    order first met (the same order on every rank that holds the same params)."""
    dtensor = dtensor_type()
    found, meshes = [], []
    for t in tensors:
        if dtensor is not None and isinstance(t, dtensor) and t.device_mesh not in meshes:
            meshes.append(t.device_mesh)
            found += [t.device_mesh.get_group(dim) for dim in range(t.device_mesh.ndim)]
    return found


_LIST_NAMES = {  # the op -> its lists' names in the messages
    "lookahead_sync_": SYNC_LIST_NAMES,
    "lookahead_adamw_step_": ADAMW_LIST_NAMES,
    COMPACT_OP: COMPACT_LIST_NAMES,
}


def local_shards(first, second, *more, op: str):
    """The lists with every DTensor replaced by its local shard; ValueError for a pair that mixes a
    DTensor with a plain tensor, or DTensors laid out differently. Plain lists pass as they are.
    Returns (first, second) or, with more lists (the outer momentum), (first, second, *more)."""
    lists = (first, second, *more)
    dtensor = dtensor_type()
    # [NOTE: per-tensor Python] map(type, ...) runs in C: a call with 4000 tensors spends ~0.05 ms
    # here instead of the 0.37 ms of an isinstance generator (the CPU kernel's fixed cost, issue 14).
    if dtensor is None or not any(issubclass(kind, dtensor) for kind in set(map(type, chain(*lists)))):
        return lists
    names = _LIST_NAMES.get(op, ("first", "second"))
    for other, name in zip(lists[1:], names[1:]):
        for i, (x, y) in enumerate(zip(first, other)):
            if isinstance(x, dtensor) != isinstance(y, dtensor):
                sharded = names[0] if isinstance(x, dtensor) else name
                raise ValueError(f"{op}: pair {i}: only {sharded} is a DTensor; both or neither must be")
            if isinstance(x, dtensor) and (x.device_mesh != y.device_mesh or x.placements != y.placements):
                raise ValueError(
                    f"{op}: pair {i}: {names[0]} is laid out as {x.placements} on {x.device_mesh} but {name} "
                    f"as {y.placements} on {y.device_mesh}; shard the slow tensor like its param"
                )
    return tuple([local_tensor(t) for t in tensors] for tensors in lists)
