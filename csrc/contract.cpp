#include "contract.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include <c10/util/Exception.h>

#include "adamw.h"
#include "element_math.h"
#include "dtypes.h"
#include "message.h"
#include "plan.h"
#include "prefetch.h"

namespace lookahead_fused {
namespace {

std::string python_dtype(at::ScalarType type) {
  switch (type) {
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kLong: return "torch.int64";
    case at::kInt: return "torch.int32";
    case at::kShort: return "torch.int16";
    case at::kChar: return "torch.int8";
    case at::kByte: return "torch.uint8";
    case at::kBool: return "torch.bool";
    case at::kComplexHalf: return "torch.complex32";
    case at::kComplexFloat: return "torch.complex64";
    case at::kComplexDouble: return "torch.complex128";
    default: return std::string("torch.") + c10::toString(type);
  }
}

std::string python_tuple(c10::IntArrayRef values) {  // (2, 3), (4,), ()
  std::string text = "(";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + std::to_string(values[i]);
  return text + (values.size() == 1 ? ",)" : ")");
}

// `op: pair i: role`, formatted only when a check fails.
struct Where {
  const char* op;
  size_t pair;
  const char* role;
};
std::string piece(const Where& w) { return message(w.op, ": pair ", w.pair, ": ", w.role); }

// `t` is defined and strided, of `dtype` (a compact state tensor's) or else of a supported dtype, and
// dense and non-overlapping.
void check_tensor(const at::Tensor& t, const Where& where, const char* dtype = nullptr) {
  LOOKAHEAD_CHECK_VALUE(t.defined(), message(where, " is an undefined tensor"));
  LOOKAHEAD_CHECK_VALUE(
      t.layout() == at::kStrided,
      message(where, " has layout ", t.layout(), "; sparse and other non-strided tensors are not supported"));
  if (dtype != nullptr) {
    LOOKAHEAD_CHECK_VALUE(python_dtype(t.scalar_type()) == dtype,
                          message(where, " has dtype ", python_dtype(t.scalar_type()), "; it must be ", dtype));
  } else {
    LOOKAHEAD_CHECK_VALUE(is_supported_dtype(t.scalar_type()),
                          message(where, " has dtype ", python_dtype(t.scalar_type()), "; supported: ",
                                  supported_dtype_names(), " (complex and integer tensors are not supported)"));
  }
  LOOKAHEAD_CHECK_VALUE(t.is_non_overlapping_and_dense(),
                        message(where, " (shape ", python_tuple(t.sizes()), ", strides ", python_tuple(t.strides()),
                                ") is not dense and non-overlapping; pass a contiguous (or "
                                "permuted-contiguous) tensor"));
}

bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0) return true;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) != 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

// Tensor `a` beside tensor `b` of pair i (fast beside slow, or momentum beside slow).
void check_pair_layout(const char* op, size_t i, const at::Tensor& a, const at::Tensor& b, const at::Device& device,
                       const char* a_name = "fast", const char* b_name = "slow") {
  // NotImplementedError, not ValueError: lookahead_fused.ops then takes its general path, which
  // splits a call across devices (and names a pair whose two tensors are apart).
  LOOKAHEAD_CHECK_NOT_IMPLEMENTED(
      a.device() == device && b.device() == device,
      message(op, ": pair ", i, " has ", a_name, " on ", a.device(), " and ", b_name, " on ", b.device(),
              " but pair 0 is on ", device, "; one call of the fused kernel runs on one device"));
  LOOKAHEAD_CHECK_VALUE(a.sizes() == b.sizes(),
                        message(op, ": pair ", i, ": ", a_name, " has shape ", python_tuple(a.sizes()), " but ", b_name,
                                " has shape ", python_tuple(b.sizes())));
  LOOKAHEAD_CHECK_VALUE(same_layout(a, b),
                        message(op, ": pair ", i, ": ", a_name, " has strides ", python_tuple(a.strides()), " but ",
                                b_name, " has strides ", python_tuple(b.strides())));
}

// The scales of pair i beside `owner` (named `owner_name`): on pair 0's `device`, one per block of
// kInt8Block of owner's elements.
void check_block_scales(const char* op, size_t i, const at::Tensor& sc, const at::Tensor& owner, const char* owner_name,
                        const at::Device& device, const char* scales_name = "scales") {
  const int64_t blocks = (owner.numel() + kInt8Block - 1) / kInt8Block;
  LOOKAHEAD_CHECK_NOT_IMPLEMENTED(
      sc.device() == device,
      message(op, ": pair ", i, " has ", owner_name, " on ", owner.device(), " and ", scales_name, " on ", sc.device(),
              " but pair 0 is on ", device, "; one call of the fused kernel runs on one device"));
  LOOKAHEAD_CHECK_VALUE(
      sc.dim() == 1 && sc.numel() == blocks,
      message(op, ": pair ", i, ": ", scales_name, " has shape ", python_tuple(sc.sizes()), "; it must be (", blocks,
              ",), one scale per block of ", kInt8Block, " of ", owner_name, "'s ", owner.numel(), " elements"));
}

