"""Fixtures over the backends: `device_backend` runs a test once per (device, backend) this run can
use, GPU included when there is one (tests/matrix.py); `backend` once per backend usable on CPU
tensors, for tests of what a call does on the host (rejections, CPU-only state). New backends are
picked up by the same tests as soon as they become available."""

import os

import pytest
import torch

if not torch.cuda.is_available():  # the Triton backend then runs in Triton's interpreter, on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")

from .matrix import backends_under_test, device_backends  # noqa: E402


@pytest.fixture(params=backends_under_test("cpu"))
def backend(request):
    return request.param


@pytest.fixture(params=device_backends(), ids=lambda pair: "-".join(pair))
def device_backend(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
