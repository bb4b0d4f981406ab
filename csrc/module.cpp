// lookahead_fused._C: the torch.library ops lookahead_fused::sync_, ::sync_on_step_ and ::swap_ (CPU,
// CUDA and Meta kernels), the same ops as eager pybind11 functions, and a small pybind11 surface:
// build info, the plan class, plan-cache statistics.
#include <torch/csrc/autograd/variable.h>
#include <torch/extension.h>
#include <torch/library.h>
#include <torch/version.h>

#include <cmath>

#include "contract.h"
#include "cpu/sync_cpu.h"
#include "plan.h"
#include "table.h"

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/capture.h"
#endif

#ifndef LOOKAHEAD_FUSED_CUDA_ARCHS
#define LOOKAHEAD_FUSED_CUDA_ARCHS ""
#endif

namespace lookahead_fused {
namespace {

void check_alpha(double alpha) {
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha >= 0.0 && alpha <= 1.0,
                    "lookahead_sync_: alpha must be a finite number in [0, 1], got ", alpha);
}

// [NOTE: versions] A mutating op bumps the autograd version of every tensor it may write, as torch's
// in-place ops and foreach ops do, so autograd refuses a backward through a value the sync changed.
// Both entry points (the dispatcher and the eager pybind calls) come through run().
void bump_versions(at::TensorList first, at::TensorList second) {
  for (at::TensorList list : {first, second}) {
    for (const at::Tensor& t : list) {
      if (!t.is_inference()) torch::autograd::impl::bump_version(t);
    }
  }
}

// `gate`: null, or the step gate of sync_on_step_ in device memory (only the CUDA kernel takes one).
void launch_on_plan(const char* name, at::TensorList first, at::TensorList second, TableOp op, double alpha,
                    const StepGate* gate) {
  if (first.empty()) return;
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
  if (first[0].is_cuda()) {
    release_plans_of_destroyed_graphs();
    c10::cuda::CUDAGuard guard(first[0].device());
    auto stream = c10::cuda::getCurrentCUDAStream(first[0].device().index());
    const bool capturing = is_capturing(stream.stream());
    auto plan = find_or_build_plan(first, second, [&] {
      TORCH_CHECK(!capturing, name, ": these tensors have no kernel plan yet, and one cannot be built while a CUDA ",
                  "graph is being captured (its upload is a blocking host-to-device copy). Run the same step once ",
                  "eagerly before capturing (warm-up), with the same tensors.");
      check_no_overlap(name, first, second);
    });
    if (capturing) keep_alive_with_captured_graph(plan, stream.stream());  // [NOTE: plans under capture]
    plan->device_words.record_stream(stream);  // a plan evicted from the cache stays alive for this launch
    if (gate != nullptr) {
      launch_cuda_on_step(plan->device_view(), *gate, stream.stream(), plan->device.index());
    } else {
      launch_cuda(plan->device_view(), op, alpha, stream.stream(), plan->device.index());
    }
    return;
  }
#endif
  auto plan = find_or_build_plan(first, second, [&] { check_no_overlap(name, first, second); });
  TORCH_CHECK(plan->device.is_cpu(), "lookahead_fused: no kernel for tensors on ", plan->device);
  if (gate == nullptr) run_cpu(*plan, op, alpha);  // a CPU caller resolves its gate on the host
}

void run(const char* name, at::TensorList first, at::TensorList second, TableOp op, double alpha,
         const StepGate* gate = nullptr) {
  launch_on_plan(name, first, second, op, alpha, gate);
  bump_versions(first, second);
}

void sync_(at::TensorList fast, at::TensorList slow, double alpha) {
  check_alpha(alpha);
  check_sync_pairs(fast, slow);
  run("lookahead_sync_", fast, slow, TableOp::kSync, alpha);
}

// See [NOTE: step gate] in table.h. On the CPU the gate is host memory and is read here; there
// alpha's value is checked too, which on a GPU would cost a synchronisation.
void sync_on_step_(at::TensorList fast, at::TensorList slow, const at::Tensor& alpha, const at::Tensor& step,
                   int64_t k) {
  check_step_gate(fast, alpha, step, k);
  check_sync_pairs(fast, slow);
  if (fast.empty()) return;
  StepGate gate{step.const_data_ptr<int64_t>(), k, alpha.const_data_ptr(), alpha.scalar_type() == at::kDouble};
  if (!fast[0].is_cpu()) return run("lookahead_sync_", fast, slow, TableOp::kSync, 0.0, &gate);
  double alpha_value = alpha.item<double>();
  check_alpha(alpha_value);
  bool syncs = step.item<int64_t>() % k == 0;
  run("lookahead_sync_", fast, slow, TableOp::kSync, alpha_value, syncs ? nullptr : &gate);  // checks either way
}

void swap_(at::TensorList first, at::TensorList second) {
  check_swap_pairs(first, second);
  run("swap_", first, second, TableOp::kSwap, 0.0);
}

// Under torch.compile's fake tensors (which reach this kernel as meta tensors, perhaps with symbolic
// sizes): the checks that need no sizes, and no writes; the real call checks the rest. Tensors on
// another device beside meta ones make a mixed-device call, which lookahead_fused.ops splits.
void check_all_meta(const char* op, at::TensorList first, at::TensorList second) {
  TORCH_CHECK_VALUE(first.size() == second.size(), op, ": fast has ", first.size(), " tensors but slow has ",
                    second.size());
  for (at::TensorList list : {first, second}) {
    for (const at::Tensor& t : list) {
      TORCH_CHECK_NOT_IMPLEMENTED(t.is_meta(), op, ": meta and ", t.device(), " tensors in one call");
    }
  }
}

void sync_meta(at::TensorList fast, at::TensorList slow, double alpha) {
  check_alpha(alpha);
  check_all_meta("lookahead_sync_", fast, slow);
}

void sync_on_step_meta(at::TensorList fast, at::TensorList slow, const at::Tensor& alpha, const at::Tensor& step,
                       int64_t k) {
  check_all_meta("lookahead_sync_", fast, slow);
  check_step_gate(fast, alpha, step, k);
}

void swap_meta(at::TensorList first, at::TensorList second) { check_all_meta("swap_", first, second); }

// [NOTE: eager entry points] The same ops as plain pybind11 functions, for eager calls from
// lookahead_fused.backends.native. Through the dispatcher, a call with 4000 tensors spent ~0.45 ms
// before the kernel ran (issue 14): the boxed call copies every tensor into its argument stack and
// out again with the GIL released, and each copy of a tensor that Python also holds takes the GIL
// back to count the reference. Here the lists are converted once, with the GIL held, and released
// only around the work. torch.compile keeps calling the torch.library ops (the NativeBackend picks).
template <typename RealOp, typename MetaOp>
void eager(at::TensorList first, RealOp real, MetaOp meta) {
  pybind11::gil_scoped_release no_gil;
  if (!first.empty() && first[0].is_meta()) {
    meta();
  } else {
    real();
  }
}

// The plan class of the Python module: a table built once for a parameter set, for inspection.
struct PlanHandle {
  std::shared_ptr<const Plan> plan;
  PlanHandle(const std::vector<at::Tensor>& fast, const std::vector<at::Tensor>& slow) {
    check_sync_args(fast, slow);
    plan = build_plan(fast, slow);
  }
  at::Tensor words() const {
    return at::from_blob(const_cast<int64_t*>(plan->words.data()), {static_cast<int64_t>(plan->words.size())},
                         at::kLong)
        .clone();
  }
};

}  // namespace
}  // namespace lookahead_fused

