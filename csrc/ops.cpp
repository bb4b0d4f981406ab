#include "ops.h"

#include <torch/csrc/autograd/variable.h>

#include <cmath>

#include "contract.h"
#include "cpu/adamw_delta_cpu.h"
#include "cpu/int8_momentum_cpu.h"
#include "cpu/sync_cpu.h"
#include "message.h"
#include "plan.h"
#include "prefetch.h"
#include "table.h"

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/adamw_delta_cuda.h"
#include "cuda/adamw_int8_momentum_cuda.h"
#include "cuda/capture.h"
#include "cuda/int8_momentum_cuda.h"
#endif

namespace lookahead_fused {

// [NOTE: versions] A mutating op bumps the autograd version of every tensor it may write, as torch's
// in-place ops and foreach ops do, so autograd refuses a backward through a value the update changed.
// Both entry points (the dispatcher and the eager pybind calls) come through run(); a held sync bumps
// them too (csrc/held_sync.h).
void bump_versions(const TensorLists& lists) {
  for (at::TensorList list : lists) {
    for (size_t i = 0; i < list.size(); ++i) {
      prefetch_ahead(list, i);  // see [NOTE: prefetch ahead] in csrc/prefetch.h
      prefetch_version_ahead(list, i);
      if (!list[i].is_inference()) torch::autograd::impl::bump_version(list[i]);
    }
  }
}

namespace {

void check_alpha(double alpha, const char* op = "lookahead_sync_") {
  LOOKAHEAD_CHECK_VALUE(std::isfinite(alpha) && alpha >= 0.0 && alpha <= 1.0,
                        message(op, ": alpha must be a finite number in [0, 1], got ", alpha));
}

void check_mu(double mu, const char* op = "lookahead_sync_") {
  LOOKAHEAD_CHECK_VALUE(std::isfinite(mu) && mu >= 0.0 && mu < 1.0,
                        message(op, ": outer momentum mu must be a finite number in [0, 1), got ", mu));
}

// True for a CUDA device in a build with the CUDA kernels, false for the CPU; an op of int8 blocks on
// any other device is refused (the plan's ops find their device in the plan).
bool runs_on_cuda(const at::Device& device, const char* op) {
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
  if (device.is_cuda()) return true;
#endif
  LOOKAHEAD_CHECK_NOT_IMPLEMENTED(!device.is_cuda(), message(op, ": this build of the extension has no CUDA kernels"));
  LOOKAHEAD_CHECK(device.is_cpu(), message("lookahead_fused: no kernel for tensors on ", device));
  return false;
}

// The plan of checked `lists`, found or built after their overlap check; none is built while a CUDA
// graph is being captured (`capturing`).
std::shared_ptr<const Plan> find_or_build_checked_plan(const char* name, const TensorLists& lists, TableOp op,
                                                       bool capturing) {
  return find_or_build_plan(lists, roles_of(op), [&] {
    LOOKAHEAD_CHECK(!capturing,
                    message(name, ": these tensors have no kernel plan yet, and one cannot be built while a CUDA ",
                            "graph is being captured (its upload is a blocking host-to-device copy). Run the same ",
                            "step once eagerly before capturing (warm-up), with the same tensors."));
    check_no_overlap(name, lists, list_names(op));
  });
}

// `gate`: null, or the step gate in device memory (only the CUDA kernel takes one). `plan`: the lists'
// plan if the check found it (see [NOTE: a cached plan vouches] in csrc/plan.h), else null.
void launch_on_plan(const char* name, const TensorLists& lists, TableOp op, const UpdateArgs& args,
                    const StepGate* gate, std::shared_ptr<const Plan> plan = nullptr) {
  if (lists[0].empty()) return;
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
  if (const at::Tensor& first = lists[0][0]; first.is_cuda()) {
    release_plans_of_destroyed_graphs();
    c10::cuda::CUDAGuard guard(first.device());
    auto stream = c10::cuda::getCurrentCUDAStream(first.device().index());
    const bool capturing = is_capturing(stream.stream());
    if (!plan) plan = find_or_build_checked_plan(name, lists, op, capturing);
    // See [NOTE: plans under capture] in csrc/cuda/capture.cpp
    if (capturing) keep_alive_with_captured_graph(plan, stream.stream());
    plan->device_words.record_stream(stream);  // a plan evicted from the cache stays alive for this launch
    if (gate != nullptr) {
      launch_cuda_on_step(plan->device_view(), op, *gate, args, stream.stream(), plan->device.index());
    } else {
      launch_cuda(plan->device_view(), op, args, stream.stream(), plan->device.index());
    }
    return;
  }
#endif
  if (!plan) plan = find_or_build_checked_plan(name, lists, op, /*capturing=*/false);
  LOOKAHEAD_CHECK(plan->device.is_cpu(), message("lookahead_fused: no kernel for tensors on ", plan->device));
  if (gate == nullptr) run_cpu(*plan, op, args);  // a CPU caller resolves its gate on the host
}

void run(const char* name, const TensorLists& lists, TableOp op, const UpdateArgs& args, const StepGate* gate = nullptr,
         std::shared_ptr<const Plan> plan = nullptr) {
  launch_on_plan(name, lists, op, args, gate, std::move(plan));
  bump_versions(lists);
}

// See [NOTE: step gate] in csrc/table.h. On the CPU the gate is host memory and is read here; there
// alpha's value is checked too, which on a GPU would cost a synchronisation.
void run_on_step(const char* name, const TensorLists& lists, TableOp op, const at::Tensor& alpha,
                 const at::Tensor& step, int64_t k, UpdateArgs args, std::shared_ptr<const Plan> plan) {
  if (lists[0].empty()) return;
  StepGate gate{step.const_data_ptr<int64_t>(), k, alpha.const_data_ptr(), alpha.scalar_type() == at::kDouble};
  if (!lists[0][0].is_cpu()) return run(name, lists, op, args, &gate, std::move(plan));
  args.alpha = alpha.item<double>();
  check_alpha(args.alpha, name);
  bool syncs = step.item<int64_t>() % k == 0;
  run(name, lists, op, args, syncs ? nullptr : &gate, std::move(plan));  // checks either way
}

// A sync op's lists checked before anything is written: their plan if a cached one vouches for them,
// else null after the full checks (see [NOTE: a cached plan vouches] in csrc/plan.h).
std::shared_ptr<const Plan> check_sync(TableOp op, const TensorLists& lists) {
  if (auto plan = find_vouching_plan(lists, roles_of(op), /*for_launch=*/true)) return plan;
  check_sync_entries(op, lists);
  return nullptr;
}

// Tensors on another device beside meta ones make a mixed-device call, which lookahead_fused.ops splits.
void check_all_meta(const char* op, const TensorLists& lists, const char* const* names = list_names(TableOp::kSync)) {
  for (size_t l = 1; l < lists.size(); ++l) {
    LOOKAHEAD_CHECK_VALUE(
        lists[0].size() == lists[l].size(),
        message(op, ": ", names[0], " has ", lists[0].size(), " tensors but ", names[l], " has ", lists[l].size()));
  }
  for (at::TensorList list : lists) {
    for (const at::Tensor& t : list) {
      LOOKAHEAD_CHECK_NOT_IMPLEMENTED(t.is_meta(), message(op, ": meta and ", t.device(), " tensors in one call"));
    }
  }
}

// The name of a sync op (kSync, kMomentumSync, kCompactSync, kCompactMomentumSync) in its messages.
const char* sync_op_name(TableOp op) { return roles_of(op).compact ? kCompactOp : "lookahead_sync_"; }

}  // namespace

std::shared_ptr<const Plan> checked_sync_plan(TableOp op, const TensorLists& lists) {
  const char* name = sync_op_name(op);
  if (auto plan = check_sync(op, lists)) return plan;
  bool capturing = false;
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
  if (!lists[0].empty() && lists[0][0].is_cuda()) {
    c10::cuda::CUDAGuard guard(lists[0][0].device());
    capturing = is_capturing(c10::cuda::getCurrentCUDAStream(lists[0][0].device().index()).stream());
  }
#endif
  return find_or_build_checked_plan(name, lists, op, capturing);
}

void launch_sync_on_plan(TableOp op, const TensorLists& lists, const UpdateArgs& args,
                         std::shared_ptr<const Plan> plan) {
  const char* name = sync_op_name(op);
  check_alpha(args.alpha, name);
  if (roles_of(op).momentum >= 0) check_mu(args.mu, name);
  launch_on_plan(name, lists, op, args, nullptr, std::move(plan));
}

void sync_(at::TensorList fast, at::TensorList slow, double alpha) {
  check_alpha(alpha);
  const TensorLists lists{fast, slow};
  auto plan = check_sync(TableOp::kSync, lists);
  run("lookahead_sync_", lists, TableOp::kSync, UpdateArgs{alpha}, nullptr, std::move(plan));
}

void sync_on_step_(at::TensorList fast, at::TensorList slow, const at::Tensor& alpha, const at::Tensor& step,
                   int64_t k) {
  check_step_gate(fast, alpha, step, k);
  const TensorLists lists{fast, slow};
  auto plan = check_sync(TableOp::kSync, lists);
  run_on_step("lookahead_sync_", lists, TableOp::kSync, alpha, step, k, UpdateArgs{}, std::move(plan));
}

void swap_(at::TensorList first, at::TensorList second) {
  check_swap_pairs(first, second);
  run("swap_", {first, second}, TableOp::kSwap, UpdateArgs{});
}

void momentum_sync_(at::TensorList fast, at::TensorList slow, at::TensorList momentum, double alpha, double mu,
                    bool nesterov) {
  check_alpha(alpha);
  check_mu(mu);
  const TensorLists lists{fast, slow, momentum};
  auto plan = check_sync(TableOp::kMomentumSync, lists);
  run("lookahead_sync_", lists, TableOp::kMomentumSync, UpdateArgs{alpha, mu, nesterov}, nullptr, std::move(plan));
}

void momentum_sync_on_step_(at::TensorList fast, at::TensorList slow, at::TensorList momentum, const at::Tensor& alpha,
                            const at::Tensor& step, int64_t k, double mu, bool nesterov) {
  check_mu(mu);
  check_step_gate(fast, alpha, step, k);
  const TensorLists lists{fast, slow, momentum};
  auto plan = check_sync(TableOp::kMomentumSync, lists);
  run_on_step("lookahead_sync_", lists, TableOp::kMomentumSync, alpha, step, k, UpdateArgs{0.0, mu, nesterov},
              std::move(plan));
}

void compact_sync_(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, double alpha) {
  check_alpha(alpha, kCompactOp);
  const TensorLists lists{fast, slow_high, slow_low};
  auto plan = check_sync(TableOp::kCompactSync, lists);
  run(kCompactOp, lists, TableOp::kCompactSync, UpdateArgs{alpha}, nullptr, std::move(plan));
}

void compact_sync_on_step_(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                           const at::Tensor& alpha, const at::Tensor& step, int64_t k) {
  check_step_gate(fast, alpha, step, k, kCompactGatedOp);
  const TensorLists lists{fast, slow_high, slow_low};
  auto plan = check_sync(TableOp::kCompactSync, lists);
  run_on_step(kCompactOp, lists, TableOp::kCompactSync, alpha, step, k, UpdateArgs{}, std::move(plan));
}

void compact_momentum_sync_(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                            at::TensorList momentum, double alpha, double mu, bool nesterov) {
  check_alpha(alpha, kCompactOp);
  check_mu(mu, kCompactOp);
  const TensorLists lists{fast, slow_high, slow_low, momentum};
  auto plan = check_sync(TableOp::kCompactMomentumSync, lists);
  run(kCompactOp, lists, TableOp::kCompactMomentumSync, UpdateArgs{alpha, mu, nesterov}, nullptr, std::move(plan));
}

void compact_momentum_sync_on_step_(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                                    at::TensorList momentum, const at::Tensor& alpha, const at::Tensor& step, int64_t k,
                                    double mu, bool nesterov) {
  check_mu(mu, kCompactGatedOp);
  check_step_gate(fast, alpha, step, k, kCompactGatedOp);
  const TensorLists lists{fast, slow_high, slow_low, momentum};
  auto plan = check_sync(TableOp::kCompactMomentumSync, lists);
  run_on_step(kCompactOp, lists, TableOp::kCompactMomentumSync, alpha, step, k, UpdateArgs{0.0, mu, nesterov},
              std::move(plan));
}

void pseudo_gradient_(at::TensorList fast, at::TensorList slow, at::TensorList out) {
  const TensorLists lists{fast, slow, out};
  auto plan = check_sync(TableOp::kPseudoGradient, lists);
  launch_on_plan(kPseudoGradientOp, lists, TableOp::kPseudoGradient, UpdateArgs{}, nullptr, std::move(plan));
  bump_versions({out});  // fast and slow are only read
}

namespace {

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
// The dtype of a checked param of the int8-block kernels (float32, float16 or bfloat16) as they take it.
Int8FastDtype int8_fast_dtype_of(const at::Tensor& t) {
  const at::ScalarType type = t.scalar_type();
  return type == at::kFloat ? Int8FastDtype::kF32 : type == at::kHalf ? Int8FastDtype::kF16 : Int8FastDtype::kBF16;
}

// One launch per kInt8LaunchEntries entries of checked lists on one CUDA device, on its current stream;
// with a gate, only when *step % k == 0, decided on the device (see [NOTE: step gate] in csrc/table.h).
void launch_int8_momentum_on_cuda(at::TensorList fast, at::TensorList slow, at::TensorList slow_low,
                                  at::TensorList momentum, at::TensorList scales, double alpha, double mu, bool nesterov,
                                  const StepGate* gate) {
  std::vector<Int8CudaEntry> entries;
  entries.reserve(fast.size());
  for (size_t i = 0; i < fast.size(); ++i) {
    if (fast[i].numel() == 0) continue;
    entries.push_back({fast[i].mutable_data_ptr(), slow[i].mutable_data_ptr(),
                       slow_low.empty() ? nullptr : slow_low[i].mutable_data_ptr<int8_t>(),
                       momentum[i].mutable_data_ptr<int8_t>(), scales[i].mutable_data_ptr<float>(), fast[i].numel(),
                       int8_fast_dtype_of(fast[i])});
  }
  if (entries.empty()) return;
  const at::Device device = fast[0].device();
  c10::cuda::CUDAGuard guard(device);
  auto stream = c10::cuda::getCurrentCUDAStream(device.index());
  launch_int8_momentum_cuda(entries, alpha, mu, nesterov, gate, stream.stream(), device.index());
}
#endif

// The lists of an int8 momentum sync as its kernels take them: the slow weights, float32 or the high
// parts of compact ones, and the residuals of compact ones (empty for float32).
struct Int8MomentumLists {
  at::TensorList fast, slow, slow_low, momentum, scales;
  TensorLists written() const {
    if (slow_low.empty()) return {fast, slow, momentum, scales};
    return {fast, slow, slow_low, momentum, scales};
  }
};

// Whether the int8 momentum sync of `fast` runs on CUDA (see runs_on_cuda); false for no tensors.
bool int8_momentum_on_cuda(at::TensorList fast, const char* op) {
  return !fast.empty() && runs_on_cuda(fast[0].device(), op);
}

// The int8 momentum sync (or the compact one) of checked lists on the device `on_cuda` names, and the
// versions of what it writes. `gate`: null, or the step gate in device memory (CUDA only; a CPU caller
// resolves its gate on the host).
void run_int8_momentum(const Int8MomentumLists& l, bool on_cuda, double alpha, double mu, bool nesterov,
                       const StepGate* gate = nullptr) {
  if (on_cuda) {
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
    launch_int8_momentum_on_cuda(l.fast, l.slow, l.slow_low, l.momentum, l.scales, alpha, mu, nesterov, gate);
#endif
  } else {
    run_int8_momentum_cpu(l.fast, l.slow, l.slow_low, l.momentum, l.scales, alpha, mu, nesterov);
  }
  bump_versions(l.written());
}

// The gated int8 momentum sync of checked lists: the gate read on the host on the CPU, as run_on_step
// does, and by the kernel on CUDA (see [NOTE: step gate] in csrc/table.h).
void run_int8_momentum_on_step(const Int8MomentumLists& l, const at::Tensor& alpha, const at::Tensor& step,
                               int64_t k, double mu, bool nesterov, const char* op) {
  const bool on_cuda = int8_momentum_on_cuda(l.fast, op);
  if (l.fast.empty()) return;
  if (on_cuda) {  // the gate and alpha read where they live, by the kernel
    const StepGate gate{step.const_data_ptr<int64_t>(), k, alpha.const_data_ptr(), alpha.scalar_type() == at::kDouble};
    return run_int8_momentum(l, true, 0.0, mu, nesterov, &gate);
  }
  const double alpha_value = alpha.item<double>();
  check_alpha(alpha_value, op);
  if (step.item<int64_t>() % k != 0) return bump_versions(l.written());
  run_int8_momentum(l, false, alpha_value, mu, nesterov);
}

}  // namespace

void int8_momentum_sync_(at::TensorList fast, at::TensorList slow, at::TensorList momentum, at::TensorList scales,
                         double alpha, double mu, bool nesterov) {
  check_alpha(alpha, kInt8MomentumOp);
  check_mu(mu, kInt8MomentumOp);
  check_int8_momentum_lists(fast, slow, momentum, scales);
  const bool on_cuda = int8_momentum_on_cuda(fast, kInt8MomentumOp);
  run_int8_momentum({fast, slow, {}, momentum, scales}, on_cuda, alpha, mu, nesterov);
}

void int8_momentum_sync_on_step_(at::TensorList fast, at::TensorList slow, at::TensorList momentum,
                                 at::TensorList scales, const at::Tensor& alpha, const at::Tensor& step, int64_t k,
                                 double mu, bool nesterov) {
  check_mu(mu, kInt8MomentumOp);
  check_step_gate(fast, alpha, step, k, kInt8MomentumGatedOp);
  check_int8_momentum_lists(fast, slow, momentum, scales);
  run_int8_momentum_on_step({fast, slow, {}, momentum, scales}, alpha, step, k, mu, nesterov, kInt8MomentumOp);
}

void compact_int8_momentum_sync_(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                                 at::TensorList momentum, at::TensorList scales, double alpha, double mu,
                                 bool nesterov) {
  check_alpha(alpha, kCompactOp);
  check_mu(mu, kCompactOp);
  check_compact_int8_momentum_lists(fast, slow_high, slow_low, momentum, scales);
  const bool on_cuda = int8_momentum_on_cuda(fast, kCompactOp);
  run_int8_momentum({fast, slow_high, slow_low, momentum, scales}, on_cuda, alpha, mu, nesterov);
}

void compact_int8_momentum_sync_on_step_(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                                         at::TensorList momentum, at::TensorList scales, const at::Tensor& alpha,
                                         const at::Tensor& step, int64_t k, double mu, bool nesterov) {
  check_mu(mu, kCompactGatedOp);
  check_step_gate(fast, alpha, step, k, kCompactGatedOp);
  check_compact_int8_momentum_lists(fast, slow_high, slow_low, momentum, scales);
  run_int8_momentum_on_step({fast, slow_high, slow_low, momentum, scales}, alpha, step, k, mu, nesterov, kCompactOp);
}

namespace {

// The lists of an AdamW step as the table takes them (see [NOTE: entry dtypes] in csrc/table.h): without outer
// momentum five, without slow weights four.
TensorLists adamw_lists(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                        at::TensorList exp_avg_sqs, at::TensorList slow, at::TensorList momentum) {
  TensorLists lists{params, grads, exp_avgs, exp_avg_sqs};
  if (!slow.empty()) lists.push_back(slow);
  if (!momentum.empty()) lists.push_back(momentum);
  return lists;
}

TableOp adamw_op_of(at::TensorList slow, at::TensorList momentum) {
  if (slow.empty()) return TableOp::kAdamWAlone;
  return momentum.empty() ? TableOp::kAdamW : TableOp::kAdamWMomentum;
}

// An AdamW op's outer momentum mu needs the momentum tensors.
void check_mu_has_momentum(const char* op, double mu, at::TensorList momentum) {
  LOOKAHEAD_CHECK_VALUE(mu == 0.0 || !momentum.empty(),
                        message(op, ": outer momentum mu = ", mu, " needs the momentum tensors"));
}

// AdamW's table op `op` on checked lists (the grads second), and the versions of all but the grads.
void run_adamw(const char* name, const TensorLists& lists, TableOp op, const at::Tensor& hyper, const at::Tensor& rows,
               double mu, bool nesterov) {
  UpdateArgs args;
  args.mu = mu;
  args.nesterov = nesterov;
  args.hyper = hyper.const_data_ptr<double>();
  args.rows = rows.const_data_ptr<int64_t>();
  launch_on_plan(name, lists, op, args, nullptr);
  TensorLists written = lists;
  written.erase(written.begin() + 1);  // the grads are only read
  bump_versions(written);
}

}  // namespace

void adamw_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                 at::TensorList slow, at::TensorList momentum, const at::Tensor& hyper, const at::Tensor& rows, double mu,
                 bool nesterov) {
  check_mu(mu);
  check_adamw_args({params, grads, exp_avgs, exp_avg_sqs, slow, momentum}, hyper, rows);
  check_mu_has_momentum("lookahead_adamw_step_", mu, momentum);
  run_adamw("lookahead_adamw_step_", adamw_lists(params, grads, exp_avgs, exp_avg_sqs, slow, momentum),
            adamw_op_of(slow, momentum), hyper, rows, mu, nesterov);
}

