// The launcher of the CUDA kernel of AdamW's step with int8-delta slow weights (adamw_delta_cuda.cu), as
// ops.cpp calls it: plain data, no torch or CUDA headers.
#pragma once

#include <cstdint>
#include <vector>

#include "../adamw.h"
#include "int8_momentum_cuda.h"

namespace lookahead_fused {

// One entry of a call: its tensors' data pointers (dense, one layout, so memory order from there), its
// place in the call (its row of the hyper table is rows[position]) and its param dtype. numel > 0.
struct DeltaCudaEntry {
  void* param;
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  int8_t* codes;
  float* scales;
  void* momentum;          // the outer momentum's codes or values, of the param's shape and strides, or null
  float* momentum_scales;  // an int8 outer momentum's, or null
  int64_t numel;
  int64_t position;
  Int8FastDtype dtype;
  DeltaMomentumDtype momentum_dtype;
};

// AdamW's step with int8-delta slow weights (see [NOTE: int8-delta] in csrc/adamw.h) of `entries` on
// `stream` (a cudaStream_t) of device `device_index`; `hyper` and `rows` are device pointers, read by
// the kernel (see [NOTE: AdamW hyper table] in csrc/adamw.h); `mu` and `nesterov` the outer momentum's
// of the entries that have one (DeltaMomentumDtype).
void launch_adamw_delta_cuda(const std::vector<DeltaCudaEntry>& entries, const double* hyper, const int64_t* rows,
                             float mu, bool nesterov, void* stream, int device_index);

}  // namespace lookahead_fused
