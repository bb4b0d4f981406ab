#include "int8_momentum_cpu.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../adamw.h"
#include "../element_math.h"
#include "block_tasks.h"
#include "element_types.h"
#include "sync_cpu.h"

// The loops are compiled twice as sync_cpu.cpp's are (see [NOTE: CPU vectorisation] in csrc/cpu/sync_cpu.cpp),
// but the AVX2 variant is target("avx2,f16c"), without "fma": with FMA at hand GCC contracts a product
// and a sum into one fused operation, and the oracle rounds each (see [NOTE: int8 momentum sync] in csrc/element_math.h).
namespace lookahead_fused {
namespace {

// One entry's tensors, in memory order from their data pointers (they are dense, and fast, slow and
// momentum share one layout), and where its blocks start in the call's numbering of all blocks. The
// slow weights are float32 (`slow`, and `slow_low` null) or bf16+int8 (`slow` the bfloat16 high
// parts, `slow_low` the residuals), alike for every entry of a call.
struct Int8Entry {
  void* fast;
  void* slow;
  int8_t* slow_low;
  int8_t* codes;
  float* scales;
  int64_t numel;
  int64_t first_block;
  BlockParamType fast_type;
};

struct Int8Args {
  float alpha;
  float mu;
  bool nesterov;
};

// How the loops read and write a slow weight: `high` its storage, `low` the residuals (unused for
// float32). store() returns the value stored, which fast takes.
struct Float32Slow {
  using storage = float;
  static constexpr bool kKeepsLoaded = false;  // reading it again is a load
  static LOOKAHEAD_INLINE float load(const float* high, const int8_t*, int64_t i) { return high[i]; }
  static LOOKAHEAD_INLINE float store(float* high, int8_t*, int64_t i, float value) {
    high[i] = value;
    return value;
  }
};
struct CompactSlow {  // see [NOTE: compact int8 momentum sync] in csrc/element_math.h
  using storage = uint16_t;
  static constexpr bool kKeepsLoaded = true;  // pass 2 reuses pass 1's decodings
  static LOOKAHEAD_INLINE float load(const uint16_t* high, const int8_t* low, int64_t i) {
    return decode_bf16_int8(high[i], low[i]);
  }
  static LOOKAHEAD_INLINE float store(uint16_t* high, int8_t* low, int64_t i, float value) {
    return store_compact_slow(value, high[i], low[i]);
  }
};

// One block of at most kInt8Block elements: the new momenta and their largest magnitude (pass 1),
// the block's scale, then the codes, the lerp and the stores (pass 2). Neither loop branches.
template <class Fast, class Slow, class Update>
LOOKAHEAD_INLINE void int8_block(typename Fast::storage* __restrict__ fast, typename Slow::storage* __restrict__ slow,
                                 int8_t* __restrict__ slow_low, int8_t* __restrict__ codes, float* __restrict__ scale,
                                 int64_t n, const Update& update) {
  float momentum[kInt8Block];
  float loaded[Slow::kKeepsLoaded ? kInt8Block : 1];  // the slow weights of pass 1, where loading is not free
  const float old_scale = *scale;
  uint32_t largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float s = Slow::load(slow, slow_low, i);
    if constexpr (Slow::kKeepsLoaded) loaded[i] = s;
    momentum[i] = int8_momentum_of(Fast::load(fast[i]), s, codes[i], old_scale, update.mu);
    const uint32_t bits = magnitude_bits(momentum[i]);
    largest = bits > largest ? bits : largest;
  }
  const Int8BlockScale block = int8_block_scale(largest);
  if (!block.kept) std::fill(momentum, momentum + n, 0.0f);  // every code 0 (int8_code takes finite values)
  for (int64_t i = 0; i < n; ++i) {
    float s;
    if constexpr (Slow::kKeepsLoaded) {
      s = loaded[i];
    } else {
      s = Slow::load(slow, slow_low, i);
    }
    const float new_slow = update(Fast::load(fast[i]), s, momentum[i], codes[i], old_scale, block);
    fast[i] = Fast::store(Slow::store(slow, slow_low, i, new_slow));
  }
  *scale = block.scale;
}

// Blocks [first, last) of one entry.
template <class Fast, class Slow, class Update>
LOOKAHEAD_INLINE void int8_blocks(const Int8Entry& entry, int64_t first, int64_t last, const Update& update) {
  auto* fast = static_cast<typename Fast::storage*>(entry.fast);
  auto* slow = static_cast<typename Slow::storage*>(entry.slow);
  for (int64_t b = first; b < last; ++b) {
    const int64_t lo = b * kInt8Block;
    const int64_t n = std::min<int64_t>(kInt8Block, entry.numel - lo);
    int8_block<Fast, Slow>(fast + lo, slow + lo, entry.slow_low == nullptr ? nullptr : entry.slow_low + lo,
                           entry.codes + lo, entry.scales + b, n, update);
  }
}

// The lerp's side and Nesterov as Fixed flags, so that each variant is a loop of its own.
template <class Fast, class Slow>
LOOKAHEAD_INLINE void int8_blocks_of_type(const Int8Entry& entry, int64_t first, int64_t last, const Int8Args& args) {
  auto with_side = [&](auto small) LOOKAHEAD_LAMBDA_INLINE {
    using Small = decltype(small);
    const TwoSidedLerp<float, Small> lerp = two_sided_lerp<float>(args.alpha, small);
    if (args.nesterov) {
      return int8_blocks<Fast, Slow>(entry, first, last, Int8MomentumSyncMath<Small, Fixed<true>>{lerp, args.mu, {}});
    }
    return int8_blocks<Fast, Slow>(entry, first, last, Int8MomentumSyncMath<Small, Fixed<false>>{lerp, args.mu, {}});
  };
  // the side of float32 alpha, the lerp weight the oracle uses
  if (lerp_from_slow(args.alpha)) return with_side(Fixed<true>{});
  with_side(Fixed<false>{});
}

template <class Slow>
LOOKAHEAD_INLINE void run_int8_blocks_of(const Int8Entry& entry, int64_t first, int64_t last, const Int8Args& args) {
  switch (entry.fast_type) {
    case BlockParamType::kF32: return int8_blocks_of_type<F32, Slow>(entry, first, last, args);
    case BlockParamType::kF16: return int8_blocks_of_type<F16, Slow>(entry, first, last, args);
    case BlockParamType::kBF16: return int8_blocks_of_type<BF16, Slow>(entry, first, last, args);
  }
}

LOOKAHEAD_INLINE void run_int8_blocks(const Int8Entry& entry, int64_t first, int64_t last, const Int8Args& args) {
  if (entry.slow_low != nullptr) return run_int8_blocks_of<CompactSlow>(entry, first, last, args);
  run_int8_blocks_of<Float32Slow>(entry, first, last, args);
}

void run_int8_blocks_baseline(const Int8Entry& entry, int64_t first, int64_t last, const Int8Args& args) {
  run_int8_blocks(entry, first, last, args);
}

__attribute__((target("avx2,f16c"))) void run_int8_blocks_avx2(const Int8Entry& entry, int64_t first, int64_t last,
                                                                 const Int8Args& args) {
  run_int8_blocks(entry, first, last, args);
}

using Int8BlockRunner = void (*)(const Int8Entry&, int64_t, int64_t, const Int8Args&);

Int8BlockRunner int8_block_runner() {  // the ISA sync_cpu.cpp's loops run (it needs FMA too, a superset)
  static const Int8BlockRunner runner =
      std::strcmp(cpu_kernel_isa(), "avx2") == 0 ? &run_int8_blocks_avx2 : &run_int8_blocks_baseline;
  return runner;
}

// An entry of AdamW's step with an int8 outer momentum: the sync's entry (`fast` the param) and AdamW's
// tensors, dtype and hyper row.
struct AdamWInt8Entry : Int8Entry {
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  at::ScalarType dtype;
  const double* row;
};

// [NOTE: AdamW int8 momentum tiles] AdamW's step runs its own loop (sync_cpu.cpp's, which may contract
// into FMAs as adamw_step_ does), then the int8 momentum sync its blocks, over tiles of this many blocks
// that stay in L1: the same elements, the same bits as the two ops one after the other
// (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h).
constexpr int64_t kAdamWInt8TileBlocks = 4;

// Blocks [first, last) of one entry.
void adamw_int8_blocks(const AdamWInt8Entry& entry, int64_t first, int64_t last, float mu, bool nesterov) {
  const int64_t element_bytes = entry.dtype == at::kFloat ? 4 : 2;
  const bool syncs = entry.row[kSyncFlag] != 0.0;
  const Int8Args args{static_cast<float>(entry.row[kAlpha]), mu, nesterov};
  const Int8BlockRunner sync = int8_block_runner();
  for (int64_t b = first; b < last; b += kAdamWInt8TileBlocks) {
    const int64_t stop = std::min(last, b + kAdamWInt8TileBlocks);
    const int64_t lo = b * kInt8Block, offset = lo * element_bytes;
    run_adamw_alone_cpu(static_cast<char*>(entry.fast) + offset, static_cast<const char*>(entry.grad) + offset,
                        static_cast<char*>(entry.exp_avg) + offset, static_cast<char*>(entry.exp_avg_sq) + offset,
                        std::min(stop * kInt8Block, entry.numel) - lo, entry.dtype, entry.row);
    if (syncs) sync(entry, b, stop, args);
  }
}

}  // namespace

