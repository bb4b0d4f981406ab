// The CUDA body of AdamW's step with int8-delta slow weights (csrc/cuda/adamw_delta_kernel.cuh) run on
// the host, no GPU needed: every thread block, warp and lane of a launch in turn, the lanes of a warp
// meeting in the block's largest offset through the host warp policy, every access through a memory
// policy that records it (tests/cpp/host_int8_lanes.h). Over the param dtypes float32, float16 and
// bfloat16, sizes around a block and a lane, element offsets that break each tensor's vector alignment,
// rows with and without the sync (alpha on both sides of the two-sided lerp, and 1), maximize, without
// an outer momentum and with one in int8 blocks (see [NOTE: int8-delta outer momentum] in csrc/adamw.h),
// float32 or bfloat16 (see [NOTE: int8-delta float momentum] in csrc/adamw.h), Nesterov or not, blocks
// with a NaN grad, zeros and offsets below 2^-96, and a call of more entries than one launch table
// holds, of every momentum dtype, with two rows, it checks:
//   - each element of the param, the moments and the codes, and each scale, is written exactly once,
//     the grads never, and the momentum (its codes and scales) once on a sync row and neither read nor
//     written off one (it is tracked only on a sync row, so any access off one is outside every tensor);
//   - every vector access is aligned (16 bytes, 8 for the codes) and every access is inside its tensor;
//   - the results equal, bit for bit, the CPU kernel's two passes per block (three on a sync row with
//     an int8 momentum; csrc/cpu/adamw_delta_cpu.cpp) written with the same element math (adamw.h).
#pragma nv_diag_suppress 20011
#pragma nv_diag_suppress 20014
#pragma nv_diag_suppress 20013
#pragma nv_diag_suppress 20015

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cuda/adamw_delta_kernel.cuh"
#include "host_int8_lanes.h"

using namespace lookahead_fused;
using namespace host_tracking;
using namespace host_int8_lanes;

namespace {

// Every thread block and warp of the launches of a call, as launch_adamw_delta_cuda makes them.
void run_on_host(const std::vector<DeltaCudaEntry>& entries, const double* hyper, const int64_t* rows, int64_t grid,
                 const DeltaMomentumArgs& args) {
  for (size_t first = 0; first < entries.size(); first += kDeltaLaunchEntries) {
    const int count = static_cast<int>(std::min<size_t>(kDeltaLaunchEntries, entries.size() - first));
    const DeltaLaunchTable table = delta_launch_table(entries, first, count);
    const int64_t warps = grid * kInt8WarpsPerBlock;
    for (int64_t warp = 0; warp < warps; ++warp) delta_warp<HostMemory>(table, hyper, rows, args, warp, warps, HostWarp{});
  }
}

struct Row {
  bool sync;
  double alpha;
  bool maximize;
};

// The outer momentum of a case: its dtype (none, int8, float32 or bfloat16), Nesterov or not.
struct Outer {
  DeltaMomentumDtype dtype;
  bool nesterov;
};
constexpr float kMu = 0.9f;

// A row of the hyper table (see [NOTE: AdamW hyper table] in csrc/adamw.h).
std::vector<double> hyper_row(const Row& row) {
  std::vector<double> values(kAdamWColumns);
  values[kLr] = 1e-2, values[kBeta1] = 0.9, values[kBeta2] = 0.999, values[kEps] = 1e-8;
  values[kWeightDecay] = 0.1, values[kStep] = 3.0, values[kAlpha] = row.alpha;
  values[kSyncFlag] = row.sync ? 1.0 : 0.0, values[kMaximize] = row.maximize ? 1.0 : 0.0;
  return values;
}

struct Offsets {
  int64_t param, grad, exp_avg, exp_avg_sq, codes, momentum;  // elements
};

// An entry's momenta, one buffer per dtype (the entry uses the one of its Outer's dtype, if any).
struct Momenta {
  std::vector<int8_t> codes;
  std::vector<float> scales, f32;
  std::vector<__nv_bfloat16> bf16;
};

// One entry's tensors, their values before the call, and the oracle's after.
template <typename F>
struct Case {
  Buffer<F> param, grad, exp_avg, exp_avg_sq;
  Buffer<int8_t> codes, momentum;
  Buffer<float> scales, momentum_scales, momentum_f32;
  Buffer<__nv_bfloat16> momentum_bf16;
  std::vector<F> param0, grad0, exp_avg0, exp_avg_sq0;
  std::vector<int8_t> codes0;
  std::vector<float> scales0;
  Momenta momenta0;
  Outer outer;

