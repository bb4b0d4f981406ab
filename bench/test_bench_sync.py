"""pytest-benchmark suite over the same cases as bench_sync.py, for people who track benchmarks that
way. Run on demand (not part of the CI test command):

    pytest bench/test_bench_sync.py --benchmark-group-by=param:case
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sync import DTYPES, make_set, timed_backends  # noqa: E402
from model_shapes import MODELS  # noqa: E402

from lookahead_fused import ops  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BACKENDS = timed_backends(DEVICE.type)
CASES = [f"{m}/{d}" for m in ("resnet50", "gpt2-small", "2000x4096") for d in ("fp32", "bf16+fp32")]


@pytest.fixture(scope="module", params=CASES)
def case(request):
    model, dtypes = request.param.split("/")
    return make_set(MODELS[model](), *DTYPES[dtypes], DEVICE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sync(benchmark, case, backend):
    fast, slow = case

    def one_sync():
        ops.lookahead_sync_(fast, slow, 0.5, backend=backend)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(one_sync, rounds=10, warmup_rounds=2)
