#pragma once

#include "../plan.h"

namespace lookahead_fused {

// Runs `op` over every entry of `plan` on the CPU, parallel over all chunks.
void run_cpu(const Plan& plan, TableOp op, const UpdateArgs& args);

// AdamW's step alone (TableOp::kAdamWAlone) of n elements of one dense param and its grad and moments, of
// `dtype`, with the hyper row `row`: the loop adamw_step_ runs without slow weights, on the calling thread.
void run_adamw_alone_cpu(void* param, const void* grad, void* exp_avg, void* exp_avg_sq, int64_t n,
                         at::ScalarType dtype, const double* row);

// "avx2" or "baseline": which compiled variant of the loops this CPU runs.
const char* cpu_kernel_isa();

// How many threads at::parallel_for gives `tasks` one-task chunks here (see [NOTE: OpenMP] in csrc/cpu/sync_cpu.cpp).
int64_t cpu_parallel_threads(int64_t tasks);

}  // namespace lookahead_fused
