// The CUDA body of AdamW's step with an int8 outer momentum (csrc/cuda/adamw_int8_momentum_kernel.cuh)
// run on the host, no GPU needed: every thread block, warp and lane of a launch in turn, the lanes of a
// warp meeting in the block's largest momentum through the host warp policy, every access through a
// memory policy that records it (tests/cpp/host_int8_lanes.h). Over the slow weights' storage, float32
// and bf16+int8 (see [NOTE: compact int8 momentum sync] in csrc/element_math.h), the param dtypes
// float32, float16 and bfloat16, sizes around a block and a lane, element offsets that break each
// tensor's vector alignment, Nesterov on and off, calls whose entries read different rows of the hyper
// table in one launch (without the sync, with maximize or not; with it at alpha 0.3, 0.8 and 1, lr and
// step differing), blocks with a NaN grad, an infinite slow weight, zeros and momenta below 2^-96, and a
// call of more entries than one launch table holds, it checks:
//   - each element of the param and the moments is written exactly once and the grads never; on a sync
//     row each element of the slow weights (or their high parts and residuals) and of the codes, and
//     each scale, exactly once; off one they are neither read nor written (they are tracked only on a
//     sync row, so any access to them off one is outside every tensor);
//   - every vector access is aligned (16 bytes, 8 for the codes and the residuals), every access is
//     inside its tensor, and each lane of 8 elements makes one vector access per pack of each tensor
//     that is aligned, and none to the others;
//   - the results equal, bit for bit, an oracle of the CPU-side element math: AdamW's step on each
//     element (adamw_element, its param rounded to the param's dtype), then on a sync row the int8
//     momentum sync's two passes per block (element_math.h) on the new params at the row's float32
//     alpha; for compact slow weights on the decoded slow weights, the new ones encoded with
//     encode_bf16_int8 and the param the encoding decoded.
// The recording policies are host code called from the kernel's __host__ __device__ body; only the
// host side is compiled into this test, so nvcc's warnings about that call are moot here.
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

#include "cuda/adamw_int8_momentum_kernel.cuh"
#include "host_int8_lanes.h"

using namespace lookahead_fused;
using namespace host_tracking;
using namespace host_int8_lanes;

namespace {

constexpr float kMu = 0.9f;

// Every thread block and warp of the launches of a call, as launch_adamw_int8_momentum_cuda makes them:
// the kernel for the storage of the first entry's slow weights (every entry's).
template <typename Slow>
void run_launches(const std::vector<AdamWInt8CudaEntry>& entries, const double* hyper, const int64_t* rows,
                  bool nesterov, int64_t grid) {
  for (size_t first = 0; first < entries.size(); first += kAdamWInt8LaunchEntries) {
    const int count = static_cast<int>(std::min<size_t>(kAdamWInt8LaunchEntries, entries.size() - first));
    const AdamWInt8LaunchTable table = adamw_int8_launch_table(entries, first, count);
    const int64_t warps = grid * kInt8WarpsPerBlock;
    for (int64_t warp = 0; warp < warps; ++warp) {
      adamw_int8_warp<HostMemory, Slow>(table, hyper, rows, kMu, nesterov, warp, warps, HostWarp{});
    }
  }
}

void run_on_host(const std::vector<AdamWInt8CudaEntry>& entries, const double* hyper, const int64_t* rows,
                 bool nesterov, int64_t grid) {
  if (entries.empty()) return;
  if (entries[0].slow_low != nullptr) {
    run_launches<CompactSlow>(entries, hyper, rows, nesterov, grid);
  } else {
    run_launches<Float32Slow>(entries, hyper, rows, nesterov, grid);
  }
}

struct Row {
  bool sync;
  double alpha;
  bool maximize;
  double lr, step;
};

// The rows of a call's hyper table: two without the sync, three with it, alpha on both sides of the
// two-sided lerp and 1 (see [NOTE: two-sided lerp] in csrc/element_math.h).
const Row kRows[] = {{false, 0.5, false, 1e-2, 3.0},
                     {true, 0.3, false, 1e-2, 3.0},
                     {true, 0.8, true, 3e-3, 10.0},
                     {false, 0.5, true, 3e-3, 10.0},
                     {true, 1.0, false, 1e-2, 7.0}};
constexpr int kRowCount = sizeof(kRows) / sizeof(kRows[0]);

// The hyper table of kRows (see [NOTE: AdamW hyper table] in csrc/adamw.h).
std::vector<double> hyper_table() {
  std::vector<double> values;
  for (const Row& row : kRows) {
    std::vector<double> columns(kAdamWColumns);
    columns[kLr] = row.lr, columns[kBeta1] = 0.9, columns[kBeta2] = 0.999, columns[kEps] = 1e-8;
    columns[kWeightDecay] = 0.1, columns[kStep] = row.step, columns[kAlpha] = row.alpha;
    columns[kSyncFlag] = row.sync ? 1.0 : 0.0, columns[kMaximize] = row.maximize ? 1.0 : 0.0;
    values.insert(values.end(), columns.begin(), columns.end());
  }
  return values;
}

struct Offsets {
  int64_t param, grad, exp_avg, exp_avg_sq, slow, codes, low;  // elements; slow: float32 or the high parts
};

// One entry's tensors, their values before the call, and the oracle's after. Slow: Float32Slow or
// CompactSlow, the slow weights in `slow` or in `high` and `low` (the others empty).
template <typename F, typename Slow>
struct Case {
  static constexpr bool kCompact = std::is_same_v<Slow, CompactSlow>;
  Buffer<F> param, grad, exp_avg, exp_avg_sq;
  Buffer<float> slow;
  Buffer<uint16_t> high;
  Buffer<int8_t> low, codes;
  Buffer<float> scales;
  Offsets offsets;
  std::vector<F> param0, grad0, exp_avg0, exp_avg_sq0;
  std::vector<float> slow0, scales0;  // slow0: the slow weights as float32 values (decoded when compact)
  std::vector<uint16_t> high0;
  std::vector<int8_t> low0, codes0;