void adamw_compact_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                         at::TensorList exp_avg_sqs, at::TensorList slow_high, at::TensorList slow_low,
                         at::TensorList momentum, const at::Tensor& hyper, const at::Tensor& rows, double mu,
                         bool nesterov) {
  check_mu(mu, kAdamWCompactOp);
  TensorLists lists{params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum};
  check_adamw_compact_args(lists, hyper, rows);
  check_mu_has_momentum(kAdamWCompactOp, mu, momentum);
  if (momentum.empty()) lists.pop_back();
  const TableOp op = momentum.empty() ? TableOp::kAdamWCompact : TableOp::kAdamWCompactMomentum;
  run_adamw(kAdamWCompactOp, lists, op, hyper, rows, mu, nesterov);
}

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
namespace {

// One launch per kDeltaLaunchEntries entries of checked lists on one CUDA device, on its current stream.
void launch_adamw_delta_on_cuda(const TensorLists& lists, const at::Tensor& hyper, const at::Tensor& rows, double mu,
                                bool nesterov) {
  at::TensorList params = lists[0], momentum = lists[6], momentum_scales = lists[7];
  std::vector<DeltaCudaEntry> entries;
  entries.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].numel() == 0) continue;
    const DeltaMomentumDtype momentum_dtype = delta_momentum_dtype_of(momentum, momentum_scales, i);
    const bool int8_momentum = momentum_dtype == DeltaMomentumDtype::kInt8;
    entries.push_back({params[i].mutable_data_ptr(), lists[1][i].const_data_ptr(), lists[2][i].mutable_data_ptr(),
                       lists[3][i].mutable_data_ptr(), lists[4][i].mutable_data_ptr<int8_t>(),
                       lists[5][i].mutable_data_ptr<float>(),
                       momentum.empty() ? nullptr : momentum[i].mutable_data_ptr(),
                       int8_momentum ? momentum_scales[i].mutable_data_ptr<float>() : nullptr, params[i].numel(),
                       static_cast<int64_t>(i), int8_fast_dtype_of(params[i]), momentum_dtype});
  }
  if (entries.empty()) return;
  const at::Device device = params[0].device();
  c10::cuda::CUDAGuard guard(device);
  auto stream = c10::cuda::getCurrentCUDAStream(device.index());
  launch_adamw_delta_cuda(entries, hyper.const_data_ptr<double>(), rows.const_data_ptr<int64_t>(),
                          static_cast<float>(mu), nesterov, stream.stream(), device.index());
}

}  // namespace
#endif