// Pair 0's device, where the quick test compares the others' (an undefined tensor fails it first).
at::Device device_of_first(at::TensorList tensors) {
  return tensors.empty() || !tensors[0].defined() ? at::Device(at::kCPU) : tensors[0].device();
}

// Beside each of `owners` (checked by the caller, named `owner` in the messages) its int8 codes (its
// shape and strides) and its block scales, `names` {codes, scales} as the messages call them.
void check_int8_codes_beside(const char* op, const char* owner, at::TensorList owners, at::TensorList codes,
                             at::TensorList scales, const char* const* names) {
  const at::Device device = device_of_first(owners);
  for (size_t i = 0; i < owners.size(); ++i) {
    prefetch_ahead(codes, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    prefetch_ahead(scales, i);
    const at::Tensor& p = owners[i];
    const at::Tensor& q = codes[i];
    const at::Tensor& sc = scales[i];
    const int64_t blocks = (p.numel() + kInt8Block - 1) / kInt8Block;
    // see [NOTE: plainly valid pairs] in csrc/contract.cpp
    if (plainly_alike(p, q, device) && plainly_valid(sc, device) && q.scalar_type() == at::kChar &&
        sc.scalar_type() == at::kFloat && sc.dim() == 1 && sc.numel() == blocks) {
      continue;
    }
    check_tensor(q, Where{op, i, names[0]}, "torch.int8");
    check_tensor(sc, Where{op, i, names[1]}, "torch.float32");
    check_pair_layout(op, i, p, q, owners[0].device(), owner, names[0]);
    check_block_scales(op, i, sc, p, owner, owners[0].device(), names[1]);
  }
}

// The lists of a call by position, as the messages name them.
const char* const kSyncListNames[] = {"fast", "slow", "momentum"};
const char* const kAdamWListNames[] = {"param", "grad", "exp_avg", "exp_avg_sq", "slow", "momentum"};
const char* const kCompactListNames[] = {"fast", "slow_high", "slow_low", "momentum"};
const char* const kAdamWCompactListNames[] = {"param",     "grad",     "exp_avg", "exp_avg_sq",
                                              "slow_high", "slow_low", "momentum"};
const char* const kInt8MomentumListNames[] = {"fast", "slow", "momentum", "scales"};
const char* const kCompactInt8MomentumListNames[] = {"fast", "slow_high", "slow_low", "momentum", "scales"};
const char* const kPseudoGradientListNames[] = {"fast", "slow", "out"};
const char* const kAdamWDeltaListNames[] = {"param", "grad",   "exp_avg",  "exp_avg_sq",
                                            "delta", "scales", "momentum", "momentum_scales"};
const char* const kInt8DeltaSyncListNames[] = {"param", "delta", "scales", "momentum", "momentum_scales"};
const char* const kAdamWInt8MomentumListNames[] = {"param", "grad",     "exp_avg",  "exp_avg_sq",
                                                   "slow",  "slow_low", "momentum", "scales"};

void check_lengths(const char* op, at::TensorList fast, at::TensorList other, const char* other_name = "slow",
                   const char* first_name = "fast") {
  LOOKAHEAD_CHECK_VALUE(fast.size() == other.size(), message(op, ": ", first_name, " has ", fast.size(),
                                                             " tensors but ", other_name, " has ", other.size()));
}

}  // namespace

// [NOTE: plainly valid pairs] Nearly every pair of a call is plainly valid: both tensors defined,
// strided and contiguous, of one shape, on pair 0's device, with dtypes that go together. Each check
// below tries that first, on the tensors' own fields, and sends any other pair (a channels_last one,
// a bad one) through the full checks, which name what is wrong. The quick test accepts nothing the
// full checks refuse: contiguous implies dense and non-overlapping, and two contiguous tensors of one
// shape have the same strides.
bool plainly_alike(const at::Tensor& a, const at::Tensor& b, const at::Device& device) {
  return plainly_valid(a, device) && plainly_valid(b, device) && a.sizes() == b.sizes();
}

const char* const* list_names(TableOp op) {
  switch (op) {
    case TableOp::kAdamW:
    case TableOp::kAdamWMomentum:
    case TableOp::kAdamWAlone: return kAdamWListNames;
    case TableOp::kCompactSync:
    case TableOp::kCompactMomentumSync: return kCompactListNames;
    case TableOp::kAdamWCompact:
    case TableOp::kAdamWCompactMomentum: return kAdamWCompactListNames;
    case TableOp::kPseudoGradient: return kPseudoGradientListNames;
    default: return kSyncListNames;
  }
}

