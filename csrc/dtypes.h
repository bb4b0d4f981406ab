// The dtype lists of table.h (see [NOTE: dtype list] in csrc/table.h) in torch's terms, for the planner, the checks and
// build_info(): everything about which dtypes exist is expanded from those two lists.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include "table.h"

namespace lookahead_fused {

#define LOOKAHEAD_SCALAR_TYPE(token, scalar_type, name, bytes) \
  constexpr at::ScalarType kScalar##token = at::ScalarType::scalar_type;
LOOKAHEAD_DTYPES(LOOKAHEAD_SCALAR_TYPE)
#undef LOOKAHEAD_SCALAR_TYPE

// The pair code of (fast dtype, state dtype), or -1 for a combination no kernel has.
inline int64_t pair_code(at::ScalarType fast, at::ScalarType state) {
#define LOOKAHEAD_PAIR_MATCH(code, fast_token, state_token) \
  if (fast == kScalar##fast_token && state == kScalar##state_token) return code;
  LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_PAIR_MATCH)
#undef LOOKAHEAD_PAIR_MATCH
  return -1;
}

// The code of a compact entry whose fast tensor has dtype `fast` (LOOKAHEAD_COMPACT_PAIRS), or -1.
inline int64_t compact_code(at::ScalarType fast) {
#define LOOKAHEAD_COMPACT_MATCH(code, fast_token) \
  if (fast == kScalar##fast_token) return code;
  LOOKAHEAD_COMPACT_PAIRS(LOOKAHEAD_COMPACT_MATCH)
#undef LOOKAHEAD_COMPACT_MATCH
  return -1;
}

// The code of a momentum-sync entry whose outer momentum is bfloat16 beside `state` slow weights
// (LOOKAHEAD_BF16_MOMENTUM_PAIRS), or -1.
inline int64_t bf16_momentum_code(at::ScalarType fast, at::ScalarType state) {
#define LOOKAHEAD_BF16_MOMENTUM_MATCH(code, fast_token, state_token) \
  if (fast == kScalar##fast_token && state == kScalar##state_token) return code;
  LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_BF16_MOMENTUM_MATCH)
#undef LOOKAHEAD_BF16_MOMENTUM_MATCH
  return -1;
}

// The code of a compact momentum-sync entry whose outer momentum is bfloat16
// (LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS), or -1.
inline int64_t compact_bf16_momentum_code(at::ScalarType fast) {
#define LOOKAHEAD_COMPACT_BF16_MOMENTUM_MATCH(code, fast_token) \
  if (fast == kScalar##fast_token) return code;
  LOOKAHEAD_COMPACT_BF16_MOMENTUM_PAIRS(LOOKAHEAD_COMPACT_BF16_MOMENTUM_MATCH)
#undef LOOKAHEAD_COMPACT_BF16_MOMENTUM_MATCH
  return -1;
}

// The dtypes of a compact entry's state tensors (see [NOTE: entry dtypes] in csrc/table.h).
constexpr at::ScalarType kCompactHighType = at::kBFloat16;
constexpr at::ScalarType kCompactResidualType = at::kChar;

// The code of an entry of an op with `roles` whose fast tensor has dtype `fast`, whose first state
// tensor has dtype `state` and whose outer momentum (if roles name one) has dtype `momentum`, or -1
// when no kernel has it (see [NOTE: entry dtypes] in csrc/table.h).
inline int64_t entry_code(EntryRoles roles, at::ScalarType fast, at::ScalarType state, at::ScalarType momentum) {
  if (roles.compact) {
    if (state != kCompactHighType) return -1;
    if (roles.momentum < 0 || momentum == at::kFloat) return compact_code(fast);
    return momentum == at::kBFloat16 ? compact_bf16_momentum_code(fast) : -1;
  }
  if (roles.momentum >= 0 && momentum != state) {
    return momentum == at::kBFloat16 ? bf16_momentum_code(fast, state) : -1;
  }
  return pair_code(fast, state);
}

// The state dtype of an entry of `lists`: its first state tensor's, or the fast dtype for an op
// whose entries hold fast tensors only (see [NOTE: entry dtypes] in csrc/table.h).
inline at::ScalarType state_dtype_of(EntryRoles roles, const std::vector<at::TensorList>& lists, size_t i) {
  return lists[roles.fast < roles.depth ? roles.fast : 0][i].scalar_type();
}

// The dtype of the tensor that plays the outer momentum in an entry of `lists` (the state's when the roles name none).
inline at::ScalarType momentum_dtype_of(EntryRoles roles, const std::vector<at::TensorList>& lists, size_t i) {
  return roles.momentum >= 0 ? lists[roles.momentum][i].scalar_type() : state_dtype_of(roles, lists, i);
}

// The dtype tensor t of such an entry must have.
inline at::ScalarType role_dtype(EntryRoles roles, int t, at::ScalarType fast, at::ScalarType state,
                                 at::ScalarType momentum) {
  if (t < roles.fast) return fast;
  if (t == roles.momentum) return momentum;
  if (roles.compact) return t == roles.fast ? kCompactHighType : kCompactResidualType;
  return state;
}

inline bool is_supported_dtype(at::ScalarType type) {
#define LOOKAHEAD_DTYPE_MATCH(token, scalar_type, name, bytes) \
  if (type == kScalar##token) return true;
  LOOKAHEAD_DTYPES(LOOKAHEAD_DTYPE_MATCH)
#undef LOOKAHEAD_DTYPE_MATCH
  return false;
}

// "float16, bfloat16, float32, float64": the supported dtypes as the messages name them.
inline std::string supported_dtype_names() {
  std::string names;
#define LOOKAHEAD_DTYPE_NAME(token, scalar_type, name, bytes) names += std::string(names.empty() ? "" : ", ") + name;
  LOOKAHEAD_DTYPES(LOOKAHEAD_DTYPE_NAME)
#undef LOOKAHEAD_DTYPE_NAME
  return names;
}

}  // namespace lookahead_fused
