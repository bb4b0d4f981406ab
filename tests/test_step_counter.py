"""Lookahead's step counter in host memory, read and advanced in place by the extension
(see [NOTE: host step counter] in csrc/module.cpp): the same values and version bumps as torch's
int() and add_, torch's refusals, and no torch op on the counter in a steady-state step."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lookahead_fused import Lookahead, LookaheadAdamW

from .helpers import make_params, set_grads

_C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")


def test_read_and_advance_match_torch_with_one_version_bump_each():
    ours, torchs = torch.tensor(41, dtype=torch.int64), torch.tensor(41, dtype=torch.int64)
    for _ in range(3):
        _C.advance_host_count(ours)
        torchs.add_(1)
        assert _C.host_count(ours) == int(torchs)
        assert ours._version == torchs._version


@pytest.mark.parametrize(
    "counter, named",
    [
        (torch.zeros((), dtype=torch.float32), "Float of 1 elements on cpu"),
        (torch.zeros(2, dtype=torch.int64), "Long of 2 elements on cpu"),
        (torch.zeros((), dtype=torch.int64, device="meta"), "Long of 1 elements on meta"),
    ],
)
def test_a_counter_that_is_not_one_host_int64_is_refused_before_any_write(counter, named):
    before = counter.clone() if not counter.is_meta else None
    version = counter._version
    for fn in (_C.host_count, _C.advance_host_count):
        with pytest.raises(ValueError, match=f"the step counter must be one int64 element on the CPU, got {named}"):
            fn(counter)
    assert counter._version == version
    if before is not None:
        assert torch.equal(counter, before)


def test_an_inference_counter_follows_torchs_rules():
    with torch.inference_mode():
        counter = torch.zeros((), dtype=torch.int64)
        _C.advance_host_count(counter)
    assert _C.host_count(counter) == 1
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
        _C.advance_host_count(counter)
    assert _C.host_count(counter) == 1


class OpsOn(TorchDispatchMode):
    """The torch ops called with `tensor` among their arguments."""

    def __init__(self, tensor):
        super().__init__()
        self.tensor, self.ops = tensor, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(a is self.tensor for a in (*args, *(kwargs or {}).values())):
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("make", [
    lambda params: Lookahead(torch.optim.SGD(params, lr=0.1), k=2, backend="cpu"),
    lambda params: LookaheadAdamW(params, lr=0.1, k=2, backend="cpu"),
])  # fmt: skip
def test_steps_count_in_place_without_a_torch_op_on_the_counter(make):
    params = make_params(torch.float32)
    opt = make(params)
    counter = opt._step_count_tensor
    version = counter._version
    for step in range(1, 5):  # sync and non-sync steps
        set_grads(params, step)
        with OpsOn(counter) as seen:
            opt.step()
        assert seen.ops == []
        assert opt.step_count == int(counter) == step
    assert counter._version == version + 4
    counter.fill_(40)  # a checkpoint loaded in place (DCP) writes the tensor: the count follows it
    assert opt.step_count == 40
