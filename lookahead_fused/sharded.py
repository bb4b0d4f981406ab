"""Sharded tensors (DTensor: FSDP2's fully_shard, tensor parallel) in the ops. The sync and the swap
are elementwise, so a pair of DTensors with the same mesh and placements pairs up shard by shard:
the op runs on the local shards, and the slow weights stay sharded like their params."""

from __future__ import annotations

from itertools import chain

import torch

from . import int8_blocks
from .contract import ADAMW_LIST_NAMES, COMPACT_LIST_NAMES, COMPACT_OP, INT8_MOMENTUM_LIST_NAMES, INT8_MOMENTUM_OP
from .contract import PSEUDO_GRADIENT_LIST_NAMES, PSEUDO_GRADIENT_OP
from .contract import ADAMW_DELTA_LIST_NAMES, ADAMW_DELTA_OP, INT8_DELTA_SYNC_LIST_NAMES, INT8_DELTA_SYNC_OP
from .contract import ADAMW_COMPACT_LIST_NAMES, ADAMW_COMPACT_OP, SYNC_LIST_NAMES
from .contract import ADAMW_INT8_MOMENTUM_LIST_NAMES, ADAMW_INT8_MOMENTUM_OP


_DTENSOR: list = []  # DTensor (or None without torch.distributed), found at the first call


def dtensor_type():
    if not _DTENSOR:
        if torch.distributed.is_available():
            from torch.distributed.tensor import DTensor
        else:
            DTensor = None
        _DTENSOR.append(DTensor)
    return _DTENSOR[0]


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


def is_sharded(t) -> bool:
    dtensor = dtensor_type()
    return dtensor is not None and isinstance(t, dtensor)


def sharded_copy(local: torch.Tensor, param: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new DTensor laid out like `param`, in `dtype`, its local shard holding `local`'s values."""
    copy = torch.empty_like(param, dtype=dtype)
    copy.to_local().copy_(local)
    return copy


# [NOTE: int8 blocks of a shard] An int8 outer momentum, or an int8-delta offset, of a sharded param
# (FSDP2: Shard(0) on a 1-D mesh, the only layout taken) is cut into blocks per local shard, in its memory order, as if the
# shard were the tensor (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py): each rank encodes
# and syncs its shard alone. Its codes are a DTensor laid out like the param; its scales a DTensor of
# W x S float32 sharded by rows on the same mesh (W ranks, S the blocks of the largest shard), so
# that every rank keeps one row of S slots whatever its shard's size, the first
# ceil(local numel / 256) used and the rest zero. A checkpoint keeps them so; it loads into the same
# layout bit for bit, and on another number of ranks the scales' shape differs and it is refused.
def check_int8_shardable(param: torch.Tensor, where: str, option: str) -> None:
    """Refuse a sharded param whose layout the int8 blocks of a shard do not take
    (see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py); `option` names what keeps them."""
    from torch.distributed.tensor import Shard

    if param.device_mesh.ndim != 1 or tuple(param.placements) != (Shard(0),) or param.dim() == 0:
        raise ValueError(
            f"{where}: it is a DTensor laid out as {param.placements} on a {param.device_mesh.ndim}-D mesh; "
            f"{option} takes sharded params as FSDP2 shards them (Shard(0) on a 1-D mesh)"
        )


def int8_scale_slots(param: torch.Tensor) -> int:
    """S: the scale slots of each rank for a sharded `param`, the blocks of its largest shard."""
    ranks, rows = param.device_mesh.size(), param.shape[0]
    per_row = param.numel() // rows if rows else 0
    return int8_blocks.scale_count(-(-rows // ranks) * per_row)


def sharded_int8_scales(local_scales: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A shard's block scales as the DTensor of its param's scale slots."""
    from torch.distributed.tensor import Shard

    slots = int8_scale_slots(param)
    padded = torch.zeros(1, slots, dtype=int8_blocks.SCALE_DTYPE, device=local_scales.device)
    padded[0, : local_scales.numel()] = local_scales
    return dtensor_type().from_local(padded, param.device_mesh, [Shard(0)], run_check=False,
                                     shape=(param.device_mesh.size(), slots), stride=(slots, 1))  # fmt: skip


def local_scales(scales: torch.Tensor, local_codes: torch.Tensor) -> torch.Tensor:
    """The scales a shard's codes use: the first ceil(local numel / 256) of its slots, or `scales` itself."""
    return local_tensor(scales)[0, : int8_blocks.scale_count(local_codes.numel())] if is_sharded(scales) else scales


def int8_local_shards(*lists, op: str, scales_at: tuple[int, ...] = (-1,)):
    """An op's lists, among them int8 codes each followed by their block scales (the lists at `scales_at`),
    with their local shards (see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py); plain
    lists as they are."""
    scales_at = {i % len(lists) for i in scales_at}
    kept = [i for i in range(len(lists)) if i not in scales_at]
    names = _LIST_NAMES.get(op)
    local = local_shards(*(lists[i] for i in kept), op=op, names=names and tuple(names[i] for i in kept))
    if local[0] is lists[0]:  # no DTensor among them: no loop over the scales
        return lists  # (see [NOTE: per-tensor Python] in lookahead_fused/sharded.py)
    found = dict(zip(kept, local))
    for i in sorted(scales_at):
        found[i] = [local_scales(s, codes) for s, codes in zip(lists[i], found[i - 1])]
    return tuple(found[i] for i in range(len(lists)))


def compact_local_shards(*lists) -> tuple:
    """The lists of a compact sync (fast, high parts, residuals[, outer momentum[, its int8 block
    scales]]) with their local shards."""
    if len(lists) == 5:
        return int8_local_shards(*lists, op=COMPACT_OP)
    return local_shards(*lists, op=COMPACT_OP)


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
    INT8_MOMENTUM_OP: INT8_MOMENTUM_LIST_NAMES,
    "lookahead_adamw_step_": ADAMW_LIST_NAMES,
    COMPACT_OP: COMPACT_LIST_NAMES,
    PSEUDO_GRADIENT_OP: PSEUDO_GRADIENT_LIST_NAMES,
    ADAMW_DELTA_OP: ADAMW_DELTA_LIST_NAMES,
    ADAMW_COMPACT_OP: ADAMW_COMPACT_LIST_NAMES,
    ADAMW_INT8_MOMENTUM_OP: ADAMW_INT8_MOMENTUM_LIST_NAMES,
    INT8_DELTA_SYNC_OP: INT8_DELTA_SYNC_LIST_NAMES,
}


def local_shards(first, second, *more, op: str, names: tuple[str, ...] | None = None):
    """The lists with every DTensor replaced by its local shard; ValueError for a pair that mixes a
    DTensor with a plain tensor, or DTensors laid out differently (the lists named by `names`, else
    as the op's). Plain lists pass as they are. Returns (first, second) or, with more lists (the outer
    momentum), (first, second, *more)."""
    lists = (first, second, *more)
    dtensor = dtensor_type()
    # [NOTE: per-tensor Python] map(type, ...) runs in C: a call with 4000 tensors spends ~0.05 ms
    # here instead of the 0.37 ms of an isinstance generator (the CPU kernel's fixed cost, issue 14).
    if dtensor is None or not any(issubclass(kind, dtensor) for kind in set(map(type, chain(*lists)))):
        return lists
    names = names or _LIST_NAMES.get(op, ("first", "second"))
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