void run_adamw_int8_momentum_cpu(const std::vector<at::TensorList>& lists, const at::Tensor& hyper,
                                 const at::Tensor& rows, float mu, bool nesterov) {
  at::TensorList params = lists[0], slow = lists[4], slow_low = lists[5], momentum = lists[6], scales = lists[7];
  const double* table = hyper.const_data_ptr<double>();
  const int64_t* row_of = rows.const_data_ptr<int64_t>();
  std::vector<AdamWInt8Entry> entries;
  entries.reserve(params.size());
  int64_t blocks = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t numel = params[i].numel();
    if (numel == 0) continue;
    const Int8Entry sync{params[i].mutable_data_ptr(),
                         slow[i].mutable_data_ptr(),
                         slow_low.empty() ? nullptr : slow_low[i].mutable_data_ptr<int8_t>(),
                         momentum[i].mutable_data_ptr<int8_t>(),
                         scales[i].mutable_data_ptr<float>(),
                         numel,
                         blocks,
                         block_param_type_of(params[i])};
    entries.push_back({sync, lists[1][i].const_data_ptr(), lists[2][i].mutable_data_ptr(),
                       lists[3][i].mutable_data_ptr(), params[i].scalar_type(), table + row_of[i] * kAdamWColumns});
    blocks += int8_blocks_of(numel);
  }
  run_block_tasks(entries, blocks, [&](const AdamWInt8Entry& entry, int64_t first, int64_t last) {
    adamw_int8_blocks(entry, first, last, mu, nesterov);
  });
}

void run_int8_momentum_cpu(at::TensorList fast, at::TensorList slow, at::TensorList slow_low, at::TensorList momentum,
                           at::TensorList scales, double alpha, double mu, bool nesterov) {
  std::vector<Int8Entry> entries;
  entries.reserve(fast.size());
  int64_t blocks = 0;
  for (size_t i = 0; i < fast.size(); ++i) {
    const int64_t numel = fast[i].numel();
    if (numel == 0) continue;
    entries.push_back({fast[i].mutable_data_ptr(), slow[i].mutable_data_ptr(),
                       slow_low.empty() ? nullptr : slow_low[i].mutable_data_ptr<int8_t>(),
                       momentum[i].mutable_data_ptr<int8_t>(), scales[i].mutable_data_ptr<float>(), numel, blocks,
                       block_param_type_of(fast[i])});
    blocks += int8_blocks_of(numel);
  }
  const Int8Args args{static_cast<float>(alpha), static_cast<float>(mu), nesterov};
  const Int8BlockRunner runner = int8_block_runner();
  run_block_tasks(entries, blocks, [&](const Int8Entry& entry, int64_t first, int64_t last) {
    runner(entry, first, last, args);
  });
}

}  // namespace lookahead_fused
