// The tensor table a fused update walks: plain data, no torch headers, so that the CUDA translation
// unit stays light (see docs/design.md, "Builds").
//
// [NOTE: table layout] One int64 array, built once per parameter set (plan.cpp) and reused:
//   per entry t (one param's tensors), depth + 2 words: the addresses of its `depth` tensors (the
//     fast tensor first, then its state tensors: the slow weight, and the outer momentum for the
//     momentum sync), numel, meta;
//     meta = pair_code | (head + 1) << 8, head = the first element index at which every tensor of the
//     entry is 16-byte aligned (< kVecBytes), or -1 when they never align together (then the entry
//     runs scalar; tensors whose ends are offset alike keep their vector body);
//   then per chunk one word: entry index << kChunkBits | chunk index, chunk = chunk_elems elements,
//   chosen per plan (chunking.h, see [NOTE: chunk size from the bytes model] in csrc/chunking.cpp).
// `depth` is fixed per op (2 for the sync and the swap, 3 for the momentum sync, the compact sync and the
// pseudo-gradient, 4 for the compact momentum sync and AdamW's step alone, 5 or 6 for AdamW's step with the sync, 6 or
// 7 for AdamW's step with the compact sync), like the depth of PyTorch's MultiTensorApply. A block (CUDA) or a task
// (CPU) takes whole chunks, so every tensor size shares one grid.
//
// [NOTE: entry dtypes] Each op names the roles of an entry's tensors (roles_of): the first `fast` of its `depth`
// tensors have the fast dtype, the rest the state dtype (the slow dtype), and the pair code is that of (fast, first
// state tensor): one fast tensor for the syncs and the swap; four for AdamW (param, grad, exp_avg, exp_avg_sq, as
// torch.optim.AdamW keeps its moments in the param's dtype), then slow and the outer momentum. An op whose entries hold
// fast tensors only (AdamW's step alone) has the code of (fast, fast). A compact entry (the compact sync) holds the
// fast tensor (AdamW's compact step: its four), then its bf16+int8 slow weight as a bfloat16 and an int8 tensor; its
// code is that of the fast dtype in LOOKAHEAD_COMPACT_PAIRS; a compact momentum sync's entry adds the outer momentum,
// float32 (those codes) or bfloat16 (LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS). An op may name one state tensor its outer
// momentum (EntryRoles::momentum): that one has the state dtype, or bfloat16 beside a float32 state, and such an
// entry's code is that of (fast, state) in LOOKAHEAD_BF16_MOMENTUM_PAIRS. The pseudo-gradient names its out in that
// role: out is in the slow dtype, or bfloat16 beside float32 slow weights (the replicas' bfloat16 wire), with the same
// codes. The plan takes the roles from the op, never from the depth, so a new op of any depth says which of its tensors
// are which.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define LOOKAHEAD_HOST_DEVICE __host__ __device__
#else
#define LOOKAHEAD_HOST_DEVICE
#endif

namespace lookahead_fused {

// [NOTE: dtype list] The element types, once for C++: each kernel, the planner and the checks expand
// these lists (X-macros) into their switches and tables, and build_info() reports them so a test
// compares them with Python's (lookahead_fused/contract.py). A code the kernels do not know traps.
//   X(token, at::ScalarType enumerator, Python name, bytes); order as in Python's FAST_DTYPES
#define LOOKAHEAD_DTYPES(X)            \
  X(F16, Half, "float16", 2)           \
  X(BF16, BFloat16, "bfloat16", 2)     \
  X(F32, Float, "float32", 4)          \
  X(F64, Double, "float64", 8)
//   X(pair code, fast token, state token): the fast dtype, or float32 state for a 16-bit fast dtype
#define LOOKAHEAD_DTYPE_PAIRS(X) \
  X(0, F32, F32)                 \
  X(1, F64, F64)                 \
  X(2, F16, F16)                 \
  X(3, BF16, BF16)               \
  X(4, F16, F32)                 \
  X(5, BF16, F32)
//   X(code, fast token): the compact sync's entries, whose state is one bf16+int8 slow weight
//   (a bfloat16 tensor and an int8 tensor; see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py)
#define LOOKAHEAD_COMPACT_PAIRS(X) \
  X(6, F32)                        \
  X(7, F16)                        \
  X(8, BF16)
constexpr int64_t kCompactStateBytes = 3;  // one bfloat16 and one int8
//   X(code, fast token): the compact momentum sync's entries whose outer momentum is bfloat16 (a float32
//   one takes the code of LOOKAHEAD_COMPACT_PAIRS; see [NOTE: compact momentum sync] in csrc/element_math.h)
#define LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(X) \
  X(12, F32)                                     \
  X(13, F16)                                     \
  X(14, BF16)
//   X(code, fast token, slow token): the entries with outer momentum (the momentum sync's and AdamW's)
//   whose momentum is bfloat16 beside float32 slow weights (momentum_dtype=torch.bfloat16;
//   see [NOTE: bf16 outer momentum] in lookahead_fused/options.py)
#define LOOKAHEAD_BF16_MOMENTUM_PAIRS(X) \
  X(9, F32, F32)                         \
  X(10, F16, F32)                        \
  X(11, BF16, F32)

enum PairCode : int64_t {
#define LOOKAHEAD_PAIR_ENUM(code, fast, state) k##fast##state = code,
  LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_PAIR_ENUM)
#undef LOOKAHEAD_PAIR_ENUM
};

