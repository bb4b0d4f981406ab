"""The Lookahead class follows Algorithm 1: a trajectory worked out by hand, the independent
re-implementation in helpers.PlainLookahead, and the exact edge cases k=1, alpha=0, alpha=1."""

import pytest
import torch

from lookahead_fused import Lookahead

from .helpers import (
    PlainLookahead,
    assert_bitwise_equal,
    clone_params,
    make_params,
    run,
    set_grads,
    snapshot,
    step_side_by_side,
)
from .optimizers import inners

INNERS = inners("sgd-momentum", "adam")


def test_hand_computed_trajectory(backend):
    # SGD, lr 0.1, on L(x) = x^2 / 2 from x = 1, k = 3, alpha = 0.5 (worked out on paper):
    #   steps 1-3: x = 0.9, 0.81, 0.729       sync: slow = 1 + 0.5 (0.729 - 1) = 0.8645 = x
    #   steps 4-6: x = 0.77805, 0.700245, 0.6302205
    #                                         sync: slow = 0.8645 + 0.5 (0.6302205 - 0.8645) = 0.74736025
    #   step 7:    x = 0.672624225
    x = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([x], lr=0.1), k=3, alpha=0.5, backend=backend)
    expected = [0.9, 0.81, 0.8645, 0.77805, 0.700245, 0.74736025, 0.672624225]
    for value in expected:
        opt.zero_grad()
        (x**2 / 2).sum().backward()
        opt.step()
        assert x.item() == pytest.approx(value, rel=1e-14, abs=0)
    assert opt.state[x]["slow_param"].item() == pytest.approx(0.74736025, rel=1e-14, abs=0)
    assert opt.step_count == 7


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("inner", list(INNERS))
def test_matches_plain_algorithm(backend, inner, k, alpha):
    make_inner = INNERS[inner].build
    params = make_params()
    ours, theirs = clone_params(params), clone_params(params)
    opt = Lookahead(make_inner(ours), k=k, alpha=alpha, backend=backend)
    plain = PlainLookahead(make_inner(theirs), k, alpha)
    for step in range(4 * k + 1):
        step_side_by_side(step, (opt, ours), (plain, theirs))
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close([opt.state[p]["slow_param"] for p in ours], [plain.slow[p] for p in theirs], rtol=1e-12, atol=1e-12)


def test_matches_plain_algorithm_in_float32(backend):
    params = make_params(torch.float32)
    ours, theirs = clone_params(params), clone_params(params)
    opt = Lookahead(torch.optim.Adam(ours, lr=0.01), k=4, alpha=0.6, backend=backend)
    plain = PlainLookahead(torch.optim.Adam(theirs, lr=0.01), 4, 0.6)
    for step in range(17):
        step_side_by_side(step, (opt, ours), (plain, theirs))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("inner", list(INNERS))
def test_alpha_one_reproduces_inner_optimizer_bitwise(backend, inner):
    make_inner = INNERS[inner].build
    params = make_params(torch.float32)
    ours, alone = clone_params(params), clone_params(params)
    opt = Lookahead(make_inner(ours), k=2, alpha=1.0, backend=backend)
    inner_alone = make_inner(alone)
    for step in range(9):
        step_side_by_side(step, (opt, ours), (inner_alone, alone))
        assert_bitwise_equal(ours, alone)


def test_alpha_zero_returns_to_initial_weights_every_k_steps(backend):
    params = make_params(torch.float32)
    initial = snapshot(params)
    opt = Lookahead(torch.optim.Adam(params, lr=0.05), k=3, alpha=0.0, backend=backend)
    for step in range(9):
        set_grads(params, step)
        opt.step()
        if (step + 1) % 3 == 0:
            assert_bitwise_equal(params, initial)
        else:
            assert not torch.equal(params[0].detach(), initial[0])


def test_k_one_syncs_after_every_step(backend):
    x = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([x], lr=0.1), k=1, alpha=0.5, backend=backend)
    for expected in (0.95, 0.9025):  # x - 0.5 * 0.1 * x each step
        opt.zero_grad()
        (x**2 / 2).sum().backward()
        opt.step()
        assert x.item() == pytest.approx(expected, rel=1e-14, abs=0)


def test_fast_equals_slow_exactly_after_each_sync(backend):
    params = make_params(torch.float32)
    opt = Lookahead(torch.optim.SGD(params, lr=0.1, momentum=0.9), k=2, alpha=0.37, backend=backend)
    for step in range(6):
        set_grads(params, step)
        opt.step()
        if step % 2 == 1:
            assert_bitwise_equal(params, [opt.state[p]["slow_param"] for p in params])


def test_groups_with_their_own_alpha(backend):
    params = make_params()
    ours, theirs = clone_params(params), clone_params(params)

    def groups(ps):
        return [{"params": [ps[0]], "lookahead_alpha": 0.2}, {"params": [ps[1]], "lr": 0.02}]

    opt = Lookahead(torch.optim.SGD(groups(ours), lr=0.05, momentum=0.5), k=2, alpha=0.7, backend=backend)
    plain = PlainLookahead(torch.optim.SGD(groups(theirs), lr=0.05, momentum=0.5), 2, 0.7)
    for step in range(9):
        step_side_by_side(step, (opt, ours), (plain, theirs))
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    # And the two alphas really differ in effect: one alpha everywhere gives another result.
    single = clone_params(params)
    opt_single = Lookahead(torch.optim.SGD(groups(single), lr=0.05, momentum=0.5), k=2, alpha=0.2, backend=backend)
    for g in opt_single.param_groups:
        g.pop("lookahead_alpha", None)
    run(opt_single, single, 9)
    assert not torch.allclose(single[1], ours[1])


def test_add_param_group_mid_training(backend):
    params = make_params(shapes=((3, 4), (3,), (5,)))
    ours, theirs = clone_params(params), clone_params(params)
    opt = Lookahead(torch.optim.Adam(ours[:2], lr=0.01), k=3, alpha=0.5, backend=backend)
    plain = PlainLookahead(torch.optim.Adam(theirs[:2], lr=0.01), 3, 0.5)
    for step in range(4):
        step_side_by_side(step, (opt, ours), (plain, theirs))
    opt.add_param_group({"params": ours[2], "lr": 0.03, "lookahead_alpha": 0.25})
    plain.add_param_group({"params": theirs[2], "lr": 0.03, "lookahead_alpha": 0.25})
    assert opt.param_groups is opt.optimizer.param_groups and len(opt.param_groups) == 2
    assert torch.equal(opt.state[ours[2]]["slow_param"], ours[2].detach())
    for step in range(4, 13):
        step_side_by_side(step, (opt, ours), (plain, theirs))
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_step_returns_the_closure_loss(backend):
    params = make_params()
    opt = Lookahead(torch.optim.SGD(params, lr=0.1), k=2, backend=backend)

    def closure():
        return set_grads(params, 0)

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    assert opt.step() is None


def test_lbfgs_inner_optimizer_with_closure(backend):
    params = make_params()
    opt = Lookahead(torch.optim.LBFGS(params, lr=0.5, max_iter=3), k=2, backend=backend)
    losses = [opt.step(lambda: set_grads(params, 0)).item() for _ in range(6)]
    assert losses[-1] < losses[0]
    assert opt.step_count == 6
