"""The "cpu" and "cuda" backends: the fused C++/CUDA kernels of lookahead_fused._C, reached through
the torch.library ops of csrc/module.cpp (lookahead_fused::<name> for each op of the op list,
lookahead_fused/op_list.py; so torch.compile sees them too), and in eager mode through their
pybind twins (see [NOTE: eager entry points] in csrc/module.cpp).

They check the op contract in C++ (csrc/contract.cpp, the same messages as contract.py), which
costs microseconds where the Python checks cost milliseconds on thousands of tensors.
"""

from __future__ import annotations

import functools
import warnings

import torch

from ..op_list import OP_NAMES
from . import BackendUnavailable


@functools.cache
def _import_extension():
    """(lookahead_fused._C, None) or (None, the ImportError), decided once per process."""
    try:
        from .. import _C
    except ImportError as error:
        return None, error
    return _C, None


def built_extension():
    """lookahead_fused._C if it is built and loads, else None, without extension()'s warning: for the
    callers that use it only to go faster (ops.py's checks for the pure-PyTorch and Triton backends)."""
    return _import_extension()[0]


@functools.cache
def _why_unavailable(error: ImportError) -> str:
    """Why extension() cannot return the extension, with one warning per process."""
    warnings.warn(
        f"lookahead_fused: the C++ extension is not available ({error}); using the pure-PyTorch "
        "backends. Build it with: pip install --no-build-isolation .",
        stacklevel=5,
    )
    return f"the C++ extension lookahead_fused._C is not built or failed to load ({error})"


def extension():
    """lookahead_fused._C, or BackendUnavailable saying why it cannot be used."""
    module, error = _import_extension()
    if module is None:
        raise BackendUnavailable(_why_unavailable(error))
    return module


def _forwarding(op_name: str):
    def forward(*args) -> None:
        if torch.compiler.is_compiling():
            getattr(torch.ops.lookahead_fused, op_name)(*args)
        else:
            getattr(extension(), op_name)(*args)

    forward.__name__ = op_name
    return forward


class NativeBackend:
    """One method per op of the op list. Eager calls go to the extension's pybind11 functions, which
    skip the dispatcher's per-tensor work (see [NOTE: eager entry points] in csrc/module.cpp); a
    compiled step calls the torch.library ops, which torch.compile can trace."""

    checks_contract = True  # ops.py leaves the contract checks to C++

    def __init__(self, name: str):
        self.name = name
        for op_name in OP_NAMES:
            setattr(self, op_name, _forwarding(op_name))

    def check_sync_lists(self, fast, slow, momentum=()) -> None:
        extension().check_sync_lists(fast, slow, momentum)

    def check_compact_lists(self, fast, slow_high, slow_low, momentum=(), scales=()) -> None:
        extension().check_compact_lists(fast, slow_high, slow_low, momentum, scales)

    def check_int8_momentum_lists(self, fast, slow, momentum, scales) -> None:
        extension().check_int8_momentum_lists(fast, slow, momentum, scales)

    def check_int8_delta_lists(self, params, delta, scales, momentum=(), momentum_scales=()) -> None:
        extension().check_int8_delta_lists(params, delta, scales, momentum, momentum_scales)

    def hold(self, lists: tuple, compact: bool):
        """A HeldSync of a sync's lists (fast, then its state lists), checked as its op checks them
        (see [NOTE: held sync] in csrc/held_sync.h)."""
        return extension().HeldSync(lists, compact)


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
