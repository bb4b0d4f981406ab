"""Every GPU backend (the CUDA kernel and the compiled Triton kernel) against the float64
evaluation of the contract: every dtype pair, odd sizes, misaligned views, the edge alphas.
Skipped without a CUDA GPU; on the CPU the backend-parametrized contract tests run the Triton
kernel in its interpreter."""

import pytest
import torch

from lookahead_fused import ops

from .helpers import on_device, snapshot
from .test_op_contract import ALPHAS, DTYPE_PAIRS, check_against_contract, make_pair_lists

GPU_BACKENDS = [b for b in ("cuda", "triton") if torch.cuda.is_available() and b in ops.available_backends()]
pytestmark = pytest.mark.skipif(not GPU_BACKENDS, reason="needs a CUDA GPU with the cuda or triton backend")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("fast_dtype,slow_dtype", DTYPE_PAIRS, ids=lambda d: str(d).removeprefix("torch."))
def test_gpu_sync_matches_float64_reference(fast_dtype, slow_dtype, alpha, offset, backend):
    fast, slow = make_pair_lists([0, 1, 7, 4097, 65537, 278011], fast_dtype, slow_dtype)
    fast0, slow0 = snapshot(fast), snapshot(slow)
    fast_gpu, slow_gpu = on_device(fast, "cuda", offset), on_device(slow, "cuda", offset)
    ops.lookahead_sync_(fast_gpu, slow_gpu, alpha, backend=backend)
    check_against_contract(fast0, slow0, [t.cpu() for t in fast_gpu], [t.cpu() for t in slow_gpu], alpha)