enum Bf16MomentumCode : int64_t {
#define LOOKAHEAD_BF16_MOMENTUM_ENUM(code, fast, state) k##fast##state##Bf16Momentum = code,
  LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_BF16_MOMENTUM_ENUM)
#undef LOOKAHEAD_BF16_MOMENTUM_ENUM
};

enum CompactCode : int64_t {
#define LOOKAHEAD_COMPACT_ENUM(code, fast) kCompact##fast = code,
  LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_COMPACT_ENUM)
#undef LOOKAHEAD_COMPACT_ENUM
#define LOOKAHEAD_COMPACT_BF16_MOMENTUM_ENUM(code, fast) kCompact##fast##Bf16Momentum = code,
  LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(LOOKAHEAD_COMPACT_BF16_MOMENTUM_ENUM)
#undef LOOKAHEAD_COMPACT_BF16_MOMENTUM_ENUM
};

#define LOOKAHEAD_DTYPE_BYTES(token, scalar_type, name, bytes) constexpr int64_t kBytes##token = bytes;
LOOKAHEAD_DTYPES(LOOKAHEAD_DTYPE_BYTES)
#undef LOOKAHEAD_DTYPE_BYTES

constexpr int kChunkBits = 40;  // chunk index bits; the entry index takes the 23 bits above
constexpr int kVecBytes = 16;
constexpr int kMaxDepth = 7;

LOOKAHEAD_HOST_DEVICE inline constexpr int64_t entry_words(int depth) { return depth + 2; }

// The fused updates. kSync: slow <- lerp(slow, fast, alpha); fast <- slow. kSwap: exchange.
// kMomentumSync: the sync with outer momentum (docs/design.md, "The momentum sync"). kAdamW: one
// AdamW step, then on a sync step the sync (kAdamWMomentum: the momentum sync) of the new params,
// in the same pass (adamw.h, docs/design.md "LookaheadAdamW"); kAdamWAlone: the step without slow
// weights, which never syncs. kCompactSync: the sync of slow weights kept as bf16+int8
// (docs/design.md, "Compact slow weights"); kCompactMomentumSync: the momentum sync of those
// (see [NOTE: compact momentum sync] in csrc/element_math.h). kAdamWCompact, kAdamWCompactMomentum:
// kAdamW and kAdamWMomentum with the slow weights kept as bf16+int8, the sync of a sync row the
// compact sync or compact momentum sync of the new param
// (see [NOTE: AdamW compact step] in csrc/adamw.h). kPseudoGradient: out <- fast - slow,
// fast and slow read only, out in the slow dtype or bfloat16 (see [NOTE: pseudo-gradient] in csrc/element_math.h).
enum class TableOp {
  kSync,
  kSwap,
  kMomentumSync,
  kAdamW,
  kAdamWMomentum,
  kAdamWAlone,
  kCompactSync,
  kPseudoGradient,
  kCompactMomentumSync,
  kAdamWCompact,
  kAdamWCompactMomentum,
};

struct EntryRoles {  // see [NOTE: entry dtypes] in csrc/table.h
  int depth;             // tensors per entry
  int fast;              // how many of them, first, have the fast dtype (all of them: no state tensor)
  bool compact = false;  // the slow weight is bf16+int8: a bfloat16 tensor, then an int8 one (then the momentum)
  int momentum = -1;     // the index of the outer momentum (the pseudo-gradient's out), which may be bfloat16 beside a float32 state; -1: none
};

inline constexpr bool operator==(EntryRoles a, EntryRoles b) {
  return a.depth == b.depth && a.fast == b.fast && a.compact == b.compact && a.momentum == b.momentum;
}

inline constexpr EntryRoles roles_of(TableOp op) {
  switch (op) {
    case TableOp::kSync: return {2, 1};
    case TableOp::kSwap: return {2, 1};
    case TableOp::kMomentumSync: return {3, 1, false, 2};
    case TableOp::kAdamW: return {5, 4};
    case TableOp::kAdamWMomentum: return {6, 4, false, 5};
    case TableOp::kAdamWAlone: return {4, 4};
    case TableOp::kCompactSync: return {3, 1, true};
    case TableOp::kPseudoGradient: return {3, 1, false, 2};
    case TableOp::kCompactMomentumSync: return {4, 1, true, 3};
    case TableOp::kAdamWCompact: return {6, 4, true};
    case TableOp::kAdamWCompactMomentum: return {7, 4, true, 6};
  }
  return {0, 0};
}

