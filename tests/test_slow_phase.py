"""Slow weights and slow momenta sit in their fast tensor's 16-byte phase
(see [NOTE: slow weights in phase] in lookahead_fused/slow_state.py), so that params that are views at odd offsets (flat
buffers, buckets) keep the fused kernels' vector path: the plan gives every pair a vector head."""

import pytest
import torch

from lookahead_fused import Lookahead

_C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")
SIZES = [5, 33, 64, 100, 257, 1000, 7, 4096]


def flat_buffer_params(dtype):
    """Params that are consecutive views of one flat buffer: most start at an odd 16-byte phase."""
    flat = torch.randn(sum(SIZES), dtype=torch.float64).to(dtype)
    params, at = [], 0
    for n in SIZES:
        params.append(torch.nn.Parameter(flat[at : at + n]))
        at += n
    return flat, params


def train(opt, params, steps):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
        opt.step()


def vector_heads(fast, slow):
    words = _C.SyncPlan(fast, slow).words()
    return [int(words[4 * i + 3]) >> 8 for i in range(len(fast))]  # head + 1; 0 means "runs scalar"


def odd_phases(params):
    return sum(p.data_ptr() % 16 != 0 for p in params)


@pytest.mark.parametrize("dtype,slow_dtype", [(torch.float32, None), (torch.bfloat16, torch.float32), (torch.float16, None)])
def test_every_pair_of_a_flat_buffer_gets_a_vector_path(dtype, slow_dtype):
    _, params = flat_buffer_params(dtype)
    assert odd_phases(params) >= len(params) // 2  # the case this is about
    opt = Lookahead(torch.optim.SGD(params, lr=0.1, momentum=0.9), k=2, pullback_momentum="pullback", slow_dtype=slow_dtype)
    slow = [opt.state[p]["slow_param"] for p in params]
    assert all(torch.equal(s, p.detach().to(s.dtype)) for s, p in zip(slow, params))
    assert 0 not in vector_heads(params, slow)
    train(opt, params, 4)  # two syncs: the momentum buffers and their slow copies exist now
    momenta = [opt.optimizer.state[p]["momentum_buffer"] for p in params]
    slow_momenta = [opt.state[p]["slow_momentum"] for p in params]
    assert 0 not in vector_heads(momenta, slow_momenta)


def test_a_checkpoint_loads_into_the_new_params_phase():
    _, params = flat_buffer_params(torch.float32)
    opt = Lookahead(torch.optim.Adam(params, lr=0.1), k=3)
    train(opt, params, 4)
    state = opt.state_dict()
    shifted = torch.zeros(sum(SIZES) + 3)  # the same params one element further on: other phases
    with torch.no_grad():
        new_params, at = [], 3
        for p in params:
            new_params.append(torch.nn.Parameter(shifted[at : at + p.numel()]))
            new_params[-1].copy_(p)
            at += p.numel()
    restored = Lookahead(torch.optim.Adam(new_params, lr=0.1), k=3)
    restored.load_state_dict(state)
    slow = [restored.state[p]["slow_param"] for p in new_params]
    assert 0 not in vector_heads(new_params, slow)
    for p_old, p_new in zip(params, new_params):
        assert torch.equal(restored.state[p_new]["slow_param"], opt.state[p_old]["slow_param"])
