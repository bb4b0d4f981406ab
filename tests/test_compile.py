"""torch.compile: a compiled Lookahead step traces the sync as one op, compiles no new graph between
sync and non-sync steps (the counter is a tensor and the op decides on it), and follows eager."""

import logging
import re

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from lookahead_fused import Lookahead
from lookahead_fused.slow_state import SLOW_PARAM

INNER = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
}
K = 3


class PlainSGD(torch.optim.Optimizer):
    """An inner optimizer whose step has no graph break of its own (torch.optim's break by design)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def _set_grads(model, step):
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(32, 8, generator=g), torch.randn(32, 1, generator=g)
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("inner", list(INNER))
def test_compiled_step_follows_eager_and_never_recompiles_between_sync_and_non_sync_steps(inner):
    models = _model(), _model()
    eager = Lookahead(INNER[inner](models[0].parameters()), k=K, alpha=0.5, pullback_momentum="pullback")
    compiled = Lookahead(INNER[inner](models[1].parameters()), k=K, alpha=0.5, pullback_momentum="pullback")
    compiled_step = torch.compile(compiled.step)
    params = list(models[1].parameters())
    warmup = 2  # the first step creates the inner state and the slow momenta: the guards see them once
    for step in range(1, warmup + 3 * K + 1):
        slow_before = [compiled.state[p][SLOW_PARAM].clone() for p in params]
        for model in models:
            _set_grads(model, step)
        eager.step()
        with torch._dynamo.config.patch(error_on_recompile=step > warmup):
            compiled_step()
        slow_after = [compiled.state[p][SLOW_PARAM] for p in params]
        if step % K == 0:  # exact invariants of the sync
            assert all(torch.equal(p, s) for p, s in zip(params, slow_after)), f"step {step}: fast != slow"
        else:
            assert all(torch.equal(a, b) for a, b in zip(slow_before, slow_after)), f"step {step}: slow moved"
        for p_eager, p_compiled in zip(models[0].parameters(), params):
            torch.testing.assert_close(p_compiled, p_eager, rtol=1e-5, atol=1e-6)
    assert compiled.step_count == eager.step_count == warmup + 3 * K


def test_no_graph_break_anywhere_in_the_lookahead_step():
    """fullgraph=True fails on any graph break: the wrapper, the counter and the sync op trace whole."""
    model = _model()
    opt = Lookahead(PlainSGD(model.parameters(), lr=0.05), k=K, alpha=0.5)
    compiled_step = torch.compile(opt.step, fullgraph=True)
    for step in range(1, 2 * K + 1):
        _set_grads(model, step)
        with torch._dynamo.config.patch(error_on_recompile=step > 1):
            compiled_step()
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    assert all(torch.equal(p, opt.state[p][SLOW_PARAM]) for p in model.parameters())  # 2K: a sync step


class _GraphBreakLocations(logging.Handler):
    def __init__(self):
        super().__init__()
        self.locations = []

    def emit(self, record):
        found = re.search(r"in user code at (\S+)", record.getMessage())
        if found:
            self.locations.append(found.group(1))


@pytest.mark.parametrize("slow_dtype, backend", [(None, "auto"), ("bf16+int8", "auto"), ("bf16+int8", "reference")])
def test_the_only_graph_breaks_are_torch_optims_own(slow_dtype, backend):
    """torch.optim's steps graph-break around themselves on purpose (torch/optim/optimizer.py,
    _use_grad); wrapping one in Lookahead adds none of its own, with exact slow weights or compact
    ones (the native gated op, or the masked fallback traced op by op)."""
    model = _model()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=2, pullback_momentum="pullback",
                    slow_dtype=slow_dtype, backend=backend)  # fmt: skip
    handler = _GraphBreakLocations()
    logger = logging.getLogger("torch._dynamo.symbolic_convert.__graph_breaks")
    torch._logging.set_logs(graph_breaks=True)
    logger.addHandler(handler)
    try:
        step = torch.compile(opt.step)
        for i in range(1, 5):
            _set_grads(model, i)
            step()
    finally:
        logger.removeHandler(handler)
        torch._logging.set_logs()
    assert handler.locations, "expected torch.optim's own graph breaks to be logged"
    assert all(re.search(r"torch/optim/optimizer\.py:\d+$", where) for where in handler.locations), handler.locations
