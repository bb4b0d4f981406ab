// The launcher of the CUDA kernel of AdamW's step with an int8 outer momentum beside float32 or
// bf16+int8 slow weights (adamw_int8_momentum_cuda.cu), as ops.cpp calls it: plain data, no torch or
// CUDA headers.
#pragma once

#include <cstdint>
#include <vector>

#include "int8_momentum_cuda.h"

namespace lookahead_fused {

// One entry of a call: its tensors' data pointers (dense, one layout, so memory order from there), its
// place in the call (its row of the hyper table is rows[position]) and its param dtype. numel > 0. The
// slow weights are float32 (`slow`, and `slow_low` null) or bf16+int8 (`slow` their bfloat16 high parts,
// `slow_low` their int8 residuals), the same for every entry of a call.
struct AdamWInt8CudaEntry {
  void* param;
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  void* slow;
  int8_t* slow_low;
  int8_t* codes;  // the outer momentum's
  float* scales;  // its block scales
  int64_t numel;
  int64_t position;
  Int8FastDtype dtype;
};

// AdamW's step with the int8 momentum sync on the sync rows of `entries` on `stream` (a cudaStream_t) of
// device `device_index` (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h); `hyper` and `rows` are
// device pointers, read by the kernel (see [NOTE: AdamW hyper table] in csrc/adamw.h).
void launch_adamw_int8_momentum_cuda(const std::vector<AdamWInt8CudaEntry>& entries, const double* hyper,
                                     const int64_t* rows, float mu, bool nesterov, void* stream, int device_index);

}  // namespace lookahead_fused