void adamw_delta_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                       at::TensorList delta, at::TensorList scales, at::TensorList momentum,
                       at::TensorList momentum_scales, const at::Tensor& hyper, const at::Tensor& rows, double mu,
                       bool nesterov) {
  const TensorLists lists{params, grads, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales};
  if (!momentum.empty() || !momentum_scales.empty()) check_mu(mu, kAdamWDeltaOp);
  check_adamw_delta_args(lists, hyper, rows);
  if (params.empty()) return;
  if (runs_on_cuda(params[0].device(), kAdamWDeltaOp)) {
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
    launch_adamw_delta_on_cuda(lists, hyper, rows, mu, nesterov);
#endif
  } else {
    run_adamw_delta_cpu(lists, hyper, rows, static_cast<float>(mu), nesterov);
  }
  bump_versions({params, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales});  // not the grads
}

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
namespace {

// One launch of checked lists {params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales} on one
// CUDA device, on its current stream.
void launch_adamw_int8_momentum_on_cuda(const TensorLists& lists, const at::Tensor& hyper, const at::Tensor& rows,
                                        double mu, bool nesterov) {
  at::TensorList params = lists[0], slow_low = lists[5];
  std::vector<AdamWInt8CudaEntry> entries;
  entries.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].numel() == 0) continue;
    entries.push_back({params[i].mutable_data_ptr(), lists[1][i].const_data_ptr(), lists[2][i].mutable_data_ptr(),
                       lists[3][i].mutable_data_ptr(), lists[4][i].mutable_data_ptr(),
                       slow_low.empty() ? nullptr : slow_low[i].mutable_data_ptr<int8_t>(),
                       lists[6][i].mutable_data_ptr<int8_t>(), lists[7][i].mutable_data_ptr<float>(),
                       params[i].numel(), static_cast<int64_t>(i), int8_fast_dtype_of(params[i])});
  }
  if (entries.empty()) return;
  const at::Device device = params[0].device();
  c10::cuda::CUDAGuard guard(device);
  auto stream = c10::cuda::getCurrentCUDAStream(device.index());
  launch_adamw_int8_momentum_cuda(entries, hyper.const_data_ptr<double>(), rows.const_data_ptr<int64_t>(),
                                  static_cast<float>(mu), nesterov, stream.stream(), device.index());
}

}  // namespace
#endif