  Case(int64_t n, Offsets o, std::mt19937& rng)
      : param(n, o.param),
        grad(n, o.grad),
        exp_avg(n, o.exp_avg),
        exp_avg_sq(n, o.exp_avg_sq),
        slow(kCompact ? 0 : n, o.slow),
        high(kCompact ? n : 0, o.slow),
        low(kCompact ? n : 0, o.low),
        codes(n, o.codes),
        scales((n + kInt8Block - 1) / kInt8Block, 0),
        offsets(o) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> code(-127, 127);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t block = i / kInt8Block;
      float p = normal(rng), g = 0.1f * normal(rng), m = 0.1f * normal(rng);
      const float root = std::fabs(normal(rng)) + 0.1f;  // no float16 underflow of v
      float s = p + 0.01f * normal(rng);
      int8_t q = static_cast<int8_t>(code(rng));
      // block 1: a new param NaN, so the block's momentum is lost; 3: zeros; 4: momenta below 2^-96
      if (block == 1 && i % 97 == 3) g = NAN;
      if (block == 2 && i % 89 == 5) s = i % 2 ? INFINITY : -INFINITY;
      if (block == 3) p = g = m = s = 0.0f, q = 0;
      if (block == 4) p = g = m = 0.0f, s = -1e-30f * (std::fabs(normal(rng)) + 0.5f), q = 0;
      param.data[i] = narrow<F>(p);
      grad.data[i] = narrow<F>(g);
      exp_avg.data[i] = narrow<F>(m);
      exp_avg_sq.data[i] = narrow<F>(root * root);
      codes.data[i] = q;
      if constexpr (kCompact) {  // any residual, not only encode's: the kernel decodes what it finds
        high.data[i] = bfloat16_bits_of(s);
        low.data[i] = block == 3 || block == 4 ? int8_t(0) : static_cast<int8_t>(code(rng));
      } else {
        slow.data[i] = s;
      }
    }
    for (int64_t b = 0; b < scales.n; ++b) scales.data[b] = b == 4 ? 0.0f : 0.001f * std::fabs(normal(rng)) + 1e-4f;
    param0.assign(param.data, param.data + n);
    grad0.assign(grad.data, grad.data + n);
    exp_avg0.assign(exp_avg.data, exp_avg.data + n);
    exp_avg_sq0.assign(exp_avg_sq.data, exp_avg_sq.data + n);
    if constexpr (kCompact) {
      high0.assign(high.data, high.data + n);
      low0.assign(low.data, low.data + n);
      for (int64_t i = 0; i < n; ++i) slow0.push_back(decode_bf16_int8(high0[i], low0[i]));
    } else {
      slow0.assign(slow.data, slow.data + n);
    }
    codes0.assign(codes.data, codes.data + n);
    scales0.assign(scales.data, scales.data + scales.n);
  }

  AdamWInt8CudaEntry entry(int64_t position) {
    AdamWInt8CudaEntry entry{param.data, grad.data,   exp_avg.data, exp_avg_sq.data, slow.data,    nullptr,
                             codes.data, scales.data, param.n,      position,        dtype_of<F>()};
    if constexpr (kCompact) entry.slow = high.data, entry.slow_low = low.data;
    return entry;
  }

  // The entry's tensors, and its slow weights, codes and scales only where the row `syncs`: an access to
  // them elsewhere is outside every tensor.
  void track_all(bool syncs) {
    for (auto* buffer : {&param, &grad, &exp_avg, &exp_avg_sq}) track(buffer->data, buffer->n, sizeof(F));
    if (!syncs) return;
    if constexpr (kCompact) {
      track(high.data, high.n, sizeof(uint16_t));
      track(low.data, low.n, sizeof(int8_t));
    } else {
      track(slow.data, slow.n, sizeof(float));
    }
    track(codes.data, codes.n, sizeof(int8_t));
    track(scales.data, scales.n, sizeof(float));
  }

  // The vector accesses of a call: each lane of 8 elements loads the param, grad and moments and stores
  // the param and moments, one access per pack of each whose start is aligned (16 bytes); on a sync row
  // also loads and stores the slow weights (16 bytes, or the high parts' 16 and the residuals' 8) and the
  // codes (8); a lane of fewer, none.
  int64_t vector_accesses_expected(bool syncs) const {
    const auto packs = [](int64_t offset, int64_t element, int64_t bytes) {
      return offset * element % bytes == 0 ? element * kInt8LaneElems / bytes : 0;
    };
    const int64_t f = sizeof(F);
    int64_t lane = packs(offsets.param, f, 16) * 2 + packs(offsets.grad, f, 16) +
                   2 * (packs(offsets.exp_avg, f, 16) + packs(offsets.exp_avg_sq, f, 16));
    if (syncs) {
      const int64_t state =
          kCompact ? packs(offsets.slow, 2, 16) + packs(offsets.low, 1, 8) : packs(offsets.slow, 4, 16);
      lane += 2 * (state + packs(offsets.codes, 1, 8));
    }
    int64_t full_lanes = 0;
    for (int64_t lo = 0; lo < param.n; lo += kInt8Block) {
      full_lanes += std::min<int64_t>(kInt8Block, param.n - lo) / kInt8LaneElems;
    }
    return full_lanes * lane;
  }

  // The new slow weight i as stored, which the param takes: float32 as it is, or bf16+int8 encoded
  // (into h and l) and decoded back.
  float stored(float s, int64_t i, std::vector<uint16_t>& h, std::vector<int8_t>& l) const {
    if constexpr (kCompact) return store_compact_slow(s, h[i], l[i]);
    return s;
  }

  // AdamW's step on each element (as AdamWStep::step in csrc/cuda/table_kernel.cuh), then on a sync row the
  // int8 momentum sync's two passes per block (int8_block in csrc/cpu/int8_momentum_cpu.cpp) on the new
  // params, on the values before the call with `row` of the hyper table.
  void oracle(const double* row, bool nesterov, std::vector<F>& p, std::vector<F>& m, std::vector<F>& v,
              std::vector<float>& s, std::vector<uint16_t>& h, std::vector<int8_t>& l, std::vector<int8_t>& q,
              std::vector<float>& sc) const {
    p = param0, m = exp_avg0, v = exp_avg_sq0, s = slow0, h = high0, l = low0, q = codes0, sc = scales0;
    const AdamWConstants<float> c(row);
    const auto round = [](float x) { return widen(narrow<F>(x)); };
    for (int64_t i = 0; i < param.n; ++i) {
      float mi = widen(m[i]), vi = widen(v[i]);
      p[i] = narrow<F>(adamw_element(widen(p[i]), widen(grad0[i]), mi, vi, c, round));
      m[i] = narrow<F>(mi), v[i] = narrow<F>(vi);
    }
    if (row[kSyncFlag] == 0.0) return;
    const auto alpha = static_cast<float>(row[kAlpha]);
    const Int8MomentumSyncMath<bool, bool> math{two_sided_lerp<float>(alpha, lerp_from_slow(alpha)), kMu, nesterov};
    for (int64_t b = 0; b < scales.n; ++b) {
      const int64_t lo = b * kInt8Block, hi = std::min<int64_t>(lo + kInt8Block, param.n);
      float momentum[kInt8Block];
      uint32_t largest = 0;
      for (int64_t i = lo; i < hi; ++i) {
        momentum[i - lo] = int8_momentum_of(widen(p[i]), s[i], q[i], sc[b], kMu);
        largest = std::max(largest, magnitude_bits(momentum[i - lo]));
      }
      const Int8BlockScale block = int8_block_scale(largest);
      for (int64_t i = lo; i < hi; ++i) {
        s[i] = math(widen(p[i]), s[i], block.kept ? momentum[i - lo] : 0.0f, q[i], sc[b], block);
        p[i] = narrow<F>(stored(s[i], i, h, l));
      }
      sc[b] = block.scale;
    }
  }

  bool owns(uintptr_t begin) const {
    const void* tensors[] = {param.data, grad.data, exp_avg.data, exp_avg_sq.data, slow.data,
                             high.data,  low.data,  codes.data,   scales.data};
    for (const void* data : tensors) {
      if (begin == reinterpret_cast<uintptr_t>(data)) return true;
    }
    return false;
  }

  // The writes and values after a call with `row` (the state is tracked only on a sync row: see track_all).
  void check(const double* row, bool nesterov, const std::string& what) {
    std::vector<F> p, m, v;
    std::vector<float> s, sc;
    std::vector<uint16_t> h;
    std::vector<int8_t> l, q;
    oracle(row, nesterov, p, m, v, s, h, l, q, sc);
    for (const Tracked& t : tracked) {
      if (!owns(t.begin)) continue;
      const int expected = t.begin == reinterpret_cast<uintptr_t>(grad.data) ? 0 : 1;
      for (size_t i = 0; i < t.writes.size(); ++i) {
        if (t.writes[i] != expected) {
          fail(what + ": element " + std::to_string(i) + " written " + std::to_string(t.writes[i]) + " times");
          break;
        }
      }
    }
    compare(grad0.data(), grad.data, grad.n, what + ": grad");
    compare(p.data(), param.data, param.n, what + ": param");
    compare(m.data(), exp_avg.data, exp_avg.n, what + ": exp_avg");
    compare(v.data(), exp_avg_sq.data, exp_avg_sq.n, what + ": exp_avg_sq");
    if constexpr (kCompact) {
      compare(h.data(), high.data, high.n, what + ": slow high parts");
      compare(l.data(), low.data, low.n, what + ": slow residuals");
    } else {
      compare(s.data(), slow.data, slow.n, what + ": slow");
    }
    compare(q.data(), codes.data, codes.n, what + ": codes");
    compare(sc.data(), scales.data, scales.n, what + ": scales");
  }
};

