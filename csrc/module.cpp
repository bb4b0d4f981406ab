// lookahead_fused._C: the torch.library ops of the op list (op_list.h) with their CPU, CUDA and
// Meta kernels (ops.h), the same ops as eager pybind11 functions, and a small pybind11 surface:
// build info, the list check, the plan class, plan-cache statistics.
#include <torch/extension.h>
#include <torch/library.h>
#include <torch/version.h>

#include "adamw.h"
#include "contract.h"
#include "cpu/sync_cpu.h"
#include "dtypes.h"
#include "op_list.h"
#include "ops.h"
#include "plan.h"

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION
#endif

#ifndef LOOKAHEAD_FUSED_CUDA_ARCHS
#define LOOKAHEAD_FUSED_CUDA_ARCHS ""
#endif

namespace lookahead_fused {
namespace {

// [NOTE: eager entry points] The same ops as plain pybind11 functions, for eager calls from
// lookahead_fused.backends.native. Through the dispatcher, a call with 4000 tensors spent ~0.45 ms
// before the kernel ran (issue 14): the boxed call copies every tensor into its argument stack and
// out again with the GIL released, and each copy of a tensor that Python also holds takes the GIL
// back to count the reference. Here the lists are converted once, with the GIL held, and released
// only around the work. torch.compile keeps calling the torch.library ops (the NativeBackend picks).
template <typename T>
struct PythonArgument {  // how pybind11 hands over a kernel parameter
  using type = T;
};
template <>
struct PythonArgument<at::TensorList> {
  using type = const std::vector<at::Tensor>&;
};

template <auto Kernel, auto MetaKernel>
struct Eager;
template <typename First, typename... Rest, void (*Kernel)(First, Rest...), void (*MetaKernel)(First, Rest...)>
struct Eager<Kernel, MetaKernel> {
  static void call(typename PythonArgument<First>::type first, typename PythonArgument<Rest>::type... rest) {
    pybind11::gil_scoped_release no_gil;
    if (!first.empty() && first[0].is_meta()) {
      MetaKernel(first, rest...);
    } else {
      Kernel(first, rest...);
    }
  }
};

// The plan class of the Python module: a table built once for a parameter set, for inspection.
struct PlanHandle {
  std::shared_ptr<const Plan> plan;
  PlanHandle(const std::vector<at::Tensor>& fast, const std::vector<at::Tensor>& slow) {
    check_sync_lists(fast, slow);
    plan = build_plan({fast, slow}, roles_of(TableOp::kSync));
  }
  at::Tensor words() const {
    return at::from_blob(const_cast<int64_t*>(plan->words.data()), {static_cast<int64_t>(plan->words.size())},
                         at::kLong)
        .clone();
  }
};

// [(pair code, fast dtype, state dtype)] of the dtype list (see [NOTE: dtype list] in csrc/table.h), by Python names.
py::list dtype_pairs() {
  py::list pairs;
#define LOOKAHEAD_NAME(token, scalar_type, name, bytes) const char* kName##token = name;
  LOOKAHEAD_DTYPES(LOOKAHEAD_NAME)
#undef LOOKAHEAD_NAME
#define LOOKAHEAD_PAIR_ENTRY(code, fast, state) pairs.append(py::make_tuple(code, kName##fast, kName##state));
  LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_PAIR_ENTRY)
#undef LOOKAHEAD_PAIR_ENTRY
  return pairs;
}

}  // namespace
}  // namespace lookahead_fused

#define LOOKAHEAD_IMPL_KERNEL(name, schema, parameters) m.impl(#name, &lookahead_fused::name);
#define LOOKAHEAD_IMPL_META_KERNEL(name, schema, parameters) m.impl(#name, &lookahead_fused::name##meta);

TORCH_LIBRARY(lookahead_fused, m) {
#define LOOKAHEAD_DEF_OP(name, schema, parameters) m.def(#name schema);
  LOOKAHEAD_OPS(LOOKAHEAD_DEF_OP)
#undef LOOKAHEAD_DEF_OP
}