  Case(int64_t n, Offsets o, std::mt19937& rng, Outer outer_ = {DeltaMomentumDtype::kNone, false})
      : param(n, o.param), grad(n, o.grad), exp_avg(n, o.exp_avg), exp_avg_sq(n, o.exp_avg_sq), codes(n, o.codes),
        momentum(n, o.momentum), scales((n + kInt8Block - 1) / kInt8Block, 0),
        momentum_scales((n + kInt8Block - 1) / kInt8Block, 0), momentum_f32(n, o.momentum),
        momentum_bf16(n, o.momentum), outer(outer_) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> code(-127, 127);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t block = i / kInt8Block;
      float p = normal(rng), g = 0.1f * normal(rng), m = 0.1f * normal(rng);
      const float root = std::fabs(normal(rng)) + 0.1f;  // no float16 underflow of v
      int8_t q = static_cast<int8_t>(code(rng));
      if (block == 1 && i % 97 == 3) g = NAN;  // its param NaN: the block's offset is lost
      if (block == 2) g = m = 0.0f, q = 0;      // the param moves by its weight decay only
      if (block == 3) p = g = m = 0.0f, q = 0;  // offsets of zero, or below 2^-96 with a tiny scale
      param.data[i] = narrow<F>(p);
      grad.data[i] = narrow<F>(g);
      exp_avg.data[i] = narrow<F>(m);
      exp_avg_sq.data[i] = narrow<F>(root * root);
      codes.data[i] = q;
      momentum.data[i] = block == 3 ? 0 : static_cast<int8_t>(code(rng));
      // block 3: momenta that make offsets below 2^-96
      const float value = (block == 3 ? 1e-30f : 0.01f) * normal(rng);
      momentum_f32.data[i] = value;
      momentum_bf16.data[i] = narrow<__nv_bfloat16>(value);
    }
    for (int64_t b = 0; b < scales.n; ++b) {
      scales.data[b] = b == 3 ? 1e-31f : 0.001f * std::fabs(normal(rng)) + 1e-4f;
      momentum_scales.data[b] = b == 3 ? 1e-31f : 0.01f * std::fabs(normal(rng)) + 1e-4f;
    }
    param0.assign(param.data, param.data + n);
    grad0.assign(grad.data, grad.data + n);
    exp_avg0.assign(exp_avg.data, exp_avg.data + n);
    exp_avg_sq0.assign(exp_avg_sq.data, exp_avg_sq.data + n);
    codes0.assign(codes.data, codes.data + n);
    scales0.assign(scales.data, scales.data + scales.n);
    momenta0.codes.assign(momentum.data, momentum.data + n);
    momenta0.scales.assign(momentum_scales.data, momentum_scales.data + momentum_scales.n);
    momenta0.f32.assign(momentum_f32.data, momentum_f32.data + n);
    momenta0.bf16.assign(momentum_bf16.data, momentum_bf16.data + n);
  }

  void* momentum_data() {
    switch (outer.dtype) {
      case DeltaMomentumDtype::kInt8: return momentum.data;
      case DeltaMomentumDtype::kF32: return momentum_f32.data;
      case DeltaMomentumDtype::kBF16: return momentum_bf16.data;
      default: return nullptr;
    }
  }

  DeltaCudaEntry entry(int64_t position) {
    const bool int8_momentum = outer.dtype == DeltaMomentumDtype::kInt8;
    return {param.data,      grad.data,   exp_avg.data,
            exp_avg_sq.data, codes.data,  scales.data,
            momentum_data(), int8_momentum ? momentum_scales.data : nullptr,
            param.n,         position,    dtype_of<F>(),
            outer.dtype};
  }

  // The entry's tensors, and its momentum's only where the row `syncs`: an access to a momentum
  // elsewhere is outside every tensor.
  void track_all(bool syncs) {
    for (auto* buffer : {&param, &grad, &exp_avg, &exp_avg_sq}) track(buffer->data, buffer->n, sizeof(F));
    track(codes.data, codes.n, sizeof(int8_t));
    track(scales.data, scales.n, sizeof(float));
    if (!syncs) return;
    switch (outer.dtype) {
      case DeltaMomentumDtype::kInt8:
        track(momentum.data, momentum.n, sizeof(int8_t));
        track(momentum_scales.data, momentum_scales.n, sizeof(float));
        break;
      case DeltaMomentumDtype::kF32: track(momentum_f32.data, momentum_f32.n, sizeof(float)); break;
      case DeltaMomentumDtype::kBF16: track(momentum_bf16.data, momentum_bf16.n, sizeof(__nv_bfloat16)); break;
      default: break;
    }
  }

  // The CPU kernel's two passes per block (delta_block in csrc/cpu/adamw_delta_cpu.cpp) on the values
  // before the call, with `row` of the hyper table.
  void oracle(std::vector<F>& p, std::vector<F>& m, std::vector<F>& v, std::vector<int8_t>& q, std::vector<float>& sc,
              Momenta& momenta, const double* row) const {
    p = param0, m = exp_avg0, v = exp_avg_sq0, q = codes0, sc = scales0, momenta = momenta0;
    std::vector<int8_t>& mq = momenta.codes;
    std::vector<float>& msc = momenta.scales;
    const DeltaRow constants(row);
    const auto round = [](float x) { return widen(narrow<F>(x)); };
    const DeltaMomentumDtype synced = constants.c.syncs ? outer.dtype : DeltaMomentumDtype::kNone;
    for (int64_t b = 0; b < scales.n; ++b) {
      const int64_t lo = b * kInt8Block, hi = std::min<int64_t>(lo + kInt8Block, param.n);
      float delta[kInt8Block];
      uint32_t largest = 0;
      // pass 1 on a sync row with a float momentum, `values` of its dtype M: loaded as float, stored rounded
      const auto float_momentum_pass = [&](auto& values) {
        using M = std::decay_t<decltype(values[0])>;
        const DeltaFloatMomentumMath<bool, bool> math{constants.lerp, kMu, outer.nesterov};
        const auto round_momentum = [](float x) { return widen(narrow<M>(x)); };
        for (int64_t i = lo; i < hi; ++i) {
          float mi = widen(m[i]), vi = widen(v[i]), oi = widen(values[i]);
          p[i] = narrow<F>(int8_delta_float_momentum_element(widen(p[i]), widen(grad0[i]), mi, vi, q[i], sc[b], oi,
                                                             constants.c, math, round, round_momentum, delta[i - lo]));
          m[i] = narrow<F>(mi), v[i] = narrow<F>(vi), values[i] = narrow<M>(oi);
          largest = std::max(largest, magnitude_bits(delta[i - lo]));
        }
      };
      if (synced == DeltaMomentumDtype::kF32) float_momentum_pass(momenta.f32);
      if (synced == DeltaMomentumDtype::kBF16) float_momentum_pass(momenta.bf16);
      if (synced == DeltaMomentumDtype::kInt8) {  // the CPU kernel's delta_momentum_block
        float kept[kInt8Block], slow[kInt8Block], mom[kInt8Block];
        const Int8MomentumSyncMath<bool, bool> math{constants.lerp, kMu, outer.nesterov};
        for (int64_t i = lo; i < hi; ++i) {
          float mi = widen(m[i]), vi = widen(v[i]);
          mom[i - lo] = int8_delta_momentum_of(widen(p[i]), widen(grad0[i]), mi, vi, q[i], sc[b], mq[i], msc[b], kMu,
                                               constants.c, round, kept[i - lo], slow[i - lo]);
          m[i] = narrow<F>(mi), v[i] = narrow<F>(vi);
          largest = std::max(largest, magnitude_bits(mom[i - lo]));
        }
        const Int8BlockScale momentum_block = int8_block_scale(largest);
        largest = 0;
        for (int64_t i = lo; i < hi; ++i) {
          p[i] = narrow<F>(int8_delta_momentum_sync(kept[i - lo], slow[i - lo], mom[i - lo], mq[i], msc[b],
                                                    momentum_block, math, round, delta[i - lo]));
          largest = std::max(largest, magnitude_bits(delta[i - lo]));
        }
        msc[b] = momentum_block.scale;
      }
      for (int64_t i = lo; i < hi && synced == DeltaMomentumDtype::kNone; ++i) {
        float mi = widen(m[i]), vi = widen(v[i]);
        const float kept = int8_delta_element(widen(p[i]), widen(grad0[i]), mi, vi, q[i], sc[b], constants.c,
                                              constants.lerp, constants.c.syncs, round, delta[i - lo]);
        p[i] = narrow<F>(kept), m[i] = narrow<F>(mi), v[i] = narrow<F>(vi);
        largest = std::max(largest, magnitude_bits(delta[i - lo]));
      }
      const Int8BlockScale block = int8_block_scale(largest);
      for (int64_t i = lo; i < hi; ++i) {
        q[i] = static_cast<int8_t>(static_cast<int32_t>(int8_code(block.kept ? delta[i - lo] : 0.0f, block.inv)));
      }
      sc[b] = block.scale;
    }
  }

  // The writes and values after a call (a momentum is tracked only where it is written: see track_all).
  void check(const double* row, const std::string& what) {
    std::vector<F> p, m, v;
    std::vector<int8_t> q;
    std::vector<float> sc;
    Momenta momenta;
    oracle(p, m, v, q, sc, momenta, row);
    for (const Tracked& t : tracked) {
      const auto is = [&](const void* data) { return t.begin == reinterpret_cast<uintptr_t>(data); };
      const bool read_only = is(grad.data);
      const bool mine = read_only || is(param.data) || is(exp_avg.data) || is(exp_avg_sq.data) || is(codes.data) ||
                        is(scales.data) || is(momentum.data) || is(momentum_scales.data) || is(momentum_f32.data) ||
                        is(momentum_bf16.data);
      if (!mine) continue;
      for (size_t i = 0; i < t.writes.size(); ++i) {
        if (t.writes[i] != (read_only ? 0 : 1)) {
          fail(what + ": element " + std::to_string(i) + " written " + std::to_string(t.writes[i]) + " times");
          break;
        }
      }
    }
    compare(grad0.data(), grad.data, grad.n, what + ": grad");
    compare(p.data(), param.data, param.n, what + ": param");
    compare(m.data(), exp_avg.data, exp_avg.n, what + ": exp_avg");
    compare(v.data(), exp_avg_sq.data, exp_avg_sq.n, what + ": exp_avg_sq");
    compare(q.data(), codes.data, codes.n, what + ": codes");
    compare(sc.data(), scales.data, scales.n, what + ": scales");
    compare(momenta.codes.data(), momentum.data, momentum.n, what + ": momentum");
    compare(momenta.scales.data(), momentum_scales.data, momentum_scales.n, what + ": momentum_scales");
    compare(momenta.f32.data(), momentum_f32.data, momentum_f32.n, what + ": float32 momentum");
    compare(momenta.bf16.data(), momentum_bf16.data, momentum_bf16.n, what + ": bfloat16 momentum");
  }
};

