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

// Round to nearest even, one canonical NaN, as c10::BFloat16 does.
LOOKAHEAD_CODEC_FN uint16_t bfloat16_bits_of(float x) {
  uint32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  return x != x ? uint16_t(0x7FC0) : uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

LOOKAHEAD_CODEC_FN float bfloat16_value(uint16_t high) { return float_of_bits(uint32_t(high) << 16); }

LOOKAHEAD_CODEC_FN int bfloat16_biased_exponent(uint16_t high) { return (high >> 7) & 0xFF; }

// u = 2^(E - 15), E hi's exponent, -126 for zero and subnormals: 2^(max(biased, 1) - 127 - 15).
LOOKAHEAD_CODEC_FN float residual_unit(uint16_t high) {
  const int biased = bfloat16_biased_exponent(high);
  return ldexpf(1.0f, (biased > 1 ? biased : 1) - 127 - kResidualBitsBelowHigh);
}

LOOKAHEAD_CODEC_FN Bf16Int8 encode_bf16_int8(float x) {
  const uint16_t high = bfloat16_bits_of(x);
  if (bfloat16_biased_exponent(high) == 0xFF) return {high, 0};  // inf, NaN, or x beyond bfloat16's range
  const float units = rintf((x - bfloat16_value(high)) / residual_unit(high));  // exact, then half to even
  const float clamped = fminf(fmaxf(units, float(-kResidualLimit)), float(kResidualLimit));
  return {high, static_cast<int8_t>(clamped)};
}

LOOKAHEAD_CODEC_FN float decode_bf16_int8(uint16_t high, int8_t residual) {
  const float value = bfloat16_value(high);
  return residual == 0 ? value : value + float(residual) * residual_unit(high);
}

}  // namespace lookahead_fused
