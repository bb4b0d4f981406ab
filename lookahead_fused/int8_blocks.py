"""Block-scaled int8 (issue 26's `momentum_dtype="int8"`): a float32 tensor as int8 codes and one float32
scale per block, its encoder and decoder in torch ops, the oracle that every backend's kernel matches.

[NOTE: int8 blocks] A float32 tensor x (its elements in memory order, the order the fused kernels walk;
see `memory_order`) is cut into blocks of BLOCK = 256 consecutive elements, the last one shorter. Per
block, with a = max |x_i| over the block:

    any x_i not finite  ->  scale = NaN, every q_i = 0      (decodes to NaN: the block is lost, loudly)
    a < 2^-96           ->  scale = 0,   every q_i = 0      (decodes to 0)
    otherwise           ->  scale = a / 127, inv = 127 / a  (each one float32 division, rounded to nearest)
                            q_i = round_half_even(x_i * inv) clamped to [-127, 127]
    decode(q, scale)_i = q_i * scale                        (one float32 multiplication)

Each step is one IEEE operation on float32 values, so the bits depend on x alone. The clamp never acts:
|x_i inv| <= 127 (1 + 2^-24)^2 < 127.5. The floor 2^-96 keeps inv and scale finite and normal. Error,
for a block that is finite:

    |decode(encode(x))_i - x_i| <= a / 254 + 2^-20 a      (a >= 2^-96), and < 2^-96 below it

that is at most 0.4 % of the block's largest magnitude, hence of the tensor's (issue 26 asks 1 %).
A tensor of n elements takes n bytes of codes and 4 ceil(n / 256) bytes of scales: 1.016 B an element.
"""

from __future__ import annotations

import math

import torch

MOMENTUM_DTYPE = "int8"  # Lookahead's momentum_dtype= for an outer momentum kept in this encoding
DELTA_SLOW_DTYPE = "int8-delta"  # LookaheadAdamW's slow_dtype= for slow weights kept as offsets in it
CODE_DTYPE = torch.int8
SCALE_DTYPE = torch.float32
BLOCK = 256  # elements per scale
CODE_LIMIT = 127  # |q| <= 127
FLUSH_BELOW = 2.0**-96  # a block whose largest magnitude is below it is stored as zeros
BYTES_PER_ELEMENT = 1 + 4 / BLOCK  # a code, and a scale per block, of a tensor of whole blocks


def scale_count(numel: int) -> int:
    """The number of blocks (of scales) of a tensor of `numel` elements."""
    return math.ceil(numel / BLOCK)


def bytes_per_element(numel: int) -> float:
    return (numel + 4 * scale_count(numel)) / numel if numel else 0.0


def memory_dims(like: torch.Tensor) -> list[int]:
    """`like`'s dims from the outermost in memory to the innermost (a dense tensor): the order its storage
    holds them in."""
    return sorted(range(like.dim()), key=lambda d: (like.stride(d), like.size(d)), reverse=True)


def flatten_in(tensor: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """`tensor`'s elements as a 1-D tensor, its dims taken in the order `dims` (a view where the layout allows)."""
    return tensor.permute(dims).reshape(-1)


def unflatten_in(flat: torch.Tensor, shape, dims: list[int]) -> torch.Tensor:
    """The inverse of `flatten_in(_, dims)` for a tensor of `shape` (not a view)."""
    inverse = sorted(range(len(dims)), key=lambda i: dims[i])
    return flat.reshape([shape[d] for d in dims]).permute(inverse)


def memory_order(tensor: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """`tensor`'s elements as a 1-D tensor in the memory order of `like` (default: itself), a view where the
    layout allows: the order in which a kernel walking `like`'s storage meets them. `like` must be dense."""
    return flatten_in(tensor, memory_dims(tensor if like is None else like))


def from_memory_order(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of `memory_order(_, like)`: a 1-D tensor as a tensor of `like`'s shape (not a view)."""
    return unflatten_in(flat, like.shape, memory_dims(like))


def _blocks(flat: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor as rows of BLOCK, the last one padded with zeros (which change no block's max)."""
    padded = torch.nn.functional.pad(flat, (0, scale_count(flat.numel()) * BLOCK - flat.numel()))
    return padded.reshape(-1, BLOCK)


def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scales) of a 1-D float32 tensor: int8 codes of x's length, one float32 scale per block."""
    if x.dtype != torch.float32 or x.dim() != 1:
        raise TypeError(f"int8 blocks encode 1-D float32 tensors, got {x.dtype} with {x.dim()} dims")
    if x.numel() == 0:
        return torch.empty(0, dtype=CODE_DTYPE, device=x.device), torch.empty(0, dtype=SCALE_DTYPE, device=x.device)
    rows = _blocks(x)
    finite = torch.isfinite(rows).all(dim=1, keepdim=True)
    largest = torch.where(torch.isfinite(rows), rows.abs(), 0.0).amax(dim=1, keepdim=True)
    kept = finite & (largest >= FLUSH_BELOW)
    safe = torch.where(kept, largest, 1.0)
    inv = torch.tensor(float(CODE_LIMIT), dtype=torch.float32, device=x.device) / safe
    codes = torch.where(kept, torch.round(torch.where(kept, rows, 0.0) * inv), 0.0).clamp(-CODE_LIMIT, CODE_LIMIT)
    scales = torch.where(kept, safe / CODE_LIMIT, torch.where(finite, 0.0, math.nan))
    return codes.to(CODE_DTYPE).reshape(-1)[: x.numel()], scales.reshape(-1)


def decode(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The float32 values of 1-D `codes` with their blocks' `scales`: q * scale."""
    if codes.dtype != CODE_DTYPE or scales.dtype != SCALE_DTYPE:
        raise TypeError(f"int8 blocks decode (int8, float32) pairs, got ({codes.dtype}, {scales.dtype})")
    return codes.float() * scales.repeat_interleave(BLOCK)[: codes.numel()]


def error_bound(x: torch.Tensor) -> torch.Tensor:
    """For each element of a 1-D tensor, the largest |decode(encode(x)) - x| the encoding allows, in float64
    (its block's a / 254 + 2^-20 a, or 2^-96 for a block below the floor; inf where the block is not finite)."""
    rows = _blocks(x.double())
    largest = rows.abs().amax(dim=1, keepdim=True)
    bound = torch.where(largest >= FLUSH_BELOW, largest / 254 + largest * 2.0**-20, FLUSH_BELOW)
    return torch.where(torch.isfinite(largest), bound, math.inf).expand_as(rows).reshape(-1)[: x.numel()]
