"""lookahead_compact_sync_on_step_: the compact sync when step % k == 0, nothing otherwise, decided
where the step counter lives (see [NOTE: step gate] in csrc/table.h), through ops (which reads a CPU
step on the host) and through each backend's own gated path (the C++ CPU gate, the Triton kernel's
gate, the masked fallback of the pure-PyTorch backends), which a device counter or a compiled step
runs. On a sync step it equals the ungated compact sync bit for bit."""

import pytest
import torch

from lookahead_fused import backends, ops
from lookahead_fused.contract import COMPACT_FAST_DTYPES

from .helpers import assert_bitwise_equal, snapshot
from .matrix import dtype_id, sizes_for
from .test_compact_sync import check_compact_result, make_compact_lists


def _gated_path(device, backend):
    """The backend's own compact_sync_on_step_, with the gate as a device counter hands it over."""
    module = backends.resolve(backend, device)
    return lambda fast, high, low, alpha, step, k: module.compact_sync_on_step_(
        fast, high, low, torch.tensor(alpha, dtype=torch.float64, device=device), step, k
    )


def _through_ops(device, backend):
    return lambda fast, high, low, alpha, step, k: ops.lookahead_compact_sync_on_step_(
        fast, high, low, alpha, step, k, backend=backend
    )


PATHS = {"ops": _through_ops, "backend's gate": _gated_path}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("fast_dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7, 1.0])
def test_compact_syncs_exactly_on_multiples_of_k_as_the_ungated_op(device_backend, path, fast_dtype, alpha):
    device, backend = device_backend
    run = PATHS[path](device, backend)
    fast, high, low = make_compact_lists(sizes_for(device_backend), fast_dtype, offset=1, device=device)
    for step in (1, 2, 4, 5):  # k = 3: not a sync step
        before = snapshot(fast + high + low)
        run(fast, high, low, alpha, torch.tensor(step, device=device), 3)
        assert_bitwise_equal(fast + high + low, before)
    before = [snapshot(tensors) for tensors in (fast, high, low)]
    ungated = [snapshot(tensors) for tensors in (fast, high, low)]
    run(fast, high, low, alpha, torch.tensor(6, device=device), 3)
    check_compact_result(*before, fast, high, low, alpha)
    ops.lookahead_compact_sync_(*ungated, alpha, backend=backend)
    assert_bitwise_equal(fast + high + low, ungated[0] + ungated[1] + ungated[2])


@pytest.mark.parametrize("step", [3, 4])  # sync step or not: the lists are checked either way
def test_gated_compact_sync_refuses_bad_lists_and_gates_before_writing(device_backend, step):
    device, backend = device_backend
    fast, high, low = make_compact_lists([20, 9], torch.float32, device=device)
    before = snapshot(fast + high + low)
    wrong_low = [low[0].to(torch.uint8), low[1]]
    with pytest.raises(ValueError, match=r"pair 0: slow_low has dtype torch.uint8; it must be torch.int8"):
        ops.lookahead_compact_sync_on_step_(fast, high, wrong_low, 0.5, torch.tensor(step, device=device), 3,
                                            backend=backend)  # fmt: skip
    with pytest.raises(ValueError, match=r"lookahead_compact_sync_on_step_: k must be an int >= 1, got 0"):
        ops.lookahead_compact_sync_on_step_(fast, high, low, 0.5, torch.tensor(step, device=device), 0, backend=backend)
    with pytest.raises(ValueError, match=r"lookahead_compact_sync_on_step_: step must be a one-element int64 tensor"):
        ops.lookahead_compact_sync_on_step_(fast, high, low, 0.5, torch.tensor(float(step), device=device), 3,
                                            backend=backend)  # fmt: skip
    assert_bitwise_equal(fast + high + low, before)


def test_the_native_gated_compact_op_reads_a_host_alpha_tensor_and_checks_it():
    if "cpu" not in ops.available_backends():
        pytest.skip("the C++ extension is not built")
    fast, high, low = make_compact_lists([7], torch.float32)
    refusal = r"lookahead_compact_sync_: alpha must be a finite number in \[0, 1\], got 1.5"
    with pytest.raises(ValueError, match=refusal):
        torch.ops.lookahead_fused.compact_sync_on_step_(fast, high, low, torch.tensor(1.5, dtype=torch.float64),
                                                        torch.tensor(2), 2)  # fmt: skip
    ungated = [snapshot(tensors) for tensors in (fast, high, low)]
    torch.ops.lookahead_fused.compact_sync_on_step_(fast, high, low, torch.tensor(0.25, dtype=torch.float32),
                                                    torch.tensor(2), 2)  # fmt: skip
    ops.lookahead_compact_sync_(*ungated, 0.25, backend="cpu")
    assert_bitwise_equal(fast + high + low, ungated[0] + ungated[1] + ungated[2])
