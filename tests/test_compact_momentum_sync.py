"""lookahead_compact_sync_ with outer momentum, the momentum sync of slow weights kept as bf16+int8
(see [NOTE: compact momentum sync] in csrc/element_math.h), and its step-gated form, for every
(device, backend) usable here (tests/matrix.py): against the float64 momentum sync within float32's
rounding plus the encoding's bound, its exact invariants (mu = 0 is the compact sync bit for bit, the
gate on is the ungated op bit for bit, off changes nothing), and its refusals, which name the problem
and write nothing. Then Lookahead(slow_dtype="bf16+int8", outer_momentum=...): each sync of step()
against the float64 momentum sync from the state before it, and the bytes of its state. The generic
behaviours (checkpoints, capturable, compile, slow_weights(), bad input) run on its records in
tests/test_optimizer_matrix.py."""

import math

import pytest
import torch

from lookahead_fused import bf16_int8, ops
from lookahead_fused.backends.reference import sync_float64
from lookahead_fused.contract import COMPACT_FAST_DTYPES, COMPACT_MOMENTUM_DTYPES
from lookahead_fused.slow_state import OUTER_MOMENTUM, SLOW_HIGH, SLOW_LOW

from .helpers import make_params, snapshot
from .matrix import ALPHAS, MOMENTA, OFFSETS, backends_under_test, dtype_id, sizes_for, ulp
from .test_compact_slow_weights import SHAPES, check_each_sync_of_step, compact_lookahead
from .test_compact_sync import make_compact_lists


def make_quads(sizes, fast_dtype, momentum_dtype, seed=0, offset=0, device="cpu"):
    """make_compact_lists' lists and an outer momentum of `momentum_dtype` beside them (a fifth zero)."""
    fast, high, low = make_compact_lists(sizes, fast_dtype, seed=seed, offset=offset, device=device)
    g = torch.Generator().manual_seed(seed + 100)
    momentum = []
    for n in sizes:
        m = torch.randn(n, generator=g) * 0.1
        m[::5] = 0.0
        momentum.append(torch.empty(n + offset, dtype=momentum_dtype, device=device)[offset:].copy_(m))
    return fast, high, low, momentum


