// The launcher of the CUDA int8 momentum sync (int8_momentum_cuda.cu), as ops.cpp calls it: plain
// data, no torch or CUDA headers.
#pragma once

#include <cstdint>
#include <vector>

#include "../table.h"

namespace lookahead_fused {

enum class Int8FastDtype : uint8_t { kF32, kF16, kBF16 };

// One entry of a call: its tensors' data pointers (dense, one layout, so memory order from there)
// and its fast dtype. numel > 0. The slow weights are float32 (`slow`, and `slow_low` null) or
// bf16+int8 (`slow` their bfloat16 high parts, `slow_low` their int8 residuals: the compact int8
// momentum sync, see [NOTE: compact int8 momentum sync] in csrc/element_math.h), the same for every
// entry of a call.
struct Int8CudaEntry {
  void* fast;
  void* slow;
  int8_t* slow_low;
  int8_t* codes;
  float* scales;
  int64_t numel;
  Int8FastDtype fast_dtype;
};

// The int8 momentum sync (or, with compact entries, the compact int8 momentum sync) of `entries` on
// `stream` (a cudaStream_t) of device `device_index`; with a `gate` (device pointers,
// see [NOTE: step gate] in csrc/table.h) only when *step % k == 0, alpha read on the device, and
// `alpha` unused.
void launch_int8_momentum_cuda(const std::vector<Int8CudaEntry>& entries, double alpha, double mu, bool nesterov,
                               const StepGate* gate, void* stream, int device_index);

}  // namespace lookahead_fused
