"""Lookahead's per-param state: the keys it uses and how its tensors follow the params."""

from __future__ import annotations

import torch

from . import bf16_int8, contract, int8_blocks
from .sharded import dtensor_type, is_sharded, local_scales, local_tensor, sharded_copy, sharded_int8_scales

ALPHA_KEY = "lookahead_alpha"  # a param group may carry its own alpha under this key
SLOW_PARAM = "slow_param"  # the slow weight of a param (optimizer.state[p])
SLOW_MOMENTUM = "slow_momentum"  # the slow copy of its first-moment buffer, for "pullback"
OUTER_MOMENTUM = "outer_momentum"  # the momentum on its slow weight, for outer_momentum > 0
# With momentum_dtype="int8", OUTER_MOMENTUM holds its int8 codes and this key its block scales
# (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py).
OUTER_MOMENTUM_SCALES = "outer_momentum_scales"
# While a fragment's sync is in flight, its params' averaged pseudo-gradient
# (see [NOTE: streaming] in lookahead_fused/streaming.py).
PENDING_DELTA = "pending_delta"
# With slow_dtype="bf16+int8" the slow weight is these two tensors instead of SLOW_PARAM
# (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py).
SLOW_HIGH = "slow_high"  # its bfloat16 high part
SLOW_LOW = "slow_low"  # its int8 residual
# With slow_dtype="int8-delta" the slow weight is the param plus an offset kept as int8 blocks, these
# two tensors instead of SLOW_PARAM (see [NOTE: int8-delta] in csrc/adamw.h).
SLOW_DELTA = "slow_delta"  # the offset's int8 codes, beside the param
SLOW_DELTA_SCALES = "slow_delta_scales"  # their block scales
# The int8 blocks a param's state may hold: (codes key, scales key) each.
INT8_BLOCK_KEYS = ((SLOW_DELTA, SLOW_DELTA_SCALES), (OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES))


def is_compact(slow_dtype) -> bool:
    return isinstance(slow_dtype, str) and slow_dtype == bf16_int8.SLOW_DTYPE


def is_int8_delta(slow_dtype) -> bool:
    return isinstance(slow_dtype, str) and slow_dtype == int8_blocks.DELTA_SLOW_DTYPE


def slow_keys(slow_dtype) -> tuple[str, ...]:
    """The keys of a param's slow weight in its state: SLOW_PARAM, SLOW_HIGH and SLOW_LOW, or SLOW_DELTA
    and SLOW_DELTA_SCALES."""
    if is_compact(slow_dtype):
        return (SLOW_HIGH, SLOW_LOW)
    return (SLOW_DELTA, SLOW_DELTA_SCALES) if is_int8_delta(slow_dtype) else (SLOW_PARAM,)


def slow_weight_state(value: torch.Tensor, param: torch.Tensor, slow_dtype) -> dict:
    """The state entries of a slow weight holding `value` for `param` (its device, memory order and
    16-byte phase): {SLOW_PARAM: value in its slow dtype}, its bf16+int8 encoding, or the int8 blocks
    of its offset from the param as the param is now."""
    if is_int8_delta(slow_dtype):
        return int8_block_state(value.float() - param.float(), param, SLOW_DELTA, SLOW_DELTA_SCALES)
    if not is_compact(slow_dtype):
        return {SLOW_PARAM: copy_as(value, param, slow_dtype_for(param, slow_dtype))}
    high, low = bf16_int8.encode(value.float())
    return {SLOW_HIGH: copy_as(high, param, high.dtype), SLOW_LOW: copy_as(low, param, low.dtype)}


def slow_weight_value(state: dict, param: torch.Tensor) -> torch.Tensor:
    """`param`'s slow weight from its state: the tensor itself, or the float32 value it encodes (in the
    param's memory order and phase)."""
    if SLOW_PARAM in state:
        return state[SLOW_PARAM]
    if SLOW_DELTA in state:
        return rehome(param.float() + int8_block_value(state, SLOW_DELTA, SLOW_DELTA_SCALES), param)
    return rehome(bf16_int8.decode(state[SLOW_HIGH], state[SLOW_LOW]), param)


