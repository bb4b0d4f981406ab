"""Fixtures over the backends: `device_backend` runs a test once per (device, backend) this run can
use, GPU included when there is one (tests/matrix.py); `backend` once per backend usable on CPU
tensors, for tests of what a call does on the host (rejections, CPU-only state). New backends are
picked up by the same tests as soon as they become available.

[NOTE: sampled cases] LOOKAHEAD_FUSED_TEST_CASES="sample:N" keeps, of each test function's cases
that the selection (-k, the matrix) left, N spread evenly over them, the first and the last among
them; "others:N" keeps the rest. The GPU validation runs the sample first, so that a short lease
runs every test function of a phase at least once before it runs any of them in full (.ci/gpu_validation.py).
Unset, every case runs."""

import os

import pytest
import torch

if not torch.cuda.is_available():  # the Triton backend then runs in Triton's interpreter, on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")

from .matrix import backends_under_test, device_backends  # noqa: E402


CASES = os.environ.get("LOOKAHEAD_FUSED_TEST_CASES", "")


def sampled(count: int, per_test: int) -> set[int]:
    """Which of a test function's `count` cases the sample keeps: `per_test` of them spread evenly,
    the first and the last among them (see [NOTE: sampled cases] in tests/conftest.py)."""
    per_test = min(per_test, count)
    if per_test <= 1:
        return {0}
    return {round(i * (count - 1) / (per_test - 1)) for i in range(per_test)}


def _cases_setting() -> tuple[str, int] | None:
    if not CASES:
        return None
    mode, _, number = CASES.partition(":")
    if mode not in ("sample", "others") or not number.isdigit() or int(number) < 1:
        raise ValueError(f"LOOKAHEAD_FUSED_TEST_CASES must be 'sample:N' or 'others:N' with N >= 1, got {CASES!r}")
    return mode, int(number)


# [NOTE: auto sampled] "auto" resolves to a backend that the matrix also runs by name ("cpu" on the
# CPU, "cuda" on a GPU), so its cases repeat that backend's through the same kernel. Each test
# function keeps AUTO_CASES_PER_TEST of its "auto" cases, spread as a sample is
# (see [NOTE: sampled cases] in tests/conftest.py): the resolution and the ops' path under "auto" run in
# every test function, the duplicates do not. LOOKAHEAD_FUSED_TEST_AUTO=all keeps every one.
AUTO_CASES_PER_TEST = 3


def _backend_of(item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params["device_backend"][1] if "device_backend" in params else params.get("backend")


def _in_sample(items, indices, per_test: int) -> set[int]:
    """Of `indices` into `items`, those a sample of `per_test` cases per test function keeps
    (see [NOTE: sampled cases] in tests/conftest.py)."""
    by_function: dict[str, list[int]] = {}
    for index in indices:
        by_function.setdefault(items[index].nodeid.split("[")[0], []).append(index)
    return {cases[i] for cases in by_function.values() for i in sampled(len(cases), per_test)}


def _auto_duplicates(items) -> set[int]:
    """The indices of the "auto" cases that no sample keeps (see [NOTE: auto sampled] in tests/conftest.py)."""
    if os.environ.get("LOOKAHEAD_FUSED_TEST_AUTO") == "all":
        return set()
    auto = [index for index, item in enumerate(items) if _backend_of(item) == "auto"]
    return set(auto) - _in_sample(items, auto, AUTO_CASES_PER_TEST)


@pytest.hookimpl(trylast=True)  # after -k has deselected what it deselects
def pytest_collection_modifyitems(config, items):
    duplicates = _auto_duplicates(items)
    kept = [item for index, item in enumerate(items) if index not in duplicates]
    dropped = [item for index, item in enumerate(items) if index in duplicates]
    setting = _cases_setting()
    if setting is not None:
        mode, per_test = setting
        in_sample = _in_sample(kept, range(len(kept)), per_test)
        dropped += [item for index, item in enumerate(kept) if (index in in_sample) != (mode == "sample")]
        kept = [item for index, item in enumerate(kept) if (index in in_sample) == (mode == "sample")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


@pytest.fixture(params=backends_under_test("cpu"))
def backend(request):
    return request.param


@pytest.fixture(params=device_backends(), ids=lambda pair: "-".join(pair))
def device_backend(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