template <typename F>
const char* dtype_name() {
  return sizeof(F) == 4 ? "float32" : std::is_same_v<F, __half> ? "float16" : "bfloat16";
}

template <typename F>
void run_case(int64_t n, Offsets o, const Row& row_options, const Outer& outer, std::mt19937& rng) {
  Case<F> c(n, o, rng, outer);
  tracked.clear();
  c.track_all(row_options.sync);
  const std::vector<double> hyper = hyper_row(row_options);
  const std::vector<int64_t> rows = {0};
  track(rows.data(), 1, sizeof(int64_t));  // the kernel reads each entry's row index through its memory policy
  const std::vector<DeltaCudaEntry> entries = n > 0 ? std::vector<DeltaCudaEntry>{c.entry(0)} : std::vector<DeltaCudaEntry>{};
  run_on_host(entries, hyper.data(), rows.data(), 2, {kMu, outer.nesterov});  // 16 warps: the larger sizes stride
  const std::string what = std::string(dtype_name<F>()) + " n=" + std::to_string(n) + " offsets=" +
                           std::to_string(o.param) + "," + std::to_string(o.grad) + "," + std::to_string(o.exp_avg) +
                           "," + std::to_string(o.exp_avg_sq) + "," + std::to_string(o.codes) +
                           " sync=" + std::to_string(row_options.sync) + " alpha=" + std::to_string(row_options.alpha) +
                           " maximize=" + std::to_string(row_options.maximize) +
                           " momentum dtype=" + std::to_string(int(outer.dtype)) + " nesterov=" +
                           std::to_string(outer.nesterov) + " momentum offset=" + std::to_string(o.momentum);
  c.check(hyper.data(), what);
}

