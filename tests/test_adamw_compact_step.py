"""lookahead_adamw_compact_step_, AdamW's step with bf16+int8 slow weights synced in the same pass
(see [NOTE: AdamW compact step] in csrc/adamw.h), on every backend: a sync row against float64 (AdamW's
step, then the sync or momentum sync, then the encoding's bound); bit for bit AdamW's step alone followed
on the sync rows by the compact sync's op, on the same backend; off a sync row the slow weights and the
momentum untouched; bad lists refused before anything is written. LookaheadAdamW in this mode:
tests/test_compact_slow_weights.py and the optimizer matrix."""

import pytest
import torch

from lookahead_fused import bf16_int8, ops
from lookahead_fused.backends.reference import momentum_sync_float64, sync_float64

from .matrix import dtype_id, ulp
from .test_adamw_delta import cpu_copies, replaced
from .test_lookahead_adamw import ROW, SIZES, adamw_lists, bounded, check_adamw_moments, hyper_of, within

PARAM_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
MOMENTUM_DTYPES = [None, torch.float32, torch.bfloat16]
MU = 0.9
ENCODING = 2.0**-15  # the bf16+int8 encoding's bound, relative (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py)


def compact_lists(dtype, device, offset=0, momentum_dtype=None, seed=0, sizes=SIZES):
    """[params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum]: the float32 slow weights of
    test_lookahead_adamw.adamw_lists encoded as bf16+int8, the momentum in `momentum_dtype` (or none)."""
    params, grads, exp_avgs, exp_avg_sqs, slow, momentum = adamw_lists(dtype, torch.float32, device, offset, seed, sizes)
    high, low = map(list, zip(*(bf16_int8.encode(s) for s in slow)))
    outer = [] if momentum_dtype is None else [m.to(momentum_dtype) for m in momentum]
    return [params, grads, exp_avgs, exp_avg_sqs, high, low, outer]


def run(lists, device, backend, hyper, rows, nesterov=False):
    ops.lookahead_adamw_compact_step_(*lists[:6], hyper.to(device), rows.to(device), momentum=lists[6] or None,
                                      mu=MU if lists[6] else 0.0, nesterov=nesterov, backend=backend)  # fmt: skip


def same_bits(a, b) -> bool:
    return a.dtype == b.dtype and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("momentum_dtype", MOMENTUM_DTYPES, ids=lambda d: "none" if d is None else dtype_id(d))
@pytest.mark.parametrize("sync,nesterov,alpha", [(0, False, 0.5), (1, False, 0.5), (1, True, 0.3), (1, False, 1.0)])
@pytest.mark.parametrize("offset", [0, 1])
def test_op_against_float64(device_backend, dtype, momentum_dtype, sync, nesterov, alpha, offset):
    device, backend = device_backend
    lists = compact_lists(dtype, device, offset, momentum_dtype)
    before = cpu_copies(lists)
    row = dict(ROW, sync=float(sync), alpha=alpha)
    run(lists, device, backend, hyper_of(sync=float(sync), alpha=alpha), torch.zeros(len(SIZES), dtype=torch.int64),
        nesterov)  # fmt: skip
    params, grads, exp_avgs, exp_avg_sqs, high, low, momentum = cpu_copies(lists)
    mu = MU if momentum_dtype is not None else 0.0
    for i in range(len(SIZES)):
        p_new, update_scale = check_adamw_moments(i, [t[i] for t in before[:4]], exp_avgs[i], exp_avg_sqs[i], grads[i],
                                                  row, dtype)  # fmt: skip
        if not sync:
            within(params[i], p_new, update_scale, 8, dtype, f"param {i}: param")
            kept = [same_bits(after[i], held[i]) for after, held in zip((high, low, *([momentum] if mu else [])),
                                                                          before[4:4 + (3 if mu else 2)])]  # fmt: skip
            assert all(kept), f"param {i}: the slow state moved off a sync row"
            continue
        slow = bf16_int8.decode(high[i], low[i])
        assert same_bits(params[i], slow.to(dtype)), f"param {i}: the param is not the decoded slow weight"
        fast = p_new.to(dtype).double()  # the sync reads the param as the kernel rounded it
        fast_error = 8 * ulp(update_scale, dtype)
        s0 = bf16_int8.decode(before[4][i], before[5][i]).double()
        if mu:
            expected, expected_m = momentum_sync_float64(fast, s0, before[6][i], alpha, mu, nesterov)
            scale = torch.stack([t.double().abs() for t in (fast, s0, before[6][i], expected_m)]).amax(0)
            bounded(momentum[i], expected_m, fast_error + 4 * ulp(scale, torch.float32) + ulp(expected_m, momentum_dtype),
                    f"param {i}: momentum")  # fmt: skip
        else:
            expected = sync_float64(fast, s0, alpha)
            scale = torch.maximum(fast.abs(), s0.abs())
        bound = (1 + mu) * fast_error + 8 * ulp(scale, torch.float32) + ENCODING * expected.abs()
        if momentum_dtype == torch.bfloat16:  # the target reads the momentum as stored (Nesterov) or before
            bound = bound + mu * ulp(expected_m, torch.bfloat16)
        bounded(slow, expected, bound, f"param {i}: slow")


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("momentum_dtype", MOMENTUM_DTYPES, ids=lambda d: "none" if d is None else dtype_id(d))
@pytest.mark.parametrize("nesterov", [False, True])
def test_a_step_is_adamws_step_alone_then_the_compact_sync_of_the_sync_rows_bit_for_bit(device_backend, dtype,
                                                                                       momentum_dtype, nesterov):  # fmt: skip
    """One call whose entries take two sync rows of different alphas (both lerp sides) and a row without,
    beside a transposed entry (its state in the same strides) and entries over several of the CPU's float16
    tiles: the same bits as the backend's AdamW step alone (lookahead_adamw_step_ without slow weights)
    followed by its compact sync (or compact momentum sync) of the entries on each sync row."""
    device, backend = device_backend
    sizes = [600, 7, 3000, 1, 70000]
    lists = compact_lists(dtype, device, offset=1, momentum_dtype=momentum_dtype, seed=5, sizes=sizes)
    for tensors in lists:
        if tensors:
            tensors[0] = tensors[0].view(20, 30).t()
    alphas = {0: 0.3, 2: 0.8}  # the sync rows
    hyper = torch.cat([hyper_of(sync=1.0, alpha=0.3), hyper_of(sync=0.0, alpha=0.7, step=5.0),
                       hyper_of(sync=1.0, alpha=0.8, lr=3e-3)])  # fmt: skip
    rows = torch.tensor([0, 1, 2, 0, 2])
    expected = [[t.clone() for t in tensors] for tensors in lists]
    alone = hyper.clone()
    alone[:, 7] = 0.0
    ops.lookahead_adamw_step_(*expected[:4], [], alone.to(device), rows.to(device), backend=backend)
    for row, alpha in alphas.items():
        pick = [[tensors[i] for i in range(len(sizes)) if rows[i] == row] if tensors else [] for tensors in expected]
        ops.lookahead_compact_sync_(pick[0], pick[4], pick[5], alpha, momentum=pick[6] or None,
                                    mu=MU if pick[6] else 0.0, nesterov=nesterov, backend=backend)  # fmt: skip
    run(lists, device, backend, hyper, rows, nesterov)
    for name, got, want in zip(("param", "grad", "exp_avg", "exp_avg_sq", "slow_high", "slow_low", "momentum"),
                               lists, expected):  # fmt: skip
        for i, (a, b) in enumerate(zip(got, want)):
            assert same_bits(a, b), f"param {i}: {name} is not the composition's"


