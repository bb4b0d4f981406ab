"""Lookahead with outer momentum (see [NOTE: outer momentum] in lookahead_fused/optimizer.py): the trajectory of the
outer SGD written out (tests/helpers.py's PlainLookahead), mu = 0 bit for bit plain Lookahead, the
checkpoint mid-period, the device-side gate, torch.compile, strided params, and what is refused."""

import copy

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from lookahead_fused import Lookahead
from lookahead_fused.slow_state import OUTER_MOMENTUM

from .helpers import PlainLookahead, assert_bitwise_equal, compiled_beside_eager, make_params, run, set_grads
from .optimizers import inners

SHAPES = ((3, 4), (3,), (5,))
INNERS = inners("sgd-momentum", "adamw", "nadam")


def adamw(params):
    return torch.optim.AdamW(params, lr=0.05, weight_decay=0.01)


@pytest.mark.parametrize("inner", list(INNERS))
@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
@pytest.mark.parametrize("mu,nesterov", [(0.5, False), (0.9, False), (0.9, True)])
def test_follows_the_outer_sgd_written_out(backend, mu, nesterov, pullback, inner):
    make_inner, key = INNERS[inner].build, INNERS[inner].momentum_key
    params, oracle_params = make_params(shapes=SHAPES), make_params(shapes=SHAPES)
    ours = Lookahead(make_inner(params), k=3, alpha=0.7, outer_momentum=mu, nesterov=nesterov, pullback_momentum=pullback,
                     backend=backend)  # fmt: skip
    oracle = PlainLookahead(make_inner(oracle_params), k=3, alpha=0.7, pullback=pullback, momentum_key=key,
                            outer_momentum=mu, nesterov=nesterov)  # fmt: skip
    for step in range(13):
        set_grads(params, step)
        set_grads(oracle_params, step)
        ours.step()
        oracle.step()
        for a, b in zip(params, oracle_params):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for p, q in zip(params, oracle_params):
        torch.testing.assert_close(ours.state[p][OUTER_MOMENTUM], oracle.outer[q], rtol=1e-12, atol=1e-12)


def test_mu_zero_is_plain_lookahead_bit_for_bit():
    params, plain_params = make_params(dtype=torch.float32), make_params(dtype=torch.float32)
    ours = Lookahead(adamw(params), k=2, alpha=0.7, outer_momentum=0.0)
    plain = Lookahead(adamw(plain_params), k=2, alpha=0.7)
    run(ours, params, 7)
    run(plain, plain_params, 7)
    assert_bitwise_equal(params, plain_params)
    assert OUTER_MOMENTUM not in ours.state[params[0]]


@pytest.mark.parametrize("dtype,slow_dtype", [(torch.float32, None), (torch.bfloat16, torch.float32)])
def test_checkpoint_mid_period_resumes_bit_for_bit(dtype, slow_dtype):
    params = make_params(dtype=dtype)
    opt = Lookahead(adamw(params), k=3, outer_momentum=0.9, nesterov=True, slow_dtype=slow_dtype)
    run(opt, params, 7)
    assert opt.state[params[0]][OUTER_MOMENTUM].dtype == (slow_dtype or dtype)
    saved = copy.deepcopy(opt.state_dict())
    assert saved["lookahead"]["outer_momentum"] == 0.9 and saved["lookahead"]["nesterov"] is True
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = Lookahead(adamw(resumed_params), k=3, outer_momentum=0.9, nesterov=True, slow_dtype=slow_dtype)
    resumed.load_state_dict(saved)
    run(opt, params, 5, first_step=7)
    run(resumed, resumed_params, 5, first_step=7)
    assert_bitwise_equal(resumed_params, params)
    assert_bitwise_equal([resumed.state[p][OUTER_MOMENTUM] for p in resumed_params], [opt.state[p][OUTER_MOMENTUM] for p in params])


def test_a_checkpoint_from_before_outer_momentum_starts_it_at_zero():
    params = make_params()
    old = Lookahead(adamw(params), k=3)
    run(old, params, 4)
    state_dict = old.state_dict()
    for section in [state_dict["lookahead"]] + [g["lookahead"] for g in state_dict["param_groups"]]:
        del section["outer_momentum"], section["nesterov"]  # as an older version saved it
    opt = Lookahead(adamw([torch.nn.Parameter(p.detach().clone()) for p in params]), k=3, outer_momentum=0.5)
    opt.load_state_dict(state_dict)
    assert opt.defaults["outer_momentum"] == 0.5
    assert all(torch.equal(s[OUTER_MOMENTUM], torch.zeros_like(s[OUTER_MOMENTUM])) for s in opt.state.values())


def test_device_gate_equals_the_host_branch():
    params, twin = make_params(dtype=torch.float32), make_params(dtype=torch.float32)
    host = Lookahead(adamw(params), k=2, alpha=0.6, outer_momentum=0.9, nesterov=True)
    gated = Lookahead(adamw(twin), k=2, alpha=0.6, outer_momentum=0.9, nesterov=True, capturable=True)
    run(host, params, 6)
    run(gated, twin, 6)
    assert_bitwise_equal(twin, params)


def test_compiled_step_never_recompiles_and_follows_eager():
    torch._dynamo.reset()
    counters.clear()
    # SGD, float64: a compiled AdamW computes its bias correction from a float32 step and leaves eager by 1e-7
    params, twin = make_params(), make_params()
    eager = Lookahead(torch.optim.SGD(params, lr=0.05), k=2, outer_momentum=0.9, nesterov=True)
    compiled = Lookahead(torch.optim.SGD(twin, lr=0.05), k=2, outer_momentum=0.9, nesterov=True)
    for _ in compiled_beside_eager(eager, params, compiled, twin, 7):
        for a, b in zip(twin, params):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch._dynamo.reset()


def test_strided_params_take_the_general_path_with_the_same_math():
    base = torch.randn(3, 8, dtype=torch.float64)
    params = [torch.nn.Parameter(base.clone()[:, ::2]), torch.nn.Parameter(torch.randn(3, dtype=torch.float64))]
    oracle_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ours = Lookahead(adamw(params), k=2, outer_momentum=0.9, nesterov=True)
    oracle = PlainLookahead(adamw(oracle_params), k=2, alpha=0.5, outer_momentum=0.9, nesterov=True)
    for step in range(6):
        for p, q in zip(params, oracle_params):
            p.grad = torch.full_like(p, 0.1 * (step + 1))
            q.grad = torch.full_like(q, 0.1 * (step + 1))
        ours.step()
        oracle.step()
    for a, b in zip(params, oracle_params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"outer_momentum": 1.0}, ValueError, r"outer_momentum must be a finite number in \[0, 1\)"),
        ({"outer_momentum": 0.0, "nesterov": True}, ValueError, "nesterov=True needs outer_momentum > 0"),
        ({"outer_momentum": 0.5, "alpha": "adaptive"}, ValueError, "not defined with outer_momentum > 0"),
        ({"outer_momentum": 0.5, "nesterov": 1}, TypeError, "nesterov must be a bool"),
    ],
)
def test_refused_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        Lookahead(adamw(make_params()), **kwargs)