template <typename F>
const char* dtype_name() {
  return sizeof(F) == 4 ? "float32" : std::is_same_v<F, __half> ? "float16" : "bfloat16";
}

// One call of an entry per row of kRows, each of n elements at offsets o, in one launch.
template <typename F, typename Slow>
void run_case(int64_t n, Offsets o, bool nesterov, std::mt19937& rng) {
  std::vector<Case<F, Slow>> cases;
  cases.reserve(kRowCount);
  tracked.clear();
  const std::vector<double> hyper = hyper_table();
  std::vector<int64_t> rows;
  std::vector<AdamWInt8CudaEntry> entries;
  int64_t wanted = 0;
  for (int r = kRowCount - 1; r >= 0; --r) {  // the entries' places in the call are not their rows
    cases.emplace_back(n, o, rng);
    const auto position = static_cast<int64_t>(rows.size());
    rows.push_back(r);
    if (n > 0) entries.push_back(cases.back().entry(position));
    cases.back().track_all(kRows[r].sync);
    wanted += cases.back().vector_accesses_expected(kRows[r].sync);
  }
  track(rows.data(), static_cast<int64_t>(rows.size()), sizeof(int64_t));  // read through the memory policy
  const int64_t vector_accesses_before = vector_accesses;
  run_on_host(entries, hyper.data(), rows.data(), nesterov, 2);  // 16 warps: the larger sizes stride
  const std::string what = std::string(Case<F, Slow>::kCompact ? "compact " : "") + dtype_name<F>() +
                           " n=" + std::to_string(n) + " offsets=" + std::to_string(o.param) + "," +
                           std::to_string(o.grad) + "," + std::to_string(o.exp_avg) + "," +
                           std::to_string(o.exp_avg_sq) + "," + std::to_string(o.slow) + "," + std::to_string(o.codes) +
                           "," + std::to_string(o.low) + " nesterov=" + std::to_string(nesterov);
  for (size_t k = 0; k < cases.size(); ++k) {
    const int64_t row = rows[k];
    cases[k].check(hyper.data() + row * kAdamWColumns, nesterov, what + " row=" + std::to_string(row));
  }
  const int64_t vector = vector_accesses - vector_accesses_before;
  if (vector != wanted) {
    fail(what + ": " + std::to_string(vector) + " vector accesses, " + std::to_string(wanted) + " expected");
  }
}

