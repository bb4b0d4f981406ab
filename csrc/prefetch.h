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
    const c10::TensorImpl* impl = tensors[i + kPrefetchAhead / 2].unsafeGetTensorImpl();
    if (impl->has_storage()) __builtin_prefetch(impl->unsafe_storage().unsafeGetStorageImpl());
  }
}

}  // namespace lookahead_fused
