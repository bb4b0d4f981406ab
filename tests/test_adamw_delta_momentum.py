"""lookahead_adamw_delta_step_ with an int8 outer momentum beside the int8-delta offsets
(see [NOTE: int8-delta outer momentum] in csrc/adamw.h), on every backend (off a sync row and with mu = 0
also a float32 and a bfloat16 one: tests/test_adamw_delta_float_momentum.py has the rest of theirs): a sync row against the float64
momentum sync of the stored values, within the encodings' bounds; bit for bit the reference's int8
momentum sync of the backend's own new param and the decoded slow weight; off a sync row the momentum
untouched; mu = 0 the plain int8-delta sync bit for bit; bad momentum lists refused before anything is
written, with the same words on every backend."""

import pytest
import torch

from lookahead_fused import int8_blocks, ops
from lookahead_fused.backends import reference
from lookahead_fused.backends.reference import sync_float64

from .matrix import dtype_id, ulp
from .test_adamw_delta import PARAM_DTYPES, SIZES, cpu_copies, delta_lists, replaced, slow_in_float64, slow_of
from .test_lookahead_adamw import ROW, bounded, check_adamw_moments, hyper_of


def momentum_lists(params, device, offset=0, seed=1):
    """Per param an int8 outer momentum, codes beside it (as far into a buffer as the param is) and
    block scales, encoding values of about the size of a sync's displacement."""
    generator = torch.Generator().manual_seed(seed)
    codes, scales = [], []
    for p in params:
        q, sc = int8_blocks.encode(torch.randn(p.numel(), generator=generator) * 0.05)
        codes.append(torch.empty(p.numel() + offset, dtype=torch.int8, device=device)[offset:].copy_(q))
        scales.append(sc.to(device))
    return [codes, scales]


def run(lists, device, backend, mu=0.9, nesterov=False, **row):
    rows = torch.zeros(len(lists[0]), dtype=torch.int64, device=device)
    ops.lookahead_adamw_delta_step_(*lists[:6], hyper_of(device, **row), rows, momentum=lists[6],
                                    momentum_scales=lists[7], mu=mu, nesterov=nesterov, backend=backend)  # fmt: skip


