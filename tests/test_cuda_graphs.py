"""capturable=True on a GPU: a whole training step (forward, backward, Adam, Lookahead) captured once
in a CUDA graph and replayed 3002 times ends where the same steps run eagerly end, and the gated
kernel runs off the sync steps without touching anything. Skipped without a CUDA GPU."""

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, bf16_int8, ops
from lookahead_fused.slow_state import slow_weight_value

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

STEPS = 3002  # WARMUP + STEPS a multiple of K: the run ends on a sync step
WARMUP = 3
K = 5


def _setup(backend, outer_momentum=0.0, kind="lookahead"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)).cuda()
    options = {"k": K, "alpha": 0.5, "pullback_momentum": "pullback", "backend": backend, "capturable": True,
               "outer_momentum": outer_momentum, "nesterov": outer_momentum > 0}  # fmt: skip
    if kind in ("lookahead_compact", "lookahead_adamw_compact"):
        # the step-gated compact sync, or in LookaheadAdamW the compact sync in its pass
        # (see [NOTE: AdamW compact step] in csrc/adamw.h); the pullback momenta in a launch beside it
        options.update(slow_dtype=bf16_int8.SLOW_DTYPE)
    if kind in ("lookahead_adamw", "lookahead_adamw_compact"):  # AdamW's step and the sync in one launch, lr a device tensor
        return model, LookaheadAdamW(model.parameters(), lr=torch.tensor(1e-3, device="cuda"), **options)
    return model, Lookahead(torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True), **options)


def _batches():
    g = torch.Generator(device="cuda").manual_seed(1)
    return torch.randn(16, 32, device="cuda", generator=g), torch.randn(16, 1, device="cuda", generator=g)


def _train_step(model, opt, x, y):
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("kind", ["lookahead", "lookahead_adamw", "lookahead_compact", "lookahead_adamw_compact"])
@pytest.mark.parametrize("outer_momentum", [0.0, 0.9])
@pytest.mark.parametrize("backend", [b for b in ("cuda", "triton", "foreach") if b in ops.available_backends()])
def test_captured_training_step_replays_like_eager(backend, outer_momentum, kind):
    if kind.startswith("lookahead_adamw") and backend == "foreach":
        pytest.skip("LookaheadAdamW(capturable=True) on a GPU refuses the per-tensor loop (it reads on the host)")
    x, y = _batches()
    eager_model, eager_opt = _setup(backend, outer_momentum, kind)
    for _ in range(WARMUP + STEPS):
        eager_opt.zero_grad(set_to_none=False)
        _train_step(eager_model, eager_opt, x, y)

    model, opt = _setup(backend, outer_momentum, kind)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: the inner state, the slow momenta and the plans exist before capture
        for _ in range(WARMUP):
            opt.zero_grad(set_to_none=False)
            _train_step(model, opt, x, y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.zero_grad(set_to_none=False)
        _train_step(model, opt, x, y)
    for _ in range(STEPS):
        graph.replay()
    torch.cuda.synchronize()

    assert opt.step_count == eager_opt.step_count == WARMUP + STEPS
    for p, q in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    if (WARMUP + STEPS) % K == 0:  # ended on a sync step: fast == slow exactly
        assert all(torch.equal(p, slow_weight_value(opt.state[p], p).to(p.dtype)) for p in model.parameters())


@pytest.mark.parametrize("backend", [b for b in ("cuda", "triton", "foreach") if b in ops.available_backends()])
def test_gated_op_with_a_device_counter(backend):
    fast = [torch.randn(4097, device="cuda"), torch.randn(7, device="cuda")]
    slow = [torch.randn(4097, device="cuda"), torch.randn(7, device="cuda")]
    before = [t.clone() for t in fast + slow]
    alpha = torch.tensor(0.25, dtype=torch.float64, device="cuda")
    ops.lookahead_sync_on_step_(fast, slow, alpha, torch.tensor(4, device="cuda"), 3, backend=backend)
    assert all(torch.equal(a, b) for a, b in zip(fast + slow, before))
    ops.lookahead_sync_on_step_(fast, slow, alpha, torch.tensor(6, device="cuda"), 3, backend=backend)
    for f, s, s0, f0 in zip(fast, slow, before[2:], before[:2]):
        assert torch.equal(f, s)
        torch.testing.assert_close(s, s0 + 0.25 * (f0 - s0))


def test_capturable_needs_a_capturable_inner_optimizer():
    params = [torch.nn.Parameter(torch.zeros(3, device="cuda"))]
    with pytest.raises(ValueError, match="needs a capturable inner optimizer: param group 0 of Adam has capturable=False"):
        Lookahead(torch.optim.Adam(params, capturable=False), capturable=True)


def _captured_sync(fast, slow, backend):
    """A graph with one sync of (fast, slow), warmed up eagerly first on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        ops.lookahead_sync_(fast, slow, 0.5, backend=backend)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ops.lookahead_sync_(fast, slow, 0.5, backend=backend)
    return graph


@pytest.mark.skipif("cuda" not in ops.available_backends(), reason="needs the CUDA build")
def test_a_captured_plan_outlives_the_cache():
    """See [NOTE: plans under capture] in csrc/cuda/capture.cpp: evicting the plan must not free the table a graph
    launches with."""
    from lookahead_fused import _C

    fast = [torch.randn(4097, device="cuda"), torch.randn(70000, device="cuda")]
    slow = [torch.randn_like(t) for t in fast]
    graph = _captured_sync(fast, slow, "cuda")
    _C.clear_plan_cache()
    for n in range(9):  # nine other parameter sets: a plan cache of eight evicts all it held
        others = [torch.randn(100 + n, device="cuda")], [torch.randn(100 + n, device="cuda")]
        ops.lookahead_sync_(*others, 0.5, backend="cuda")
    torch.cuda.empty_cache()
    for t in fast + slow:
        t.normal_()
    before = [t.clone() for t in fast + slow]
    graph.replay()
    torch.cuda.synchronize()
    for f, s, f0, s0 in zip(fast, slow, before[:2], before[2:]):
        torch.testing.assert_close(s, s0 + 0.5 * (f0 - s0))
        assert torch.equal(f, s)


@pytest.mark.skipif("cuda" not in ops.available_backends(), reason="needs the CUDA build")
def test_a_plan_miss_during_capture_says_to_warm_up():
    fast, slow = [torch.randn(33, device="cuda")], [torch.randn(33, device="cuda")]
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="cannot be built while a CUDA graph is being captured"):
        with torch.cuda.graph(graph):
            ops.lookahead_sync_(fast, slow, 0.5, backend="cuda")
