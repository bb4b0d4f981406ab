// Prefetching the tensors a host loop is about to read.
//
// [NOTE: prefetch ahead] The host loops over a call's tensors (borrowing the Python lists, the pair
// checks, the plan lookup, the kernel's first lines of small tensors, the version bumps) read a few
// fields of objects scattered over the heap: each Python tensor, its TensorImpl, its StorageImpl,
// its data. On thousands of tensors they outgrow the L2 cache (cold, after
// an inner step, they come from memory), and each loop waited on those loads one tensor at a time.
// Each loop asks for the objects of the tensor kPrefetchAhead places on, so that the loads of
// several tensors are in flight at once. A hint only: it reads nothing and cannot fault.
#pragma once

#include <cstring>

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

constexpr size_t kPrefetchAhead = 8;

// Asks for the TensorImpl of tensor i + kPrefetchAhead of `tensors` and, with `storage`, the
// StorageImpl of tensor i + kPrefetchAhead / 2 (where data_ptr() reads the address), whose
// TensorImpl was asked for kPrefetchAhead / 2 steps before.
inline void prefetch_ahead(at::TensorList tensors, size_t i, bool storage = false) {
  if (i + kPrefetchAhead < tensors.size()) {
    const char* impl = reinterpret_cast<const char*>(tensors[i + kPrefetchAhead].unsafeGetTensorImpl());
    for (size_t line = 0; line < sizeof(c10::TensorImpl); line += 64) __builtin_prefetch(impl + line);
  }
  if (storage && i + kPrefetchAhead / 2 < tensors.size()) {
    // null for a tensor without storage: a prefetch of it does nothing
    __builtin_prefetch(tensors[i + kPrefetchAhead / 2].unsafeGetTensorImpl()->unsafe_storage().unsafeGetStorageImpl());
  }
}

// Asks for the version counter of tensor i + kPrefetchAhead / 2 of `tensors`, which a version bump
// writes: a heap object of its own, reached from the TensorImpl asked for kPrefetchAhead / 2 steps
// before. c10::VariableVersion holds only the pointer to it, which the accessor does not expose.
inline void prefetch_version_ahead(at::TensorList tensors, size_t i) {
  static_assert(sizeof(c10::VariableVersion) == sizeof(void*), "c10::VariableVersion is no longer one pointer");
  if (i + kPrefetchAhead / 2 < tensors.size()) {
    const void* counter = nullptr;
    std::memcpy(&counter, &tensors[i + kPrefetchAhead / 2].unsafeGetTensorImpl()->version_counter(), sizeof(counter));
    if (counter != nullptr) __builtin_prefetch(counter, /*rw=*/1);
  }
}

}  // namespace lookahead_fused
