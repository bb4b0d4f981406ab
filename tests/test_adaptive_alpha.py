"""alpha="adaptive" (paper, section 3.1) on a known quadratic, clipping, defaults, checkpoints."""

import io

import pytest
import torch

from lookahead_fused import Lookahead

from .helpers import assert_bitwise_equal, clone_params, make_params, run

A = torch.tensor([1.0, 4.0, 0.5], dtype=torch.float64)  # the diagonal curvature
OPTIMUM = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
START = torch.tensor([2.0, 1.0, -1.0], dtype=torch.float64)


def loss(theta):
    return 0.5 * torch.sum(A * (theta - OPTIMUM) ** 2)


def closed_form_alpha(theta0, theta_k):
    return float(((theta0 - OPTIMUM) * A * (theta0 - theta_k)).sum() / ((theta0 - theta_k) * A * (theta0 - theta_k)).sum())


def quadratic_run(k, lr, bounds=(0.0, 1.0)):
    x = torch.nn.Parameter(START.clone())
    opt = Lookahead(torch.optim.SGD([x], lr=lr), k=k, alpha="adaptive", alpha_bounds=bounds,
                    curvature=lambda p: A, gradient=lambda p: A * (p - OPTIMUM))  # fmt: skip
    theta_k = START.clone()
    for _ in range(k):  # what the fast weights reach: plain gradient descent, written out
        theta_k = theta_k - lr * A * (theta_k - OPTIMUM)
    for _ in range(k):
        x.grad = A * (x.detach() - OPTIMUM)
        opt.step()
    return opt, x, theta_k


def test_adaptive_alpha_is_the_closed_form_and_beats_every_fixed_alpha():
    opt, x, theta_k = quadratic_run(k=3, lr=0.45)  # 1 - 0.45 * 4 < 0: the fast weights overshoot
    expected = closed_form_alpha(START, theta_k)
    assert 0.0 < expected < 1.0
    assert opt.last_adaptive_alpha == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(x.detach(), START + expected * (theta_k - START), rtol=1e-12, atol=1e-12)
    best = loss(x.detach())
    for i in range(1001):
        alpha = i / 1000
        assert best <= loss(START + alpha * (theta_k - START)) + 1e-15


def test_adaptive_alpha_is_clipped_to_the_bounds():
    _, _, theta_k = quadratic_run(k=3, lr=0.45)
    assert closed_form_alpha(START, theta_k) > 0.1
    opt, x, theta_k = quadratic_run(k=3, lr=0.45, bounds=(0.0, 0.1))
    assert opt.last_adaptive_alpha == 0.1
    torch.testing.assert_close(x.detach(), START + 0.1 * (theta_k - START), rtol=1e-12, atol=1e-12)
    opt, _, _ = quadratic_run(k=2, lr=0.05)  # slow, monotone descent: alpha* > 1, clipped to 1
    assert opt.last_adaptive_alpha == 1.0


def test_adam_family_default_curvature():
    params = make_params(torch.float32)
    opt = Lookahead(torch.optim.Adam(params, lr=0.01), k=3, alpha="adaptive", alpha_bounds=(0.2, 0.9))
    assert opt.last_adaptive_alpha is None
    run(opt, params, 6)
    assert 0.2 <= opt.last_adaptive_alpha <= 0.9
    assert torch.equal(params[0].detach(), opt.state[params[0]]["slow_param"])


def test_adaptive_needs_a_curvature_without_adam():
    with pytest.raises(ValueError, match="alpha='adaptive' needs a curvature estimate: SGD"):
        Lookahead(torch.optim.SGD(make_params(), lr=0.1), alpha="adaptive")


@pytest.mark.parametrize("bounds,error", [((0.5, 0.2), ValueError), ((0.0, 1.5), ValueError), (0.5, TypeError)])
def test_bad_bounds(bounds, error):
    with pytest.raises(error, match="alpha_bounds"):
        Lookahead(torch.optim.Adam(make_params(), lr=0.1), alpha="adaptive", alpha_bounds=bounds)


