// The element types of the CPU kernels (sync_cpu.cpp, int8_momentum_cpu.cpp): how each dtype is
// stored, loaded into its opmath type and stored back, in plain C++ that GCC vectorises
// (see [NOTE: CPU vectorisation] in csrc/cpu/sync_cpu.cpp). The tokens are those of the dtype list
// (see [NOTE: dtype list] in csrc/table.h).
#pragma once

#include <cstdint>
#include <cstring>

#define LOOKAHEAD_INLINE inline __attribute__((always_inline))
#define LOOKAHEAD_LAMBDA_INLINE __attribute__((always_inline))

namespace lookahead_fused {

LOOKAHEAD_INLINE float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The element types, as stored and as computed (opmath). bfloat16 rounds to nearest even with one
// canonical NaN, bit for bit as c10::BFloat16 does, so fast == slow.to(fast.dtype) holds exactly.
struct F32 {
  using storage = float;
  using opmath = float;
  static LOOKAHEAD_INLINE float load(float v) { return v; }
  static LOOKAHEAD_INLINE float store(float v) { return v; }
};
struct F64 {
  using storage = double;
  using opmath = double;
  static LOOKAHEAD_INLINE double load(double v) { return v; }
  static LOOKAHEAD_INLINE double store(double v) { return v; }
};
struct BF16 {
  using storage = uint16_t;
  using opmath = float;
  static LOOKAHEAD_INLINE float load(uint16_t v) { return bits_to_float(uint32_t(v) << 16); }
  static LOOKAHEAD_INLINE uint16_t store(float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = 0u - uint32_t(v != v);  // a mask, not a branch: a select GCC would not vectorise in
    return uint16_t((rounded & ~nan) | (0x7FC0u & nan));  // every loop (the bf16 momentum's kept it scalar)
  }
};
struct F16 {  // GCC's _Float16: IEEE binary16, round to nearest even; GCC 12 keeps these loops scalar
  using storage = uint16_t;
  using opmath = float;
  static LOOKAHEAD_INLINE float load(uint16_t v) {
    _Float16 h;
    std::memcpy(&h, &v, sizeof h);
    return static_cast<float>(h);
  }
  static LOOKAHEAD_INLINE uint16_t store(float v) {
    _Float16 h = static_cast<_Float16>(v);
    uint16_t u;
    std::memcpy(&u, &h, sizeof u);
    return u;
  }
};

}  // namespace lookahead_fused