template <typename F>
void run_dtype(std::mt19937& rng) {
  const int64_t sizes[] = {0, 1, 7, 255, 256, 257, 1000, 4097};
  // in elements: aligned; each tensor off its vector alignment in turn; all of them; codes 8-byte but not
  // 16-byte aligned; a float32 momentum 16-byte but not 32-byte aligned (int8 and bfloat16 ones off theirs)
  const Offsets offsets[] = {{0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0}, {0, 0, 1, 0, 0, 0},
                             {0, 0, 0, 1, 0, 0}, {0, 0, 0, 0, 1, 0}, {3, 2, 5, 7, 9, 1}, {0, 0, 0, 0, 8, 0},
                             {0, 0, 0, 0, 0, 3}, {0, 0, 0, 0, 0, 4}};
  const Row rows[] = {{false, 0.5, false}, {false, 0.5, true}, {true, 0.3, false}, {true, 0.5, true}, {true, 1.0, false}};
  const Outer outers[] = {{DeltaMomentumDtype::kNone, false}, {DeltaMomentumDtype::kInt8, false},
                          {DeltaMomentumDtype::kInt8, true},  {DeltaMomentumDtype::kF32, false},
                          {DeltaMomentumDtype::kF32, true},   {DeltaMomentumDtype::kBF16, false},
                          {DeltaMomentumDtype::kBF16, true}};
  for (int64_t n : sizes) {
    for (Offsets o : offsets) {
      for (const Row& row : rows) {
        for (const Outer& outer : outers) run_case<F>(n, o, row, outer, rng);
      }
    }
  }
}

