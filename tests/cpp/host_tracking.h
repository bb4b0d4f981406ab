// What the host emulations of the CUDA kernels share (test_cuda_kernel_on_host.cu,
// test_int8_momentum_kernel_on_host.cu): the failures they report, and the tensors of a call with a
// write count per element, which their memory policies consult on every access.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace host_tracking {

inline int failures = 0;
inline int64_t vector_accesses = 0;

inline void fail(const std::string& what) {
  if (++failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

// One tensor of a call, with a write count per element.
struct Tracked {
  uintptr_t begin, end;
  size_t element;
  std::vector<int> writes;
};
inline std::vector<Tracked> tracked;

inline void track(const void* data, int64_t n, size_t element) {
  const auto begin = reinterpret_cast<uintptr_t>(data);
  tracked.push_back({begin, begin + n * element, element, std::vector<int>(n, 0)});
}

// The tracked tensor holding the `bytes` bytes at `at`, or null (a failure) when none does.
inline Tracked* find(const void* at, size_t bytes) {
  const auto p = reinterpret_cast<uintptr_t>(at);
  for (auto& t : tracked) {
    if (p >= t.begin && p + bytes <= t.end) return &t;
  }
  fail("an access outside every tensor");
  return nullptr;
}

inline void count_writes(const void* at, size_t bytes) {
  if (Tracked* t = find(at, bytes)) {
    const size_t first = (reinterpret_cast<uintptr_t>(at) - t->begin) / t->element;
    for (size_t i = 0; i < bytes / t->element; ++i) ++t->writes[first + i];
  }
}

// A vector access of `bytes` bytes, which must be aligned to them.
inline void check_alignment(const void* at, size_t bytes) {
  ++vector_accesses;
  if (reinterpret_cast<uintptr_t>(at) % bytes != 0) fail("a vector access at a misaligned address");
}

}  // namespace host_tracking