TORCH_LIBRARY(lookahead_fused, m) {
  m.def("sync_(Tensor(a!)[] fast, Tensor(b!)[] slow, float alpha) -> ()");
  m.def("sync_on_step_(Tensor(a!)[] fast, Tensor(b!)[] slow, Tensor alpha, Tensor step, int k) -> ()");
  m.def("swap_(Tensor(a!)[] first, Tensor(b!)[] second) -> ()");
}

TORCH_LIBRARY_IMPL(lookahead_fused, CPU, m) {
  m.impl("sync_", &lookahead_fused::sync_);
  m.impl("sync_on_step_", &lookahead_fused::sync_on_step_);
  m.impl("swap_", &lookahead_fused::swap_);
}

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
TORCH_LIBRARY_IMPL(lookahead_fused, CUDA, m) {
  m.impl("sync_", &lookahead_fused::sync_);
  m.impl("sync_on_step_", &lookahead_fused::sync_on_step_);
  m.impl("swap_", &lookahead_fused::swap_);
}
#endif

TORCH_LIBRARY_IMPL(lookahead_fused, Meta, m) {
  m.impl("sync_", &lookahead_fused::sync_meta);
  m.impl("sync_on_step_", &lookahead_fused::sync_on_step_meta);
  m.impl("swap_", &lookahead_fused::swap_meta);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace lookahead_fused;
  m.doc() = "lookahead_fused C++/CUDA kernels; the ops are torch.ops.lookahead_fused.sync_ and swap_";
  m.def("build_info", [] {
    py::dict info;
#ifdef LOOKAHEAD_FUSED_WITH_CUDA
    info["cuda"] = true;
    info["cuda_version"] = CUDART_VERSION;
#else
    info["cuda"] = false;
    info["cuda_version"] = py::none();
#endif
    info["cuda_archs"] = LOOKAHEAD_FUSED_CUDA_ARCHS;
    info["torch_version"] = TORCH_VERSION;
    info["cpu_kernel_isa"] = cpu_kernel_isa();
    return info;
  });
  using Tensors = std::vector<at::Tensor>;
  m.def("sync_", [](const Tensors& fast, const Tensors& slow, double alpha) {
    eager(fast, [&] { sync_(fast, slow, alpha); }, [&] { sync_meta(fast, slow, alpha); });
  }, "lookahead_fused::sync_ without the dispatcher ([NOTE: eager entry points]).");
  m.def("sync_on_step_", [](const Tensors& fast, const Tensors& slow, const at::Tensor& alpha, const at::Tensor& step,
                            int64_t k) {
    eager(fast, [&] { sync_on_step_(fast, slow, alpha, step, k); },
          [&] { sync_on_step_meta(fast, slow, alpha, step, k); });
  }, "lookahead_fused::sync_on_step_ without the dispatcher ([NOTE: eager entry points]).");
  m.def("swap_", [](const Tensors& first, const Tensors& second) {
    eager(first, [&] { swap_(first, second); }, [&] { swap_meta(first, second); });
  }, "lookahead_fused::swap_ without the dispatcher ([NOTE: eager entry points]).");
  m.def("cpu_parallel_threads", &cpu_parallel_threads,
        "How many threads the CPU kernel's at::parallel_for uses for this many one-task chunks.");
  m.def("check_sync_args", [](const std::vector<at::Tensor>& fast, const std::vector<at::Tensor>& slow) {
    check_sync_args(fast, slow);
  }, "Raise ValueError, as lookahead_sync_ would, if the pairs break the op contract; write nothing.");
  m.def("plan_cache_stats", [] {
    auto stats = plan_cache_stats();
    py::dict out;
    out["builds"] = stats.builds;
    out["hits"] = stats.hits;
    return out;
  });
  m.def("clear_plan_cache", &clear_plan_cache);
  py::class_<PlanHandle>(m, "SyncPlan", "The tensor table of one parameter set (see csrc/table.h).")
      .def(py::init<const std::vector<at::Tensor>&, const std::vector<at::Tensor>&>(), py::arg("fast"),
           py::arg("slow"))
      .def_property_readonly("num_pairs", [](const PlanHandle& h) { return h.plan->num_pairs; })
      .def_property_readonly("num_chunks", [](const PlanHandle& h) { return h.plan->num_chunks; })
      .def_property_readonly("chunk_elements", [](const PlanHandle& h) { return h.plan->chunk_elems; })
      .def_property_readonly("device", [](const PlanHandle& h) { return h.plan->device.str(); })
      .def("words", &PlanHandle::words, "The table as an int64 CPU tensor.");
}
