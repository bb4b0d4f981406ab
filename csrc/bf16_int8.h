// The bf16+int8 split encoding of a float32 value on one element, for the CPU and CUDA kernels
// (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py, the rule and its oracle). Exact
// float32 arithmetic throughout, so it gives the oracle's bits on every device. No torch headers.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define LOOKAHEAD_CODEC_FN __host__ __device__ __forceinline__
#else
#define LOOKAHEAD_CODEC_FN inline __attribute__((always_inline))
#endif

namespace lookahead_fused {

struct Bf16Int8 {
  uint16_t high;    // bfloat16 bits
  int8_t residual;  // q, in [-kResidualLimit, kResidualLimit]
};

constexpr int kResidualLimit = 127;
constexpr int kResidualBitsBelowHigh = 15;  // u = 2^(E - 15)

LOOKAHEAD_CODEC_FN float float_of_bits(uint32_t bits) {
  float value;
  __builtin_memcpy(&value, &bits, sizeof value);
  return value;
}

// Round to nearest even, one canonical NaN, as c10::BFloat16 does. The select is on the 32-bit bits,
// so that the CPU loop vectorises.
LOOKAHEAD_CODEC_FN uint16_t bfloat16_bits_of(float x) {
  uint32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t nan = uint32_t(0) - uint32_t((bits & 0x7FFFFFFFu) > 0x7F800000u);  // all ones for a NaN
  return uint16_t((rounded & ~nan) | (uint32_t(0x7FC0) & nan));  // NaN: the canonical one
}

LOOKAHEAD_CODEC_FN float bfloat16_value(uint16_t high) { return float_of_bits(uint32_t(high) << 16); }

LOOKAHEAD_CODEC_FN int bfloat16_biased_exponent(uint16_t high) { return (high >> 7) & 0xFF; }

// u = 2^(E - 15), E hi's exponent, -126 for zero and subnormals: 2^(b - 127) * 2^-15 with b the biased
// exponent clamped to [1, 254], an exact product (the power of two 2^(b - 127) times 2^-15 is at least
// 2^-141). Clamping at 254 keeps u finite beside an inf or NaN hi, which decodes to itself (q = 0).
// A min and a max, no select and no libm call, so that the CPU loop vectorises.
LOOKAHEAD_CODEC_FN float residual_unit(uint16_t high) {
  const int biased = bfloat16_biased_exponent(high);
  const int at_most = biased < 254 ? biased : 254;
  const int b = at_most > 1 ? at_most : 1;
  return float_of_bits(uint32_t(b) << 23) * (1.0f / float(1 << kResidualBitsBelowHigh));
}

// Branch-free (a min, a max and masks), so that the CPU loop around it vectorises. q = 0 beside an inf
// or NaN hi (then units is NaN or inf, and the clamps make it +-127, which the mask clears).
LOOKAHEAD_CODEC_FN Bf16Int8 encode_bf16_int8(float x) {
  const uint16_t high = bfloat16_bits_of(x);
  const float units = rintf((x - bfloat16_value(high)) / residual_unit(high));  // exact, then half to even
  const float limit = float(kResidualLimit);
  const float at_most = units < limit ? units : limit;
  const float clamped = at_most > -limit ? at_most : -limit;
  const int finite = -int(bfloat16_biased_exponent(high) != 0xFF);  // all ones when hi is finite
  return {high, static_cast<int8_t>(int(clamped) & finite)};
}

// hi + q u, and hi itself when q = 0: -(-hi - q u) is hi + q u exactly (round to nearest is symmetric),
// and for q = 0 it is hi, -0.0 included (x - +0.0 == x), where hi + 0.0 would turn -0.0 into +0.0.
// No select, so that the CPU loop vectorises (GCC does not if-convert one on an int8 condition).
LOOKAHEAD_CODEC_FN float decode_bf16_int8(uint16_t high, int8_t residual) {
  return -(-bfloat16_value(high) - float(residual) * residual_unit(high));
}

}  // namespace lookahead_fused
