"""The bf16+int8 split encoding (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py),
against float64 and its own exact rules, on every low-16-bit pattern of the mantissa."""

import math

import pytest
import torch

from lookahead_fused import bf16_int8


def _values(biased_exponent: int, negative: bool) -> torch.Tensor:
    """Every pattern of the 16 mantissa bits below bfloat16's, under high parts that end even and odd,
    at the bottom and the top of the binade: 4 x 65536 float32 values."""
    low = torch.arange(0, 2**16, dtype=torch.int64)
    highs = torch.tensor([0b0000000, 0b0000001, 0b1010110, 0b1111111], dtype=torch.int64)  # bfloat16's 7 bits
    bits = (highs[:, None] << 16 | low[None, :]).flatten() | (biased_exponent << 23)
    x = bits.to(torch.int32).view(torch.float32)
    return -x if negative else x


def _unit_in_float64(high: torch.Tensor) -> torch.Tensor:
    """u = 2^(E - 15) of the rule, from hi's exponent read in float64 (E = -126 for zero and subnormals)."""
    exponents = [max(math.frexp(v)[1] - 1, -126) if v != 0 else -126 for v in high.double().tolist()]
    return torch.tensor([2.0 ** (e - 15) for e in exponents], dtype=torch.float64)


CASES = [(e, sign) for e in (0, 1, 127, 200, 254) for sign in (False, True)]  # subnormals, min normal, 1, large, max


@pytest.mark.parametrize("biased_exponent,negative", CASES)
def test_the_high_part_is_the_cast_to_bfloat16(biased_exponent, negative):
    """encode rounds by integer arithmetic (compile-safe); it must give a cast's bits, ties to even,
    overflow to inf at the top of the range included."""
    x = _values(biased_exponent, negative)
    high, _ = bf16_int8.encode(x)
    assert torch.equal(high.view(torch.int16), x.to(torch.bfloat16).view(torch.int16))


@pytest.mark.parametrize("biased_exponent,negative", CASES)
def test_decoded_value_is_within_the_bound_and_exact_in_float32(biased_exponent, negative):
    x = _values(biased_exponent, negative)
    high, residual = bf16_int8.encode(x)
    decoded = bf16_int8.decode(high, residual)
    finite = torch.isfinite(decoded)
    assert bool(finite.all()) or biased_exponent == 254  # only the top binade may round to inf
    error = (decoded.double() - x.double()).abs()
    assert bool((error[finite] <= bf16_int8.error_bound(x)[finite]).all())
    # decode in float32 is exact: the same as hi + q u in float64
    exact = high.double()[finite] + residual.double()[finite] * _unit_in_float64(high[finite])
    assert torch.equal(decoded.double()[finite], exact)
    assert int(residual.abs().max()) <= bf16_int8.RESIDUAL_LIMIT


@pytest.mark.parametrize("biased_exponent,negative", CASES)
def test_encoding_is_its_own_fixed_point(biased_exponent, negative):
    """encode(decode(hi, q)) == (hi, q): a sync with alpha = 0 leaves compact slow weights unchanged."""
    high, residual = bf16_int8.encode(_values(biased_exponent, negative))
    again_high, again_residual = bf16_int8.encode(bf16_int8.decode(high, residual))
    assert torch.equal(again_high.view(torch.int16), high.view(torch.int16))
    assert torch.equal(again_residual, residual)


def test_the_error_bound_is_tight():
    """The clamp to 127 costs a whole unit: x = hi + 127.75 u decodes to hi + 127 u, 0.75 u away."""
    high = torch.tensor([1.0])
    unit = 2.0**-15
    x = high + 127.75 * unit
    decoded = bf16_int8.decode(*bf16_int8.encode(x))
    assert float(decoded) == 1.0 + 127 * unit
    assert math.isclose(float(decoded.double() - x.double()), -0.75 * unit)


def test_special_values():
    x = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 3.4e38, -3.4e38, 2.0**-149, -(2.0**-140)])
    high, residual = bf16_int8.encode(x)
    decoded = bf16_int8.decode(high, residual)
    assert torch.equal(decoded[:4], x[:4]) and math.copysign(1.0, float(decoded[1])) == -1.0  # -0.0 kept
    assert math.isnan(float(decoded[4]))
    assert decoded[5] == math.inf and decoded[6] == -math.inf  # beyond bfloat16's range, as a cast
    assert float(decoded[7]) == 0.0  # 2^-149 is below u = 2^-141 / 2
    assert float(decoded[8]) == -(2.0**-140)  # -2 u, exact
    assert torch.equal(residual[:7], torch.zeros(7, dtype=torch.int8))


def test_three_bytes_per_element_and_dtype_errors():
    high, residual = bf16_int8.encode(torch.randn(10))
    assert high.element_size() + residual.element_size() == bf16_int8.BYTES_PER_ELEMENT
    with pytest.raises(TypeError, match="encodes float32 values, got torch.float64"):
        bf16_int8.encode(torch.randn(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"decodes \(bfloat16, int8\) pairs, got \(torch.bfloat16, torch.int16\)"):
        bf16_int8.decode(high, residual.to(torch.int16))


@pytest.mark.parametrize("biased_exponent,negative", CASES)
def test_the_kernels_element_math_gives_the_oracles_bits(biased_exponent, negative):
    """csrc/bf16_int8.h, which the CPU and CUDA kernels are to share, against the torch oracle."""
    extension = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")
    x = _values(biased_exponent, negative)
    high, residual = bf16_int8.encode(x)
    kernel_high, kernel_residual = extension.encode_bf16_int8(x)
    assert torch.equal(kernel_high.view(torch.int16), high.view(torch.int16))
    assert torch.equal(kernel_residual, residual)
    decoded = extension.decode_bf16_int8(high, residual)
    assert torch.equal(decoded.view(torch.int32), bf16_int8.decode(high, residual).view(torch.int32))