def test_bad_lists_are_refused_before_writing(backend):
    lists = compact_lists(torch.float32, "cpu", momentum_dtype=torch.float32, sizes=[5, 300, 1])
    held = cpu_copies(lists)
    high, low, momentum = lists[4], lists[5], lists[6]
    op = "lookahead_adamw_compact_step_"
    cases = [
        (replaced(lists, 4, 1, high[1].float()), f"{op}: pair 1: slow_high has dtype torch.float32; it must be torch.bfloat16"),
        (replaced(lists, 5, 0, low[0].to(torch.uint8)), f"{op}: pair 0: slow_low has dtype torch.uint8; it must be torch.int8"),
        (replaced(lists, 5, 2, torch.zeros(2, dtype=torch.int8)), f"{op}: pair 2: param has shape \\(1,\\) but slow_low"),
        (replaced(lists, 6, 1, momentum[1].half()), f"{op}: pair 1: momentum has dtype torch.float16; the outer momentum"),
        (replaced(lists, 2, 1, lists[2][1].double()), f"{op}: pair 1: exp_avg has dtype torch.float64 but param"),
        ([*lists[:4], high[:2], low, momentum], f"{op}: param has 3 tensors but slow_high has 2"),
        ([*lists[:6], momentum[:1]], f"{op}: param has 3 tensors but momentum has 1"),
        (replaced(lists, 6, 2, high[2]), f"{op}: pair 2 \\(slow_high\\) and pair 2 \\(momentum\\) share memory"),
        (replaced(lists, 6, 0, lists[3][0]), f"{op}: pair 0 \\(exp_avg_sq\\) and pair 0 \\(momentum\\) share memory"),
        # two defects: each param before its grad and moments, pair by pair, as in C++
        (replaced(replaced(lists, 1, 0, lists[1][0].double()), 0, 1, torch.zeros(600)[::2]),
         f"{op}: pair 0: grad has dtype torch.float64 but param has torch.float32"),
    ]
    rows = torch.zeros(3, dtype=torch.int64)
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            run(bad, "cpu", backend, hyper_of(sync=1.0), rows)
    with pytest.raises(ValueError, match=f"{op}: outer momentum mu = 0.5 needs the momentum tensors"):
        ops.lookahead_adamw_compact_step_(*lists[:6], hyper_of(sync=1.0), rows, mu=0.5, backend=backend)
    with pytest.raises(ValueError, match=f"{op}: pair 0: param has dtype torch.float64; bf16\\+int8 slow weights"):
        doubles = [[t.double() for t in tensors] for tensors in lists[:4]]
        ops.lookahead_adamw_compact_step_(*doubles, high, low, hyper_of(sync=1.0), rows, backend=backend)
    for tensors, kept in zip(lists, held):
        for t, k in zip(tensors, kept):
            assert same_bits(t, k), "a refused call wrote"
