"""lookahead_sync_on_step_: the sync when step % k == 0, nothing otherwise, decided where the step
counter lives (see [NOTE: step gate] in csrc/table.h). Checked through ops (which reads a CPU step on
the host) and through each backend's own gated path (the C++ CPU gate, the Triton kernel's mask,
the masked fallback of the pure-PyTorch backends), which is what a device counter or a compiled
step runs."""

import re

import pytest
import torch

from lookahead_fused import backends, ops

from .helpers import assert_bitwise_equal, snapshot
from .matrix import DTYPE_PAIRS, SIZES, check_against_contract, dtype_id, make_pair_lists, sizes_for


def _gated_path(device, backend):
    """The backend's own sync_on_step_, as a device counter would reach it."""
    module = backends.resolve(backend, device)
    return lambda fast, slow, alpha, step, k: module.sync_on_step_(
        fast, slow, torch.tensor(alpha, dtype=torch.float64, device=device), step, k
    )


def _through_ops(device, backend):
    return lambda fast, slow, alpha, step, k: ops.lookahead_sync_on_step_(fast, slow, alpha, step, k, backend=backend)


PATHS = {"ops": _through_ops, "backend's gate": _gated_path}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("fast_dtype, slow_dtype", DTYPE_PAIRS, ids=dtype_id)
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7, 1.0])
def test_syncs_exactly_on_multiples_of_k(device_backend, path, fast_dtype, slow_dtype, alpha):
    device, backend = device_backend
    run = PATHS[path](device, backend)
    fast, slow = make_pair_lists(sizes_for(device_backend), fast_dtype, slow_dtype, offset=1, device=device)
    for step in (1, 2, 4, 5):  # k = 3: not a sync step
        before = snapshot(fast + slow)
        run(fast, slow, alpha, torch.tensor(step, device=device), 3)
        assert_bitwise_equal(fast + slow, before)
    fast0, slow0 = snapshot(fast), snapshot(slow)
    run(fast, slow, alpha, torch.tensor(6, device=device), 3)
    check_against_contract(fast0, slow0, fast, slow, alpha)


def test_gated_sync_equals_the_plain_sync_bit_for_bit_on_the_native_kernel():
    if "cpu" not in ops.available_backends():
        pytest.skip("the C++ extension is not built")
    fast, slow = make_pair_lists(SIZES, torch.bfloat16, torch.float32)
    fast2, slow2 = snapshot(fast), snapshot(slow)
    torch.ops.lookahead_fused.sync_on_step_(fast, slow, torch.tensor(0.3, dtype=torch.float64), torch.tensor(4), 2)
    ops.lookahead_sync_(fast2, slow2, 0.3, backend="cpu")
    assert_bitwise_equal(fast + slow, fast2 + slow2)


def test_a_float32_alpha_tensor_is_read_too(backend):
    fast, slow = make_pair_lists([5], torch.float32, torch.float32)
    fast0, slow0 = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_on_step_(fast, slow, torch.tensor(0.25), torch.tensor(2), 1, backend=backend)
    check_against_contract(fast0, slow0, fast, slow, 0.25)


BAD_GATES = {  # (alpha, step, k) -> message
    "k = 0": ((0.5, torch.tensor(3), 0), "k must be an int >= 1, got 0"),
    "k a bool": ((0.5, torch.tensor(3), True), "k must be an int >= 1, got True"),
    "python int step": ((0.5, 3, 3), "step must be a one-element int64 tensor, got int"),
    "float step": ((0.5, torch.tensor(3.0), 3), "step must be a one-element int64 tensor, got torch.float32"),
    "int32 step": ((0.5, torch.tensor(3, dtype=torch.int32), 3), "step must be a one-element int64 tensor"),
    "two-element step": ((0.5, torch.tensor([3, 3]), 3), "step must be a one-element int64 tensor, got torch.int64 of shape (2,)"),
    "half alpha": ((torch.tensor(0.5, dtype=torch.float16), torch.tensor(3), 3), "alpha must be a number or a one-element float32/float64 tensor, got torch.float16"),
    "step elsewhere": ((0.5, torch.tensor(3, device="meta"), 3), "alpha is on cpu and step on meta but the tensors are on cpu"),
}


@pytest.mark.parametrize("case", list(BAD_GATES))
def test_bad_gate_is_rejected_before_writing(backend, case):
    (alpha, step, k), message = BAD_GATES[case]
    fast, slow = make_pair_lists([4, 6], torch.float32, torch.float32)
    before = snapshot(fast + slow)
    with pytest.raises(ValueError, match=re.escape(message)):
        ops.lookahead_sync_on_step_(fast, slow, alpha, step, k, backend=backend)
    assert_bitwise_equal(fast + slow, before)


# The dispatcher takes True as 1, refuses a Python int for a Tensor, and sends a call holding a
# meta tensor to the Meta kernel.
@pytest.mark.parametrize("case", [c for c in BAD_GATES if c not in ("k a bool", "python int step", "step elsewhere")])
def test_native_op_rejects_bad_gates_with_the_same_words(case):
    if "cpu" not in ops.available_backends():
        pytest.skip("the C++ extension is not built")
    (alpha, step, k), message = BAD_GATES[case]
    alpha = alpha if isinstance(alpha, torch.Tensor) else torch.tensor(alpha, dtype=torch.float64)
    fast, slow = make_pair_lists([4, 6], torch.float32, torch.float32)
    before = snapshot(fast + slow)
    with pytest.raises((ValueError, RuntimeError), match=re.escape(message)):
        torch.ops.lookahead_fused.sync_on_step_(fast, slow, alpha, step, k)
    assert_bitwise_equal(fast + slow, before)


@pytest.mark.parametrize("step", [3, 4])  # sync step or not: the value is checked either way on the CPU
def test_out_of_range_alpha_tensor_is_rejected_on_the_cpu(backend, step):
    fast, slow = make_pair_lists([4], torch.float32, torch.float32)
    before = snapshot(fast + slow)
    with pytest.raises(ValueError, match="alpha must be a finite number in \\[0, 1\\]"):
        ops.lookahead_sync_on_step_(fast, slow, torch.tensor(1.5), torch.tensor(step), 3, backend=backend)
    assert_bitwise_equal(fast + slow, before)


def test_bad_pairs_are_rejected_off_the_sync_steps_too(backend):
    shared = torch.randn(4)
    with pytest.raises(ValueError, match="share memory"):
        ops.lookahead_sync_on_step_([shared], [shared], 0.5, torch.tensor(1), 3, backend=backend)


def test_a_number_alpha_is_made_a_tensor_once():
    """A number alpha becomes the one-element tensor the gated kernels read once per device and
    value, not at every step (on a GPU that would be a host-to-device copy per step)."""
    from lookahead_fused import device_scalars, ops as ops_module

    fast, slow = [torch.randn(5)], [torch.randn(5)]
    step = torch.tensor(1)
    key = (0.375, torch.float64, torch.device("cpu"))
    ops_module.lookahead_sync_on_step_(fast, slow, 0.375, step, 3)
    made = device_scalars._cache[key]
    for _ in range(5):
        ops_module.lookahead_sync_on_step_(fast, slow, 0.375, step, 3)
    assert device_scalars._cache[key] is made
    for i in range(3 * device_scalars.CACHED):
        ops_module.lookahead_sync_on_step_(fast, slow, i / 1000, step, 3)
    assert len(device_scalars._cache) <= device_scalars.CACHED
