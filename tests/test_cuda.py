"""The "cuda" backend on a GPU: the same contract checks as on the CPU, plus one launch per sync and
plan reuse. Skipped (with the reason) on machines without a CUDA GPU or without the CUDA build."""

import pytest
import torch

from lookahead_fused import Lookahead, available_backends, ops

from .helpers import PlainLookahead, clone_params, make_params, on_device, set_grads, snapshot
from .matrix import DTYPE_PAIRS, check_against_contract, make_pair_lists

pytestmark = pytest.mark.skipif(
    "cuda" not in available_backends(), reason="needs a CUDA GPU and the extension built with CUDA"
)


def to_cuda(tensors, offset=0):
    return on_device(tensors, "cuda", offset)


def test_cuda_mixed_alignment_and_dtypes_in_one_call():
    fast, slow = [], []
    for seed, (fast_dtype, slow_dtype) in enumerate(DTYPE_PAIRS):
        f, s = make_pair_lists([(i * 37) % 300 for i in range(200)], fast_dtype, slow_dtype, seed=seed)
        fast += to_cuda(f, offset=seed % 3)
        slow += to_cuda(s, offset=(seed + 1) % 3)
    fast0, slow0 = [t.cpu() for t in fast], [t.cpu() for t in slow]
    ops.lookahead_sync_(fast, slow, 0.7, backend="cuda")
    check_against_contract(fast0, slow0, [t.cpu() for t in fast], [t.cpu() for t in slow], 0.7)


def test_cuda_one_launch_per_sync_for_2000_tensors():
    fast = [torch.randn(4096, device="cuda") for _ in range(2000)]
    slow = [torch.randn(4096, device="cuda") for _ in range(2000)]
    ops.lookahead_sync_(fast, slow, 0.5, backend="cuda")  # builds and uploads the plan
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            ops.lookahead_sync_(fast, slow, 0.5, backend="cuda")
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    launches = [e for e in kernels if "table_kernel" in e.name]
    assert len(launches) == 3, [e.name for e in kernels]
    assert not [e for e in kernels if "Memcpy" in e.name and "HtoD" in e.name], "steady state copied to the device"


def test_cuda_swap_round_trip():
    a, b = to_cuda(make_pair_lists([1, 7, 4097], torch.bfloat16, torch.bfloat16)[0]), to_cuda(
        make_pair_lists([1, 7, 4097], torch.bfloat16, torch.bfloat16, seed=1)[1]
    )
    a0, b0 = snapshot(a), snapshot(b)
    ops.swap_(a, b, backend="cuda")
    assert all(torch.equal(x, y) for x, y in zip(a, b0)) and all(torch.equal(x, y) for x, y in zip(b, a0))


def test_cuda_rejection_leaves_tensors_unchanged():
    fast = [torch.randn(4, device="cuda"), torch.randn(2, 3, device="cuda")]
    slow = [torch.randn(4, device="cuda"), torch.randn(3, 2, device="cuda")]
    fast0, slow0 = snapshot(fast), snapshot(slow)
    with pytest.raises(ValueError, match="pair 1: fast has shape \\(2, 3\\)"):
        ops.lookahead_sync_(fast, slow, 0.5, backend="cuda")
    assert all(torch.equal(x, y) for x, y in zip(fast + slow, fast0 + slow0))


def test_cuda_lookahead_matches_plain_algorithm():
    params = make_params()
    ours = [torch.nn.Parameter(p.detach().cuda()) for p in params]
    theirs = clone_params(params)
    opt = Lookahead(torch.optim.Adam(ours, lr=0.01), k=3, alpha=0.5, pullback_momentum="pullback", backend="cuda")
    plain = PlainLookahead(torch.optim.Adam(theirs, lr=0.01), 3, 0.5, pullback="pullback", momentum_key="exp_avg")
    for step in range(13):
        set_grads(theirs, step)
        for p, q in zip(ours, theirs):
            p.grad = q.grad.cuda()
        opt.step()
        plain.step()
    torch.testing.assert_close([p.cpu() for p in ours], theirs, rtol=1e-10, atol=1e-10)
