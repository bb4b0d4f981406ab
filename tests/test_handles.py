"""Every handle of a Lookahead behaves as the Lookahead: lookahead_of through wrapper chains, the
shared slow_weights() state through a wrapper subclass, Lookahead.wrapping, and the core package
importing no training framework. The real frameworks' wrappers: tests/test_lightning.py,
tests/test_transformers.py, tests/test_accelerate.py."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, lookahead_of

from .helpers import make_params, run


class HoldingWrapper:
    """A wrapper as accelerate's: the optimizer under `.optimizer`, no forwarding."""

    def __init__(self, optimizer):
        self.optimizer = optimizer


class ForwardingSubclassWrapper:
    """A wrapper as Lightning's: an instance of the wrapped class that forwards the reads it cannot answer."""

    def __init__(self, optimizer):
        self._optimizer = optimizer
        self.__class__ = type("Wrapped" + type(optimizer).__name__, (ForwardingSubclassWrapper, type(optimizer)), {})

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


def _trained(cls=Lookahead, steps=7):
    params = make_params()
    opt = Lookahead(torch.optim.AdamW(params, lr=0.05), k=5) if cls is Lookahead else LookaheadAdamW(params, lr=0.05, k=5)
    run(opt, params, steps)
    return opt


@pytest.mark.parametrize("cls", [Lookahead, LookaheadAdamW])
def test_lookahead_of_walks_any_chain_of_wrappers(cls):
    opt = _trained(cls)
    for handle in (opt, HoldingWrapper(opt), ForwardingSubclassWrapper(opt), HoldingWrapper(ForwardingSubclassWrapper(opt))):
        assert lookahead_of(handle) is opt


@pytest.mark.parametrize(
    "handle, named",
    [
        (torch.optim.SGD(make_params(), lr=0.1), "SGD"),
        (HoldingWrapper(torch.optim.SGD(make_params(), lr=0.1)), "HoldingWrapper -> SGD"),
        (ForwardingSubclassWrapper(torch.optim.SGD(make_params(), lr=0.1)), "WrappedSGD -> SGD"),
        (None, "NoneType"),
    ],
)
def test_lookahead_of_names_what_it_got_when_there_is_no_lookahead(handle, named):
    with pytest.raises(TypeError, match=f"lookahead_of: no Lookahead in {named};"):
        lookahead_of(handle)


@pytest.mark.parametrize("cls", [Lookahead, LookaheadAdamW])
def test_the_window_is_shared_by_every_handle(cls):
    opt = _trained(cls)
    wrapper = ForwardingSubclassWrapper(opt)
    before = opt.state_dict()
    with wrapper.slow_weights():
        for call in (opt.step, opt.state_dict, wrapper.state_dict, opt.sync_lookahead, lambda: opt.slow_weights().__enter__()):
            with pytest.raises(RuntimeError, match="inside `with optimizer.slow_weights"):
                call()
    after = wrapper.state_dict()  # the Lookahead's own state_dict, not one nested in another
    assert after["lookahead"] == before["lookahead"] and after.keys() == before.keys()
    wrapper.load_state_dict(after)
    assert opt.step_count == 7


def test_a_copy_has_its_own_shared_state():
    opt = _trained()
    copied = copy.deepcopy(opt)
    assert lookahead_of(copied) is copied
    with opt.slow_weights():
        copied.state_dict()  # the copy is not inside the original's window


def test_wrapping_builds_the_inner_optimizer_on_the_given_groups():
    params = make_params()
    groups = [{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:], "weight_decay": 0.0}]
    opt = Lookahead.wrapping(torch.optim.AdamW, k=3, alpha=0.25)(groups, lr=0.05, betas=(0.8, 0.9))
    assert isinstance(opt, Lookahead) and issubclass(type(opt), torch.optim.Optimizer)
    assert type(opt.optimizer) is torch.optim.AdamW and (opt.k, opt.alpha) == (3, 0.25)
    assert [(g["weight_decay"], g["lr"], g["betas"]) for g in opt.param_groups] == [(0.1, 0.05, (0.8, 0.9)), (0.0, 0.05, (0.8, 0.9))]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Lookahead.wrapping(torch.optim.AdamW, lr=1e-3), "unknown Lookahead option\\(s\\) lr;"),
        (lambda: Lookahead.wrapping(lambda params: None), "inner_class must be a torch.optim.Optimizer class"),
        (lambda: Lookahead.wrapping(LookaheadAdamW), "LookaheadAdamW is a Lookahead already"),
        (lambda: LookaheadAdamW.wrapping(torch.optim.AdamW), "LookaheadAdamW takes the params itself"),
    ],
)
def test_wrapping_refuses_bad_input_when_the_class_is_made(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_the_core_package_imports_no_training_framework():
    code = (
        "import sys, lookahead_fused\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'accelerate', 'lightning', 'pytorch_lightning'})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
