#include "adamw_delta_cpu.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../adamw.h"
#include "../contract.h"
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
  void* momentum;          // the outer momentum (int8 codes or floats, as momentum_dtype says), or null
  float* momentum_scales;  // an int8 momentum's block scales, else null
  DeltaMomentumDtype momentum_dtype;
  const double* row;
  int64_t numel;
  int64_t first_block;
  BlockParamType type;
};

// The last pass over a block: its offsets' scale from their largest magnitude_bits, then their codes.
LOOKAHEAD_INLINE void store_offsets(float* __restrict__ delta, int64_t n, uint32_t largest, int8_t* __restrict__ codes,
                                    float* __restrict__ scale) {
  const Int8BlockScale block = int8_block_scale(largest);
  if (!block.kept) std::fill(delta, delta + n, 0.0f);  // every code 0 (int8_code takes finite values)
  for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(static_cast<int32_t>(int8_code(delta[i], block.inv)));
  *scale = block.scale;
}

// One block of at most kInt8Block elements: AdamW's step and the new offsets with their largest magnitude
// (pass 1, `element` on each element), then the block's scale and codes (pass 2). element(i, p, g, m, v,
// code, old_scale, delta) returns the new param as int8_delta_element does, m and v updated.
template <class Param, class Element>
LOOKAHEAD_INLINE void delta_passes(typename Param::storage* __restrict__ p,
                                   const typename Param::storage* __restrict__ g,
                                   typename Param::storage* __restrict__ m, typename Param::storage* __restrict__ v,
                                   int8_t* __restrict__ codes, float* __restrict__ scale, int64_t n,
                                   const Element& element) {
  float delta[kInt8Block];
  const float old_scale = *scale;
  uint32_t largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    float mi = Param::load(m[i]), vi = Param::load(v[i]);
    const float kept = element(i, Param::load(p[i]), Param::load(g[i]), mi, vi, codes[i], old_scale, delta[i]);
    p[i] = Param::store(kept);
    m[i] = Param::store(mi);
    v[i] = Param::store(vi);
    const uint32_t bits = magnitude_bits(delta[i]);
    largest = bits > largest ? bits : largest;
  }
  store_offsets(delta, n, largest, codes, scale);
}

// One block off a sync step, or on one without an outer momentum: the slow weight's move on a sync step.
template <class Param, class Small, class Syncs>
LOOKAHEAD_INLINE void delta_block(typename Param::storage* p, const typename Param::storage* g,
                                  typename Param::storage* m, typename Param::storage* v, int8_t* codes, float* scale,
                                  int64_t n, const AdamWConstants<float>& c, const TwoSidedLerp<float, Small>& lerp) {
  auto round = [](float x) { return Param::load(Param::store(x)); };
  delta_passes<Param>(p, g, m, v, codes, scale, n,
                      [&](int64_t, float pi, float gi, float& mi, float& vi, int8_t code, float old_scale,
                          float& delta) LOOKAHEAD_LAMBDA_INLINE {
                        return int8_delta_element(pi, gi, mi, vi, code, old_scale, c, lerp, Syncs{}, round, delta);
                      });
}

// One block on a sync step with an int8 outer momentum
// (see [NOTE: int8-delta outer momentum] in csrc/adamw.h): AdamW's step, the slow weights and the new
// momenta with their largest magnitude (pass 1), the momentum's scale, its codes, the sync and the new
// offsets (pass 2), the offsets' scale and codes (pass 3).
template <class Param, class Math>
LOOKAHEAD_INLINE void delta_momentum_block(typename Param::storage* __restrict__ p,
                                           const typename Param::storage* __restrict__ g,
                                           typename Param::storage* __restrict__ m,
                                           typename Param::storage* __restrict__ v, int8_t* __restrict__ codes,
                                           float* __restrict__ scale, int8_t* __restrict__ momentum_codes,
                                           float* __restrict__ momentum_scale, int64_t n,
                                           const AdamWConstants<float>& c, const Math& math) {
  auto round = [](float x) { return Param::load(Param::store(x)); };
  float kept[kInt8Block], slow[kInt8Block], momentum[kInt8Block];
  const float old_scale = *scale, old_momentum_scale = *momentum_scale;
  uint32_t largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    float mi = Param::load(m[i]), vi = Param::load(v[i]);
    momentum[i] = int8_delta_momentum_of(Param::load(p[i]), Param::load(g[i]), mi, vi, codes[i], old_scale,
                                         momentum_codes[i], old_momentum_scale, math.mu, c, round, kept[i], slow[i]);
    m[i] = Param::store(mi);
    v[i] = Param::store(vi);
    const uint32_t bits = magnitude_bits(momentum[i]);
    largest = bits > largest ? bits : largest;
  }
  const Int8BlockScale momentum_block = int8_block_scale(largest);
  float* delta = slow;  // each slow weight is read once, before its offset is written
  largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float param = int8_delta_momentum_sync(kept[i], slow[i], momentum[i], momentum_codes[i], old_momentum_scale,
                                                 momentum_block, math, round, delta[i]);
    p[i] = Param::store(param);
    const uint32_t bits = magnitude_bits(delta[i]);
    largest = bits > largest ? bits : largest;
  }
  *momentum_scale = momentum_block.scale;
  store_offsets(delta, n, largest, codes, scale);
}