template <typename F, typename Slow>
void run_dtype(std::mt19937& rng) {
  const int64_t sizes[] = {0, 1, 7, 255, 256, 257, 1000, 4097};
  // in elements: aligned; each tensor off its vector alignment in turn; all of them; codes 8-byte but
  // not 16-byte aligned
  std::vector<Offsets> offsets = {{0, 0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0, 0},
                                  {0, 0, 1, 0, 0, 0, 0}, {0, 0, 0, 1, 0, 0, 0}, {0, 0, 0, 0, 1, 0, 0},
                                  {0, 0, 0, 0, 0, 1, 0}, {3, 2, 5, 7, 1, 9, 0}, {0, 0, 0, 0, 0, 8, 0}};
  if (std::is_same_v<Slow, CompactSlow>) {
    // the residuals off theirs, all seven, and high parts 8-byte but not 16-byte aligned beside
    // residuals 8-byte but not 16-byte aligned
    offsets.insert(offsets.end(), {{0, 0, 0, 0, 0, 0, 1}, {3, 2, 5, 7, 1, 9, 6}, {0, 0, 0, 0, 4, 0, 8}});
  }
  for (int64_t n : sizes) {
    for (Offsets o : offsets) {
      for (bool nesterov : {false, true}) run_case<F, Slow>(n, o, nesterov, rng);
    }
  }
}