TORCH_LIBRARY_IMPL(lookahead_fused, CPU, m) { LOOKAHEAD_OPS(LOOKAHEAD_IMPL_KERNEL) }

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
TORCH_LIBRARY_IMPL(lookahead_fused, CUDA, m) { LOOKAHEAD_OPS(LOOKAHEAD_IMPL_KERNEL) }
#endif

TORCH_LIBRARY_IMPL(lookahead_fused, Meta, m) { LOOKAHEAD_OPS(LOOKAHEAD_IMPL_META_KERNEL) }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace lookahead_fused;
  m.doc() = "lookahead_fused C++/CUDA kernels; the ops are torch.ops.lookahead_fused.*";
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
    info["dtype_pairs"] = dtype_pairs();
    py::list columns;
#define LOOKAHEAD_COLUMN_NAME(token, name) columns.append(name);
    LOOKAHEAD_ADAMW_COLUMNS(LOOKAHEAD_COLUMN_NAME)
#undef LOOKAHEAD_COLUMN_NAME
    info["adamw_columns"] = columns;
    py::list ops;
#define LOOKAHEAD_OP_SCHEMA(name, schema, parameters) ops.append(py::make_tuple(#name, schema));
    LOOKAHEAD_OPS(LOOKAHEAD_OP_SCHEMA)
#undef LOOKAHEAD_OP_SCHEMA
    info["ops"] = ops;
    return info;
  });
  using Tensors = std::vector<at::Tensor>;
#define LOOKAHEAD_EAGER_OP(name, schema, parameters)                       \
  m.def(#name, &Eager<&lookahead_fused::name, &lookahead_fused::name##meta>::call, \
        "lookahead_fused::" #name " without the dispatcher (see [NOTE: eager entry points] in csrc/module.cpp).");
  LOOKAHEAD_OPS(LOOKAHEAD_EAGER_OP)
#undef LOOKAHEAD_EAGER_OP
  m.def("cpu_parallel_threads", &cpu_parallel_threads,
        "How many threads the CPU kernel's at::parallel_for uses for this many one-task chunks.");
  m.def("check_sync_lists", [](const Tensors& fast, const Tensors& slow, const Tensors& momentum) {
    pybind11::gil_scoped_release no_gil;
    check_sync_lists(fast, slow, momentum);
  }, "Raise ValueError, as lookahead_sync_ would, if the pairs (with `momentum`, the triples) break the op "
     "contract; write nothing.", py::arg("fast"), py::arg("slow"), py::arg("momentum") = Tensors{});
  m.def("plan_cache_stats", [] {
    auto stats = plan_cache_stats();
    py::dict out;
    out["builds"] = stats.builds;
    out["hits"] = stats.hits;
    return out;
  });
  m.def("clear_plan_cache", &clear_plan_cache);
  m.def("table_words", [](const std::vector<Tensors>& lists, int fast) {
    const TensorLists views(lists.begin(), lists.end());
    auto plan = build_plan(views, EntryRoles{static_cast<int>(lists.size()), fast});
    return at::from_blob(const_cast<int64_t*>(plan->words.data()), {static_cast<int64_t>(plan->words.size())}, at::kLong)
        .clone();
  },
        "The table of a new plan for `lists` whose first `fast` lists have the fast dtype, as an int64 CPU tensor; "
        "for tests of any op's entry roles.",
        py::arg("lists"), py::arg("fast"));  // see [NOTE: entry dtypes] in csrc/table.h
  py::class_<PlanHandle>(m, "SyncPlan", "The tensor table of one parameter set (see csrc/table.h).")
      .def(py::init<const Tensors&, const Tensors&>(), py::arg("fast"), py::arg("slow"))
      .def_property_readonly("num_pairs", [](const PlanHandle& h) { return h.plan->num_entries; })
      .def_property_readonly("num_chunks", [](const PlanHandle& h) { return h.plan->num_chunks; })
      .def_property_readonly("chunk_elements", [](const PlanHandle& h) { return h.plan->chunk_elems; })
      .def_property_readonly("device", [](const PlanHandle& h) { return h.plan->device.str(); })
      .def("words", &PlanHandle::words, "The table as an int64 CPU tensor.");
}
