"""lookahead_compact_sync_, the sync of slow weights kept as bf16+int8 (docs/design.md, "Compact slow
weights"), for every (device, backend) usable here (tests/matrix.py): against the float64 evaluation
of the sync and the encoding's bound, its exact invariants, and its rejections, which name the
problem and write nothing."""

import math

import pytest
import torch

from lookahead_fused import bf16_int8, ops
from lookahead_fused.backends.reference import compact_sync_float64
from lookahead_fused.contract import COMPACT_FAST_DTYPES

from .helpers import snapshot
from .matrix import ALPHAS, OFFSETS, dtype_id, make_pair_lists, sizes_for, ulp


def make_compact_lists(sizes, fast_dtype, seed=0, offset=0, device="cpu"):
    """fast tensors and their slow weights as (high, low) lists, the slow values encoded from float32
    (a third equal to fast, as make_pair_lists makes them); `offset` elements into a buffer breaks
    16-byte alignment of all three."""
    fast, slow = make_pair_lists(sizes, fast_dtype, torch.float32, seed=seed, offset=offset, device=device)
    high, low = [], []
    for s in slow:
        h, q = bf16_int8.encode(s.cpu())
        high.append(torch.empty(s.numel() + offset, dtype=h.dtype, device=device)[offset:].copy_(h))
        low.append(torch.empty(s.numel() + offset, dtype=q.dtype, device=device)[offset:].copy_(q))
    return fast, high, low


