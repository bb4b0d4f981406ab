"""lookahead_sync_ and swap_ against the float64 evaluation of the contract and its exact invariants
(docs/design.md, "The op contract"), for every (device, backend) usable here (tests/matrix.py); the
rejections, which happen on the host before any backend runs, for every backend on CPU tensors."""

import math

import pytest
import torch

from lookahead_fused import ops
from lookahead_fused.backends.reference import sync_float64

from .helpers import assert_bitwise_equal, snapshot
from .matrix import ALPHAS, DTYPE_PAIRS, OFFSETS, check_against_contract, dtype_id, make_pair_lists, sizes_for

@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("fast_dtype,slow_dtype", DTYPE_PAIRS, ids=dtype_id)
def test_sync_matches_float64_reference(device_backend, fast_dtype, slow_dtype, alpha, offset):
    device, backend = device_backend
    fast, slow = make_pair_lists(sizes_for(device_backend), fast_dtype, slow_dtype, offset=offset, device=device)
    if offset:
        assert all(t.data_ptr() % 16 for t in fast + slow if t.numel())
    fast0, slow0 = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_(fast, slow, alpha, backend=backend)
    check_against_contract(fast0, slow0, fast, slow, alpha)


def test_sync_many_small_tensors_and_mixed_dtypes_in_one_call(device_backend):
    device, backend = device_backend
    fast, slow = [], []
    for seed, (fast_dtype, slow_dtype) in enumerate(DTYPE_PAIRS):
        sizes = [(i * 37) % 300 for i in range(200)]
        f, s = make_pair_lists(sizes, fast_dtype, slow_dtype, seed=seed, offset=seed % 3, device=device)
        fast += f
        slow += s
    assert len(fast) == 1200
    fast0, slow0 = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_(fast, slow, 0.7, backend=backend)
    check_against_contract(fast0, slow0, fast, slow, 0.7)


def test_sync_permuted_dense_layout(device_backend):
    device, backend = device_backend
    fast = [torch.randn(5, 6, device=device).t(), torch.randn(2, 3, 4, device=device).permute(2, 0, 1)]
    slow = [torch.randn(5, 6, device=device).t(), torch.randn(2, 3, 4, device=device).permute(2, 0, 1)]
    fast0, slow0 = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_(fast, slow, 0.5, backend=backend)
    check_against_contract(fast0, slow0, fast, slow, 0.5)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # numpy, under Triton's interpreter
@pytest.mark.parametrize("fast_dtype,slow_dtype", DTYPE_PAIRS, ids=dtype_id)
def test_sync_propagates_nan_and_inf(device_backend, fast_dtype, slow_dtype):
    device, backend = device_backend
    specials = [math.nan, math.inf, -math.inf, 1.0, 1.0, math.nan]
    others = [1.0, 2.0, 3.0, math.inf, math.nan, math.nan]
    fast = [torch.tensor(specials, dtype=fast_dtype, device=device)]
    slow = [torch.tensor(others, dtype=slow_dtype, device=device)]
    ops.lookahead_sync_(fast, slow, 0.3, backend=backend)
    with torch.no_grad():
        expected = sync_float64(torch.tensor(specials), torch.tensor(others), 0.3)
    fast_after, slow_after = fast[0].cpu(), slow[0].cpu()
    assert torch.equal(torch.isnan(slow_after), torch.isnan(expected))
    finite = ~torch.isnan(expected)
    assert torch.equal(slow_after[finite].double(), expected[finite])  # +-inf where IEEE gives +-inf
    assert torch.equal(torch.isnan(fast_after), torch.isnan(slow_after))


def test_sync_empty_call_and_empty_tensors(device_backend):
    device, backend = device_backend
    ops.lookahead_sync_([], [], 0.5, backend=backend)
    fast = [torch.empty(0, device=device), torch.empty(0, 3, device=device)]
    slow = [torch.empty(0, device=device), torch.empty(0, 3, device=device)]
    ops.lookahead_sync_(fast, slow, 0.5, backend=backend)


def test_sync_works_on_params_that_require_grad(backend):
    p = torch.nn.Parameter(torch.randn(10))
    s = torch.randn(10)
    ops.lookahead_sync_([p], [s], 0.5, backend=backend)
    assert torch.equal(p.detach(), s)
    assert p.requires_grad and p.grad_fn is None


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_swap_exchanges_contents_exactly(device_backend, dtype, offset):
    device, backend = device_backend
    a, b = make_pair_lists(sizes_for(device_backend), dtype, dtype, offset=offset, device=device)
    a0, b0 = snapshot(a), snapshot(b)
    pointers = [t.data_ptr() for t in a + b]
    ops.swap_(a, b, backend=backend)
    assert_bitwise_equal(a, b0)
    assert_bitwise_equal(b, a0)
    assert [t.data_ptr() for t in a + b] == pointers  # in place: no storage was replaced


# --- rejections: each leaves every tensor unchanged -------------------------------------------


def _good_lists():
    return [torch.randn(4), torch.randn(2, 3)], [torch.randn(4), torch.randn(2, 3)]


def _replace(lists, which, value):
    fast, slow = lists
    (fast if which == "fast" else slow)[1] = value
    return fast, slow


