"""Backend registry: the one place that knows which implementations exist, whether each is usable
in this process (and why not), and which one "auto" picks for a device.

A backend is a module-like object with `sync_(fast, slow, alpha)`, `sync_on_step_(fast, slow,
alpha_tensor, step, k)`, `swap_(a, b)`, `momentum_sync_(fast, slow, momentum, alpha, mu, nesterov)`
and `momentum_sync_on_step_(fast, slow, momentum, alpha_tensor, step, k, mu, nesterov)`, called
with one device per call. Most trust their
inputs (ops.py checks the contract first); one whose `checks_contract` is true checks it itself,
before writing, and offers `check_sync_args`.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

BACKEND_NAMES = ("reference", "foreach", "cpu", "cuda", "triton")

# Preference order per device type for backend="auto"; other device types get "foreach".
AUTO_ORDER = {
    "cuda": ("cuda", "triton", "foreach"),
    "cpu": ("cpu", "foreach"),
}
_AUTO_FALLBACK = ("foreach",)

# Device types each backend can run on; None means any device torch supports.
_DEVICE_TYPES: dict[str, tuple[str, ...] | None] = {
    "reference": None,
    "foreach": None,
    "cpu": ("cpu",),
    "cuda": ("cuda",),
    "triton": ("cuda",),
}


def triton_interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (TRITON_INTERPRET=1), on CPU tensors too."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _device_types(name: str) -> tuple[str, ...] | None:
    if name == "triton" and triton_interpreting():
        return ("cuda", "cpu")  # Triton's interpreter runs kernels on CPU tensors (the CI tests)
    return _DEVICE_TYPES[name]

_HOW_TO_GET = {
    "cpu": "build the C++ extension: pip install --no-build-isolation .",
    "cuda": "build the C++/CUDA extension with nvcc on PATH (pip install --no-build-isolation .) "
    "and run on a machine with a CUDA GPU",
    "triton": "install triton and run on a machine with a CUDA GPU",
}


def group_pairs(first, second):
    """[(firsts, seconds)] with one device and one dtype pair in each group, in first-seen order."""
    groups: dict[tuple, tuple[list, list]] = {}
    for x, y in zip(first, second):
        xs, ys = groups.setdefault((x.device, x.dtype, y.dtype), ([], []))
        xs.append(x)
        ys.append(y)
    return list(groups.values())


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why and how to get it."""


def _load_reference() -> ModuleType:
    from . import reference

    return reference


def _load_foreach() -> ModuleType:
    from . import foreach

    return foreach


def _load_cpu():
    from .native import load_cpu

    return load_cpu()


def _load_cuda():
    from .native import load_cuda

    return load_cuda()


def _load_triton():
    from .triton_kernels import load

    return load()


_LOADERS = {
    "reference": _load_reference,
    "foreach": _load_foreach,
    "cpu": _load_cpu,
    "cuda": _load_cuda,
    "triton": _load_triton,
}


@functools.cache
def _try_load(name: str) -> tuple[ModuleType | None, str]:
    try:
        return _LOADERS[name](), ""
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
        how = _HOW_TO_GET.get(name, "")
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
