// lookahead_fused._C: the torch.library ops of the op list (op_list.h) with their CPU, CUDA and
// Meta kernels (ops.h), the same ops as eager pybind11 functions taking borrowed tensor lists, and a
// small pybind11 surface: build info, the list checks, the host step counter, the plan class,
// plan-cache statistics.
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/extension.h>
#include <torch/library.h>
#include <torch/version.h>

#include "adamw.h"
#include "bf16_int8.h"
#include "contract.h"
#include "cpu/sync_cpu.h"
#include "dtypes.h"
#include "held_sync.h"
#include "message.h"
#include "op_list.h"
#include "ops.h"
#include "plan.h"
#include "prefetch.h"

#ifdef LOOKAHEAD_FUSED_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION
#endif

#ifndef LOOKAHEAD_FUSED_CUDA_ARCHS
#define LOOKAHEAD_FUSED_CUDA_ARCHS ""
#endif

// [NOTE: borrowed lists] pybind11's own list conversion copies every at::Tensor into a vector, and
// each copy counts a reference on the TensorImpl, atomically, and counts it down again when the
// call ends, which on thousands of small tensors outweighed the rest of the call (bench/RESULTS.md,
// issue 25). Here a list is copied into a tuple (its own references to the Python tensors, each of
// which owns its TensorImpl), a tuple is held as it is (it cannot change, and the sync holds its
// launches' lists as tuples, so the common call copies nothing), and the kernel gets at::Tensors
// borrowed from the tuple's, with no reference counted. They are valid while the tuple lives, which
// is until the call has returned and the GIL is held again. A list that another thread changes
// during the call leaves the tuple as it was. Another thread that gives one of the tensors new data
// (`p.data = ...`) while the kernel runs races with it, as with any torch op that releases the GIL:
// a counted reference keeps the TensorImpl, not its old storage.
namespace lookahead_fused {

class BorrowedTensors {
 public:
  BorrowedTensors() = default;
  BorrowedTensors(const BorrowedTensors&) = delete;
  BorrowedTensors& operator=(const BorrowedTensors&) = delete;
  ~BorrowedTensors() { release(); }

  // Borrow the tensors of `sequence` (a list or tuple); false, borrowing nothing, when it is not one
  // or holds anything but tensors.
  bool borrow(pybind11::handle sequence) {
    PyObject* source = sequence.ptr();
    if (!PyList_Check(source) && !PyTuple_Check(source)) return false;
    const Py_ssize_t size = PySequence_Fast_GET_SIZE(source);
    PyObject** items = PySequence_Fast_ITEMS(source);
    if (PyTuple_Check(source)) {
      owner_ = pybind11::reinterpret_borrow<pybind11::object>(source);
    } else {  // a copy, so that the tensors stay referenced whatever happens to the list
      owner_ = pybind11::reinterpret_steal<pybind11::object>(PyTuple_New(size));
      if (!owner_) throw pybind11::error_already_set();
      for (Py_ssize_t i = 0; i < size; ++i) {
        if (i + static_cast<Py_ssize_t>(kPrefetchAhead) < size) __builtin_prefetch(items[i + kPrefetchAhead]);
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(owner_.ptr(), i, items[i]);
      }
      items = PySequence_Fast_ITEMS(owner_.ptr());
    }
    tensors_.reserve(size);
    for (Py_ssize_t i = 0; i < size; ++i) {
      PyObject* item = items[i];
      if (!THPVariable_Check(item)) {
        release();
        return false;
      }
      tensors_.push_back(c10::MaybeOwnedTraits<at::Tensor>::createBorrow(THPVariable_Unpack(item)));
      // for the walk that follows (see [NOTE: prefetch ahead] in csrc/prefetch.h)
      prefetch_tensor_impl(tensors_.back().unsafeGetTensorImpl());
      if (i >= static_cast<Py_ssize_t>(kPrefetchAhead)) prefetch_storage_of(tensors_[i - kPrefetchAhead].unsafeGetTensorImpl());
    }
    return true;
  }

  operator at::TensorList() const { return tensors_; }

 private:
  void release() {
    for (at::Tensor& t : tensors_) c10::MaybeOwnedTraits<at::Tensor>::destroyBorrow(t);
    tensors_.clear();
    owner_ = pybind11::object();
  }

  pybind11::object owner_;           // the tuple of the Python tensors
  std::vector<at::Tensor> tensors_;  // borrowed from them: no reference counted
};

}  // namespace lookahead_fused

