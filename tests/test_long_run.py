"""A long run: 10k steps of a small model leave no growing memory and build no plan in steady state."""

import gc
import resource
import warnings

import pytest
import torch

from lookahead_fused import Lookahead, ops
from lookahead_fused.backends.native import extension

STEPS = 10_000
WARMUP = 100


def _live_tensors() -> int:
    # Until a pass finds nothing: an earlier test's garbage (finalizers that free more objects, which
    # the next pass collects) must not be counted in one count and gone from the other.
    while gc.collect():
        pass
    with warnings.catch_warnings():  # isinstance on some of torch's deprecated objects warns
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("capturable", [False, True])
def test_ten_thousand_steps_without_growth_or_plan_rebuilds(capturable):
    if "cpu" not in ops.available_backends():
        pytest.skip("the plan cache belongs to the C++ extension, which is not built")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)).to(device)
    inner = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=capturable and device == "cuda")
    opt = Lookahead(inner, k=5, alpha=0.5, pullback_momentum="pullback", capturable=capturable)
    x, y = torch.randn(16, 32, device=device), torch.randn(16, 1, device=device)

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    steps(WARMUP)
    tensors = _live_tensors()  # first: its gc.collect() may finalize an earlier test's objects, which may sync or swap
    builds, rss = extension().plan_cache_stats()["builds"], _peak_rss_mib()
    allocated = torch.cuda.memory_allocated() if device == "cuda" else None
    steps(STEPS - WARMUP)
    assert opt.step_count == STEPS
    assert extension().plan_cache_stats()["builds"] == builds, "a plan was rebuilt in steady state"
    assert _live_tensors() == tensors, "tensors accumulate"
    assert _peak_rss_mib() - rss < 32, "the process grew by more than 32 MiB"
    if device == "cuda":
        assert torch.cuda.memory_allocated() == allocated