// One call of more entries than one launch table holds, of every param dtype and size in turn, each
// on a row of kRows in turn, empty ones among them (each takes its place in the call, so the entries
// after it read rows by their place, not their index): each launch's entries found by the binary
// search, each entry as its own call would leave it.
template <typename Slow>
void run_many_entries(std::mt19937& rng) {
  const int64_t sizes[] = {1, 7, 255, 256, 257, 1000, 4097, 0};
  const int kEach = (kAdamWInt8LaunchEntries + 8) / 3 + 1;
  std::vector<Case<float, Slow>> f32;
  std::vector<Case<__half, Slow>> f16;
  std::vector<Case<__nv_bfloat16, Slow>> bf16;
  f32.reserve(kEach), f16.reserve(kEach), bf16.reserve(kEach);
  tracked.clear();
  for (int i = 0; i < kEach; ++i) {
    const Offsets o{i % 3, i % 5, i % 2, i % 7, i % 4, i % 9, i % 6};
    f32.emplace_back(sizes[i % 8], o, rng);
    f16.emplace_back(sizes[i % 8], o, rng);
    bf16.emplace_back(sizes[i % 8], o, rng);
  }
  const std::vector<double> hyper = hyper_table();
  std::vector<AdamWInt8CudaEntry> entries;
  std::vector<int64_t> rows;
  const auto add = [&](auto& c) {  // an empty param takes a place in the call, as ops.cpp keeps it, and no entry
    const auto position = static_cast<int64_t>(rows.size());
    rows.push_back(position % kRowCount);
    if (c.param.n == 0) return;
    entries.push_back(c.entry(position));
    c.track_all(kRows[rows.back()].sync);
  };
  for (int i = 0; i < kEach; ++i) add(f32[i]), add(f16[i]), add(bf16[i]);  // the order of a mixed call
  track(rows.data(), static_cast<int64_t>(rows.size()), sizeof(int64_t));
  if (entries.size() <= size_t(kAdamWInt8LaunchEntries)) fail("the many-entry call fits one launch table");
  run_on_host(entries, hyper.data(), rows.data(), true, 5);
  size_t position = 0;
  const std::string kind = std::is_same_v<Slow, CompactSlow> ? "many compact entries, " : "many entries, ";
  const auto check = [&](auto& c, const std::string& what) {
    const int64_t row = rows[position++];
    if (c.param.n > 0) c.check(hyper.data() + row * kAdamWColumns, true, what);
  };
  for (int i = 0; i < kEach; ++i) {
    check(f32[i], kind + "float32 " + std::to_string(i));
    check(f16[i], kind + "float16 " + std::to_string(i));
    check(bf16[i], kind + "bfloat16 " + std::to_string(i));
  }
}

}  // namespace

int main() {
  std::mt19937 rng(26);
  run_dtype<float, Float32Slow>(rng);
  run_dtype<__half, Float32Slow>(rng);
  run_dtype<__nv_bfloat16, Float32Slow>(rng);
  run_dtype<float, CompactSlow>(rng);
  run_dtype<__half, CompactSlow>(rng);
  run_dtype<__nv_bfloat16, CompactSlow>(rng);
  if (vector_accesses == 0) fail("no vector access at all");
  run_many_entries<Float32Slow>(rng);
  run_many_entries<CompactSlow>(rng);
  if (failures > 0) {
    std::fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  std::printf("adamw int8 momentum kernel on host: all checks passed (%lld vector accesses)\n",
              static_cast<long long>(vector_accesses));
  return 0;
}