def float_momentum_lists(params, dtype, device, offset=0, seed=1):
    """Per param an outer momentum of `dtype` beside it (as far into a buffer as the param is), of about
    the size of a sync's displacement (see [NOTE: int8-delta float momentum] in csrc/adamw.h)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.empty(p.numel() + offset, dtype=dtype, device=device)[offset:].copy_(
            torch.randn(p.numel(), generator=generator) * 0.05
        )
        for p in params
    ]


def all_lists(dtype, device, offset=0, seed=0, momentum=torch.int8):
    """delta_lists and an outer momentum: int8 codes and their scales, or float32 or bfloat16 values and
    no scales."""
    lists = delta_lists(dtype, device, offset, seed)
    if momentum == torch.int8:
        return lists + momentum_lists(lists[0], device, offset, seed + 1)
    return lists + [float_momentum_lists(lists[0], momentum, device, offset, seed + 1), []]


# the outer momenta beside int8-delta offsets
OUTER_DTYPES = [torch.int8, torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov,alpha", [(False, 0.5), (True, 0.3), (True, 1.0)])
@pytest.mark.parametrize("offset", [0, 1])
def test_a_sync_row_is_the_float64_momentum_sync_within_the_encodings_bounds(device_backend, dtype, nesterov, alpha,
                                                                               offset):  # fmt: skip
    device, backend = device_backend
    mu = 0.9
    lists = all_lists(dtype, device, offset)
    before = cpu_copies(lists)
    row = dict(ROW, sync=1.0, alpha=alpha)
    run(lists, device, backend, mu=mu, nesterov=nesterov, sync=1.0, alpha=alpha)
    after = cpu_copies(lists)
    momentum, momentum_scales = after[6:]
    for i in range(len(SIZES)):
        m_old = int8_blocks.decode(before[6][i], before[7][i]).double()
        stored = int8_blocks.decode(momentum[i], momentum_scales[i]).double()
        check_sync_row_against_float64(i, before, after, row, dtype, m_old, stored, mu, nesterov, alpha,
                                       lambda m_new, error: int8_blocks.error_bound(m_new.abs() + error))  # fmt: skip


def check_sync_row_against_float64(i, before, after, row, dtype, m_old, stored, mu, nesterov, alpha, storing_error):
    """Param i of a sync row's lists `before` and `after` the call (on the CPU): its moments against
    float64 AdamW; its stored new momentum `stored` (float64) within AdamW's error in the new param, the
    float32 roundings of the three-term sum and storing_error(m_new, that error) (its encoding's, or its
    dtype's rounding) of the float64 mu m_old + (p' - s); the param within the float64 lerp toward the
    target that `stored` makes; the slow weight kept within that plus the offset's encoding."""
    params, _, exp_avgs, exp_avg_sqs, codes, scales = after[:6]
    p_new, update_scale = check_adamw_moments(i, [t[i] for t in before[:4]], exp_avgs[i], exp_avg_sqs[i],
                                              before[1][i], row, dtype)  # fmt: skip
    kept = p_new.to(dtype).double()  # the new param before the sync, within AdamW's bound of this
    s0 = slow_of(before[0][i], before[4][i], before[5][i]).double()
    m_new = mu * m_old + (kept - s0)
    # AdamW's error in the param (8 ulp of its scale), float32 roundings of the three-term sum
    sum_error = 8 * ulp(update_scale, dtype) + 4 * ulp(torch.maximum(m_new.abs(), kept.abs() + s0.abs()),
                                                       torch.float32)  # fmt: skip
    bounded(stored, m_new, sum_error + storing_error(m_new, sum_error), f"param {i}: the new momentum")
    target = kept + mu * (stored if nesterov else m_old)
    expected = sync_float64(target, s0, alpha)
    lerp_error = 2 * sum_error + 8 * ulp(torch.maximum(target.abs(), s0.abs()), torch.float32)
    bounded(params[i], expected, lerp_error + ulp(expected, dtype), f"param {i}: param after the sync")
    offset_bound = int8_blocks.error_bound((expected - params[i].double()).abs() + lerp_error)
    bounded(slow_in_float64(params[i], codes[i], scales[i]), expected, lerp_error + offset_bound,
            f"param {i}: the slow weight after the sync")  # fmt: skip


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov,alpha", [(False, 0.7), (True, 0.3)])
def test_with_lr_zero_a_sync_row_is_the_int8_momentum_sync_of_the_decoded_slow_weights(device_backend, dtype, nesterov,
                                                                                      alpha):  # fmt: skip
    """lr = 0 leaves each param exactly as it is, so a sync row is, bit for bit, the int8 momentum sync
    (the reference's, an independent path) of (param, its slow weight decoded in float32), followed by
    the encoding of the new slow weight's offset from the new param."""
    device, backend = device_backend
    lists = all_lists(dtype, device, seed=5)
    before = cpu_copies(lists)
    run(lists, device, backend, nesterov=nesterov, sync=1.0, alpha=alpha, lr=0.0)
    params, _, _, _, codes, scales, momentum, momentum_scales = cpu_copies(lists)
    fast = [p.clone() for p in before[0]]
    slow = [slow_of(p, q, sc) for p, q, sc in zip(before[0], before[4], before[5])]
    reference.int8_momentum_sync_(fast, slow, before[6], before[7], alpha, 0.9, nesterov)
    for i in range(len(SIZES)):
        assert torch.equal(params[i], fast[i]), f"param {i}: not the int8 momentum sync's"
        assert torch.equal(momentum[i], before[6][i]) and torch.equal(momentum_scales[i], before[7][i]), (
            f"param {i}: the momentum is not the int8 momentum sync's"
        )
        expected_codes, expected_scales = int8_blocks.encode(slow[i] - params[i].float())
        assert torch.equal(codes[i], expected_codes) and torch.equal(scales[i], expected_scales), (
            f"param {i}: the offset is not the encoding of the new slow weight's"
        )


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov", [False, True])
def test_a_sync_row_is_the_int8_momentum_sync_of_its_own_new_param(backend, dtype, nesterov):
    """The same call off a sync row leaves each param as AdamW's step rounded to its dtype, p'; on a sync
    row the backend gives, bit for bit, the reference's int8 momentum sync of (p', the slow weight decoded
    in float32), then the encoding of the new offset. On the CPU only: there every backend evaluates
    AdamW's part with the same roundings in both calls (a GPU may contract it differently in the two
    paths of its kernel; the lr = 0 test above covers those)."""
    device = "cpu"
    lists = all_lists(dtype, device, seed=11)
    before = cpu_copies(lists)
    off_sync = [[t.clone() for t in tensors] for tensors in lists[:6]]
    ops.lookahead_adamw_delta_step_(*off_sync, hyper_of(device, sync=0.0),
                                    torch.zeros(len(SIZES), dtype=torch.int64, device=device), backend=backend)  # fmt: skip
    run(lists, device, backend, nesterov=nesterov, sync=1.0, alpha=0.7)
    params, _, _, _, codes, scales, momentum, momentum_scales = cpu_copies(lists)
    fast = [p.clone() for p in cpu_copies(off_sync)[0]]
    slow = [slow_of(p, q, sc) for p, q, sc in zip(before[0], before[4], before[5])]
    reference.int8_momentum_sync_(fast, slow, before[6], before[7], 0.7, 0.9, nesterov)
    for i in range(len(SIZES)):
        assert torch.equal(momentum[i], before[6][i]) and torch.equal(momentum_scales[i], before[7][i]), (
            f"param {i}: the momentum is not the int8 momentum sync's"
        )
        assert torch.equal(params[i], fast[i]), f"param {i}: not the int8 momentum sync's"
        expected_codes, expected_scales = int8_blocks.encode(slow[i] - params[i].float())
        assert torch.equal(codes[i], expected_codes) and torch.equal(scales[i], expected_scales), (
            f"param {i}: the offset is not the encoding of the new slow weight's"
        )