def slow_dtype_for(param: torch.Tensor, slow_dtype: torch.dtype | None) -> torch.dtype:
    """The dtype of `param`'s slow state: `slow_dtype` (float32) for a float16/bfloat16 param, if
    given; else the param's own."""
    if isinstance(slow_dtype, torch.dtype) and param.dtype in contract.LOW_PRECISION_DTYPES:
        return slow_dtype
    return param.dtype


VECTOR_BYTES = 16  # the fused kernels' vector width (kVecBytes in csrc/table.h)


def _vector_head(address: int, element_size: int) -> int | None:
    """The first element index at which `address` reaches a VECTOR_BYTES boundary (None: never)."""
    if address % element_size:
        return None
    return (-address % VECTOR_BYTES) // element_size


def in_phase(tensor: torch.Tensor, like: torch.Tensor) -> bool:
    """Whether `tensor` reaches a 16-byte boundary at the element where `like` does (or `like` never does).

    [NOTE: slow weights in phase] The fused kernels run a pair with 16-byte vectors only from the
    element at which both tensors are 16-byte aligned; a pair that never gets there runs scalar, at a
    fraction of the bandwidth. A param that is a view at an odd offset (a flat-param buffer, bucketed
    params) would never line up with a slow weight allocated at offset 0, so slow weights and slow
    momenta are allocated at the same phase as their fast tensor.
    """
    if torch.compiler.is_compiling():
        return True  # traced code has no addresses; the eager steps before it placed the tensors
    dtensor = dtensor_type()
    if dtensor is not None and isinstance(like, dtensor):
        return True  # a DTensor's data_ptr is not its shard's; the shards are allocations of their own
    head = _vector_head(like.data_ptr(), like.element_size())
    return head is None or _vector_head(tensor.data_ptr() + head * tensor.element_size(), tensor.element_size()) == 0


