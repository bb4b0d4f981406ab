// What the host emulations of the CUDA kernels that walk int8 blocks share
// (test_int8_momentum_kernel_on_host.cu, test_adamw_delta_kernel_on_host.cu): the memory policy that
// records every access, the warp policy that runs all 32 lanes in turn, aligned buffers, and the
// comparison with an oracle, bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/int8_momentum_kernel.cuh"
#include "host_tracking.h"

namespace host_int8_lanes {

using namespace lookahead_fused;
using namespace host_tracking;

struct HostMemory {
  template <typename T>
  static Pack<T> load_pack(const T* at) {
    check_alignment(at, sizeof(Pack<T>));
    find(at, sizeof(Pack<T>));
    Pack<T> pack;
    std::memcpy(&pack, at, sizeof pack);
    return pack;
  }
  template <typename T>
  static void store_pack(T* at, const Pack<T>& pack) {
    check_alignment(at, sizeof pack);
    count_writes(at, sizeof pack);
    std::memcpy(at, &pack, sizeof pack);
  }
  static CodePack load_codes(const int8_t* at) {
    check_alignment(at, sizeof(CodePack));
    find(at, sizeof(CodePack));
    CodePack pack;
    std::memcpy(&pack, at, sizeof pack);
    return pack;
  }
  static void store_codes(int8_t* at, const CodePack& pack) {
    check_alignment(at, sizeof pack);
    count_writes(at, sizeof pack);
    std::memcpy(at, &pack, sizeof pack);
  }
  template <typename T>
  static T load(const T* at) {
    find(at, sizeof(T));
    return *at;
  }
  template <typename T>
  static void store(T* at, T value) {
    count_writes(at, sizeof(T));
    *at = value;
  }
};

struct HostWarp {  // all 32 lanes of a warp, in turn
  static constexpr int kLanes = kInt8Lanes;
  int lane(int l) const { return l; }
  uint32_t max(const uint32_t* value) const {
    uint32_t largest = 0;
    for (int l = 0; l < kLanes; ++l) largest = value[l] > largest ? value[l] : largest;
    return largest;
  }
};

// A buffer of n + offset elements whose storage starts 64-byte aligned; the tensor begins `offset`
// elements in.
template <typename T>
struct Buffer {
  std::vector<unsigned char> storage;
  T* data;
  int64_t n;
  Buffer(int64_t size, int64_t offset) : storage((size + offset) * sizeof(T) + 128), n(size) {
    auto base = (reinterpret_cast<uintptr_t>(storage.data()) + 63) / 64 * 64;
    data = reinterpret_cast<T*>(base) + offset;
  }
};

template <typename F>
constexpr Int8FastDtype dtype_of() {
  return std::is_same_v<F, float> ? Int8FastDtype::kF32 : std::is_same_v<F, __half> ? Int8FastDtype::kF16
                                                                                       : Int8FastDtype::kBF16;
}

// Bit for bit, NaN payloads aside: which operand's payload a sum of two NaNs keeps is the host
// compiler's choice (it may commute the operands), and IEEE 754 leaves it open.
template <typename T>
bool same_value(T a, T b) {
  if constexpr (std::is_integral_v<T>) {  // codes, and bf16+int8 high parts and residuals: their bits
    return a == b;
  } else {
    const float x = widen(a), y = widen(b);
    return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(x) && std::isnan(y));
  }
}

template <typename T>
double shown(T v) {
  if constexpr (std::is_integral_v<T>) {
    return v;
  } else {
    return widen(v);
  }
}

template <typename T>
void compare(const T* expected, const T* got, int64_t n, const std::string& what) {
  for (int64_t i = 0; i < n; ++i) {
    if (!same_value(expected[i], got[i])) {
      return fail(what + " differs from the oracle at " + std::to_string(i) + ": " +
                  std::to_string(shown(expected[i])) + " expected, got " + std::to_string(shown(got[i])));
    }
  }
}

}  // namespace host_int8_lanes