def _buffer_views():
    base = torch.randn(12)
    return [torch.randn(4), base[0:6]], [torch.randn(4), base[4:10]]


def _same_tensor_in_both():
    shared = torch.randn(6)
    return [torch.randn(4), shared], [torch.randn(4), shared]


def _duplicate_within_a_list():
    shared = torch.randn(4)
    return [shared, shared], [torch.randn(4), torch.randn(4)]


REJECTED = {
    "lengths": (lambda: ([torch.randn(4)], [torch.randn(4), torch.randn(4)]), ValueError, "fast has 1 tensors but slow has 2"),
    "shape": (lambda: _replace(_good_lists(), "slow", torch.randn(3, 2)), ValueError, "pair 1: fast has shape (2, 3)"),
    "strides": (lambda: _replace(_good_lists(), "slow", torch.randn(3, 2).t()), ValueError, "pair 1: fast has strides"),
    "device": (lambda: _replace(_good_lists(), "slow", torch.empty(2, 3, device="meta")), ValueError, "pair 1: fast is on cpu"),
    "int fast": (lambda: _replace(_good_lists(), "fast", torch.ones(2, 3, dtype=torch.int64)), ValueError, "pair 1: fast has dtype torch.int64"),
    "complex fast": (lambda: _replace(_good_lists(), "fast", torch.ones(2, 3, dtype=torch.complex64)), ValueError, "complex"),
    "slow wider than fp32": (lambda: _replace(_good_lists(), "slow", torch.ones(2, 3, dtype=torch.float64)), ValueError, "pair 1: slow dtype torch.float64 does not go with fast dtype torch.float32"),
    "slow narrower": (lambda: _replace(_good_lists(), "slow", torch.ones(2, 3, dtype=torch.bfloat16)), ValueError, "pair 1: slow dtype torch.bfloat16"),
    "non-dense": (lambda: ([torch.randn(4), torch.randn(2, 6)[:, ::2]], [torch.randn(4), torch.randn(2, 6)[:, ::2]]), ValueError, "pair 1: fast (shape (2, 3), strides (6, 2)) is not dense"),
    "overlapping views": (_buffer_views, ValueError, "share memory"),
    "same tensor in both": (_same_tensor_in_both, ValueError, "pair 1 (fast) and pair 1 (slow) share memory"),
    "duplicate within a list": (_duplicate_within_a_list, ValueError, "share memory"),
    "sparse": (lambda: _replace(_good_lists(), "fast", torch.eye(3)[:2].to_sparse()), ValueError, "sparse"),
    "not a tensor": (lambda: _replace(_good_lists(), "slow", [1.0] * 6), TypeError, "pair 1: slow is a list"),
    "a tensor, not a list": (lambda: (torch.randn(4), torch.randn(4)), TypeError, "fast must be a list or tuple"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_sync_rejects_bad_pairs_before_writing(backend, case):
    make, error, message = REJECTED[case]
    fast, slow = make()
    fast0, slow0 = snapshot(t for t in fast if isinstance(t, torch.Tensor)), snapshot(t for t in slow if isinstance(t, torch.Tensor))
    with pytest.raises(error, match=_literal(message)):
        ops.lookahead_sync_(fast, slow, 0.5, backend=backend)
    _assert_unchanged(fast, fast0)
    _assert_unchanged(slow, slow0)


@pytest.mark.parametrize("alpha", [math.nan, math.inf, -0.1, 1.5, True, "0.5", None])
def test_sync_rejects_bad_alpha_before_writing(backend, alpha):
    fast, slow = _good_lists()
    fast0, slow0 = snapshot(fast), snapshot(slow)
    with pytest.raises((TypeError, ValueError), match="alpha"):
        ops.lookahead_sync_(fast, slow, alpha, backend=backend)
    assert_bitwise_equal(fast, fast0)
    assert_bitwise_equal(slow, slow0)


def test_swap_rejects_dtype_mismatch_and_aliasing():
    a, b = [torch.randn(3)], [torch.randn(3, dtype=torch.float64)]
    with pytest.raises(ValueError, match="pair 0: dtypes differ"):
        ops.swap_(a, b)
    x = torch.randn(3)
    with pytest.raises(ValueError, match="share memory"):
        ops.swap_([x], [x])


def _literal(text):
    import re

    return re.escape(text)


def _assert_unchanged(tensors, before):
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    for t, t0 in zip(tensors, before):
        if t.device.type == "meta":
            continue
        if t.is_sparse:
            assert torch.equal(t.to_dense(), t0.to_dense())
        else:
            assert torch.equal(t, t0)


def test_sync_and_swap_bump_every_version(device_backend):
    """See [NOTE: versions] in csrc/ops.cpp: autograd sees every tensor an op may write as modified, as after torch's
    own
    in-place and foreach ops."""
    device, backend = device_backend
    fast, slow = make_pair_lists([3, 0, 4097], torch.float32, torch.float32, device=device)
    versions = [t._version for t in fast + slow]
    ops.lookahead_sync_(fast, slow, 0.5, backend=backend)
    assert all(t._version > v for t, v in zip(fast + slow, versions))
    versions = [t._version for t in fast + slow]
    ops.swap_(fast, slow, backend=backend)
    assert all(t._version > v for t, v in zip(fast + slow, versions))