void adamw_int8_momentum_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                               at::TensorList exp_avg_sqs, at::TensorList slow, at::TensorList slow_low,
                               at::TensorList momentum, at::TensorList scales, const at::Tensor& hyper,
                               const at::Tensor& rows, double mu, bool nesterov) {
  check_mu(mu, kAdamWInt8MomentumOp);
  const TensorLists lists{params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales};
  check_adamw_int8_momentum_args(lists, hyper, rows);
  if (params.empty()) return;
  if (runs_on_cuda(params[0].device(), kAdamWInt8MomentumOp)) {
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
    launch_adamw_int8_momentum_on_cuda(lists, hyper, rows, mu, nesterov);
#endif
  } else {
    run_adamw_int8_momentum_cpu(lists, hyper, rows, static_cast<float>(mu), nesterov);
  }
  bump_versions({params, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales});  // not the grads
}

void sync_meta(at::TensorList fast, at::TensorList slow, double alpha) {
  check_alpha(alpha);
  check_all_meta("lookahead_sync_", {fast, slow});
}

void sync_on_step_meta(at::TensorList fast, at::TensorList slow, const at::Tensor& alpha, const at::Tensor& step,
                       int64_t k) {
  check_all_meta("lookahead_sync_", {fast, slow});
  check_step_gate(fast, alpha, step, k);
}