inline constexpr int depth_of(TableOp op) { return roles_of(op).depth; }

struct UpdateArgs {  // the scalars of an update; each op reads its own
  double alpha = 0.0;
  double mu = 0.0;
  bool nesterov = false;
  // AdamW: hyper[rows[entry] * kAdamWColumns + column] (adamw.h), in the kernel's memory.
  const double* hyper = nullptr;
  const int64_t* rows = nullptr;
};

struct TableView {  // what a kernel needs: the table, its shape, the chunk size
  const int64_t* words;
  int64_t num_entries;
  int64_t num_chunks;
  int64_t chunk_elems;
  int depth;
};

LOOKAHEAD_HOST_DEVICE inline int64_t pair_code_of(int64_t meta) { return meta & 0xff; }
LOOKAHEAD_HOST_DEVICE inline int64_t head_of(int64_t meta) { return (meta >> 8) - 1; }

// The bytes of one element of every tensor of an entry (the planner's bytes model), or 0 for a
// code this build does not know.
inline int64_t entry_element_bytes(int64_t code, EntryRoles roles) {
  if (roles.compact) {
    const int64_t momentum_float = roles.momentum < 0 ? 0 : kBytesF32;
    switch (code) {
#define LOOKAHEAD_COMPACT_BYTES(code, fast_token) \
  case code: return roles.fast * kBytes##fast_token + kCompactStateBytes + momentum_float;
      LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_COMPACT_BYTES)
#undef LOOKAHEAD_COMPACT_BYTES
#define LOOKAHEAD_COMPACT_BF16_MOMENTUM_BYTES(code, fast_token) \
  case code: return roles.momentum < 0 ? 0 : roles.fast * kBytes##fast_token + kCompactStateBytes + kBytesBF16;
      LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(LOOKAHEAD_COMPACT_BF16_MOMENTUM_BYTES)
#undef LOOKAHEAD_COMPACT_BF16_MOMENTUM_BYTES
      default: return 0;
    }
  }
  switch (code) {
#define LOOKAHEAD_PAIR_BYTES(code, fast_token, state_token) \
  case code: return roles.fast * kBytes##fast_token + (roles.depth - roles.fast) * kBytes##state_token;
    LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_PAIR_BYTES)
#undef LOOKAHEAD_PAIR_BYTES
#define LOOKAHEAD_BF16_MOMENTUM_BYTES(code, fast_token, state_token)                                      \
  case code:                                                                                             \
    return roles.momentum < 0 ? 0                                                                        \
                              : roles.fast * kBytes##fast_token +                                        \
                                    (roles.depth - roles.fast - 1) * kBytes##state_token + kBytesBF16;
    LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_BF16_MOMENTUM_BYTES)
#undef LOOKAHEAD_BF16_MOMENTUM_BYTES
    default: return 0;
  }
}

// The first element index at which all `n` tensors sit on a 16-byte boundary, or -1 if none does.
// The pattern repeats after kVecBytes elements of the narrowest tensor (the fast one, the int8
// residual of a compact entry, or a bfloat16 momentum or pseudo-gradient beside float32 ones).
inline int64_t common_head(const uintptr_t* addresses, const int64_t* element_sizes, int n) {
  int64_t narrowest = element_sizes[0];
  for (int t = 0; t < n; ++t) {
    if (addresses[t] % element_sizes[t]) return -1;
    if (element_sizes[t] < narrowest) narrowest = element_sizes[t];
  }
  for (int64_t i = 0; i < kVecBytes / narrowest; ++i) {
    bool aligned = true;
    for (int t = 0; t < n && aligned; ++t) aligned = (addresses[t] + i * element_sizes[t]) % kVecBytes == 0;
    if (aligned) return i;
  }
  return -1;
}

// [NOTE: step gate] The gated updates decide on the device whether this is a sync step, so a captured
// CUDA graph (or a compiled step) is the same on every step: the kernel reads *step and alpha where
// it runs and returns at once unless *step % k == 0. No host synchronisation, no host-side branch.
struct StepGate {
  const int64_t* step;
  int64_t k;
  const void* alpha;  // one float32 or float64
  bool alpha_is_double;
};

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
// How many blocks of the table kernel run at once on the device: the grid of a large launch.
int64_t cuda_resident_blocks(int device_index);
// Launches one kernel of `op` over the device-resident table on `stream` (a cudaStream_t).
void launch_cuda(TableView table, TableOp op, UpdateArgs args, void* stream, int device_index);
// The sync or momentum sync gated by `gate` (device pointers; args.alpha unused): one launch every
// step, early exit off the sync steps.
void launch_cuda_on_step(TableView table, TableOp op, StepGate gate, UpdateArgs args, void* stream, int device_index);
#endif

}  // namespace lookahead_fused
