"""Every bad argument gets a clear error that names it, before anything changes."""

import math

import pytest
import torch

from lookahead_fused import Lookahead, ops
from lookahead_fused.backends import BackendUnavailable, unavailable_backends

from .helpers import assert_bitwise_equal, make_params, run, set_grads, snapshot


def sgd(params=None, **kwargs):
    return torch.optim.SGD(params if params is not None else make_params(), lr=0.1, **kwargs)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"k": 0}, ValueError, "k must be an int >= 1, got 0"),
        ({"k": -3}, ValueError, "k must be an int >= 1"),
        ({"k": 2.5}, TypeError, "k must be an int >= 1, got float"),
        ({"k": True}, TypeError, "k must be an int"),
        ({"k": "5"}, TypeError, "k must be an int"),
        ({"alpha": -0.1}, ValueError, "alpha must be a finite number in \\[0, 1\\]"),
        ({"alpha": 1.5}, ValueError, "alpha must be a finite number in \\[0, 1\\]"),
        ({"alpha": math.nan}, ValueError, "alpha must be a finite number"),
        ({"alpha": math.inf}, ValueError, "alpha must be a finite number"),
        ({"alpha": "0.5"}, TypeError, "alpha must be a real number"),
        ({"alpha": True}, TypeError, "alpha must be a real number"),
        ({"pullback_momentum": "sideways"}, ValueError, "pullback_momentum must be one of 'none', 'reset', 'pullback'"),
        ({"backend": "fastest"}, ValueError, "unknown backend 'fastest'"),
        ({"slow_dtype": torch.float16}, ValueError, "slow_dtype must be None .* or torch.float32"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        Lookahead(sgd(), **kwargs)


def test_explicit_unavailable_backend_says_why_and_how():
    missing = unavailable_backends()
    if not missing:
        pytest.skip("every backend is available in this process")
    name, reason = next(iter(missing.items()))
    with pytest.raises(BackendUnavailable, match=f"backend '{name}' is unavailable: .*to get it"):
        Lookahead(sgd(), backend=name)
    with pytest.raises(BackendUnavailable, match=name):
        ops.lookahead_sync_([torch.zeros(2)], [torch.zeros(2)], 0.5, backend=name)


def test_not_an_optimizer():
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got list"):
        Lookahead(make_params())


def test_lookahead_in_lookahead():
    with pytest.raises(TypeError, match="cannot wrap a Lookahead in a Lookahead"):
        Lookahead(Lookahead(sgd()))


@pytest.mark.parametrize(
    "param,message",
    [
        (torch.nn.Parameter(torch.eye(3).to_sparse()), "param group 0: param 1 has layout torch.sparse_coo"),
        (torch.nn.Parameter(torch.randn(3, dtype=torch.complex64)), "param group 0: param 1 has dtype torch.complex64"),
        (torch.zeros(3, dtype=torch.int64), "param group 0: param 1 has dtype torch.int64"),
        (torch.nn.Parameter(torch.randn(1, 3).expand(2, 3)), "param group 0: param 1 .* has elements that share memory"),
    ],
)
def test_unsupported_params(param, message):
    with pytest.raises(ValueError, match=message):
        Lookahead(sgd([torch.nn.Parameter(torch.randn(2)), param]))


@pytest.mark.parametrize("mode", ["reset", "pullback"])
def test_pullback_needs_a_known_first_moment(mode):
    with pytest.raises(ValueError, match="needs the state key of the inner optimizer's first-moment buffer; Adagrad .* momentum_key="):
        Lookahead(torch.optim.Adagrad(make_params(), lr=0.1), pullback_momentum=mode)
    with pytest.raises(ValueError, match="param group 0 uses SGD with momentum=0"):
        Lookahead(sgd(), pullback_momentum=mode)


def test_bad_param_group_is_not_added():
    opt = Lookahead(sgd(momentum=0.9), pullback_momentum="pullback")
    groups_before = list(opt.param_groups)
    extra = torch.nn.Parameter(torch.randn(3))
    for group, message in [
        ({"params": [extra], "lookahead_alpha": 2.0}, "param group 1: lookahead_alpha"),
        ({"params": [extra], "momentum": 0.0}, "param group 1 uses SGD with momentum=0"),
        ({"params": [torch.zeros(3, dtype=torch.int32)]}, "param group 1: param 0 has dtype torch.int32"),
        ({"params": [opt.param_groups[0]["params"][0]]}, "some parameters appear in more than one parameter group"),
    ]:
        with pytest.raises(ValueError, match=message):
            opt.add_param_group(group)
        assert opt.param_groups == groups_before and len(opt.optimizer.param_groups) == 1
        assert extra not in opt.state


def test_bad_group_alpha_set_later_fails_before_the_inner_step():
    params = make_params()
    opt = Lookahead(sgd(params), k=2)
    run(opt, params, 1)
    opt.param_groups[0]["lookahead_alpha"] = math.nan
    set_grads(params, 1)
    before = snapshot(params)
    with pytest.raises(ValueError, match="param group 0: lookahead_alpha must be a finite number"):
        opt.step()
    assert_bitwise_equal(params, before)
    assert opt.step_count == 1