void swap_meta(at::TensorList first, at::TensorList second) { check_all_meta("swap_", {first, second}); }

void momentum_sync_meta(at::TensorList fast, at::TensorList slow, at::TensorList momentum, double alpha, double mu,
                        bool /*nesterov*/) {
  check_alpha(alpha);
  check_mu(mu);
  check_all_meta("lookahead_sync_", {fast, slow, momentum});
}

void momentum_sync_on_step_meta(at::TensorList fast, at::TensorList slow, at::TensorList momentum,
                                const at::Tensor& alpha, const at::Tensor& step, int64_t k, double mu,
                                bool /*nesterov*/) {
  check_mu(mu);
  check_all_meta("lookahead_sync_", {fast, slow, momentum});
  check_step_gate(fast, alpha, step, k);
}

void compact_sync_meta(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low, double alpha) {
  check_alpha(alpha, kCompactOp);
  check_all_meta(kCompactOp, {fast, slow_high, slow_low}, list_names(TableOp::kCompactSync));
}

void compact_sync_on_step_meta(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                               const at::Tensor& alpha, const at::Tensor& step, int64_t k) {
  check_all_meta(kCompactGatedOp, {fast, slow_high, slow_low}, list_names(TableOp::kCompactSync));
  check_step_gate(fast, alpha, step, k, kCompactGatedOp);
}

