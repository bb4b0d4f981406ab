"""pullback_momentum modes against the hand re-implementation in helpers.PlainLookahead."""

import pytest
import torch

from lookahead_fused import Lookahead

from .helpers import PlainLookahead, clone_params, make_params, set_grads, step_side_by_side
from .optimizers import INNERS


@pytest.mark.parametrize("mode", ["none", "reset", "pullback"])
@pytest.mark.parametrize("inner", list(INNERS))
def test_pullback_modes_match_hand_implementation(backend, inner, mode):
    make_inner, key = INNERS[inner].build, INNERS[inner].momentum_key
    params = make_params()
    ours, theirs = clone_params(params), clone_params(params)
    opt = Lookahead(make_inner(ours), k=3, alpha=0.4, pullback_momentum=mode, backend=backend)
    plain = PlainLookahead(make_inner(theirs), 3, 0.4, pullback=mode, momentum_key=key)
    for step in range(10):
        step_side_by_side(step, (opt, ours), (plain, theirs))
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        buffers = [opt.optimizer.state[p][key] for p in ours]
        torch.testing.assert_close(buffers, [plain.inner.state[p][key] for p in theirs], rtol=1e-12, atol=1e-12)


def test_modes_really_differ():
    params = make_params()
    results = {}
    for mode in ("none", "reset", "pullback"):
        ps = clone_params(params)
        opt = Lookahead(torch.optim.SGD(ps, lr=0.05, momentum=0.9), k=2, alpha=0.5, pullback_momentum=mode)
        for step in range(5):
            set_grads(ps, step)
            opt.step()
        results[mode] = ps[0].detach()
    assert not torch.allclose(results["none"], results["reset"])
    assert not torch.allclose(results["none"], results["pullback"])
    assert not torch.allclose(results["reset"], results["pullback"])


def test_reset_zeroes_the_buffers_at_each_sync():
    params = make_params()
    opt = Lookahead(torch.optim.Adam(params, lr=0.01), k=2, pullback_momentum="reset")
    for step in range(2):
        set_grads(params, step)
        opt.step()
    assert all(torch.count_nonzero(opt.optimizer.state[p]["exp_avg"]) == 0 for p in params)
    assert all(torch.count_nonzero(opt.optimizer.state[p]["exp_avg_sq"]) > 0 for p in params)


def test_pullback_slow_momentum_never_aliases_the_live_buffer():
    params = make_params()
    opt = Lookahead(torch.optim.SGD(params, lr=0.05, momentum=0.9), k=2, alpha=0.5, pullback_momentum="pullback")
    for step in range(4):
        set_grads(params, step)
        opt.step()
    for p in params:
        buffer, slow = opt.optimizer.state[p]["momentum_buffer"], opt.state[p]["slow_momentum"]
        assert buffer.data_ptr() != slow.data_ptr()
        assert torch.equal(buffer, slow)  # right after a sync they hold the same values
    set_grads(params, 4)
    opt.step()
    assert not torch.equal(opt.optimizer.state[params[0]]["momentum_buffer"], opt.state[params[0]]["slow_momentum"])


def test_pullback_with_fp32_slow_weights_for_bf16_params():
    params = make_params(torch.bfloat16)
    opt = Lookahead(torch.optim.Adam(params, lr=0.01), k=2, pullback_momentum="pullback", slow_dtype=torch.float32)
    for step in range(4):
        set_grads(params, step)
        opt.step()
    for p in params:
        assert opt.state[p]["slow_momentum"].dtype == torch.float32
        assert torch.equal(opt.optimizer.state[p]["exp_avg"], opt.state[p]["slow_momentum"].to(torch.bfloat16))