def _roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_adaptive_state_dict_round_trip_resumes_bitwise():
    params = make_params(torch.float32)
    a, b = clone_params(params), clone_params(params)

    def make(ps, bounds=(0.1, 0.95)):
        return Lookahead(torch.optim.Adam(ps, lr=0.01), k=3, alpha="adaptive", alpha_bounds=bounds)

    opt_a = make(a)
    run(opt_a, a, 4)
    saved_params, saved = _roundtrip([p.detach().clone() for p in a]), _roundtrip(opt_a.state_dict())
    assert saved["lookahead"]["alpha"] == "adaptive" and saved["lookahead"]["alpha_bounds"] == [0.1, 0.95]
    run(opt_a, a, 8, first_step=4)

    opt_b = make(b, bounds=(0.0, 1.0))
    with torch.no_grad():
        for p, q in zip(b, saved_params):
            p.copy_(q)
    opt_b.load_state_dict(saved)
    assert opt_b._adaptive.bounds == (0.1, 0.95)
    run(opt_b, b, 8, first_step=4)
    assert_bitwise_equal(b, a)
    assert opt_b.last_adaptive_alpha == opt_a.last_adaptive_alpha

    fixed = Lookahead(torch.optim.Adam(clone_params(params), lr=0.01), k=3)
    with pytest.raises(ValueError, match="build the optimizer with alpha='adaptive'"):
        fixed.load_state_dict(saved)


def test_a_group_can_take_the_adaptive_alpha_only_from_an_adaptive_optimizer():
    params = make_params(torch.float32, shapes=((3, 4), (3,), (5,)))
    adaptive = Lookahead(torch.optim.Adam(params[:2], lr=0.01), k=2, alpha="adaptive")
    adaptive.add_param_group({"params": [params[2]], "lookahead_alpha": "adaptive"})
    run(adaptive, params, 2)
    assert adaptive.last_adaptive_alpha is not None
    fixed = Lookahead(torch.optim.Adam(clone_params(params)[:2], lr=0.01), k=2, alpha=0.5)
    with pytest.raises(ValueError, match="param group 1: lookahead_alpha is 'adaptive'"):
        fixed.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lookahead_alpha": "adaptive"})


def test_a_chosen_alpha_that_another_group_has_syncs_both_groups(backend):
    # the closed form (> 0.1) is clipped to 0.1, which the fixed group has: one launch of both groups
    x = torch.nn.Parameter(START.clone())
    fixed = [torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64)) for _ in range(2)]
    inner = torch.optim.SGD([{"params": [x]}, {"params": fixed, "lookahead_alpha": 0.1}], lr=0.45)
    opt = Lookahead(inner, k=3, alpha="adaptive", alpha_bounds=(0.0, 0.1), curvature=lambda p: A,
                    gradient=lambda p: A * (p - OPTIMUM), backend=backend)  # fmt: skip
    theta_k, starts = START.clone(), [p.detach().clone() for p in fixed]
    fixed_k = [s.clone() for s in starts]
    for _ in range(3):
        theta_k = theta_k - 0.45 * A * (theta_k - OPTIMUM)
        fixed_k = [f - 0.45 * f for f in fixed_k]  # the gradient of 0.5 |p|^2
        x.grad = A * (x.detach() - OPTIMUM)
        for p in fixed:
            p.grad = p.detach().clone()
        opt.step()
    assert opt.last_adaptive_alpha == 0.1
    torch.testing.assert_close(x.detach(), START + 0.1 * (theta_k - START), rtol=1e-12, atol=1e-12)
    for p, start, end in zip(fixed, starts, fixed_k):
        torch.testing.assert_close(p.detach(), start + 0.1 * (end - start), rtol=1e-12, atol=1e-12)
    assert all(torch.equal(p.detach(), opt.state[p]["slow_param"]) for p in [x, *fixed])