void check_no_overlap(const char* op, const std::vector<at::TensorList>& lists, const char* const* names) {
  std::vector<std::tuple<uintptr_t, uintptr_t, int, size_t>> spans;  // start, end, list, index
  for (int which = 0; which < static_cast<int>(lists.size()); ++which) {
    at::TensorList list = lists[which];
    for (size_t i = 0; i < list.size(); ++i) {
      const at::Tensor& t = list[i];
      if (t.numel() == 0 || t.is_meta()) continue;
      auto start = reinterpret_cast<uintptr_t>(t.data_ptr());
      spans.emplace_back(start, start + t.numel() * t.element_size(), which, i);
    }
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); ++k) {
    const auto& [start_a, end_a, list_a, i] = spans[k - 1];
    const auto& [start_b, end_b, list_b, j] = spans[k];
    if (start_b < end_a) {
      auto first = std::min(std::make_pair(list_a, i), std::make_pair(list_b, j));
      auto second = std::max(std::make_pair(list_a, i), std::make_pair(list_b, j));
      LOOKAHEAD_CHECK_VALUE(
          false, message(op, ": pair ", first.second, " (", names[first.first], ") and pair ", second.second, " (",
                         names[second.first], ") share memory; every tensor must have its own storage"));
    }
  }
}

void check_sync_pairs(at::TensorList fast, at::TensorList slow, const char* op) {
  check_lengths(op, fast, slow);
  const at::Device device = device_of_first(fast);
  for (size_t i = 0; i < fast.size(); ++i) {
    prefetch_ahead(fast, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    prefetch_ahead(slow, i);
    const at::Tensor& f = fast[i];
    const at::Tensor& s = slow[i];
    // see [NOTE: plainly valid pairs] in csrc/contract.cpp
    if (plainly_alike(f, s, device) && pair_code(f.scalar_type(), s.scalar_type()) >= 0) continue;
    check_tensor(f, Where{op, i, "fast"});
    check_tensor(s, Where{op, i, "slow"});
    LOOKAHEAD_CHECK_VALUE(pair_code(f.scalar_type(), s.scalar_type()) >= 0,
                          message(op, ": pair ", i, ": slow dtype ", python_dtype(s.scalar_type()),
                                  " does not go with fast dtype ", python_dtype(f.scalar_type()),
                                  "; slow must have the fast dtype, or float32 for float16/bfloat16 fast"));
    check_pair_layout(op, i, f, s, fast[0].device());
  }
}

void check_swap_pairs(at::TensorList first, at::TensorList second) {
  const char* op = "swap_";
  check_lengths(op, first, second);
  const at::Device device = device_of_first(first);
  for (size_t i = 0; i < first.size(); ++i) {
    if (plainly_alike(first[i], second[i], device) && first[i].scalar_type() == second[i].scalar_type() &&
        is_supported_dtype(first[i].scalar_type())) {
      continue;
    }
    check_tensor(first[i], Where{op, i, "first"});
    check_tensor(second[i], Where{op, i, "second"});
    LOOKAHEAD_CHECK_VALUE(first[i].scalar_type() == second[i].scalar_type(),
                          message(op, ": pair ", i, ": dtypes differ (", python_dtype(first[i].scalar_type()), " and ",
                                  python_dtype(second[i].scalar_type()), "); a swap needs one dtype"));
    check_pair_layout(op, i, first[i], second[i], first[0].device());
  }
}

void check_step_gate(at::TensorList fast, const at::Tensor& alpha, const at::Tensor& step, int64_t k, const char* op) {
  LOOKAHEAD_CHECK_VALUE(k >= 1, message(op, ": k must be an int >= 1, got ", k));
  LOOKAHEAD_CHECK_VALUE(
      alpha.defined() && alpha.numel() == 1 &&
          (alpha.scalar_type() == at::kFloat || alpha.scalar_type() == at::kDouble),
      message(op, ": alpha must be a number or a one-element float32/float64 tensor, got ",
              alpha.defined() ? python_dtype(alpha.scalar_type()) + " of shape " + python_tuple(alpha.sizes())
                              : std::string("an undefined tensor")));
  LOOKAHEAD_CHECK_VALUE(
      step.defined() && step.numel() == 1 && step.scalar_type() == at::kLong,
      message(op, ": step must be a one-element int64 tensor, got ",
              step.defined() ? python_dtype(step.scalar_type()) + " of shape " + python_tuple(step.sizes())
                             : std::string("an undefined tensor")));
  if (fast.empty()) return;
  const at::Device& device = fast[0].device();
  LOOKAHEAD_CHECK_VALUE(alpha.device() == device && step.device() == device,
                        message(op, ": alpha is on ", alpha.device(), " and step on ", step.device(),
                                " but the tensors are on ", device, "; the kernel reads both where it runs"));
}

namespace {

// A state list beside checked (fast, slow) pairs, each tensor in slow's dtype, or bfloat16 where the
// pair has a bfloat16-momentum code: the outer momentum, and the pseudo-gradient's out in its role.
void check_state_beside_slow(at::TensorList fast, at::TensorList slow, at::TensorList state, const char* op,
                             const char* name, const char* rule) {
  check_sync_pairs(fast, slow, op);
  check_lengths(op, fast, state, name);
  const at::Device device = device_of_first(fast);
  for (size_t i = 0; i < state.size(); ++i) {
    prefetch_ahead(state, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    const at::Tensor& t = state[i];
    const bool kept = t.scalar_type() == slow[i].scalar_type() ||
                      (t.scalar_type() == at::kBFloat16 &&
                       bf16_momentum_code(fast[i].scalar_type(), slow[i].scalar_type()) >= 0);
    // see [NOTE: plainly valid pairs] in csrc/contract.cpp
    if (plainly_alike(t, slow[i], device) && kept) continue;
    check_tensor(t, Where{op, i, name});
    LOOKAHEAD_CHECK_VALUE(kept, message(op, ": pair ", i, ": ", name, " has dtype ", python_dtype(t.scalar_type()),
                                        " but slow has ", python_dtype(slow[i].scalar_type()), "; ", rule));
    check_pair_layout(op, i, t, slow[i], fast[0].device(), name, "slow");
  }
}

}  // namespace

void check_momentum_triples(at::TensorList fast, at::TensorList slow, at::TensorList momentum, const char* op) {
  check_state_beside_slow(fast, slow, momentum, op, "momentum",
                          "the outer momentum is kept in the slow weights' dtype, or in bfloat16 beside float32 slow "
                          "weights");
}

void check_sync_entries(TableOp op, const std::vector<at::TensorList>& lists) {
  switch (op) {
    case TableOp::kSync: return check_sync_pairs(lists[0], lists[1]);
    case TableOp::kMomentumSync: return check_momentum_triples(lists[0], lists[1], lists[2]);
    case TableOp::kCompactSync: return check_compact_triples(lists[0], lists[1], lists[2]);
    case TableOp::kCompactMomentumSync: return check_compact_momentum_quads(lists[0], lists[1], lists[2], lists[3]);
    case TableOp::kPseudoGradient: return check_pseudo_gradient_triples(lists[0], lists[1], lists[2]);
    default:
      LOOKAHEAD_CHECK(false, "lookahead_fused: check_sync_entries takes the sync ops only");
  }
}

void check_pseudo_gradient_triples(at::TensorList fast, at::TensorList slow, at::TensorList out) {
  check_state_beside_slow(fast, slow, out, kPseudoGradientOp, "out",
                          "the pseudo-gradient is written in the slow weights' dtype, or in bfloat16 beside float32 "
                          "slow weights");
}

void check_compact_triples(at::TensorList fast, at::TensorList high, at::TensorList low, const char* op,
                           const char* fast_name, const char* high_name) {
  check_lengths(op, fast, high, high_name, fast_name);
  check_lengths(op, fast, low, "slow_low", fast_name);
  const at::Device device = device_of_first(fast);
  for (size_t i = 0; i < fast.size(); ++i) {
    prefetch_ahead(fast, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    prefetch_ahead(high, i);
    prefetch_ahead(low, i);
    const at::Tensor& f = fast[i];
    const at::Tensor& h = high[i];
    const at::Tensor& q = low[i];
    // see [NOTE: plainly valid pairs] in csrc/contract.cpp
    if (plainly_alike(f, h, device) && plainly_alike(h, q, device) && compact_code(f.scalar_type()) >= 0 &&
        h.scalar_type() == kCompactHighType && q.scalar_type() == kCompactResidualType) {
      continue;
    }
    check_tensor(f, Where{op, i, fast_name});
    LOOKAHEAD_CHECK_VALUE(compact_code(f.scalar_type()) >= 0,
                          message(op, ": pair ", i, ": ", fast_name, " has dtype ", python_dtype(f.scalar_type()),
                                  "; bf16+int8 slow weights are for float32, float16 and bfloat16 ", "params"));
    check_tensor(h, Where{op, i, high_name}, "torch.bfloat16");
    check_tensor(q, Where{op, i, "slow_low"}, "torch.int8");
    check_pair_layout(op, i, f, h, fast[0].device(), fast_name, high_name);
    check_pair_layout(op, i, f, q, fast[0].device(), fast_name, "slow_low");
  }
}

void check_compact_momentum_quads(at::TensorList fast, at::TensorList high, at::TensorList low, at::TensorList momentum,
                                  const char* op, const char* fast_name) {
  check_compact_triples(fast, high, low, op, fast_name);
  check_lengths(op, fast, momentum, "momentum", fast_name);
  const at::Device device = device_of_first(fast);
  for (size_t i = 0; i < momentum.size(); ++i) {
    prefetch_ahead(momentum, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    const at::Tensor& m = momentum[i];
    const bool kept = m.defined() && (m.scalar_type() == at::kFloat || m.scalar_type() == at::kBFloat16);
    // see [NOTE: plainly valid pairs] in csrc/contract.cpp
    if (plainly_alike(m, fast[i], device) && kept) continue;
    check_tensor(m, Where{op, i, "momentum"});
    LOOKAHEAD_CHECK_VALUE(kept, message(op, ": pair ", i, ": momentum has dtype ", python_dtype(m.scalar_type()),
                                        "; the outer momentum beside bf16+int8 slow weights is float32 or bfloat16"));
    check_pair_layout(op, i, m, fast[i], fast[0].device(), "momentum", fast_name);
  }
}

const char* const* int8_momentum_list_names() { return kInt8MomentumListNames; }

void check_int8_momentum_quads(at::TensorList fast, at::TensorList slow, at::TensorList momentum, at::TensorList scales,
                               const char* op, const char* fast_name) {
  check_lengths(op, fast, slow, "slow", fast_name);
  check_lengths(op, fast, momentum, "momentum", fast_name);
  check_lengths(op, fast, scales, "scales", fast_name);
  const at::Device device = device_of_first(fast);
  for (size_t i = 0; i < fast.size(); ++i) {
    prefetch_ahead(fast, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    prefetch_ahead(slow, i);
    prefetch_ahead(momentum, i);
    prefetch_ahead(scales, i);
    const at::Tensor& f = fast[i];
    const at::Tensor& s = slow[i];
    const at::Tensor& m = momentum[i];
    const at::Tensor& sc = scales[i];
    const int64_t blocks = f.defined() ? (f.numel() + kInt8Block - 1) / kInt8Block : 0;
    const bool fast_type = f.defined() && (f.scalar_type() == at::kFloat || f.scalar_type() == at::kHalf ||
                                           f.scalar_type() == at::kBFloat16);
    // see [NOTE: plainly valid pairs] in csrc/contract.cpp
    if (plainly_alike(f, s, device) && plainly_alike(f, m, device) && plainly_valid(sc, device) && fast_type &&
        s.scalar_type() == at::kFloat && m.scalar_type() == at::kChar && sc.scalar_type() == at::kFloat &&
        sc.dim() == 1 && sc.numel() == blocks) {
      continue;
    }
    check_tensor(f, Where{op, i, fast_name});
    LOOKAHEAD_CHECK_VALUE(fast_type,
                          message(op, ": pair ", i, ": ", fast_name, " has dtype ", python_dtype(f.scalar_type()),
                                  "; an int8 outer momentum is for float32, float16 and bfloat16 params"));
    check_tensor(s, Where{op, i, "slow"}, "torch.float32");
    check_tensor(m, Where{op, i, "momentum"}, "torch.int8");
    check_tensor(sc, Where{op, i, "scales"}, "torch.float32");
    check_pair_layout(op, i, f, s, fast[0].device(), fast_name, "slow");
    check_pair_layout(op, i, f, m, fast[0].device(), fast_name, "momentum");
    check_block_scales(op, i, sc, f, fast_name, fast[0].device());
  }
}

void check_int8_momentum_lists(at::TensorList fast, at::TensorList slow, at::TensorList momentum,
                               at::TensorList scales) {
  check_int8_momentum_quads(fast, slow, momentum, scales);
  check_no_overlap(kInt8MomentumOp, {fast, slow, momentum, scales}, kInt8MomentumListNames);
}

const char* const* compact_int8_momentum_list_names() { return kCompactInt8MomentumListNames; }

void check_compact_int8_momentum_lists(at::TensorList fast, at::TensorList high, at::TensorList low,
                                       at::TensorList momentum, at::TensorList scales) {
  const char* op = kCompactOp;
  check_compact_triples(fast, high, low);
  check_lengths(op, fast, momentum, "momentum");
  check_lengths(op, fast, scales, "scales");
  check_int8_codes_beside(op, "fast", fast, momentum, scales, kCompactInt8MomentumListNames + 3);
  check_no_overlap(op, {fast, high, low, momentum, scales}, kCompactInt8MomentumListNames);
}

namespace {

// `syncs`: whether the call has slow weights to sync; without them every row's sync flag must be 0.
void check_adamw_hyper(at::TensorList params, const at::Tensor& hyper, const at::Tensor& rows, bool syncs,
                       const char* op = "lookahead_adamw_step_") {
  LOOKAHEAD_CHECK_VALUE(
      hyper.defined() && hyper.scalar_type() == at::kDouble && hyper.dim() == 2 && hyper.size(1) == kAdamWColumns &&
          hyper.is_contiguous(),
      message(op, ": hyper must be a contiguous float64 tensor of shape (rows, ", int64_t(kAdamWColumns), ")"));
  LOOKAHEAD_CHECK_VALUE(
      rows.defined() && rows.scalar_type() == at::kLong && rows.dim() == 1 &&
          rows.numel() == static_cast<int64_t>(params.size()) && rows.is_contiguous(),
      message(op, ": rows must be a contiguous int64 tensor of one row index per param (", params.size(), ")"));
  if (params.empty()) return;
  const at::Device& device = params[0].device();
  LOOKAHEAD_CHECK_VALUE(hyper.device() == device && rows.device() == device,
                        message(op, ": hyper is on ", hyper.device(), " and rows on ", rows.device(),
                                " but the params are on ", device, "; the kernel reads both where it runs"));
  if (!device.is_cpu()) return;  // reading them would synchronise with the device
  const int64_t* row_of = rows.const_data_ptr<int64_t>();
  for (size_t i = 0; i < params.size(); ++i) {
    LOOKAHEAD_CHECK_VALUE(
        row_of[i] >= 0 && row_of[i] < hyper.size(0),
        message(op, ": param ", i, " names row ", row_of[i], " of a hyper table of ", hyper.size(0), " rows"));
  }
  const double* h = hyper.const_data_ptr<double>();
  for (int64_t r = 0; r < hyper.size(0); ++r, h += kAdamWColumns) {
    const bool valid = std::isfinite(h[kLr]) && h[kLr] >= 0 && h[kBeta1] >= 0 && h[kBeta1] < 1 && h[kBeta2] >= 0 &&
                       h[kBeta2] < 1 && std::isfinite(h[kEps]) && h[kEps] >= 0 && std::isfinite(h[kWeightDecay]) &&
                       h[kWeightDecay] >= 0 && std::isfinite(h[kStep]) && h[kStep] >= 1 && h[kAlpha] >= 0 &&
                       h[kAlpha] <= 1 && (h[kSyncFlag] == 0 || h[kSyncFlag] == 1) &&
                       (h[kMaximize] == 0 || h[kMaximize] == 1);
    LOOKAHEAD_CHECK_VALUE(
        valid,
        message(op, ": hyper row ", r, " (lr, beta1, beta2, eps, weight_decay, step, alpha, sync, ", "maximize) = (",
                h[kLr], ", ", h[kBeta1], ", ", h[kBeta2], ", ", h[kEps], ", ", h[kWeightDecay], ", ", h[kStep], ", ",
                h[kAlpha], ", ", h[kSyncFlag], ", ", h[kMaximize], ") is out of range: lr, ",
                "eps, weight_decay >= 0; betas in [0, 1); step >= 1; alpha in [0, 1]; sync and maximize 0 or 1"));
    LOOKAHEAD_CHECK_VALUE(
        syncs || h[kSyncFlag] == 0,
        message(op, ": hyper row ", r, " has sync = 1 but the call has no slow ",
                "weights to sync; without slow weights the step runs AdamW alone, with sync 0 in every row"));
  }
}

// The moments and grads of AdamW's step beside its params: their dtype, shape, strides and device.
void check_adamw_moments(const char* op, const std::vector<at::TensorList>& lists, const char* const* names) {
  at::TensorList params = lists[0];
  const at::Device device = device_of_first(params);
  for (size_t i = 0; i < params.size(); ++i) {
    for (int l = 0; l < 4; ++l) prefetch_ahead(lists[l], i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    check_tensor(params[i], Where{op, i, "param"});
    for (int l = 1; l < 4; ++l) {
      const at::Tensor& t = lists[l][i];
      // see [NOTE: plainly valid pairs] in csrc/contract.cpp
      if (plainly_alike(t, params[i], device) && t.scalar_type() == params[i].scalar_type()) continue;
      check_tensor(t, Where{op, i, names[l]});
      LOOKAHEAD_CHECK_VALUE(t.scalar_type() == params[i].scalar_type(),
                            message(op, ": pair ", i, ": ", names[l], " has dtype ", python_dtype(t.scalar_type()),
                                    " but param has ", python_dtype(params[i].scalar_type())));
      check_pair_layout(op, i, t, params[i], params[0].device(), names[l], "param");
    }
  }
}

}  // namespace

void check_adamw_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper, const at::Tensor& rows) {
  const char* op = "lookahead_adamw_step_";
  const char* const* names = kAdamWListNames;
  at::TensorList params = lists[0];
  const bool syncs = !lists[4].empty() || params.empty();  // an empty slow list: AdamW's step alone
  LOOKAHEAD_CHECK_VALUE(syncs || lists[5].empty(),
                        message(op, ": momentum has ", lists[5].size(),
                                " tensors but slow has none; the outer momentum goes with slow weights"));
  for (size_t l = 1; l < lists.size(); ++l) {
    if ((l == 5 || (l == 4 && !syncs)) && lists[l].empty()) continue;
    check_lengths(op, params, lists[l], names[l], "param");
  }
  check_adamw_moments(op, lists, names);
  if (!syncs) {
    // AdamW's step alone: no state tensors to check
  } else if (lists[5].empty()) {
    check_sync_pairs(params, lists[4], op);
  } else {
    check_momentum_triples(params, lists[4], lists[5], op);
  }
  check_adamw_hyper(params, hyper, rows, syncs);
}

void check_adamw_compact_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                              const at::Tensor& rows) {
  const char* op = kAdamWCompactOp;
  const char* const* names = kAdamWCompactListNames;
  at::TensorList params = lists[0];
  // Every length first, so that a short list is named before any entry's error, as in contract.py;
  // the helpers below check the lengths they need again, as they also check the sync ops alone.
  for (size_t l = 1; l < lists.size(); ++l) {
    if (l != 6 || !lists[l].empty()) check_lengths(op, params, lists[l], names[l], "param");
  }
  check_adamw_moments(op, lists, names);
  if (lists[6].empty()) {
    check_compact_triples(params, lists[4], lists[5], op, "param");
  } else {
    check_compact_momentum_quads(params, lists[4], lists[5], lists[6], op, "param");
  }
  check_adamw_hyper(params, hyper, rows, /*syncs=*/true, op);
}

void check_adamw_int8_momentum_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                                    const at::Tensor& rows) {
  const char* op = kAdamWInt8MomentumOp;
  const char* const* names = kAdamWInt8MomentumListNames;
  at::TensorList params = lists[0], slow = lists[4], slow_low = lists[5], momentum = lists[6], scales = lists[7];
  for (size_t l = 1; l < lists.size(); ++l) {  // lengths first: see check_adamw_compact_args
    if (l != 5 || !slow_low.empty()) check_lengths(op, params, lists[l], names[l], "param");
  }
  check_adamw_moments(op, lists, names);
  if (slow_low.empty()) {
    check_int8_momentum_quads(params, slow, momentum, scales, op, "param");
  } else {
    check_compact_triples(params, slow, slow_low, op, "param", "slow");
    check_int8_codes_beside(op, "param", params, momentum, scales, names + 6);
  }
  check_adamw_hyper(params, hyper, rows, /*syncs=*/true, op);
  check_no_overlap(op, lists, names);
}

const char* const* adamw_int8_momentum_list_names() { return kAdamWInt8MomentumListNames; }

namespace {

// As many offsets and scales as params, and as many outer momenta (or none) and as many momentum scales
// (or none beside float momenta); `names` as kInt8DeltaSyncListNames. Checked before anything else of the entries, as contract.py does.
void check_int8_delta_lengths(const char* op, at::TensorList params, at::TensorList delta, at::TensorList scales,
                              at::TensorList momentum, at::TensorList momentum_scales, const char* const* names) {
  check_lengths(op, params, delta, names[1], names[0]);
  check_lengths(op, params, scales, names[2], names[0]);
  if (!momentum.empty()) check_lengths(op, params, momentum, names[3], names[0]);
  if (momentum.empty() || !momentum_scales.empty()) check_lengths(op, momentum, momentum_scales, names[4], names[3]);
}

// A float outer momentum beside int8-delta offsets (see [NOTE: int8-delta float momentum] in csrc/adamw.h):
// each float32 or bfloat16, of its param's shape and strides, on its device; `name` as the messages say it.
void check_float_momenta_beside(const char* op, at::TensorList params, at::TensorList momentum, const char* name) {
  const at::Device device = device_of_first(params);
  for (size_t i = 0; i < momentum.size(); ++i) {
    prefetch_ahead(momentum, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    const at::Tensor& m = momentum[i];
    const bool kept = m.defined() && (m.scalar_type() == at::kFloat || m.scalar_type() == at::kBFloat16);
    // see [NOTE: plainly valid pairs] in csrc/contract.cpp
    if (plainly_alike(m, params[i], device) && kept) continue;
    LOOKAHEAD_CHECK_VALUE(kept || !m.defined(),
                          message(op, ": pair ", i, ": ", name, " has dtype ", python_dtype(m.scalar_type()),
                                  "; the outer momentum beside int8-delta offsets is float32 or bfloat16, or int8 "
                                  "codes with their block scales"));
    check_tensor(m, Where{op, i, name});
    check_pair_layout(op, i, params[i], m, params[0].device(), "param", name);
  }
}

// Each param in float32, float16 or bfloat16, beside it its int8 offset codes and block scales
// (see [NOTE: int8-delta] in csrc/adamw.h), and its outer momentum: int8 codes and block scales when
// `momentum_scales` is not empty, float32 or bfloat16 momenta when only `momentum` is, none when both
// are empty; `names` as kInt8DeltaSyncListNames. The lengths and the params themselves
// checked by the caller.
void check_int8_delta_entries(const char* op, at::TensorList params, at::TensorList delta, at::TensorList scales,
                              at::TensorList momentum, at::TensorList momentum_scales, const char* const* names) {
  for (size_t i = 0; i < params.size(); ++i) {
    const at::ScalarType dtype = params[i].scalar_type();
    LOOKAHEAD_CHECK_VALUE(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
                          message(op, ": pair ", i, ": param has dtype ", python_dtype(dtype),
                                  "; int8-delta slow weights are for float32, float16 and bfloat16 params"));
  }
  check_int8_codes_beside(op, "param", params, delta, scales, names + 1);
  if (!momentum_scales.empty()) {
    check_int8_codes_beside(op, "param", params, momentum, momentum_scales, names + 3);
  } else if (!momentum.empty()) {
    check_float_momenta_beside(op, params, momentum, names[3]);
  }
}

}  // namespace

void check_adamw_delta_args(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                            const at::Tensor& rows) {
  const char* op = kAdamWDeltaOp;
  const char* const* names = kAdamWDeltaListNames;
  at::TensorList params = lists[0];
  for (size_t l = 1; l < 4; ++l) check_lengths(op, params, lists[l], names[l], "param");
  check_int8_delta_lengths(op, params, lists[4], lists[5], lists[6], lists[7], kInt8DeltaSyncListNames);
  check_adamw_moments(op, lists, names);
  check_int8_delta_entries(op, params, lists[4], lists[5], lists[6], lists[7], kInt8DeltaSyncListNames);
  check_adamw_hyper(params, hyper, rows, /*syncs=*/true, op);
  check_no_overlap(op, lists, names);
}

void check_int8_delta_lists(at::TensorList params, at::TensorList delta, at::TensorList scales, at::TensorList momentum,
                            at::TensorList momentum_scales) {
  const char* op = kInt8DeltaSyncOp;
  check_int8_delta_lengths(op, params, delta, scales, momentum, momentum_scales, kInt8DeltaSyncListNames);
  for (size_t i = 0; i < params.size(); ++i) {
    prefetch_ahead(params, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
    check_tensor(params[i], Where{op, i, "param"});
  }
  check_int8_delta_entries(op, params, delta, scales, momentum, momentum_scales, kInt8DeltaSyncListNames);
  check_no_overlap(op, {params, delta, scales, momentum, momentum_scales}, kInt8DeltaSyncListNames);
}

const char* const* adamw_delta_list_names() { return kAdamWDeltaListNames; }

DeltaMomentumDtype delta_momentum_dtype_of(at::TensorList momentum, at::TensorList momentum_scales, size_t i) {
  if (momentum.empty()) return DeltaMomentumDtype::kNone;
  if (!momentum_scales.empty()) return DeltaMomentumDtype::kInt8;
  return momentum[i].scalar_type() == at::kBFloat16 ? DeltaMomentumDtype::kBF16 : DeltaMomentumDtype::kF32;
}

namespace {

// What a sync op checks before it writes (check_sync_entries), and the lists' overlap unless a plan
// for them is cached; nothing when a cached plan vouches for them.
void check_lists_before_write(const char* op_name, TableOp op, const TensorLists& lists) {
  const EntryRoles roles = roles_of(op);
  // see [NOTE: a cached plan vouches] in csrc/plan.h
  if (find_vouching_plan(lists, roles, /*for_launch=*/false)) return;
  check_sync_entries(op, lists);
  // see [NOTE: overlap once per plan] in csrc/contract.h
  const bool meta = !lists[0].empty() && lists[0][0].is_meta();
  if (meta || !is_plan_cached(lists, roles)) check_no_overlap(op_name, lists, list_names(op));
}

}  // namespace

void check_sync_lists(at::TensorList fast, at::TensorList slow, at::TensorList momentum) {
  if (momentum.empty()) return check_lists_before_write("lookahead_sync_", TableOp::kSync, {fast, slow});
  check_lists_before_write("lookahead_sync_", TableOp::kMomentumSync, {fast, slow, momentum});
}

void check_compact_lists(at::TensorList fast, at::TensorList high, at::TensorList low, at::TensorList momentum,
                         at::TensorList scales) {
  if (!scales.empty()) return check_compact_int8_momentum_lists(fast, high, low, momentum, scales);
  if (momentum.empty()) return check_lists_before_write(kCompactOp, TableOp::kCompactSync, {fast, high, low});
  check_lists_before_write(kCompactOp, TableOp::kCompactMomentumSync, {fast, high, low, momentum});
}

}  // namespace lookahead_fused
