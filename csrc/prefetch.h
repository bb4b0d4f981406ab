// Prefetching the tensors a host loop is about to read.
//
// [NOTE: prefetch ahead] The host loops over a call's tensors (borrowing the Python lists, the pair
// checks, the plan lookup, the kernel's first lines of small tensors, the version bumps) read a few
// fields of objects scattered over the heap: each Python tensor, its TensorImpl, its StorageImpl,
// its data. On thousands of tensors they outgrow the L2 cache (cold, after
// an inner step, they come from memory), and each loop waited on those loads one tensor at a time.
// Each loop asks for the objects of the tensor kPrefetchAhead places on, so that the loads of
// several tensors are in flight at once. A hint only: it reads nothing and cannot fault.
// Every line of an object is asked for: a StorageImpl (96 bytes, 16-byte aligned by malloc) spans
// two cache lines three times in four, and data_ptr() reads both (the data pointer and the flag of
// its mutable-data checks). Borrowing a list asks for each TensorImpl as it unpacks the Python
// tensor, and for the StorageImpl of the tensor kPrefetchAhead places back, whose TensorImpl has
// had time to arrive: the walk of the check that follows finds both on their way.
#pragma once

#include <cstring>

#include <ATen/core/Tensor.h>

namespace lookahead_fused {

constexpr size_t kPrefetchAhead = 8;

// Asks for every cache line of the `bytes` bytes at `object` (none for null).
inline void prefetch_lines(const void* object, size_t bytes) {
  if (object == nullptr) return;
  const char* start = static_cast<const char*>(object);
  for (size_t line = 0; line < bytes; line += 64) __builtin_prefetch(start + line);
}

inline void prefetch_tensor_impl(const c10::TensorImpl* impl) { prefetch_lines(impl, sizeof(c10::TensorImpl)); }

// Asks for the StorageImpl of `impl`, whose storage field must have arrived (it reads it).
inline void prefetch_storage_of(const c10::TensorImpl* impl) {
  // null for a tensor without storage
  prefetch_lines(impl->unsafe_storage().unsafeGetStorageImpl(), sizeof(c10::StorageImpl));
}

// Asks for the TensorImpl of tensor i + kPrefetchAhead of `tensors` and, with `storage`, the
// StorageImpl of tensor i + kPrefetchAhead / 2 (where data_ptr() reads the address), whose
// TensorImpl was asked for kPrefetchAhead / 2 steps before.
inline void prefetch_ahead(at::TensorList tensors, size_t i, bool storage = false) {
  if (i + kPrefetchAhead < tensors.size()) prefetch_tensor_impl(tensors[i + kPrefetchAhead].unsafeGetTensorImpl());
  if (storage && i + kPrefetchAhead / 2 < tensors.size()) {
    prefetch_storage_of(tensors[i + kPrefetchAhead / 2].unsafeGetTensorImpl());
  }
}

// Asks for the counter of `version`, which a version bump writes: a heap object of its own.
// c10::VariableVersion holds only the pointer to it, which the accessor does not expose.
inline void prefetch_counter(const c10::VariableVersion& version) {
  static_assert(sizeof(c10::VariableVersion) == sizeof(void*), "c10::VariableVersion is no longer one pointer");
  const void* counter = nullptr;
  std::memcpy(&counter, &version, sizeof(counter));
  if (counter != nullptr) __builtin_prefetch(counter, /*rw=*/1);
}

// Asks for the version counter of tensor i + kPrefetchAhead / 2 of `tensors`, reached from the
// TensorImpl asked for kPrefetchAhead / 2 steps before.
inline void prefetch_version_ahead(at::TensorList tensors, size_t i) {
  if (i + kPrefetchAhead / 2 < tensors.size()) {
    prefetch_counter(tensors[i + kPrefetchAhead / 2].unsafeGetTensorImpl()->version_counter());
  }
}

}  // namespace lookahead_fused