// One block on a sync step with a float outer momentum of storage Momentum
// (see [NOTE: int8-delta float momentum] in csrc/adamw.h): the momentum sync in the first pass.
template <class Param, class Momentum, class Math>
LOOKAHEAD_INLINE void delta_float_momentum_block(typename Param::storage* p, const typename Param::storage* g,
                                                 typename Param::storage* m, typename Param::storage* v, int8_t* codes,
                                                 float* scale, typename Momentum::storage* __restrict__ momentum,
                                                 int64_t n, const AdamWConstants<float>& c, const Math& math) {
  auto round = [](float x) { return Param::load(Param::store(x)); };
  delta_passes<Param>(p, g, m, v, codes, scale, n,
                      [&](int64_t i, float pi, float gi, float& mi, float& vi, int8_t code, float old_scale,
                          float& delta) LOOKAHEAD_LAMBDA_INLINE {
                        float outer = Momentum::load(momentum[i]);
                        typename Momentum::storage stored;  // the new momentum, rounded once
                        const auto round_momentum = [&stored](float x) LOOKAHEAD_LAMBDA_INLINE {
                          stored = Momentum::store(x);
                          return Momentum::load(stored);
                        };
                        const float kept = int8_delta_float_momentum_element(pi, gi, mi, vi, code, old_scale, outer, c,
                                                                             math, round, round_momentum, delta);
                        momentum[i] = stored;
                        return kept;
                      });
}

// run(p, g, m, v, lo, b, n) for each block b of blocks [first, last) of one entry: its tensors as
// Param's storage, its first element lo and its n elements.
template <class Param, class Run>
LOOKAHEAD_INLINE void for_each_block(const DeltaEntry& entry, int64_t first, int64_t last, const Run& run) {
  using Storage = typename Param::storage;
  auto* p = static_cast<Storage*>(entry.param);
  auto* g = static_cast<const Storage*>(entry.grad);
  auto* m = static_cast<Storage*>(entry.exp_avg);
  auto* v = static_cast<Storage*>(entry.exp_avg_sq);
  for (int64_t b = first; b < last; ++b) {
    const int64_t lo = b * kInt8Block;
    run(p + lo, g + lo, m + lo, v + lo, lo, b, std::min<int64_t>(kInt8Block, entry.numel - lo));
  }
}

// Blocks [first, last) of one entry, the lerp's side and the sync flag fixed.
template <class Param, class Small, class Syncs>
LOOKAHEAD_INLINE void delta_blocks(const DeltaEntry& entry, int64_t first, int64_t last, const AdamWConstants<float>& c,
                                   const TwoSidedLerp<float, Small>& lerp) {
  const auto block = [&](auto* p, auto* g, auto* m, auto* v, int64_t lo, int64_t b, int64_t n) LOOKAHEAD_LAMBDA_INLINE {
    delta_block<Param, Small, Syncs>(p, g, m, v, entry.codes + lo, entry.scales + b, n, c, lerp);
  };
  for_each_block<Param>(entry, first, last, block);
}

// Blocks [first, last) of one entry on a sync step with an int8 outer momentum.
template <class Param, class Math>
LOOKAHEAD_INLINE void delta_momentum_blocks(const DeltaEntry& entry, int64_t first, int64_t last,
                                            const AdamWConstants<float>& c, const Math& math) {
  const auto block = [&](auto* p, auto* g, auto* m, auto* v, int64_t lo, int64_t b, int64_t n) LOOKAHEAD_LAMBDA_INLINE {
    delta_momentum_block<Param>(p, g, m, v, entry.codes + lo, entry.scales + b,
                                static_cast<int8_t*>(entry.momentum) + lo, entry.momentum_scales + b, n, c, math);
  };
  for_each_block<Param>(entry, first, last, block);
}

// Blocks [first, last) of one entry on a sync step with a float outer momentum of storage Momentum.
template <class Param, class Momentum, class Math>
LOOKAHEAD_INLINE void delta_float_momentum_blocks(const DeltaEntry& entry, int64_t first, int64_t last,
                                                  const AdamWConstants<float>& c, const Math& math) {
  auto* momentum = static_cast<typename Momentum::storage*>(entry.momentum);
  const auto block = [&](auto* p, auto* g, auto* m, auto* v, int64_t lo, int64_t b, int64_t n) LOOKAHEAD_LAMBDA_INLINE {
    delta_float_momentum_block<Param, Momentum>(p, g, m, v, entry.codes + lo, entry.scales + b, momentum + lo, n, c,
                                                math);
  };
  for_each_block<Param>(entry, first, last, block);
}