// One call of more entries than one launch table holds, of every param dtype and size in turn, the
// params in turn on a row that syncs and on one that does not, empty ones among them (each takes its
// place in the call, so the entries after it read rows by their place, not their index): each launch's
// entries found by the binary search, each entry as its own call would leave it.
void run_many_entries(std::mt19937& rng) {
  const int64_t sizes[] = {1, 7, 255, 256, 257, 1000, 4097, 0};
  const int kEach = (kDeltaLaunchEntries + 8) / 3 + 1;
  std::vector<Case<float>> f32;
  std::vector<Case<__half>> f16;
  std::vector<Case<__nv_bfloat16>> bf16;
  f32.reserve(kEach), f16.reserve(kEach), bf16.reserve(kEach);
  tracked.clear();
  for (int i = 0; i < kEach; ++i) {
    const Offsets o{i % 3, i % 5, i % 2, i % 7, i % 9, i % 4};
    // every momentum dtype in one launch, each on both rows over the param dtypes (Nesterov is the call's)
    const Outer outer{static_cast<DeltaMomentumDtype>(i % 4), true};
    f32.emplace_back(sizes[i % 8], o, rng, outer);
    f16.emplace_back(sizes[i % 8], o, rng, outer);
    bf16.emplace_back(sizes[i % 8], o, rng, outer);
  }
  std::vector<double> hyper = hyper_row({false, 0.5, false});
  const std::vector<double> syncing = hyper_row({true, 0.7, false});
  hyper.insert(hyper.end(), syncing.begin(), syncing.end());
  std::vector<DeltaCudaEntry> entries;
  std::vector<int64_t> rows;
  const auto add = [&](auto& c) {  // an empty param takes a place in the call, as ops.cpp keeps it, and no entry
    const auto position = static_cast<int64_t>(rows.size());
    rows.push_back(position % 2);
    if (c.param.n == 0) return;
    entries.push_back(c.entry(position));
    c.track_all(rows.back() == 1);
  };
  for (int i = 0; i < kEach; ++i) add(f32[i]), add(f16[i]), add(bf16[i]);  // the order of a mixed call
  track(rows.data(), static_cast<int64_t>(rows.size()), sizeof(int64_t));
  if (entries.size() <= size_t(kDeltaLaunchEntries)) fail("the many-entry call fits one launch table");
  run_on_host(entries, hyper.data(), rows.data(), 5, {kMu, true});
  size_t position = 0;
  const auto check = [&](auto& c, const std::string& what) {
    const int64_t row = rows[position++];
    if (c.param.n > 0) c.check(hyper.data() + row * kAdamWColumns, what);
  };
  for (int i = 0; i < kEach; ++i) {
    check(f32[i], "many entries, float32 " + std::to_string(i));
    check(f16[i], "many entries, float16 " + std::to_string(i));
    check(bf16[i], "many entries, bfloat16 " + std::to_string(i));
  }
}

}  // namespace

int main() {
  std::mt19937 rng(26);
  run_dtype<float>(rng);
  run_dtype<__half>(rng);
  run_dtype<__nv_bfloat16>(rng);
  if (vector_accesses == 0) fail("no vector access at all");
  run_many_entries(rng);
  if (failures > 0) {
    std::fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  std::printf("adamw int8-delta kernel on host: all checks passed (%lld vector accesses)\n",
              static_cast<long long>(vector_accesses));
  return 0;
}
