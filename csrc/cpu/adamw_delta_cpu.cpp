#include "adamw_delta_cpu.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../adamw.h"
#include "block_tasks.h"
#include "element_types.h"
#include "sync_cpu.h"

// Compiled as int8_momentum_cpu.cpp's loops are: a baseline and a target("avx2,f16c") copy, without
// "fma", so that nothing the oracle rounds twice is contracted (see [NOTE: int8-delta] in csrc/adamw.h).
namespace lookahead_fused {
namespace {

// One entry's tensors (dense, one layout: walked in memory order from their data pointers), its
// hyper row, and where its blocks start in the call's numbering of all blocks.
struct DeltaEntry {
  void* param;
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  int8_t* codes;
  float* scales;
  const double* row;
  int64_t numel;
  int64_t first_block;
  BlockParamType type;
};

// One block of at most kInt8Block elements: AdamW's step, the slow weight's move on a sync step and
// the new offsets with their largest magnitude (pass 1), then the block's scale and codes (pass 2).
template <class Param, class Small, class Syncs>
LOOKAHEAD_INLINE void delta_block(typename Param::storage* __restrict__ p, const typename Param::storage* __restrict__ g,
                                  typename Param::storage* __restrict__ m, typename Param::storage* __restrict__ v,
                                  int8_t* __restrict__ codes, float* __restrict__ scale, int64_t n,
                                  const AdamWConstants<float>& c, const TwoSidedLerp<float, Small>& lerp) {
  auto round = [](float x) { return Param::load(Param::store(x)); };
  float delta[kInt8Block];
  const float old_scale = *scale;
  uint32_t largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    float mi = Param::load(m[i]), vi = Param::load(v[i]);
    const float kept = int8_delta_element(Param::load(p[i]), Param::load(g[i]), mi, vi, codes[i], old_scale, c, lerp,
                                          Syncs{}, round, delta[i]);
    p[i] = Param::store(kept);
    m[i] = Param::store(mi);
    v[i] = Param::store(vi);
    const uint32_t bits = magnitude_bits(delta[i]);
    largest = bits > largest ? bits : largest;
  }
  const Int8BlockScale block = int8_block_scale(largest);
  if (!block.kept) std::fill(delta, delta + n, 0.0f);  // every code 0 (int8_code takes finite values)
  for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(static_cast<int32_t>(int8_code(delta[i], block.inv)));
  *scale = block.scale;
}

// Blocks [first, last) of one entry, the lerp's side and the sync flag fixed.
template <class Param, class Small, class Syncs>
LOOKAHEAD_INLINE void delta_blocks(const DeltaEntry& entry, int64_t first, int64_t last, const AdamWConstants<float>& c,
                                   const TwoSidedLerp<float, Small>& lerp) {
  using Storage = typename Param::storage;
  auto* p = static_cast<Storage*>(entry.param);
  auto* g = static_cast<const Storage*>(entry.grad);
  auto* m = static_cast<Storage*>(entry.exp_avg);
  auto* v = static_cast<Storage*>(entry.exp_avg_sq);
  for (int64_t b = first; b < last; ++b) {
    const int64_t lo = b * kInt8Block;
    const int64_t n = std::min<int64_t>(kInt8Block, entry.numel - lo);
    delta_block<Param, Small, Syncs>(p + lo, g + lo, m + lo, v + lo, entry.codes + lo, entry.scales + b, n, c, lerp);
  }
}

template <class Param>
LOOKAHEAD_INLINE void delta_blocks_of_type(const DeltaEntry& entry, int64_t first, int64_t last) {
  const AdamWConstants<float> c(entry.row);
  const float alpha = static_cast<float>(c.alpha);  // the lerp weight and its side, in float32 as the oracle's
  auto with_side = [&](auto small) LOOKAHEAD_LAMBDA_INLINE {
    using Small = decltype(small);
    const TwoSidedLerp<float, Small> lerp = two_sided_lerp<float>(alpha, small);
    if (c.syncs) return delta_blocks<Param, Small, Fixed<true>>(entry, first, last, c, lerp);
    delta_blocks<Param, Small, Fixed<false>>(entry, first, last, c, lerp);
  };
  if (lerp_from_slow(alpha)) return with_side(Fixed<true>{});
  with_side(Fixed<false>{});
}

LOOKAHEAD_INLINE void run_delta_blocks(const DeltaEntry& entry, int64_t first, int64_t last) {
  switch (entry.type) {
    case BlockParamType::kF32: return delta_blocks_of_type<F32>(entry, first, last);
    case BlockParamType::kF16: return delta_blocks_of_type<F16>(entry, first, last);
    case BlockParamType::kBF16: return delta_blocks_of_type<BF16>(entry, first, last);
  }
}

void run_delta_blocks_baseline(const DeltaEntry& entry, int64_t first, int64_t last) {
  run_delta_blocks(entry, first, last);
}

__attribute__((target("avx2,f16c"))) void run_delta_blocks_avx2(const DeltaEntry& entry, int64_t first, int64_t last) {
  run_delta_blocks(entry, first, last);
}

using DeltaBlockRunner = void (*)(const DeltaEntry&, int64_t, int64_t);

DeltaBlockRunner delta_block_runner() {  // the ISA sync_cpu.cpp's loops run (it needs FMA too, a superset)
  static const DeltaBlockRunner runner =
      std::strcmp(cpu_kernel_isa(), "avx2") == 0 ? &run_delta_blocks_avx2 : &run_delta_blocks_baseline;
  return runner;
}

}  // namespace

void run_adamw_delta_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                         at::TensorList exp_avg_sqs, at::TensorList delta, at::TensorList scales,
                         const at::Tensor& hyper, const at::Tensor& rows) {
  const double* table = hyper.const_data_ptr<double>();
  const int64_t* row_of = rows.const_data_ptr<int64_t>();
  std::vector<DeltaEntry> entries;
  entries.reserve(params.size());
  int64_t blocks = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t numel = params[i].numel();
    if (numel == 0) continue;
    entries.push_back({params[i].mutable_data_ptr(), grads[i].const_data_ptr(), exp_avgs[i].mutable_data_ptr(),
                       exp_avg_sqs[i].mutable_data_ptr(), delta[i].mutable_data_ptr<int8_t>(),
                       scales[i].mutable_data_ptr<float>(), table + row_of[i] * kAdamWColumns, numel, blocks,
                       block_param_type_of(params[i])});
    blocks += int8_blocks_of(numel);
  }
  run_block_tasks(entries, blocks, delta_block_runner());
}

}  // namespace lookahead_fused
