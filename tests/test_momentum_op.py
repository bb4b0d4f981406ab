"""The momentum sync (outer momentum, docs/design.md "The momentum sync") on every (device, backend)
usable here: against its float64 evaluation, mu = 0 identical to the plain sync bit for bit, gated
by the step counter, the torch SGD-on-pseudo-gradients formulation it equals, and rejections that
write nothing."""

import pytest
import torch

from lookahead_fused import ops
from lookahead_fused.contract import BF16_MOMENTUM_PAIRS

from .helpers import assert_bitwise_equal, snapshot
from .matrix import (
    ALPHAS,
    DTYPE_PAIRS,
    MOMENTA,
    OFFSETS,
    check_momentum_against_contract,
    dtype_id,
    make_pair_lists,
    random_values,
    sizes_for,
)


def make_momenta(sizes, dtype, device, offset=0, seed=7):
    g = torch.Generator().manual_seed(seed)
    momenta = []
    for n in sizes:
        m = torch.empty(n + offset, dtype=dtype, device=device)[offset:]
        m.copy_(random_values(n, dtype, g))
        if n > 4:
            m[: n // 4] = 0  # where the momentum has not built up yet
        momenta.append(m)
    return momenta


@pytest.mark.parametrize("mu,nesterov", MOMENTA)
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("fast_dtype,slow_dtype", DTYPE_PAIRS, ids=dtype_id)
def test_momentum_sync_matches_float64_reference(device_backend, fast_dtype, slow_dtype, alpha, offset, mu, nesterov):
    device, backend = device_backend
    sizes = sizes_for(device_backend)
    fast, slow = make_pair_lists(sizes, fast_dtype, slow_dtype, offset=offset, device=device)
    momentum = make_momenta(sizes, slow_dtype, device, offset=offset)
    before = snapshot(fast), snapshot(slow), snapshot(momentum)
    ops.lookahead_sync_(fast, slow, alpha, momentum=momentum, mu=mu, nesterov=nesterov, backend=backend)
    check_momentum_against_contract(*before, fast, slow, momentum, alpha, mu, nesterov)


@pytest.mark.parametrize("mu,nesterov", MOMENTA)
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("alpha", [0.3, 0.7, 1.0])
@pytest.mark.parametrize("fast_dtype,slow_dtype", BF16_MOMENTUM_PAIRS, ids=dtype_id)
def test_bf16_momentum_sync_matches_float64_reference(device_backend, fast_dtype, slow_dtype, alpha, offset, mu,
                                                     nesterov):  # fmt: skip
    """A bfloat16 outer momentum beside float32 slow weights (see [NOTE: bf16 outer momentum] in lookahead_fused/options.py)."""
    device, backend = device_backend
    sizes = sizes_for(device_backend)
    fast, slow = make_pair_lists(sizes, fast_dtype, slow_dtype, offset=offset, device=device)
    momentum = make_momenta(sizes, torch.bfloat16, device, offset=offset)
    before = snapshot(fast), snapshot(slow), snapshot(momentum)
    ops.lookahead_sync_(fast, slow, alpha, momentum=momentum, mu=mu, nesterov=nesterov, backend=backend)
    assert all(m.dtype == torch.bfloat16 for m in momentum)
    check_momentum_against_contract(*before, fast, slow, momentum, alpha, mu, nesterov)


@pytest.mark.parametrize("fast_dtype,slow_dtype", BF16_MOMENTUM_PAIRS, ids=dtype_id)
def test_bf16_momentum_at_mu_zero_is_the_rounded_difference_and_the_plain_sync(device_backend, fast_dtype, slow_dtype):
    """mu = 0: slow and fast are the plain sync's bit for bit, and the momentum is f - s computed in
    float32, rounded to nearest even in bfloat16: exact invariants, no tolerance."""
    device, backend = device_backend
    sizes = sizes_for(device_backend)
    fast, slow = make_pair_lists(sizes, fast_dtype, slow_dtype, offset=1, device=device)
    momentum = make_momenta(sizes, torch.bfloat16, device, offset=1)
    plain_fast, plain_slow = snapshot(fast), snapshot(slow)
    expected = [(f.float() - s).to(torch.bfloat16) for f, s in zip(fast, slow)]
    ops.lookahead_sync_(fast, slow, 0.7, momentum=momentum, mu=0.0, backend=backend)
    ops.lookahead_sync_(plain_fast, plain_slow, 0.7, backend=backend)
    assert_bitwise_equal(fast + slow, plain_fast + plain_slow)
    assert_bitwise_equal(momentum, expected)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("fast_dtype,slow_dtype", DTYPE_PAIRS, ids=dtype_id)
def test_mu_zero_is_the_plain_sync_bit_for_bit(device_backend, fast_dtype, slow_dtype, alpha):
    device, backend = device_backend
    sizes = sizes_for(device_backend)
    fast, slow = make_pair_lists(sizes, fast_dtype, slow_dtype, device=device)
    plain_fast, plain_slow = snapshot(fast), snapshot(slow)
    momentum = make_momenta(sizes, slow_dtype, device)
    ops.lookahead_sync_(fast, slow, alpha, momentum=momentum, mu=0.0, nesterov=True, backend=backend)
    ops.lookahead_sync_(plain_fast, plain_slow, alpha, backend=backend)
    assert_bitwise_equal(fast + slow, plain_fast + plain_slow)


@pytest.mark.parametrize("nesterov", [False, True])
def test_equals_torch_sgd_on_pseudo_gradients(device_backend, nesterov):
    """What users run today: slow.grad = slow - fast, torch.optim.SGD(lr=alpha, momentum=mu), fast <- slow."""
    device, backend = device_backend
    sizes = [7, 4097]
    fast, slow = make_pair_lists(sizes, torch.float64, torch.float64, device=device)
    momentum = [torch.zeros_like(s) for s in slow]
    sgd_slow = [torch.nn.Parameter(s.clone()) for s in slow]
    sgd = torch.optim.SGD(sgd_slow, lr=0.5, momentum=0.9, nesterov=nesterov)
    sgd_fast = snapshot(fast)
    for _ in range(3):  # three outer steps, the fast weights moving in between
        for f, sf in zip(fast, sgd_fast):
            f.add_(0.01)
            sf.add_(0.01)
        ops.lookahead_sync_(fast, slow, 0.5, momentum=momentum, mu=0.9, nesterov=nesterov, backend=backend)
        for s, f in zip(sgd_slow, sgd_fast):
            s.grad = s.detach() - f
        sgd.step()
        for s, f in zip(sgd_slow, sgd_fast):
            f.copy_(s.detach())
    for s, expected in zip(slow, sgd_slow):
        assert torch.allclose(s, expected.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("momentum_dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_gated_momentum_sync_runs_only_on_multiples_of_k(device_backend, momentum_dtype):
    device, backend = device_backend
    fast, slow = make_pair_lists([0, 7, 4097], torch.bfloat16, torch.float32, offset=1, device=device)
    momentum = make_momenta([0, 7, 4097], momentum_dtype, device, offset=1)
    for step in (1, 2, 4, 5):
        before = snapshot(fast + slow + momentum)
        ops.lookahead_sync_on_step_(fast, slow, 0.7, torch.tensor(step, device=device), 3, momentum=momentum, mu=0.9,
                                    nesterov=True, backend=backend)  # fmt: skip
        assert_bitwise_equal(fast + slow + momentum, before)
    before = snapshot(fast), snapshot(slow), snapshot(momentum)
    ops.lookahead_sync_on_step_(fast, slow, 0.7, torch.tensor(6, device=device), 3, momentum=momentum, mu=0.9,
                                nesterov=True, backend=backend)  # fmt: skip
    check_momentum_against_contract(*before, fast, slow, momentum, 0.7, 0.9, True)


def _triple():
    return [torch.randn(4), torch.randn(2, 3)], [torch.randn(4), torch.randn(2, 3)], [torch.zeros(4), torch.zeros(2, 3)]


REJECTED = {
    "momentum dtype": (lambda f, s, m: m.__setitem__(1, torch.zeros(2, 3, dtype=torch.float64)),
                       "pair 1: momentum has dtype torch.float64 but slow has torch.float32; the outer momentum is "
                       "kept in the slow weights' dtype, or in bfloat16 beside float32 slow weights"),
    "bf16 momentum beside float64 slow": (
        lambda f, s, m: (f.__setitem__(1, f[1].double()), s.__setitem__(1, s[1].double()),
                         m.__setitem__(1, torch.zeros(2, 3, dtype=torch.bfloat16))),
        "pair 1: momentum has dtype torch.bfloat16 but slow has torch.float64"),
    "momentum shape": (lambda f, s, m: m.__setitem__(1, torch.zeros(3, 2)), "pair 1: momentum has shape (3, 2)"),
    "momentum is slow": (lambda f, s, m: m.__setitem__(1, s[1]), "share memory"),
    "one momentum short": (lambda f, s, m: m.pop(), "fast has 2 tensors but momentum has 1"),
    "an empty momentum list": (lambda f, s, m: m.clear(), "fast has 2 tensors but momentum has 0"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REJECTED))
def test_bad_momentum_is_rejected_before_writing(backend, case):
    fast, slow, momentum = _triple()
    breaks, message = REJECTED[case]
    breaks(fast, slow, momentum)
    before = snapshot(fast + slow + momentum)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ops.lookahead_sync_(fast, slow, 0.5, momentum=momentum, mu=0.5, backend=backend)
    assert_bitwise_equal(fast + slow + momentum, before)


@pytest.mark.parametrize("case", list(REJECTED))
def test_check_sync_args_refuses_what_the_op_refuses(backend, case):
    fast, slow, momentum = _triple()
    breaks, message = REJECTED[case]
    breaks(fast, slow, momentum)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ops.check_sync_args(fast, slow, 0.5, momentum=momentum, mu=0.5, backend=backend)


@pytest.mark.parametrize("mu", [1.0, -0.1, float("nan"), True])
def test_bad_mu_is_rejected_before_writing(backend, mu):
    fast, slow, momentum = _triple()
    before = snapshot(fast + slow + momentum)
    with pytest.raises((TypeError, ValueError), match="outer momentum mu"):
        ops.lookahead_sync_(fast, slow, 0.5, momentum=momentum, mu=mu, backend=backend)
    assert_bitwise_equal(fast + slow + momentum, before)