void compact_momentum_sync_meta(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                                at::TensorList momentum, double alpha, double mu, bool /*nesterov*/) {
  check_alpha(alpha, kCompactOp);
  check_mu(mu, kCompactOp);
  check_all_meta(kCompactOp, {fast, slow_high, slow_low, momentum}, list_names(TableOp::kCompactMomentumSync));
}

void compact_momentum_sync_on_step_meta(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                                        at::TensorList momentum, const at::Tensor& alpha, const at::Tensor& step,
                                        int64_t k, double mu, bool /*nesterov*/) {
  check_mu(mu, kCompactGatedOp);
  check_all_meta(kCompactGatedOp, {fast, slow_high, slow_low, momentum}, list_names(TableOp::kCompactMomentumSync));
  check_step_gate(fast, alpha, step, k, kCompactGatedOp);
}

void pseudo_gradient_meta(at::TensorList fast, at::TensorList slow, at::TensorList out) {
  check_all_meta(kPseudoGradientOp, {fast, slow, out}, list_names(TableOp::kPseudoGradient));
}

void int8_momentum_sync_meta(at::TensorList fast, at::TensorList slow, at::TensorList momentum, at::TensorList scales,
                             double alpha, double mu, bool /*nesterov*/) {
  check_alpha(alpha, kInt8MomentumOp);
  check_mu(mu, kInt8MomentumOp);
  check_all_meta(kInt8MomentumOp, {fast, slow, momentum, scales}, int8_momentum_list_names());
}

