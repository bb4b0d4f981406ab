"""capturable=True: the counter and alpha live on the params' device and the sync is the
step-gated one: on a GPU on every step, on the CPU (where the host reads the counter) on the sync
steps (see [NOTE: a gate the host can read] in lookahead_fused/optimizer.py). On the CPU this checks the logic (the same
trajectory as
the host-side branch, bit for bit); the CUDA-graph capture itself is tests/test_cuda_graphs.py's, on
a GPU; every-step gating is also what a compiled step runs (tests/test_compile.py)."""

import pytest
import torch

from lookahead_fused import Lookahead, ops

from .helpers import assert_bitwise_equal, clone_params, make_params, run
from .optimizers import inners

INNER = inners("sgd-momentum", "adam")


@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
@pytest.mark.parametrize("inner", list(INNER))
def test_capturable_follows_the_host_branch_bit_for_bit(backend, inner, pullback):
    params = make_params(torch.float32)
    twin = clone_params(params)
    host = Lookahead(INNER[inner].build(params), k=3, alpha=0.4, pullback_momentum=pullback, backend=backend)
    device = Lookahead(INNER[inner].build(twin), k=3, alpha=0.4, pullback_momentum=pullback, backend=backend, capturable=True)
    for step in range(11):
        run(host, params, 1, first_step=step)
        run(device, twin, 1, first_step=step)
        assert_bitwise_equal(twin, params)
        moments = [device.optimizer.state[p].get(device.momentum_key) for p in twin]
        expected = [host.optimizer.state[p].get(host.momentum_key) for p in params]
        assert_bitwise_equal([m for m in moments if m is not None], [m for m in expected if m is not None])
    assert device.step_count == host.step_count == 11


def test_capturable_with_several_alphas_and_bf16_params_with_fp32_slow_weights(backend):
    params = make_params(torch.bfloat16, shapes=((5, 4), (5,), (33,)))
    twin = clone_params(params)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lookahead_alpha": 0.8}]  # noqa: E731
    host = Lookahead(torch.optim.SGD(groups(params), lr=0.1), k=2, alpha=0.3, slow_dtype=torch.float32, backend=backend)
    device = Lookahead(
        torch.optim.SGD(groups(twin), lr=0.1), k=2, alpha=0.3, slow_dtype=torch.float32, backend=backend, capturable=True
    )
    run(host, params, 7)
    run(device, twin, 7)
    assert_bitwise_equal(twin, params)


def test_counter_and_alpha_live_on_the_params_device():
    params = make_params(torch.float32)
    opt = Lookahead(torch.optim.SGD(params, lr=0.1), k=2, capturable=True)
    run(opt, params, 2)
    assert opt._step_count_tensor.device == params[0].device
    assert all(alpha.device == params[0].device for alpha in opt._sync.alpha_tensors.values())


def test_loading_a_checkpoint_keeps_the_counter_tensor_a_captured_graph_holds():
    params = make_params(torch.float32)
    opt = Lookahead(torch.optim.SGD(params, lr=0.1), k=3, capturable=True)
    run(opt, params, 4)
    saved = opt.state_dict()
    counter = opt._step_count_tensor
    run(opt, params, 2)
    opt.load_state_dict(saved)
    assert opt._step_count_tensor is counter and opt.step_count == 4


def test_adaptive_alpha_cannot_be_capturable():
    with pytest.raises(ValueError, match="alpha='adaptive' chooses alpha on the host"):
        Lookahead(torch.optim.Adam(make_params(torch.float32), lr=0.1), alpha="adaptive", capturable=True)


def test_params_on_two_devices_are_refused():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3, device="meta"))]
    with pytest.raises(ValueError, match="capturable=True needs every param on one device; param group 0 has params on cpu, meta"):
        Lookahead(torch.optim.SGD(params, lr=0.1), capturable=True)


def test_a_group_on_another_device_is_refused_and_nothing_is_added():
    params = make_params(torch.float32)
    opt = Lookahead(torch.optim.SGD(params, lr=0.1), capturable=True)
    with pytest.raises(ValueError, match="param group 1 is on meta, not cpu"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, device="meta"))]})
    assert len(opt.param_groups) == 1 and len(opt.optimizer.param_groups) == 1


def test_on_the_cpu_the_gated_sync_runs_on_the_sync_steps_only(monkeypatch):
    real = ops.lookahead_sync_on_step_
    counters_at_call = []
    monkeypatch.setattr(ops, "lookahead_sync_on_step_", lambda *a, **kw: (counters_at_call.append(int(a[3])), real(*a, **kw)))
    params = make_params(torch.float32)
    opt = Lookahead(torch.optim.SGD(params, lr=0.1), k=3, capturable=True)
    versions = [p._version for p in params]
    run(opt, params, 2)
    assert counters_at_call == []
    assert [p._version for p in params] == [v + 2 for v in versions]  # the SGD steps' bumps only
    run(opt, params, 5, first_step=2)
    assert counters_at_call == [3, 6]
