"""The "triton" backend's own properties: one launch per dtype pair whatever the number of tensors,
its plan reused (its torch.library ops: tests/test_opcheck.py; its results are checked by the
backend-parametrized tests; without a GPU they run in Triton's interpreter)."""

import pytest
import torch

from lookahead_fused import Lookahead, available_backends, ops
from lookahead_fused.backends import triton_interpreting

from .helpers import make_params
from .matrix import DTYPE_PAIRS, make_pair_lists

pytestmark = pytest.mark.skipif("triton" not in available_backends(), reason="triton backend unavailable")
plans = pytest.importorskip("lookahead_fused.backends.triton.plans")
from lookahead_fused.backends.triton import sync as triton_sync  # noqa: E402
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _lists(sizes, fast_dtype, slow_dtype, seed=0):
    fast, slow = make_pair_lists(sizes, fast_dtype, slow_dtype, seed=seed)
    return [t.to(DEVICE) for t in fast], [t.to(DEVICE) for t in slow]


def launches_during(fn):
    before = plans.launch_count
    fn()
    return plans.launch_count - before


def test_one_launch_per_sync_for_1000_tensors():
    fast, slow = _lists([(i % 50) + 1 for i in range(1000)], torch.float32, torch.float32)
    assert launches_during(lambda: ops.lookahead_sync_(fast, slow, 0.5, backend="triton")) == 1


def test_one_launch_per_dtype_pair():
    fast, slow = [], []
    for seed, (fast_dtype, slow_dtype) in enumerate(DTYPE_PAIRS):
        f, s = _lists([3, 40, 0], fast_dtype, slow_dtype, seed=seed)
        fast += f
        slow += s
    assert launches_during(lambda: ops.lookahead_sync_(fast, slow, 0.3, backend="triton")) == len(DTYPE_PAIRS)


def test_plan_is_reused_and_rebuilt_after_reallocation():
    fast, slow = _lists([5, 17], torch.float32, torch.float32)
    triton_sync.sync_plans.clear()
    for _ in range(3):
        ops.lookahead_sync_(fast, slow, 0.5, backend="triton")
    assert len(triton_sync.sync_plans) == 1
    fast[0] = fast[0].clone()
    ops.lookahead_sync_(fast, slow, 0.5, backend="triton")
    assert len(triton_sync.sync_plans) == 2


def test_lookahead_class_one_launch_per_sync():
    params = [torch.nn.Parameter(p.detach().to(DEVICE)) for p in make_params(torch.float32, shapes=((8, 4), (8,), (30,)))]
    opt = Lookahead(torch.optim.SGD(params, lr=0.1), k=2, backend="triton")
    for p in params:
        p.grad = torch.ones_like(p)
    assert launches_during(lambda: opt.step()) == 0
    assert launches_during(lambda: opt.step()) == 1


def test_explicit_triton_on_an_unsupported_device_is_refused():
    if DEVICE == "cpu" and triton_interpreting():
        pytest.skip("the interpreter accepts CPU tensors")
    with pytest.raises(ValueError, match="backend 'triton' runs on"):
        ops.lookahead_sync_([torch.zeros(2)], [torch.zeros(2)], 0.5, backend="triton")


def test_alpha_tensors_are_bounded_when_alpha_changes_every_sync():
    """alpha="adaptive" chooses a new alpha at every sync: the device copies must not pile up."""
    fast, slow = _lists([17], torch.float32, torch.float32)
    from lookahead_fused import device_scalars

    for i in range(3 * device_scalars.CACHED):
        ops.lookahead_sync_(fast, slow, 0.01 + i / 200, backend="triton")
    assert len(device_scalars._cache) <= device_scalars.CACHED