def copy_as(tensor: torch.Tensor, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor holding `tensor`'s values in `dtype`, with the device and memory order of `like`,
    and in its 16-byte phase (see [NOTE: slow weights in phase] in lookahead_fused/slow_state.py)."""
    template = torch.empty_like(like, dtype=dtype, memory_format=torch.preserve_format)
    if in_phase(template, like) or not contract.is_non_overlapping_and_dense(template):
        return template.copy_(tensor)
    element = template.element_size()
    head = _vector_head(like.data_ptr(), like.element_size())
    offset = (-head * element % VECTOR_BYTES) // element  # the allocator aligns storages to >= 16 bytes
    storage = torch.empty(template.numel() + offset, dtype=dtype, device=template.device)
    return storage.as_strided(template.shape, template.stride(), offset).copy_(tensor)


def rehome(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`tensor` itself, or a copy moved to `like`'s device, memory order and 16-byte phase (after
    model.to(), a load). A tensor of another shape is not `like`'s to follow: it stays, and the
    check that follows names the mismatch."""
    if tensor.shape != like.shape:
        return tensor
    if tensor.device == like.device and contract.same_layout(tensor, like) and in_phase(tensor, like):
        return tensor
    return copy_as(tensor, like, tensor.dtype)


def is_int8_momentum(momentum_dtype) -> bool:
    return isinstance(momentum_dtype, str) and momentum_dtype == int8_blocks.MOMENTUM_DTYPE


def momentum_dtype_fits(momentum_dtype, slow_dtype: torch.dtype) -> bool:
    """Whether slow weights of `slow_dtype` take an outer momentum in `momentum_dtype` (not None): "int8"
    beside float32 ones, a dtype where the op contract allows it."""
    if is_int8_momentum(momentum_dtype):
        return slow_dtype == torch.float32
    return momentum_dtype in contract.allowed_momentum_dtypes(slow_dtype)


def slow_value_dtype_for(param: torch.Tensor, slow_dtype) -> torch.dtype:
    """The dtype of `param`'s slow weight's values: its slow dtype's, float32 for bf16+int8 and int8-delta
    ones (which decode to float32). An outer momentum beside them is kept in it unless momentum_dtype says
    otherwise."""
    return torch.float32 if isinstance(slow_dtype, str) else slow_dtype_for(param, slow_dtype)


def outer_momentum_dtype_for(param: torch.Tensor, options: dict):
    """The dtype of `param`'s outer momentum under Lookahead's `options` (a torch.dtype, or "int8"): their
    momentum_dtype where its slow weight's dtype takes it, else the slow weight's (a param made float16
    after it joined, then loaded; see [NOTE: bf16 outer momentum] in lookahead_fused/options.py)."""
    slow = slow_value_dtype_for(param, options["slow_dtype"])
    wanted = options.get("momentum_dtype")
    return wanted if wanted is not None and momentum_dtype_fits(wanted, slow) else slow


def outer_momentum_keys(state: dict) -> tuple[str, ...]:
    """The keys of a param's outer momentum in its `state`: none without one, OUTER_MOMENTUM, or for int8
    blocks OUTER_MOMENTUM and OUTER_MOMENTUM_SCALES."""
    if OUTER_MOMENTUM not in state:
        return ()
    return (OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES) if OUTER_MOMENTUM_SCALES in state else (OUTER_MOMENTUM,)


def outer_momentum_state(value: torch.Tensor, param: torch.Tensor, options: dict) -> dict:
    """The state entries of an outer momentum holding `value` for `param` (its device, memory order and
    phase): {OUTER_MOMENTUM: value in its dtype}, or its int8 codes and block scales."""
    dtype = outer_momentum_dtype_for(param, options)
    if not is_int8_momentum(dtype):
        return {OUTER_MOMENTUM: copy_as(value, param, dtype)}
    return int8_momentum_state(value, param)


def state_dims(param: torch.Tensor) -> list[int]:
    """The memory order of the state tensors made for `param` (copy_as): its own when it is dense, else
    row-major (int8_blocks.memory_dims)."""
    return int8_blocks.memory_dims(param) if contract.is_non_overlapping_and_dense(param) else list(range(param.dim()))


def int8_momentum_state(value: torch.Tensor, param: torch.Tensor) -> dict:
    """The state entries of an outer momentum holding `value` as int8 blocks in `param`'s memory order."""
    return int8_block_state(value, param, OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES)


def int8_block_state(value: torch.Tensor, param: torch.Tensor, codes_key: str, scales_key: str) -> dict:
    """{codes_key: int8 codes, scales_key: block scales} holding `value` as int8 blocks in `param`'s memory
    order (of a sharded param, per local shard: see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py)."""
    like = local_tensor(copy_as(value, param, torch.float32))
    codes, scales = int8_blocks.encode(int8_blocks.memory_order(like))
    codes = int8_blocks.from_memory_order(codes, like)
    if is_sharded(param):
        return {codes_key: sharded_copy(codes, param, codes.dtype), scales_key: sharded_int8_scales(scales, param)}
    return {codes_key: copy_as(codes, param, codes.dtype), scales_key: scales}


def outer_momentum_value(state: dict) -> torch.Tensor:
    """A param's outer momentum from its state: the tensor itself, or the float32 value its codes encode."""
    if OUTER_MOMENTUM_SCALES not in state:
        return state[OUTER_MOMENTUM]
    return int8_block_value(state, OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES)


def int8_block_value(state: dict, codes_key: str, scales_key: str) -> torch.Tensor:
    """The float32 value that int8 blocks in `state` encode, shaped and sharded as their codes."""
    codes = state[codes_key]
    local_codes = local_tensor(codes)
    scales = local_scales(state[scales_key], local_codes)
    flat = int8_blocks.decode(int8_blocks.memory_order(local_codes), scales)
    value = int8_blocks.from_memory_order(flat, local_codes)
    return sharded_copy(value, codes, value.dtype) if is_sharded(codes) else value


def zero_outer_momentum(param: torch.Tensor, options: dict) -> dict:
    """The state entries of a zero outer momentum for `param` (outer_momentum_state of zeros)."""
    return outer_momentum_state(torch.zeros_like(param), param, options)
