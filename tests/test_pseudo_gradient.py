"""lookahead_pseudo_gradient_, a replica's pseudo-gradient out <- fast - slow in the slow dtype, or in
bfloat16 beside float32 slow weights (see [NOTE: pseudo-gradient] in csrc/element_math.h), for every
(device, backend) usable here (tests/matrix.py): bit for bit the correctly rounded difference in the
slow dtype's opmath, rounded to out's dtype; fast and slow neither changed nor versioned; and its
refusals, which name the problem and write nothing."""

import math

import pytest
import torch

from lookahead_fused import ops
from lookahead_fused.contract import BF16_MOMENTUM_PAIRS, DTYPE_PAIRS

from .helpers import snapshot
from .matrix import OFFSETS, dtype_id, make_pair_lists, sizes_for


def expected_difference(fast: torch.Tensor, slow: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """fast - slow as the contract says, computed apart from the op: in float64 for float64 slow weights
    (one IEEE subtraction); else exactly in float64 (matrix.random_values spans six decades, so the
    difference of two floats of at most 24 bits fits float64's 53), rounded to float32 (the opmath),
    then to out's dtype."""
    f, s = fast.cpu().double(), slow.cpu().double()
    if slow.dtype == torch.float64:
        return f - s
    return (f - s).float().to(out_dtype)


def make_triples(sizes, fast_dtype, slow_dtype, seed=0, offset=0, device="cpu", out_dtype=None):
    fast, slow = make_pair_lists(sizes, fast_dtype, slow_dtype, seed=seed, offset=offset, device=device)
    out = [torch.full((n + offset,), math.nan, dtype=out_dtype or slow_dtype, device=device)[offset:] for n in sizes]
    return fast, slow, out


def check_triples(fast0, slow0, fast, slow, out):
    for i, (f0, s0, f, s, o) in enumerate(zip(fast0, slow0, fast, slow, out)):
        assert torch.equal(f.cpu(), f0.cpu()) and torch.equal(s.cpu(), s0.cpu()), f"pair {i}: fast or slow changed"
        want = expected_difference(f0, s0, o.dtype)
        assert o.dtype in (s0.dtype, torch.bfloat16)
        assert torch.equal(o.cpu(), want), f"pair {i}: {(o.cpu().double() - want.double()).abs().max()} off"


# (fast, slow, out): out in the slow dtype for every pair, and in bfloat16 beside float32 slow weights
TRIPLES = [(f, s, s) for f, s in DTYPE_PAIRS] + [(f, s, torch.bfloat16) for f, s in BF16_MOMENTUM_PAIRS]


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("triple", TRIPLES, ids=lambda t: "-".join(map(dtype_id, t)))
def test_pseudo_gradient_is_the_rounded_difference(device_backend, triple, offset):
    device, backend = device_backend
    fast_dtype, slow_dtype, out_dtype = triple
    fast, slow, out = make_triples(sizes_for(device_backend), fast_dtype, slow_dtype, offset=offset, device=device,
                                   out_dtype=out_dtype)  # fmt: skip
    before = [snapshot(fast), snapshot(slow)]
    versions = [t._version for t in fast + slow]
    ops.lookahead_pseudo_gradient_(fast, slow, out, backend=backend)
    check_triples(*before, fast, slow, out)
    assert [t._version for t in fast + slow] == versions, "the op bumped the version of a tensor it only reads"


def test_pseudo_gradient_of_many_small_tensors_of_every_dtype_triple_in_one_call(device_backend):
    device, backend = device_backend
    fast, slow, out = [], [], []
    for seed, (fast_dtype, slow_dtype, out_dtype) in enumerate(TRIPLES):
        sizes = [(i * 37) % 300 for i in range(100)]
        triples = make_triples(sizes, fast_dtype, slow_dtype, seed, seed % 3, device, out_dtype)
        for column, tensors in zip((fast, slow, out), triples):
            column += tensors
    before = [snapshot(fast), snapshot(slow)]
    ops.lookahead_pseudo_gradient_(fast, slow, out, backend=backend)
    check_triples(*before, fast, slow, out)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # numpy, under Triton's interpreter
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_pseudo_gradient_of_nan_and_inf_is_ieee(device_backend, out_dtype):
    """Beside float32 slow weights, in out's dtype; 3e38 - (-3e38) overflows float32 to inf, and
    3.4e38 (finite in float32) rounds to bfloat16's inf."""
    device, backend = device_backend
    fast = torch.tensor([math.nan, math.inf, math.inf, 1.0, -0.0, 0.0, 3e38, 3.4e38], device=device)
    slow = torch.tensor([1.0, math.inf, -math.inf, math.nan, 0.0, 0.0, -3e38, 0.0], device=device)
    out = torch.empty_like(slow, dtype=out_dtype)
    ops.lookahead_pseudo_gradient_([fast], [slow], [out], backend=backend)
    want = (fast.cpu().double() - slow.cpu().double()).float().to(out_dtype)
    assert torch.equal(out.cpu().isnan(), want.isnan())
    number = ~want.isnan()  # a NaN's sign is not the contract's
    assert torch.equal(out.cpu()[number], want[number])
    assert torch.equal(out.cpu()[number].signbit(), want[number].signbit())


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda f, s, o: (f, s, [o[0].to(torch.float16)] + o[1:]), r"pair 0: out has dtype torch.float16 but slow has torch.float32"),
        (lambda f, s, o: ([f[0].double()] + f[1:], [s[0].double()] + s[1:], [o[0].to(torch.bfloat16)] + o[1:]),
         r"pair 0: out has dtype torch.bfloat16 but slow has torch.float64"),
        (lambda f, s, o: (f, s, o[:1]), r"fast has 2 tensors but out has 1"),
        (lambda f, s, o: (f, s, [o[0], o[1].reshape(3, 3)]), r"pair 1: out has shape \(3, 3\) but slow has shape \(9,\)"),
        (lambda f, s, o: (f, s, [o[0], s[0][:9]]), r"pair 0 \(slow\) and pair 1 \(out\) share memory"),
        (lambda f, s, o: ([f[0].half()] + f[1:], [s[0].double()] + s[1:], [o[0].double()] + o[1:]),
         r"pair 0: slow dtype torch.float64 does not go with fast dtype torch.float16"),
    ],
)
def test_pseudo_gradient_refuses_bad_lists_before_writing(device_backend, break_it, message):
    device, backend = device_backend
    fast, slow, out = make_triples([20, 9], torch.float32, torch.float32, device=device)
    fast, slow, out = break_it(fast, slow, out)
    before = [snapshot(tensors) for tensors in (fast, slow, out)]
    with pytest.raises(ValueError, match=message):
        ops.lookahead_pseudo_gradient_(fast, slow, out, backend=backend)
    for tensors, saved in zip((fast, slow, out), before):
        assert all(torch.equal(t, s) or (t.isnan().all() and s.isnan().all()) for t, s in zip(tensors, saved)), "a refused call wrote"