@pytest.mark.parametrize("momentum", OUTER_DTYPES, ids=dtype_id)
def test_off_a_sync_row_the_momentum_is_untouched_and_the_rest_as_without_it(device_backend, momentum):
    device, backend = device_backend
    lists = all_lists(torch.bfloat16, device, seed=7, momentum=momentum)
    plain = [[t.clone() for t in tensors] for tensors in lists[:6]]
    held = cpu_copies(lists[6:])
    run(lists, device, backend, sync=0.0)
    ops.lookahead_adamw_delta_step_(*plain, hyper_of(device, sync=0.0),
                                    torch.zeros(len(SIZES), dtype=torch.int64, device=device), backend=backend)  # fmt: skip
    for got, want in zip(cpu_copies(lists[6:]), held):
        assert all(map(torch.equal, got, want)), "the momentum changed off a sync row"
    for got, want in zip(cpu_copies(lists[:6]), cpu_copies(plain)):
        assert all(map(torch.equal, got, want)), "the step without a sync differs with a momentum beside it"


@pytest.mark.parametrize("momentum", OUTER_DTYPES, ids=dtype_id)
def test_mu_zero_is_the_plain_int8_delta_sync_bit_for_bit(device_backend, momentum):
    """With mu = 0 the target is the new param itself, so params and offsets are the plain sync's."""
    device, backend = device_backend
    lists = all_lists(torch.float16, device, seed=9, momentum=momentum)
    plain = [[t.clone() for t in tensors] for tensors in lists[:6]]
    run(lists, device, backend, mu=0.0, sync=1.0, alpha=0.3)
    ops.lookahead_adamw_delta_step_(*plain, hyper_of(device, sync=1.0, alpha=0.3),
                                    torch.zeros(len(SIZES), dtype=torch.int64, device=device), backend=backend)  # fmt: skip
    for got, want in zip(cpu_copies(lists[:6]), cpu_copies(plain)):
        assert all(map(torch.equal, got, want)), "mu = 0 is not the plain sync"


def test_bad_momentum_lists_are_refused_before_writing(backend):
    lists = all_lists(torch.float32, "cpu")
    held = cpu_copies(lists)
    momentum, momentum_scales = lists[6], lists[7]
    cases = [
        (replaced(lists, 6, 1, momentum[1].to(torch.uint8)), {},
         "pair 1: momentum has dtype torch.uint8; it must be torch.int8"),
        (replaced(lists, 7, 2, torch.zeros(3)), {}, r"pair 2: momentum_scales has shape \(3,\); it must be \(1,\)"),
        (replaced(lists, 6, 3, torch.zeros(258, dtype=torch.int8)), {}, "pair 3: param has shape"),
        (replaced(lists, 6, 1, lists[4][1]), {}, "share memory"),
        ([*lists[:7], momentum_scales[:-1]], {}, "momentum has 6 tensors but momentum_scales has 5"),
        ([*lists[:6], momentum[:-1], momentum_scales[:-1]], {}, "param has 6 tensors but momentum has 5"),
        (lists, {"mu": 1.0}, "outer momentum mu must be a finite number in"),
        # two defects: the lengths are checked first, as in C++
        (replaced([*lists[:7], momentum_scales[:-1]], 2, 0, lists[2][0].half()), {},
         "momentum has 6 tensors but momentum_scales has 5"),
        (replaced([*lists[:6], momentum[:-1], momentum_scales[:-1]], 1, 0, lists[1][0].half()), {},
         "param has 6 tensors but momentum has 5"),
    ]
    for bad, options, message in cases:
        with pytest.raises(ValueError, match=message):
            run(bad, "cpu", backend, sync=1.0, **options)
    for mu in (True, torch.tensor(0.5), None):  # not a real number: refused alike on every backend
        with pytest.raises(TypeError, match="outer momentum mu must be a real number in"):
            run(lists, "cpu", backend, sync=1.0, mu=mu)
    for tensors, kept in zip(lists, held):
        for t, k in zip(tensors, kept):
            assert torch.equal(t, k), "a refused call wrote"
