// The fused update kernels: one launch walks the whole tensor table (see [NOTE: table layout] in csrc/table.h).
// Light includes only (no torch/extension.h): this translation unit is compiled once per arch.
#include <algorithm>

#include "launch_grid.cuh"
#include "table_kernel.cuh"
#include "../message.h"

namespace lookahead_fused {
namespace {

template <typename Gate>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM) table_kernel(const int64_t* __restrict__ words,
                                                                          int64_t num_entries, int64_t num_chunks,
                                                                          int64_t chunk_elems, Gate gate) {
  table_thread<DeviceMemory>(words, num_entries, num_chunks, chunk_elems, gate, blockIdx.x, gridDim.x, threadIdx.x);
}

template <typename Op>
int blocks_per_sm() {
  return blocks_per_sm_of(table_kernel<Op>, kThreads);
}

template <typename Op>
void launch(TableView table, Op op, cudaStream_t stream, int device_index) {
  if (table.num_chunks == 0) return;
  LOOKAHEAD_CHECK(table.depth == Op::kDepth,
                  message("lookahead_fused: a plan of depth ", table.depth, " for an op of depth ", Op::kDepth));
  // Enough blocks to fill every SM; more chunks than that are grid-strided.
  int64_t grid = std::min(table.num_chunks, cuda_resident_blocks(device_index));
  table_kernel<Op><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(table.words, table.num_entries,
                                                                          table.num_chunks, table.chunk_elems, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Each CUDA op's tensors per entry agree with the roles the planner builds its table from
// (see [NOTE: entry dtypes] in csrc/table.h): a new op whose two disagree does not compile.
template <typename Op>
constexpr bool has_roles_of(TableOp op) {
  return roles_of(op).depth == Op::kDepth && roles_of(op).fast == Op::kFast && Op::kFast + Op::kStates == Op::kDepth;
}
static_assert(has_roles_of<SyncOp>(TableOp::kSync));
static_assert(has_roles_of<SwapOp>(TableOp::kSwap));
static_assert(has_roles_of<MomentumSyncOp>(TableOp::kMomentumSync));
// its steps read the entry's state tensor 1 as the bfloat16 momentum
static_assert(has_roles_of<Bf16MomentumSyncOp>(TableOp::kMomentumSync) &&
              roles_of(TableOp::kMomentumSync).momentum == Bf16MomentumSyncOp::kFast + 1);
static_assert(has_roles_of<AdamWStep<4, float, NoSyncOp>>(TableOp::kAdamWAlone));
static_assert(has_roles_of<AdamWStep<5, float, SyncOp>>(TableOp::kAdamW));
static_assert(has_roles_of<AdamWStep<6, float, MomentumSyncOp>>(TableOp::kAdamWMomentum));
static_assert(has_roles_of<Bf16MomentumAdamWStep>(TableOp::kAdamWMomentum) &&
              roles_of(TableOp::kAdamWMomentum).momentum == Bf16MomentumAdamWStep::kFast + 1);
static_assert(has_roles_of<CompactSyncOp>(TableOp::kCompactSync) && roles_of(TableOp::kCompactSync).compact);
static_assert(has_roles_of<PseudoGradientOp>(TableOp::kPseudoGradient));
// its steps store the entry's state tensor 1 (out) as bfloat16
static_assert(has_roles_of<Bf16PseudoGradientOp>(TableOp::kPseudoGradient) &&
              roles_of(TableOp::kPseudoGradient).momentum == Bf16PseudoGradientOp::kFast + 1);
// its steps read the entry's state tensor 2 as the momentum
static_assert(has_roles_of<CompactMomentumSyncOp>(TableOp::kCompactMomentumSync) &&
              roles_of(TableOp::kCompactMomentumSync).compact &&
              roles_of(TableOp::kCompactMomentumSync).momentum == CompactMomentumSyncOp::kFast + 2);
static_assert(has_roles_of<AdamWCompactStep<CompactSyncOp>>(TableOp::kAdamWCompact) &&
              roles_of(TableOp::kAdamWCompact).compact);
// its steps read the entry's state tensor 2 as the momentum
static_assert(has_roles_of<AdamWCompactStep<CompactMomentumEntryOp<float>>>(TableOp::kAdamWCompactMomentum) &&
              roles_of(TableOp::kAdamWCompactMomentum).compact &&
              roles_of(TableOp::kAdamWCompactMomentum).momentum == AdamWCompactStep<CompactSyncOp>::kFast + 2);

// The fewest blocks per SM of the table kernel's instantiations (all are bounded to kMinBlocksPerSM by
// __launch_bounds__).
int table_blocks_per_sm() {
  return std::min({blocks_per_sm<SyncOp>(), blocks_per_sm<SwapOp>(), blocks_per_sm<GatedSyncOp>(),
                   blocks_per_sm<MomentumSyncOp>(), blocks_per_sm<GatedMomentumSyncOp>(), blocks_per_sm<AdamWOp<4>>(),
                   blocks_per_sm<AdamWOp<5>>(), blocks_per_sm<AdamWOp<6>>(), blocks_per_sm<CompactSyncOp>(),
                   blocks_per_sm<GatedCompactSyncOp>(), blocks_per_sm<PseudoGradientOp>(),
                   blocks_per_sm<CompactMomentumSyncOp>(), blocks_per_sm<GatedCompactMomentumSyncOp>(),
                   blocks_per_sm<AdamWCompactOp<6>>(), blocks_per_sm<AdamWCompactOp<7>>()});
}

}  // namespace

// The same grid for every op, so a plan's chunking fits any launch of it.
int64_t cuda_resident_blocks(int device_index) { return resident_blocks<&table_blocks_per_sm>(device_index); }

void launch_cuda_on_step(TableView table, TableOp op, StepGate gate, UpdateArgs args, void* stream, int device_index) {
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  switch (op) {
    case TableOp::kSync: return launch(table, GatedSyncOp{gate}, cuda_stream, device_index);
    case TableOp::kMomentumSync:
      return launch(table, GatedMomentumSyncOp{gate, args.mu, args.nesterov}, cuda_stream, device_index);
    case TableOp::kCompactSync: return launch(table, GatedCompactSyncOp{gate}, cuda_stream, device_index);
    case TableOp::kCompactMomentumSync:
      return launch(table, GatedCompactMomentumSyncOp{gate, args.mu, args.nesterov}, cuda_stream, device_index);
    default: LOOKAHEAD_CHECK(false, "lookahead_fused: no gated kernel for this op");
  }
}

void launch_cuda(TableView table, TableOp op, UpdateArgs args, void* stream, int device_index) {
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  switch (op) {
    case TableOp::kSync: return launch(table, SyncOp{args.alpha}, cuda_stream, device_index);
    case TableOp::kSwap: return launch(table, SwapOp{}, cuda_stream, device_index);
    case TableOp::kMomentumSync:
      return launch(table, MomentumSyncOp{args.alpha, args.mu, args.nesterov}, cuda_stream, device_index);
    case TableOp::kAdamW:
      return launch(table, AdamWOp<5>{args.hyper, args.rows, args.mu, args.nesterov}, cuda_stream,
                    device_index);
    case TableOp::kAdamWMomentum:
      return launch(table, AdamWOp<6>{args.hyper, args.rows, args.mu, args.nesterov}, cuda_stream,
                    device_index);
    case TableOp::kAdamWAlone:
      return launch(table, AdamWOp<4>{args.hyper, args.rows, 0.0, false}, cuda_stream, device_index);
    case TableOp::kCompactSync: return launch(table, CompactSyncOp{args.alpha}, cuda_stream, device_index);
    case TableOp::kPseudoGradient: return launch(table, PseudoGradientOp{}, cuda_stream, device_index);
    case TableOp::kCompactMomentumSync:
      return launch(table, CompactMomentumSyncOp{args.alpha, args.mu, args.nesterov}, cuda_stream, device_index);
    case TableOp::kAdamWCompact:
      return launch(table, AdamWCompactOp<6>{args.hyper, args.rows, args.mu, args.nesterov}, cuda_stream, device_index);
    case TableOp::kAdamWCompactMomentum:
      return launch(table, AdamWCompactOp<7>{args.hyper, args.rows, args.mu, args.nesterov}, cuda_stream, device_index);
  }
}

}  // namespace lookahead_fused
