// Plans and CUDA graph capture: see [NOTE: plans under capture] in csrc/cuda/capture.cpp.
#pragma once

#include <memory>

#include "../plan.h"

namespace lookahead_fused {

// Whether `stream` (a cudaStream_t) is capturing a CUDA graph.
bool is_capturing(void* stream);

// Keeps `plan` alive as long as the graph that `stream` is capturing (and every executable graph
// made from it).
void keep_alive_with_captured_graph(std::shared_ptr<const Plan> plan, void* stream);

// Frees the plans whose graphs are gone. Called from the ops, on a thread that may call CUDA.
void release_plans_of_destroyed_graphs();

}  // namespace lookahead_fused
