"""Backend registry: the one place that knows which implementations exist, whether each is usable
in this process (and why not), and which one "auto" picks for a device.

[NOTE: backend protocol] A backend is one module in this package (a file or a package) with a
loader that returns a module-like object (or raises BackendUnavailable saying why not), and one line
in BACKENDS. The object has one callable per op of the op list, by the op's name, taking the op's
arguments in the list's order (see [NOTE: op list] in lookahead_fused/op_list.py), each called with
one device per call. Most trust their inputs (ops.py checks the contract first); one whose
`checks_contract` is true checks it itself, before writing, and offers `check_sync_lists(fast, slow,
momentum=())`.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Backend:
    name: str
    device_types: tuple[str, ...] | None  # None: any device torch supports
    loader: str  # "module:function" in this package, imported on first use
    how_to_get: str = ""  # what to do when it is unavailable


BACKENDS = (
    Backend("reference", None, "reference:load"),
    Backend("foreach", None, "foreach:load"),
    Backend("cpu", ("cpu",), "native:load_cpu", "build the C++ extension: pip install --no-build-isolation ."),
    Backend("cuda", ("cuda",), "native:load_cuda", "build the C++/CUDA extension with nvcc on PATH "
            "(pip install --no-build-isolation .) and run on a machine with a CUDA GPU"),  # fmt: skip
    Backend("triton", ("cuda",), "triton:load", "install triton and run on a machine with a CUDA GPU"),
)
_BY_NAME = {backend.name: backend for backend in BACKENDS}
BACKEND_NAMES = tuple(_BY_NAME)

# Preference order per device type for backend="auto"; other device types get "foreach".
AUTO_ORDER = {
    "cuda": ("cuda", "triton", "foreach"),
    "cpu": ("cpu", "foreach"),
}
_AUTO_FALLBACK = ("foreach",)


def triton_interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (TRITON_INTERPRET=1), on CPU tensors too."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _device_types(name: str) -> tuple[str, ...] | None:
    if name == "triton" and triton_interpreting():
        return ("cuda", "cpu")  # Triton's interpreter runs kernels on CPU tensors (the CI tests)
    return _BY_NAME[name].device_types


def group_pairs(*lists):
    """The lists (fast, slow[, momentum]) split into groups with one device and one dtype per list
    each, in first-seen order: [(firsts, seconds[, thirds])], entry i of a group taking the i-th
    tensor of each of its lists."""
    groups: dict[tuple, tuple[list, ...]] = {}
    for tensors in zip(*lists):
        columns = groups.setdefault((tensors[0].device, *(t.dtype for t in tensors)), tuple([] for _ in lists))
        for column, t in zip(columns, tensors):
            column.append(t)
    return list(groups.values())


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why and how to get it."""


def _load(name: str):
    module_name, function = _BY_NAME[name].loader.split(":")
    return getattr(importlib.import_module(f".{module_name}", __name__), function)()


@functools.cache
def _try_load(name: str) -> tuple[ModuleType | None, str]:
    try:
        return _load(name), ""
    except BackendUnavailable as e:
        return None, str(e)
    except ImportError as e:  # a broken install: report it instead of failing at import time
        return None, f"importing it failed: {e}"


def available_backends() -> list[str]:
    """Names of the backends usable in this process, in BACKEND_NAMES order."""
    return [name for name in BACKEND_NAMES if _try_load(name)[0] is not None]


def unavailable_backends() -> dict[str, str]:
    """For every backend that is not usable here, the reason it is not."""
    return {name: reason for name in BACKEND_NAMES for module, reason in [_try_load(name)] if module is None}


def backends_for_device(device_type: str) -> list[str]:
    """The available backends that can run on tensors of `device_type`."""
    return [
        name
        for name in available_backends()
        if _device_types(name) is None or device_type in _device_types(name)
    ]


def check_backend_name(name: str) -> str:
    if name != "auto" and name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose 'auto' or one of {', '.join(BACKEND_NAMES)}")
    return name


def require_available(name: str) -> None:
    """Raise BackendUnavailable for an explicit backend that cannot run here ("auto" always can)."""
    check_backend_name(name)
    if name == "auto":
        return
    module, reason = _try_load(name)
    if module is None:
        how = _BY_NAME[name].how_to_get
        raise BackendUnavailable(f"backend {name!r} is unavailable: {reason}" + (f"; to get it, {how}" if how else ""))


# Plain-dict memo of resolve(): torch.compile traces a lookup in it (a functools.cache it would warn
# about and trace through).
_resolved: dict[tuple[str, str], ModuleType] = {}


def resolve(name: str, device_type: str) -> ModuleType:
    """The backend module that runs a call with `name` on tensors of `device_type`."""
    key = (name, device_type)
    if key not in _resolved:
        _resolved[key] = _resolve(name, device_type)
    return _resolved[key]


def prepare(name: str, device_types) -> None:
    """Resolve `name` for each device type now, outside any trace; what cannot run here raises later,
    at the call, with its message."""
    for device_type in device_types:
        try:
            resolve(name, device_type)
        except (BackendUnavailable, ValueError):
            pass


def _resolve(name: str, device_type: str) -> ModuleType:
    require_available(name)
    if name == "auto":
        for candidate in AUTO_ORDER.get(device_type, _AUTO_FALLBACK):
            module, _ = _try_load(candidate)
            if module is not None:
                return module
        raise BackendUnavailable(f"no backend is available for {device_type} tensors")  # foreach always loads
    supported = _device_types(name)
    if supported is not None and device_type not in supported:
        raise ValueError(f"backend {name!r} runs on {', '.join(supported)} tensors, not on {device_type} tensors")
    return _try_load(name)[0]