void int8_momentum_sync_on_step_meta(at::TensorList fast, at::TensorList slow, at::TensorList momentum,
                                     at::TensorList scales, const at::Tensor& alpha, const at::Tensor& step, int64_t k,
                                     double mu, bool /*nesterov*/) {
  check_mu(mu, kInt8MomentumOp);
  check_all_meta(kInt8MomentumGatedOp, {fast, slow, momentum, scales}, int8_momentum_list_names());
  check_step_gate(fast, alpha, step, k, kInt8MomentumGatedOp);
}

void compact_int8_momentum_sync_meta(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                                     at::TensorList momentum, at::TensorList scales, double alpha, double mu,
                                     bool /*nesterov*/) {
  check_alpha(alpha, kCompactOp);
  check_mu(mu, kCompactOp);
  check_all_meta(kCompactOp, {fast, slow_high, slow_low, momentum, scales}, compact_int8_momentum_list_names());
}

void compact_int8_momentum_sync_on_step_meta(at::TensorList fast, at::TensorList slow_high, at::TensorList slow_low,
                                             at::TensorList momentum, at::TensorList scales, const at::Tensor& alpha,
                                             const at::Tensor& step, int64_t k, double mu, bool /*nesterov*/) {
  check_mu(mu, kCompactGatedOp);
  check_all_meta(kCompactGatedOp, {fast, slow_high, slow_low, momentum, scales}, compact_int8_momentum_list_names());
  check_step_gate(fast, alpha, step, k, kCompactGatedOp);
}

