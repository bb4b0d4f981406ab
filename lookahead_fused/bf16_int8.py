"""The bf16+int8 split encoding of an fp32 value in 3 bytes (issue 26's `slow_dtype="bf16+int8"`): its
encoder and decoder in torch ops, the oracle that every backend's kernel is to match bit for bit.

[NOTE: bf16+int8 encoding] A float32 value x is stored as a bfloat16 high part and an int8 residual:

    hi = x rounded to bfloat16 (nearest, ties to even)
    u  = 2^(E - 15), E the unbiased exponent of hi, or -126 when hi is zero or subnormal
         (1/256 of hi's bfloat16 spacing; the same u for every bfloat16 subnormal and zero)
    q  = round_half_even((x - hi) / u), clamped to [-127, 127];  q = 0 when hi is not finite
    decode(hi, q) = hi + q * u, and hi itself when q = 0 (so that -0.0 stays -0.0)

Every step is exact in float32: x - hi is representable (hi is x rounded to 8 of its 24 bits), the
division is by a power of two, and hi + q * u spans at most 17 significant bits. So the encoding is
a function of x alone, the same bits on every device and backend.

Error: |x - hi| <= 128 u (half a bfloat16 spacing), so |decode - x| <= u / 2, or <= u when the
clamp to 127 acted (|x - hi| > 127.5 u). As u <= 2^-15 |x| for normal x, and u = 2^-141 below:

    |decode(encode(x)) - x| <= max(2^-15 |x|, 2^-141)        for every finite x that bfloat16's
                                                              range holds (|x| < 2^128 (1 - 2^-9))

Larger finite x round to +-inf as a cast to bfloat16 does; inf and NaN are kept (q = 0).

The clamp to [-127, 127] (not the int8 range's -128) makes the encoding a fixed point of itself:
encode(decode(hi, q)) == (hi, q) for every (hi, q) the encoder produces, since decode(hi, q) never
lies on a bfloat16 rounding tie away from hi. A sync with alpha = 0 therefore leaves compact slow
weights unchanged bit for bit, as it leaves exact ones.
"""

from __future__ import annotations

import torch

SLOW_DTYPE = "bf16+int8"  # Lookahead's slow_dtype= for slow weights kept in this encoding
HIGH_DTYPE = torch.bfloat16
RESIDUAL_DTYPE = torch.int8
STATE_DTYPES = (HIGH_DTYPE, RESIDUAL_DTYPE)
BYTES_PER_ELEMENT = 3  # one bfloat16 and one int8
RESIDUAL_LIMIT = 127  # |q| <= 127; see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py
RESIDUAL_BITS_BELOW_HIGH = 15  # u = 2^(E - 15)
SMALLEST_EXPONENT = -126  # the exponent of u's scale for zero and subnormal hi


def residual_unit(high: torch.Tensor) -> torch.Tensor:
    """u for each element of `high` (bfloat16 values in float32): 2^(E - 15), E = max(exponent, -126)."""
    _, exponent = torch.frexp(high)  # high = m 2^exponent with 0.5 <= |m| < 1, so E = exponent - 1
    exponent = torch.where(high == 0, SMALLEST_EXPONENT, (exponent - 1).clamp(min=SMALLEST_EXPONENT))
    return torch.ldexp(torch.ones_like(high), exponent - RESIDUAL_BITS_BELOW_HIGH)


def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, q): `x` (float32) as its bfloat16 high part and int8 residual."""
    if x.dtype != torch.float32:
        raise TypeError(f"bf16+int8 encodes float32 values, got {x.dtype}")
    high, high_value = _round_to_bfloat16(x)
    finite = torch.isfinite(high_value)
    residual = torch.where(finite, x - high_value, torch.zeros_like(x))
    units = torch.round(residual / residual_unit(torch.where(finite, high_value, torch.zeros_like(x))))
    return high, units.clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT).to(RESIDUAL_DTYPE)


def _round_to_bfloat16(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x rounded to bfloat16, that value in float32), by integer arithmetic on x's bits: nearest, ties
    to even, as a cast rounds. Not the cast itself, which torch.compile may elide between float32
    values (inductor keeps low-precision intermediates in float32); the bfloat16 tensor is then a
    cast of a value it holds exactly."""
    nan = torch.isnan(x)
    bits = torch.where(nan, 0, x.view(torch.int32))  # a NaN's bits could overflow the addition
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) & -0x10000  # the low 16 bits cleared
    value = torch.where(nan, x, rounded.view(torch.float32))
    return value.to(HIGH_DTYPE), value


def decode(high: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The float32 value of (hi, q): hi + q u, exact."""
    if high.dtype != HIGH_DTYPE or residual.dtype != RESIDUAL_DTYPE:
        raise TypeError(f"bf16+int8 decodes (bfloat16, int8) pairs, got ({high.dtype}, {residual.dtype})")
    high_value = high.float()
    finite = torch.isfinite(high_value)
    units = residual_unit(torch.where(finite, high_value, torch.zeros_like(high_value)))
    return torch.where(finite & (residual != 0), high_value + residual.float() * units, high_value)


def error_bound(x: torch.Tensor) -> torch.Tensor:
    """The largest |decode(encode(x)) - x| the encoding allows for each x, in float64."""
    magnitude = x.double().abs()
    return torch.maximum(magnitude * 2.0**-15, torch.full_like(magnitude, 2.0**-141))
