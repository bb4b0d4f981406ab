"""Lookahead's step() wrapper (see [NOTE: step wrapper] in lookahead_fused/step_wrapper.py): torch's
own wrapper, with its profiler range and hooks, whenever something needs it, and none otherwise."""

import pytest
import torch
import torch.optim.optimizer as torch_optimizer_module
from torch.profiler import profile

from lookahead_fused import Lookahead, LookaheadAdamW

from .helpers import make_params, set_grads


class RecordedRanges(torch.autograd.profiler.record_function):
    names: list[str] = []

    def __enter__(self):
        RecordedRanges.names.append(self.name)
        return super().__enter__()

    @classmethod
    def of(cls, opt) -> int:
        """How many step ranges of `opt`'s class were opened (the inner optimizer opens its own)."""
        return cls.names.count(f"Optimizer.step#{type(opt).__name__}.step")


@pytest.fixture
def ranges(monkeypatch):
    """The profiler ranges torch's step wrappers open from here on."""
    RecordedRanges.names = []
    monkeypatch.setattr(torch.autograd.profiler, "record_function", RecordedRanges)
    return RecordedRanges


def lookahead():
    params = make_params()
    set_grads(params, 1)
    return Lookahead(torch.optim.SGD(params, lr=0.1), k=2), params


def lookahead_adamw():
    params = make_params()
    set_grads(params, 1)
    return LookaheadAdamW(params, lr=0.1, k=2), params


def wrapping_class():
    params = make_params()
    set_grads(params, 1)
    return Lookahead.wrapping(torch.optim.SGD, k=2)(params, lr=0.1), params


BUILDERS = [lookahead, lookahead_adamw, wrapping_class]


@pytest.mark.parametrize("build", BUILDERS)
def test_torch_does_not_wrap_the_step_again(build):
    opt, _ = build()
    assert type(opt).step.hooked
    assert type(opt).step.__wrapped__.__name__ == "step"
    assert getattr(type(opt).step.__wrapped__, "hooked", False) is False


@pytest.mark.parametrize("build", BUILDERS)
def test_no_profiler_range_when_nothing_needs_one(build, ranges):
    opt, _ = build()
    for _ in range(3):
        opt.step()
    assert ranges.of(opt) == 0
    assert opt.step_count == 3


@pytest.mark.parametrize("build", BUILDERS)
def test_the_profiler_sees_torchs_range(build):
    opt, _ = build()
    with profile() as prof:
        opt.step()
    names = [event.name for event in prof.events()]
    assert f"Optimizer.step#{type(opt).__name__}.step" in names


@pytest.mark.parametrize("build", BUILDERS)
def test_optimizer_hooks_run_in_order_and_a_pre_hook_replaces_the_args(build, ranges):
    opt, _ = build()
    calls = []

    def pre(o, args, kwargs):
        calls.append(("pre", o.step_count))
        return args, {"closure": lambda: calls.append("closure") or torch.tensor(3.0)}

    opt.register_step_pre_hook(pre)
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o.step_count, kwargs["closure"] is not None)))
    loss = opt.step()
    assert float(loss) == 3.0
    assert calls == [("pre", 0), "closure", ("post", 1, True)]
    assert ranges.of(opt) == 1


@pytest.mark.parametrize("build", BUILDERS)
def test_global_hooks_run_and_their_removal_restores_the_plain_step(build, ranges):
    opt, _ = build()
    calls = []

    def hook(name):
        def record(o, args, kwargs):
            if o is opt:  # the inner optimizer's step runs the global hooks too
                calls.append(name)

        return record

    pre = torch_optimizer_module.register_optimizer_step_pre_hook(hook("pre"))
    post = torch_optimizer_module.register_optimizer_step_post_hook(hook("post"))
    try:
        opt.step()
    finally:
        pre.remove()
        post.remove()
    assert calls == ["pre", "post"]
    assert ranges.of(opt) == 1
    opt.step()
    assert calls == ["pre", "post"]
    assert ranges.of(opt) == 1
    assert opt.step_count == 2
