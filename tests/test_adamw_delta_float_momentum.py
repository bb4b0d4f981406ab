"""lookahead_adamw_delta_step_ with a float32 or bfloat16 outer momentum beside the int8-delta offsets
(see [NOTE: int8-delta float momentum] in csrc/adamw.h), on every backend: a sync row against the float64
momentum sync of the stored values; on the CPU, bit for bit the momentum sync (each step one float32
operation) of the backend's own new param and the decoded slow weight, then the offset's encoding; off a
sync row the momentum untouched and mu = 0 the plain int8-delta sync bit for bit (in
tests/test_adamw_delta_momentum.py); bad momentum lists refused before anything is written.
LookaheadAdamW in this mode: tests/test_int8_delta_optimizer.py."""

import pytest
import torch

from lookahead_fused import int8_blocks, ops

from .matrix import dtype_id, ulp
from .test_adamw_delta import PARAM_DTYPES, SIZES, cpu_copies, delta_lists, replaced, slow_of
from .test_adamw_delta_momentum import all_lists, check_sync_row_against_float64, run
from .test_lookahead_adamw import ROW, hyper_of

MOMENTUM_DTYPES = [torch.float32, torch.bfloat16]
MU = 0.9


def momentum_sync_in_float32(kept, slow, momentum, alpha, nesterov):
    """The contract's momentum sync of the float32 values (new param, slow weight, momentum), each step one
    float32 operation, written out here: (new slow weight, new momentum in the momentum's dtype)."""
    m_new = (MU * momentum.float() + (kept - slow)).to(momentum.dtype)
    target = kept + MU * (m_new.float() if nesterov else momentum.float())
    w = torch.tensor(alpha, dtype=torch.float32)
    lerp = slow + w * (target - slow) if alpha < 0.5 else target - (target - slow) * (1 - w)
    return lerp, m_new


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("momentum_dtype", MOMENTUM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov,alpha", [(False, 0.5), (True, 0.3), (True, 1.0)])
@pytest.mark.parametrize("offset", [0, 1])
def test_a_sync_row_is_the_float64_momentum_sync_within_its_roundings(device_backend, dtype, momentum_dtype, nesterov,
                                                                      alpha, offset):  # fmt: skip
    device, backend = device_backend
    lists = all_lists(dtype, device, offset, momentum=momentum_dtype)
    before = cpu_copies(lists)
    row = dict(ROW, sync=1.0, alpha=alpha)
    run(lists, device, backend, nesterov=nesterov, sync=1.0, alpha=alpha)
    after = cpu_copies(lists)
    for i in range(len(SIZES)):
        check_sync_row_against_float64(i, before, after, row, dtype, before[6][i].double(), after[6][i].double(), MU,
                                       nesterov, alpha, lambda m_new, _: ulp(m_new, momentum_dtype))  # fmt: skip


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("momentum_dtype", MOMENTUM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov,alpha", [(False, 0.7), (True, 0.3)])
def test_a_sync_row_is_the_momentum_sync_of_its_own_new_param_bit_for_bit(backend, dtype, momentum_dtype, nesterov,
                                                                          alpha):  # fmt: skip
    """The same call off a sync row leaves each param as AdamW's step rounded to its dtype, p'; on a sync
    row the backend gives, bit for bit, the momentum sync of (p', the slow weight decoded in float32) in
    float32 operations, p' the new slow weight rounded to its dtype, and the offset's encoding. On the CPU
    only: there every backend evaluates AdamW's part with the same roundings in both calls."""
    device = "cpu"
    lists = all_lists(dtype, device, seed=11, momentum=momentum_dtype)
    before = cpu_copies(lists)
    off_sync = [[t.clone() for t in tensors] for tensors in lists[:6]]
    ops.lookahead_adamw_delta_step_(*off_sync, hyper_of(device, sync=0.0),
                                    torch.zeros(len(SIZES), dtype=torch.int64, device=device), backend=backend)  # fmt: skip
    run(lists, device, backend, nesterov=nesterov, sync=1.0, alpha=alpha)
    params, _, _, _, codes, scales, momentum, _ = cpu_copies(lists)
    for i in range(len(SIZES)):
        slow = slow_of(before[0][i], before[4][i], before[5][i])
        new_slow, m_new = momentum_sync_in_float32(off_sync[0][i].float(), slow, before[6][i], alpha, nesterov)
        assert torch.equal(momentum[i], m_new), f"param {i}: not the momentum sync's momentum"
        assert torch.equal(params[i], new_slow.to(dtype)), f"param {i}: not the momentum sync's param"
        expected_codes, expected_scales = int8_blocks.encode(new_slow - params[i].float())
        assert torch.equal(codes[i], expected_codes) and torch.equal(scales[i], expected_scales), (
            f"param {i}: the offset is not the encoding of the new slow weight's"
        )


def test_bad_float_momentum_lists_are_refused_before_writing(backend):
    lists = all_lists(torch.float32, "cpu", momentum=torch.float32)
    held = cpu_copies(lists)
    momentum = lists[6]
    besides = "; the outer momentum beside int8-delta offsets is float32 or bfloat16, or int8 codes with their block scales"
    cases = [
        (replaced(lists, 6, 1, momentum[1].to(torch.int8)), "pair 1: momentum has dtype torch.int8" + besides),
        (replaced(lists, 6, 2, momentum[2].half()), "pair 2: momentum has dtype torch.float16" + besides),
        (replaced(lists, 6, 0, momentum[0].double()), "pair 0: momentum has dtype torch.float64" + besides),
        (replaced(lists, 6, 3, torch.zeros(258)), "pair 3: param has shape"),
        (replaced(lists, 6, 4, torch.zeros(700, 2)[:, 0]), r"pair 4: momentum \(shape \(700,\), strides \(2,\)\) is not dense"),
        (replaced(lists, 6, 1, lists[2][1]), "share memory"),
        ([*lists[:6], momentum[:-1], []], "param has 6 tensors but momentum has 5"),
        # a float momentum with scales reads as int8 codes; scales without a momentum
        ([*lists[:6], momentum, [torch.zeros(int8_blocks.scale_count(p.numel())) for p in lists[0]]],
         "pair 0: momentum has dtype torch.float32; it must be torch.int8"),
        ([*lists[:6], [], [torch.zeros(1)]], "momentum has 0 tensors but momentum_scales has 1"),
        # two defects: the offsets' codes are checked before the momentum, as in C++
        (replaced(replaced(lists, 4, 0, lists[4][0].to(torch.uint8)), 6, 1, momentum[1].half()),
         "pair 0: delta has dtype torch.uint8"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            run(bad, "cpu", backend, sync=1.0)
    for tensors, kept in zip(lists, held):
        for t, k in zip(tensors, kept):
            assert torch.equal(t, k), "a refused call wrote"


def test_momenta_of_both_dtypes_beside_a_transposed_param_in_one_call_bit_for_bit(backend):
    """A call whose momenta alternate float32 and bfloat16, beside a transposed param (its state in the
    same strides) and one a byte into its buffer: on the CPU each entry is, bit for bit, the momentum sync
    of its own new param and decoded slow weight, walked in memory order, then the offset's encoding."""
    lists = delta_lists(torch.float32, "cpu", offset=1, seed=13, sizes=[600, 257, 300])
    dtypes = [torch.float32, torch.bfloat16, torch.bfloat16]
    lists += [[torch.randn(p.shape).mul_(0.05).to(dtype) for p, dtype in zip(lists[0], dtypes)], []]
    for which in (0, 1, 2, 3, 4, 6):  # entry 0 transposed, the same memory order
        lists[which][0] = lists[which][0].view(20, 30).t()
    before = cpu_copies(lists)
    off_sync = [[t.clone() for t in tensors] for tensors in lists[:6]]
    ops.lookahead_adamw_delta_step_(*off_sync, hyper_of("cpu", sync=0.0), torch.zeros(3, dtype=torch.int64),
                                    backend=backend)  # fmt: skip
    run(lists, "cpu", backend, nesterov=True, sync=1.0, alpha=0.6)
    order = int8_blocks.memory_order
    for i in range(3):
        slow = slow_of(order(before[0][i]), order(before[4][i]), before[5][i])
        new_slow, m_new = momentum_sync_in_float32(order(off_sync[0][i]).float(), slow, order(before[6][i]), 0.6, True)
        assert torch.equal(order(lists[6][i]), m_new), f"param {i}: not the momentum sync's momentum"
        assert torch.equal(order(lists[0][i]), new_slow), f"param {i}: not the momentum sync's param"
        expected_codes, expected_scales = int8_blocks.encode(new_slow - order(lists[0][i]))
        assert torch.equal(order(lists[4][i]), expected_codes) and torch.equal(lists[5][i], expected_scales)