def check_compact_result(fast0, high0, low0, fast, high, low, alpha):
    """Each entry after a compact sync: a valid encoding, fast its decoded value cast exactly, the
    exact ends, and elsewhere the float64 sync within 2 float32 ulp (the lerp) plus the encoding's bound."""
    for i, tensors in enumerate(zip(fast0, high0, low0, fast, high, low)):
        f0, h0, q0, f, h, q = (t.detach().cpu() for t in tensors)
        decoded = bf16_int8.decode(h, q)
        again = bf16_int8.encode(decoded)
        assert torch.equal(again[0], h) and torch.equal(again[1], q), f"pair {i}: not an encoding the encoder makes"
        assert torch.equal(f, decoded.to(f.dtype)), f"pair {i}: fast != the decoded slow weight cast to fast's dtype"
        if alpha == 0.0:
            assert torch.equal(h, h0) and torch.equal(q, q0), f"pair {i}: alpha=0 changed the slow weight"
            continue
        if alpha == 1.0:
            expected_high, expected_low = bf16_int8.encode(f0.float())
            assert torch.equal(h, expected_high) and torch.equal(q, expected_low), f"pair {i}: alpha=1 is not encode(fast)"
            continue
        expected = compact_sync_float64(f0, h0, q0, alpha)
        s0 = bf16_int8.decode(h0, q0).double()
        lerp_error = 2 * ulp(torch.maximum(f0.double().abs(), s0.abs()), torch.float32)
        bound = lerp_error + bf16_int8.error_bound(expected.abs() + lerp_error)
        error = (decoded.double() - expected).abs()
        worst = (error / bound).max().item() if error.numel() else 0.0
        assert worst <= 1.0, f"pair {i}: error reaches {worst:.2f} x the bound"


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("fast_dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_compact_sync_matches_float64_within_the_encodings_bound(device_backend, fast_dtype, alpha, offset):
    device, backend = device_backend
    fast, high, low = make_compact_lists(sizes_for(device_backend), fast_dtype, offset=offset, device=device)
    before = [snapshot(tensors) for tensors in (fast, high, low)]
    ops.lookahead_compact_sync_(fast, high, low, alpha, backend=backend)
    check_compact_result(*before, fast, high, low, alpha)


def test_compact_sync_of_many_small_tensors_of_every_fast_dtype_in_one_call(device_backend):
    device, backend = device_backend
    fast, high, low = [], [], []
    for seed, fast_dtype in enumerate(COMPACT_FAST_DTYPES):
        sizes = [(i * 37) % 300 for i in range(200)]
        for column, tensors in zip((fast, high, low), make_compact_lists(sizes, fast_dtype, seed, seed % 3, device)):
            column += tensors
    before = [snapshot(tensors) for tensors in (fast, high, low)]
    ops.lookahead_compact_sync_(fast, high, low, 0.7, backend=backend)
    check_compact_result(*before, fast, high, low, 0.7)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # numpy, under Triton's interpreter
def test_compact_sync_keeps_nan_and_inf_as_the_float64_sync_has_them(device_backend):
    device, backend = device_backend
    fast = torch.tensor([math.nan, math.inf, -math.inf, 1.0, 1.0, math.inf], device=device)
    slow = torch.tensor([1.0, 2.0, 3.0, math.inf, math.nan, -math.inf])
    high, low = (t.to(device) for t in bf16_int8.encode(slow))
    expected = compact_sync_float64(fast.cpu(), high.cpu(), low.cpu(), 0.3)
    ops.lookahead_compact_sync_([fast], [high], [low], 0.3, backend=backend)
    decoded = bf16_int8.decode(high.cpu(), low.cpu()).double()
    for got, want in zip(decoded.tolist(), expected.tolist()):
        assert (math.isnan(got) and math.isnan(want)) or got == want
    torch.testing.assert_close(fast.cpu(), decoded.float(), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda f, h, q: (f, [h[0].float()] + h[1:], q), r"pair 0: slow_high has dtype torch.float32; it must be torch.bfloat16"),
        (lambda f, h, q: (f, h, [q[0].to(torch.uint8)] + q[1:]), r"pair 0: slow_low has dtype torch.uint8; it must be torch.int8"),
        (lambda f, h, q: ([f[0].double()] + f[1:], h, q), r"pair 0: fast has dtype torch.float64; bf16\+int8 slow weights"),
        (lambda f, h, q: (f, h, q[:1]), r"fast has 2 tensors but slow_low has 1"),
        (lambda f, h, q: (f, [h[0], h[1].reshape(3, 3)], q), r"pair 1: fast has shape \(9,\) but slow_high has shape \(3, 3\)"),
        (lambda f, h, q: (f, [h[0], h[0][:9]], q), r"pair 0 \(slow_high\) and pair 1 \(slow_high\) share memory"),
        (lambda f, h, q: (f, h, [q[0][::2], q[1]]), r"pair 0: slow_low .* is not dense"),
    ],
)
def test_compact_sync_refuses_bad_lists_before_writing(device_backend, break_it, message):
    device, backend = device_backend
    fast, high, low = make_compact_lists([20, 9], torch.float32, device=device)
    low[0] = torch.zeros(40, dtype=torch.int8, device=device)[::2] if "dense" in message else low[0]
    fast, high, low = break_it(fast, high, low)
    before = [snapshot(tensors) for tensors in (fast, high, low)]
    with pytest.raises(ValueError, match=message):
        ops.lookahead_compact_sync_(fast, high, low, 0.5, backend=backend)
    for tensors, saved in zip((fast, high, low), before):
        assert all(torch.equal(t, s) for t, s in zip(tensors, saved)), "a refused call wrote"


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan])
def test_compact_sync_refuses_an_alpha_outside_0_1(device_backend, alpha):
    device, backend = device_backend
    fast, high, low = make_compact_lists([5], torch.float32, device=device)
    with pytest.raises(ValueError, match=r"lookahead_compact_sync_: alpha must be a finite number in \[0, 1\]"):
        ops.lookahead_compact_sync_(fast, high, low, alpha, backend=backend)


def test_a_cached_compact_plan_does_not_vouch_for_another_dtype_at_its_addresses(device_backend):
    """The same addresses and sizes with the high parts viewed as float16: refused, cached plan or not
    (see [NOTE: a cached plan vouches] in csrc/plan.h)."""
    device, backend = device_backend
    fast, high, low = make_compact_lists([33, 4097], torch.float32, device=device)
    ops.lookahead_compact_sync_(fast, high, low, 0.5, backend=backend)
    wrong = [high[0].view(torch.float16), high[1]]
    before = snapshot(fast)
    with pytest.raises(ValueError, match=r"pair 0: slow_high has dtype torch.float16; it must be torch.bfloat16"):
        ops.lookahead_compact_sync_(fast, wrong, low, 0.5, backend=backend)
    assert all(torch.equal(a, b) for a, b in zip(fast, before))
