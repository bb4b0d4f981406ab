"""Every test that takes `backend` runs once per backend usable on the CPU here (and new backends
are picked up by the same tests as soon as they become available)."""

import os

import pytest
import torch

if not torch.cuda.is_available():  # the Triton backend then runs in Triton's interpreter, on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")

from lookahead_fused.backends import backends_for_device


def _cpu_backends():
    return ["auto", *backends_for_device("cpu")]


@pytest.fixture(params=_cpu_backends())
def backend(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
