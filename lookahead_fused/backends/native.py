"""The "cpu" and "cuda" backends: the fused C++/CUDA kernels of lookahead_fused._C, reached through
the torch.library ops of csrc/module.cpp (lookahead_fused::sync_, ::sync_on_step_, ::swap_,
::momentum_sync_, ::momentum_sync_on_step_, ::adamw_step_; so torch.compile sees them too), and in
eager mode through their pybind twins (see [NOTE: eager entry points] in csrc/module.cpp).

They check the op contract in C++ (csrc/contract.cpp, the same messages as contract.py), which
costs microseconds where the Python checks cost milliseconds on thousands of tensors.
"""

from __future__ import annotations

import functools
import warnings

import torch

from . import BackendUnavailable


@functools.cache
def _import_extension():
    """(lookahead_fused._C, "") or (None, why not), decided once per process, with one warning."""
    try:
        from .. import _C
    except ImportError as error:
        warnings.warn(
            f"lookahead_fused: the C++ extension is not available ({error}); using the pure-PyTorch "
            "backends. Build it with: pip install --no-build-isolation .",
            stacklevel=5,
        )
        return None, f"the C++ extension lookahead_fused._C is not built or failed to load ({error})"
    return _C, ""


def extension():
    """lookahead_fused._C, or BackendUnavailable saying why it cannot be used."""
    module, reason = _import_extension()
    if module is None:
        raise BackendUnavailable(reason)
    return module


class NativeBackend:
    """Eager calls go to the extension's pybind11 functions, which skip the dispatcher's per-tensor
    work (see [NOTE: eager entry points] in csrc/module.cpp); a compiled step calls the torch.library
    ops, which torch.compile can trace."""

    checks_contract = True  # ops.py leaves the contract checks to C++

    def __init__(self, name: str):
        self.name = name

    def _entry(self, op: str):
        return getattr(torch.ops.lookahead_fused, op) if torch.compiler.is_compiling() else getattr(extension(), op)

    def sync_(self, fast, slow, alpha: float) -> None:
        self._entry("sync_")(fast, slow, alpha)

    def sync_on_step_(self, fast, slow, alpha: torch.Tensor, step: torch.Tensor, k: int) -> None:
        self._entry("sync_on_step_")(fast, slow, alpha, step, k)

    def swap_(self, first, second) -> None:
        self._entry("swap_")(first, second)

    def momentum_sync_(self, fast, slow, momentum, alpha: float, mu: float, nesterov: bool) -> None:
        self._entry("momentum_sync_")(fast, slow, momentum, alpha, mu, nesterov)

    def momentum_sync_on_step_(self, fast, slow, momentum, alpha, step, k: int, mu: float, nesterov: bool) -> None:
        self._entry("momentum_sync_on_step_")(fast, slow, momentum, alpha, step, k, mu, nesterov)

    def adamw_step_(self, params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu: float,
                    nesterov: bool) -> None:  # fmt: skip
        self._entry("adamw_step_")(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu, nesterov)

    def check_sync_args(self, fast, slow, momentum=()) -> None:
        extension().check_sync_args(fast, slow, momentum)


def load_cpu() -> NativeBackend:
    extension()
    return NativeBackend("cpu")


def load_cuda() -> NativeBackend:
    info = extension().build_info()
    if not info["cuda"]:
        raise BackendUnavailable("lookahead_fused._C was built without CUDA (no nvcc at build time)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA GPU is available in this process")
    return NativeBackend("cuda")