template <class Param>
LOOKAHEAD_INLINE void delta_blocks_of_type(const DeltaEntry& entry, int64_t first, int64_t last,
                                           const DeltaMomentumArgs& args) {
  const AdamWConstants<float> c(entry.row);
  const float alpha = static_cast<float>(c.alpha);  // the lerp weight and its side, in float32 as the oracle's
  auto with_side = [&](auto small) LOOKAHEAD_LAMBDA_INLINE {
    using Small = decltype(small);
    const TwoSidedLerp<float, Small> lerp = two_sided_lerp<float>(alpha, small);
    auto with_nesterov = [&](auto nesterov) LOOKAHEAD_LAMBDA_INLINE {
      using Nesterov = decltype(nesterov);
      switch (entry.momentum_dtype) {
        case DeltaMomentumDtype::kInt8:
          return delta_momentum_blocks<Param>(entry, first, last, c,
                                              Int8MomentumSyncMath<Small, Nesterov>{lerp, args.mu, {}});
        case DeltaMomentumDtype::kF32:
          return delta_float_momentum_blocks<Param, F32>(entry, first, last, c,
                                                         DeltaFloatMomentumMath<Small, Nesterov>{lerp, args.mu, {}});
        case DeltaMomentumDtype::kBF16:
          return delta_float_momentum_blocks<Param, BF16>(entry, first, last, c,
                                                          DeltaFloatMomentumMath<Small, Nesterov>{lerp, args.mu, {}});
        case DeltaMomentumDtype::kNone: return delta_blocks<Param, Small, Fixed<true>>(entry, first, last, c, lerp);
      }
    };
    if (c.syncs && args.nesterov) return with_nesterov(Fixed<true>{});
    if (c.syncs) return with_nesterov(Fixed<false>{});
    delta_blocks<Param, Small, Fixed<false>>(entry, first, last, c, lerp);
  };
  if (lerp_from_slow(alpha)) return with_side(Fixed<true>{});
  with_side(Fixed<false>{});
}

LOOKAHEAD_INLINE void run_delta_blocks(const DeltaEntry& entry, int64_t first, int64_t last,
                                       const DeltaMomentumArgs& args) {
  switch (entry.type) {
    case BlockParamType::kF32: return delta_blocks_of_type<F32>(entry, first, last, args);
    case BlockParamType::kF16: return delta_blocks_of_type<F16>(entry, first, last, args);
    case BlockParamType::kBF16: return delta_blocks_of_type<BF16>(entry, first, last, args);
  }
}

void run_delta_blocks_baseline(const DeltaEntry& entry, int64_t first, int64_t last, const DeltaMomentumArgs& args) {
  run_delta_blocks(entry, first, last, args);
}

__attribute__((target("avx2,f16c"))) void run_delta_blocks_avx2(const DeltaEntry& entry, int64_t first, int64_t last,
                                                                const DeltaMomentumArgs& args) {
  run_delta_blocks(entry, first, last, args);
}

using DeltaBlockRunner = void (*)(const DeltaEntry&, int64_t, int64_t, const DeltaMomentumArgs&);

DeltaBlockRunner delta_block_runner() {  // the ISA sync_cpu.cpp's loops run (it needs FMA too, a superset)
  static const DeltaBlockRunner runner =
      std::strcmp(cpu_kernel_isa(), "avx2") == 0 ? &run_delta_blocks_avx2 : &run_delta_blocks_baseline;
  return runner;
}

}  // namespace

void run_adamw_delta_cpu(const std::vector<at::TensorList>& lists, const at::Tensor& hyper, const at::Tensor& rows,
                         float mu, bool nesterov) {
  at::TensorList params = lists[0], momentum = lists[6], momentum_scales = lists[7];
  const double* table = hyper.const_data_ptr<double>();
  const int64_t* row_of = rows.const_data_ptr<int64_t>();
  std::vector<DeltaEntry> entries;
  entries.reserve(params.size());
  int64_t blocks = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t numel = params[i].numel();
    if (numel == 0) continue;
    entries.push_back({params[i].mutable_data_ptr(), lists[1][i].const_data_ptr(), lists[2][i].mutable_data_ptr(),
                       lists[3][i].mutable_data_ptr(), lists[4][i].mutable_data_ptr<int8_t>(),
                       lists[5][i].mutable_data_ptr<float>(),
                       momentum.empty() ? nullptr : momentum[i].mutable_data_ptr(),
                       momentum_scales.empty() ? nullptr : momentum_scales[i].mutable_data_ptr<float>(),
                       delta_momentum_dtype_of(momentum, momentum_scales, i), table + row_of[i] * kAdamWColumns, numel,
                       blocks, block_param_type_of(params[i])});
    blocks += int8_blocks_of(numel);
  }
  const DeltaMomentumArgs args{mu, nesterov};
  const DeltaBlockRunner runner = delta_block_runner();
  run_block_tasks(entries, blocks,
                  [&](const DeltaEntry& entry, int64_t first, int64_t last) { runner(entry, first, last, args); });
}

}  // namespace lookahead_fused