def check_quads(before, after, alpha, mu, nesterov):
    """Each entry after a compact momentum sync: a valid encoding, fast its decoded value cast exactly;
    the momentum within 4 float32 ulp of the float64 mu m + (f - s) (and half a bfloat16 ulp more
    when it is bfloat16); the decoded slow weight within 8 float32 ulp of the float64 lerp toward
    f + mu (nesterov ? m' as stored : m), plus the encoding's bound."""
    for i, tensors in enumerate(zip(*before, *after)):
        f0, h0, q0, m0, f, h, q, m = (t.detach().cpu() for t in tensors)
        decoded = bf16_int8.decode(h, q)
        again = bf16_int8.encode(decoded)
        assert torch.equal(again[0], h) and torch.equal(again[1], q), f"pair {i}: not an encoding the encoder makes"
        assert torch.equal(f, decoded.to(f.dtype)), f"pair {i}: fast != the decoded slow weight cast to fast's dtype"
        s0, f64, m64, stored = bf16_int8.decode(h0, q0).double(), f0.double(), m0.double(), m.double()
        m_expected = mu * m64 + (f64 - s0)
        target = f64 + mu * (stored if nesterov else m64)
        magnitude = torch.stack([f64.abs(), s0.abs(), m64.abs(), target.abs(), m_expected.abs()]).amax(0)
        m_bound = 4 * ulp(magnitude, torch.float32)
        if m.dtype == torch.bfloat16:
            m_bound = m_bound + 0.5 * ulp(m_expected.abs() + m_bound, torch.bfloat16)
        assert ((stored - m_expected).abs() <= m_bound).all(), f"pair {i}: momentum off"
        expected = sync_float64(target, s0, alpha)
        lerp_error = 8 * ulp(magnitude, torch.float32)
        bound = lerp_error + bf16_int8.error_bound(expected.abs() + lerp_error)
        error = (decoded.double() - expected).abs()
        worst = (error / bound).max().item() if error.numel() else 0.0
        assert worst <= 1.0, f"pair {i}: slow weight error reaches {worst:.2f} x the bound"


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("mu,nesterov", [m for m in MOMENTA if m[0]])  # mu = 0: the bit-for-bit test below
@pytest.mark.parametrize("momentum_dtype", COMPACT_MOMENTUM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("fast_dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_compact_momentum_sync_matches_float64(device_backend, fast_dtype, momentum_dtype, mu, nesterov, offset):
    """Every alpha on aligned tensors, one misaligned; sizes up to 65537 (the walk over many chunks is the
    compact sync's, tested in test_compact_sync.py and the CUDA kernel's host emulation)."""
    device, backend = device_backend
    sizes = [n for n in sizes_for(device_backend) if n <= 65537]
    for alpha in [0.7] if offset else ALPHAS:
        quads = make_quads(sizes, fast_dtype, momentum_dtype, offset=offset, device=device)
        before = [snapshot(tensors) for tensors in quads]
        ops.lookahead_compact_sync_(*quads[:3], alpha, momentum=quads[3], mu=mu, nesterov=nesterov, backend=backend)
        check_quads(before, quads, alpha, mu, nesterov)


@pytest.mark.parametrize("momentum_dtype", COMPACT_MOMENTUM_DTYPES, ids=dtype_id)
def test_compact_momentum_sync_with_mu_0_is_the_compact_sync_bit_for_bit(device_backend, momentum_dtype):
    device, backend = device_backend
    for fast_dtype in COMPACT_FAST_DTYPES:
        quads = make_quads([1, 33, 4097], fast_dtype, momentum_dtype, device=device)
        triples = [snapshot(tensors) for tensors in quads[:3]]
        ops.lookahead_compact_sync_(*quads[:3], 0.6, momentum=quads[3], mu=0.0, backend=backend)
        ops.lookahead_compact_sync_(*triples, 0.6, backend=backend)
        for a, b in zip(quads[:3], triples):
            assert all(torch.equal(x, y) for x, y in zip(a, b)), f"{fast_dtype}: mu = 0 is not the compact sync"


def test_compact_momentum_sync_of_many_small_tensors_of_every_dtype_in_one_call(device_backend):
    device, backend = device_backend
    quads = ([], [], [], [])
    for seed, (fast_dtype, momentum_dtype) in enumerate(
        (f, m) for f in COMPACT_FAST_DTYPES for m in COMPACT_MOMENTUM_DTYPES
    ):
        sizes = [(i * 37) % 300 for i in range(100)]
        for column, tensors in zip(quads, make_quads(sizes, fast_dtype, momentum_dtype, seed, seed % 3, device)):
            column += tensors
    before = [snapshot(tensors) for tensors in quads]
    ops.lookahead_compact_sync_(*quads[:3], 0.7, momentum=quads[3], mu=0.9, nesterov=True, backend=backend)
    check_quads(before, quads, 0.7, 0.9, True)


@pytest.mark.parametrize("step", [6, 7])
def test_gated_compact_momentum_sync_is_the_ungated_one_on_a_sync_step_and_nothing_off_it(device_backend, step):
    device, backend = device_backend
    quads = make_quads([5, 4097], torch.bfloat16, torch.bfloat16, offset=1, device=device)
    ungated = [snapshot(tensors) for tensors in quads]
    before = [snapshot(tensors) for tensors in quads]
    alpha = torch.tensor(0.7, dtype=torch.float64, device=device)
    step_tensor = torch.tensor(step, device=device)
    ops.lookahead_compact_sync_on_step_(*quads[:3], alpha, step_tensor, 3, momentum=quads[3], mu=0.9, nesterov=True,
                                        backend=backend)  # fmt: skip
    ops.lookahead_compact_sync_(*ungated[:3], 0.7, momentum=ungated[3], mu=0.9, nesterov=True, backend=backend)
    want = ungated if step % 3 == 0 else before
    for got, expected in zip(quads, want):
        assert all(torch.equal(x, y) for x, y in zip(got, expected))


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda m: [m[0].half()] + m[1:], r"pair 0: momentum has dtype torch.float16; the outer momentum beside bf16\+int8"),
        (lambda m: m[:1], r"fast has 2 tensors but momentum has 1"),
        (lambda m: [m[0], m[1].reshape(3, 3)], r"pair 1: momentum has shape \(3, 3\) but fast has shape \(9,\)"),
        (lambda m: [m[0], m[0][:9]], r"pair 0 \(momentum\) and pair 1 \(momentum\) share memory"),
    ],
)
def test_compact_momentum_sync_refuses_bad_lists_before_writing(device_backend, break_it, message):
    device, backend = device_backend
    fast, high, low, momentum = make_quads([20, 9], torch.float32, torch.float32, device=device)
    momentum = break_it(momentum)
    lists = (fast, high, low, momentum)
    before = [snapshot(tensors) for tensors in lists]
    with pytest.raises(ValueError, match=message):
        ops.lookahead_compact_sync_(fast, high, low, 0.5, momentum=momentum, mu=0.9, backend=backend)
    for tensors, saved in zip(lists, before):
        assert all(torch.equal(t, s) for t, s in zip(tensors, saved)), "a refused call wrote"


@pytest.mark.parametrize("mu", [-0.1, 1.0, math.nan])
def test_compact_momentum_sync_refuses_a_mu_outside_0_1(device_backend, mu):
    device, backend = device_backend
    quads = make_quads([5], torch.float32, torch.float32, device=device)
    with pytest.raises(ValueError, match=r"lookahead_compact_sync_: outer momentum mu must be a finite number in \[0, 1\)"):
        ops.lookahead_compact_sync_(*quads[:3], 0.5, momentum=quads[3], mu=mu, backend=backend)


@pytest.mark.parametrize("backend", backends_under_test("cpu"))
@pytest.mark.parametrize("momentum_dtype", [None, torch.bfloat16], ids=str)
@pytest.mark.parametrize("dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_each_sync_of_step_is_the_float64_momentum_sync_within_its_bounds(dtype, momentum_dtype, backend):
    params = make_params(dtype, shapes=SHAPES)
    opt = compact_lookahead(params, backend=backend, alpha=0.7, outer_momentum=0.9, nesterov=True,
                            momentum_dtype=momentum_dtype)  # fmt: skip
    check_each_sync_of_step(opt, params, (SLOW_HIGH, SLOW_LOW, OUTER_MOMENTUM),
                            lambda before, after: check_quads(before, after, 0.7, 0.9, True))  # fmt: skip


@pytest.mark.parametrize("momentum_dtype, momentum_bytes", [(None, 4), (torch.bfloat16, 2)], ids=str)
@pytest.mark.parametrize("dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_the_slow_state_with_outer_momentum_is_3_bytes_and_the_momentums(dtype, momentum_dtype, momentum_bytes):
    params = make_params(dtype, shapes=SHAPES)
    opt = compact_lookahead(params, outer_momentum=0.9, momentum_dtype=momentum_dtype)
    for p in params:
        state = {key: t for key, t in opt.state[p].items() if isinstance(t, torch.Tensor)}
        assert set(state) == {SLOW_HIGH, SLOW_LOW, OUTER_MOMENTUM}
        assert sum(t.numel() * t.element_size() for t in state.values()) == (3 + momentum_bytes) * p.numel()