namespace pybind11::detail {

template <>
struct type_caster<lookahead_fused::BorrowedTensors> {
  static constexpr auto name = const_name("list[torch.Tensor]");
  template <typename>
  using cast_op_type = const lookahead_fused::BorrowedTensors&;
  operator const lookahead_fused::BorrowedTensors&() const { return value; }
  bool load(handle source, bool /*convert*/) { return value.borrow(source); }

 private:
  lookahead_fused::BorrowedTensors value;
};

}  // namespace pybind11::detail

namespace lookahead_fused {
namespace {

// [NOTE: eager entry points] The same ops as plain pybind11 functions, for eager calls from
// lookahead_fused.backends.native. Through the dispatcher, a call with 4000 tensors spent ~0.45 ms
// before the kernel ran (issue 14): the boxed call copies every tensor into its argument stack and
// out again with the GIL released, and each copy of a tensor that Python also holds takes the GIL
// back to count the reference. Here the lists are borrowed with the GIL held, and it is released
// only around the work (see [NOTE: borrowed lists] in csrc/module.cpp).
// torch.compile keeps calling the torch.library ops (the NativeBackend picks).
template <typename T>
struct PythonArgument {  // how pybind11 hands over a kernel parameter
  using type = T;
};
template <>
struct PythonArgument<at::TensorList> {
  using type = const BorrowedTensors&;
};

template <auto Kernel, auto MetaKernel>
struct Eager;
template <typename... Parameters, void (*Kernel)(at::TensorList, Parameters...),
          void (*MetaKernel)(at::TensorList, Parameters...)>
struct Eager<Kernel, MetaKernel> {
  static void call(const BorrowedTensors& first, typename PythonArgument<Parameters>::type... rest) {
    pybind11::gil_scoped_release no_gil;
    const at::TensorList fast = first;
    if (!fast.empty() && fast[0].is_meta()) {
      MetaKernel(fast, rest...);
    } else {
      Kernel(fast, rest...);
    }
  }
};

// [NOTE: host step counter] Lookahead reads its step counter before every inner step and advances it
// after; through torch (int(counter), counter.add_(1)) each is a dispatcher call whose code and
// objects a training step has evicted from the caches (bench/RESULTS.md, issue 25). For a counter in
// host memory these two read and write its int64 in place, with the version bump of an in-place
// add_. Lookahead (lookahead_fused/optimizer.py) calls them for such a counter when the extension is
// loaded and nothing is being compiled, and torch's ops otherwise.
void check_host_counter(const at::Tensor& counter) {
  LOOKAHEAD_CHECK_VALUE(counter.is_cpu() && counter.scalar_type() == at::kLong && counter.numel() == 1,
                        message("the step counter must be one int64 element on the CPU, got ", counter.scalar_type(),
                                " of ", counter.numel(), " elements on ", counter.device()));
}

int64_t host_count(const at::Tensor& counter) {
  check_host_counter(counter);
  return *counter.const_data_ptr<int64_t>();
}

void advance_host_count(const at::Tensor& counter) {
  check_host_counter(counter);
  LOOKAHEAD_CHECK(!counter.is_inference() || c10::InferenceMode::is_enabled(),
                  message("Inplace update to inference tensor outside InferenceMode is not allowed (as for add_): "
                          "the step counter was made in torch.inference_mode()"));
  ++*counter.mutable_data_ptr<int64_t>();
  if (!counter.is_inference()) torch::autograd::impl::bump_version(counter);
}

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

// A held sync of a launch's lists, a tuple of tuples (fast, then the op's state lists), the slow weights
// `compact` or not (see [NOTE: held sync] in csrc/held_sync.h).
std::unique_ptr<HeldSync> hold_sync(const py::tuple& lists, bool compact) {
  const size_t depth = lists.size();
  LOOKAHEAD_CHECK_VALUE(
      compact ? depth == 3 || depth == 4 : depth == 2 || depth == 3,
      message("lookahead_fused: a held sync takes ", compact ? "3 or 4" : "2 or 3", " lists, got ", depth));
  const TableOp op = compact ? (depth == 3 ? TableOp::kCompactSync : TableOp::kCompactMomentumSync)
                             : (depth == 2 ? TableOp::kSync : TableOp::kMomentumSync);
  std::vector<std::unique_ptr<BorrowedTensors>> borrowed;
  TensorLists views;
  for (const py::handle list : lists) {
    borrowed.push_back(std::make_unique<BorrowedTensors>());
    LOOKAHEAD_CHECK_VALUE(borrowed.back()->borrow(list), "lookahead_fused: a held sync takes lists of tensors");
    views.push_back(*borrowed.back());
  }
  py::gil_scoped_release no_gil;
  return std::make_unique<HeldSync>(op, views);
}

#define LOOKAHEAD_NAME(token, scalar_type, name, bytes) constexpr const char* kName##token = name;
LOOKAHEAD_DTYPES(LOOKAHEAD_NAME)
#undef LOOKAHEAD_NAME
#define LOOKAHEAD_PAIR_ENTRY(code, fast, state) pairs.append(py::make_tuple(code, kName##fast, kName##state));

// [(pair code, fast dtype, state dtype)] of the dtype list (see [NOTE: dtype list] in csrc/table.h), by Python names.
py::list dtype_pairs() {
  py::list pairs;
  LOOKAHEAD_DTYPE_PAIRS(LOOKAHEAD_PAIR_ENTRY)
  return pairs;
}

// The same of the momentum sync's entries whose outer momentum is bfloat16 (LOOKAHEAD_BF16_MOMENTUM_PAIRS).
py::list bf16_momentum_pairs() {
  py::list pairs;
  LOOKAHEAD_BF16_MOMENTUM_PAIRS(LOOKAHEAD_PAIR_ENTRY)
  return pairs;
}
#undef LOOKAHEAD_PAIR_ENTRY

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
    info["bf16_momentum_pairs"] = bf16_momentum_pairs();
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
  m.def("check_sync_lists", [](const BorrowedTensors& fast, const BorrowedTensors& slow, const BorrowedTensors& momentum) {
    pybind11::gil_scoped_release no_gil;
    check_sync_lists(fast, slow, momentum);
  }, "Raise ValueError, as lookahead_sync_ would, if the pairs (with `momentum`, the triples) break the op "
     "contract; write nothing.", py::arg("fast"), py::arg("slow"), py::arg("momentum") = py::tuple());
  m.def("check_compact_lists",
        [](const BorrowedTensors& fast, const BorrowedTensors& high, const BorrowedTensors& low,
           const BorrowedTensors& momentum, const BorrowedTensors& scales) {
          pybind11::gil_scoped_release no_gil;
          check_compact_lists(fast, high, low, momentum, scales);
        },
        "Raise ValueError, as lookahead_compact_sync_ would, if the triples (with `momentum`, the quads; with "
        "`momentum` and its int8 block `scales`, the five lists) break the op contract; write nothing.",
        py::arg("fast"), py::arg("slow_high"), py::arg("slow_low"), py::arg("momentum") = py::tuple(),
        py::arg("scales") = py::tuple());
  m.def("check_int8_momentum_lists",
        [](const BorrowedTensors& fast, const BorrowedTensors& slow, const BorrowedTensors& momentum,
           const BorrowedTensors& scales) {
          pybind11::gil_scoped_release no_gil;
          check_int8_momentum_lists(fast, slow, momentum, scales);
        },
        "Raise ValueError, as lookahead_int8_momentum_sync_ would, if the quads break the op contract; write "
        "nothing.",
        py::arg("fast"), py::arg("slow"), py::arg("momentum"), py::arg("scales"));
  m.def("check_int8_delta_lists",
        [](const BorrowedTensors& params, const BorrowedTensors& delta, const BorrowedTensors& scales,
           const BorrowedTensors& momentum, const BorrowedTensors& momentum_scales) {
          pybind11::gil_scoped_release no_gil;
          check_int8_delta_lists(params, delta, scales, momentum, momentum_scales);
        },
        "Raise ValueError, as LookaheadAdamW's int8-delta sync would, if the entries (params, offset codes, "
        "scales[, outer momentum[, its int8 block scales]]) break the op contract; write nothing.",
        py::arg("params"), py::arg("delta"), py::arg("scales"), py::arg("momentum") = py::tuple(),
        py::arg("momentum_scales") = py::tuple());
  m.def("same_objects", [](const py::list& held, const py::list& now) {
    if (held.size() != now.size()) return false;
    for (size_t g = 0; g < held.size(); ++g) {
      PyObject* a = PyList_GET_ITEM(held.ptr(), g);
      PyObject* b = PyList_GET_ITEM(now.ptr(), g);
      if (!PyList_Check(a) || !PyList_Check(b) || PyList_GET_SIZE(a) != PyList_GET_SIZE(b)) return false;
      for (Py_ssize_t i = 0; i < PyList_GET_SIZE(a); ++i) {
        if (PyList_GET_ITEM(a, i) != PyList_GET_ITEM(b, i)) return false;
      }
    }
    return true;
  }, "Whether two lists of lists hold the same objects in the same places, compared by address without "
     "touching the objects (the held launches' test, see [NOTE: launches held] in lookahead_fused/sync.py).",
     py::arg("held"), py::arg("now"));
  m.def("host_count", &host_count,
        "The value of a step counter in host memory "
        "(see [NOTE: host step counter] in csrc/module.cpp).",
        py::arg("counter"));
  m.def("advance_host_count", &advance_host_count,
        "counter.add_(1) for a step counter in host memory "
        "(see [NOTE: host step counter] in csrc/module.cpp).",
        py::arg("counter"));
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
  m.def("encode_bf16_int8", [](const at::Tensor& x) {
    LOOKAHEAD_CHECK_VALUE(x.scalar_type() == at::kFloat && x.is_cpu(), "encode_bf16_int8 takes a float32 CPU tensor");
    const at::Tensor values = x.contiguous();
    at::Tensor high = at::empty(values.sizes(), values.options().dtype(at::kBFloat16));
    at::Tensor residual = at::empty(values.sizes(), values.options().dtype(at::kChar));
    const float* in = values.const_data_ptr<float>();
    auto* high_bits = reinterpret_cast<uint16_t*>(high.mutable_data_ptr());
    auto* q = residual.mutable_data_ptr<int8_t>();
    for (int64_t i = 0; i < values.numel(); ++i) {
      const Bf16Int8 code = encode_bf16_int8(in[i]);
      high_bits[i] = code.high;
      q[i] = code.residual;
    }
    return py::make_tuple(high, residual);
  }, "The element math of the bf16+int8 encoding (csrc/bf16_int8.h) on a CPU tensor: (hi, q); for tests.",
     py::arg("x"));
  m.def("decode_bf16_int8", [](const at::Tensor& high, const at::Tensor& residual) {
    LOOKAHEAD_CHECK_VALUE(high.scalar_type() == at::kBFloat16 && residual.scalar_type() == at::kChar &&
                              high.is_cpu() && residual.is_cpu() && high.sizes() == residual.sizes(),
                          "decode_bf16_int8 takes a bfloat16 and an int8 CPU tensor of one shape");
    const at::Tensor h = high.contiguous(), r = residual.contiguous();
    at::Tensor out = at::empty(h.sizes(), h.options().dtype(at::kFloat));
    const auto* high_bits = reinterpret_cast<const uint16_t*>(h.const_data_ptr());
    const int8_t* q = r.const_data_ptr<int8_t>();
    float* values = out.mutable_data_ptr<float>();
    for (int64_t i = 0; i < h.numel(); ++i) values[i] = decode_bf16_int8(high_bits[i], q[i]);
    return out;
  }, "The element math of the bf16+int8 decoding (csrc/bf16_int8.h) on CPU tensors; for tests.",
     py::arg("high"), py::arg("residual"));
  py::class_<HeldSync>(m, "HeldSync",
                       "A sync whose state tensors C++ holds between calls "
                       "(see [NOTE: held sync] in csrc/held_sync.h).")
      .def(py::init(&hold_sync), py::arg("lists"), py::arg("compact"))
      .def("__len__", &HeldSync::size)
      .def("matches", [](const HeldSync& held, const BorrowedTensors& fast) {
        py::gil_scoped_release no_gil;
        return held.matches(fast);
      }, "Whether run(fast, ...) would launch; reads and writes nothing else.", py::arg("fast"))
      .def("run", [](HeldSync& held, const BorrowedTensors& fast, double alpha, double mu, bool nesterov) {
        py::gil_scoped_release no_gil;
        return held.run(fast, UpdateArgs{alpha, mu, nesterov});
      }, "The sync of `fast` with the held state and its version bumps; False, writing nothing, when they no "
         "longer match.", py::arg("fast"), py::arg("alpha"), py::arg("mu") = 0.0, py::arg("nesterov") = false);
  py::class_<PlanHandle>(m, "SyncPlan", "The tensor table of one parameter set (see csrc/table.h).")
      .def(py::init<const Tensors&, const Tensors&>(), py::arg("fast"), py::arg("slow"))
      .def_property_readonly("num_pairs", [](const PlanHandle& h) { return h.plan->num_entries; })
      .def_property_readonly("num_chunks", [](const PlanHandle& h) { return h.plan->num_chunks; })
      .def_property_readonly("chunk_elements", [](const PlanHandle& h) { return h.plan->chunk_elems; })
      .def_property_readonly("device", [](const PlanHandle& h) { return h.plan->device.str(); })
      .def("words", &PlanHandle::words, "The table as an int64 CPU tensor.");
}