void adamw_step_meta(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                     at::TensorList slow, at::TensorList momentum, const at::Tensor& /*hyper*/,
                     const at::Tensor& /*rows*/, double mu, bool /*nesterov*/) {
  check_mu(mu);
  check_all_meta("lookahead_adamw_step_", adamw_lists(params, grads, exp_avgs, exp_avg_sqs, slow, momentum),
                 list_names(adamw_op_of(slow, momentum)));
}

void adamw_compact_step_meta(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                             at::TensorList exp_avg_sqs, at::TensorList slow_high, at::TensorList slow_low,
                             at::TensorList momentum, const at::Tensor& /*hyper*/, const at::Tensor& /*rows*/,
                             double mu, bool /*nesterov*/) {
  check_mu(mu, kAdamWCompactOp);
  TensorLists lists{params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low};
  if (!momentum.empty()) lists.push_back(momentum);
  check_all_meta(kAdamWCompactOp, lists, list_names(TableOp::kAdamWCompactMomentum));
  check_mu_has_momentum(kAdamWCompactOp, mu, momentum);
}

void adamw_delta_step_meta(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                           at::TensorList exp_avg_sqs, at::TensorList delta, at::TensorList scales,
                           at::TensorList momentum, at::TensorList momentum_scales, const at::Tensor& /*hyper*/,
                           const at::Tensor& /*rows*/, double mu, bool /*nesterov*/) {
  TensorLists lists{params, grads, exp_avgs, exp_avg_sqs, delta, scales};
  if (!momentum.empty() || !momentum_scales.empty()) {
    check_mu(mu, kAdamWDeltaOp);
    lists.push_back(momentum);
  }
  if (!momentum_scales.empty()) lists.push_back(momentum_scales);  // none beside a float momentum
  check_all_meta(kAdamWDeltaOp, lists, adamw_delta_list_names());
}

void adamw_int8_momentum_step_meta(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                                   at::TensorList exp_avg_sqs, at::TensorList slow, at::TensorList slow_low,
                                   at::TensorList momentum, at::TensorList scales, const at::Tensor& /*hyper*/,
                                   const at::Tensor& /*rows*/, double mu, bool /*nesterov*/) {
  check_mu(mu, kAdamWInt8MomentumOp);
  TensorLists lists{params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales};
  std::vector<const char*> names(adamw_int8_momentum_list_names(), adamw_int8_momentum_list_names() + lists.size());
  if (slow_low.empty()) {  // float32 slow weights: no residuals to count
    lists.erase(lists.begin() + 5);
    names.erase(names.begin() + 5);
  }
  check_all_meta(kAdamWInt8MomentumOp, lists, names.data());
}

}  // namespace lookahead_fused
