"""lookahead_adamw_int8_momentum_step_, AdamW's step with an int8 outer momentum synced in the same pass
beside float32 or bf16+int8 slow weights (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h), on every
backend: a sync row against float64 (AdamW's step, then the momentum sync of the stored values, within
the encodings' bounds); bit for bit AdamW's step alone followed on the sync rows by the int8 momentum
sync's op, on the same backend; off a sync row the slow weights, codes and scales untouched; bad lists
refused before anything is written. LookaheadAdamW in this mode: tests/test_int8_momentum.py and the
optimizer matrix."""

import pytest
import torch

from lookahead_fused import bf16_int8, int8_blocks, ops
from lookahead_fused.backends.reference import sync_float64

from .matrix import dtype_id, ulp
from .test_adamw_compact_step import ENCODING, same_bits
from .test_adamw_delta import cpu_copies, replaced
from .test_adamw_delta_momentum import momentum_lists
from .test_lookahead_adamw import ROW, SIZES, adamw_lists, bounded, check_adamw_moments, hyper_of

PARAM_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SLOW_STORAGES = ["float32", "bf16+int8"]
MU = 0.9
NAMES = ("param", "grad", "exp_avg", "exp_avg_sq", "slow", "slow_low", "momentum", "scales")


def int8_lists(dtype, device, storage, offset=0, seed=0, sizes=SIZES):
    """[params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales]: test_lookahead_adamw's
    adamw_lists with float32 slow weights (encoded as bf16+int8 for that storage, `slow` their high parts
    and `slow_low` their residuals, else `slow_low` empty) and an int8 outer momentum beside each param."""
    params, grads, exp_avgs, exp_avg_sqs, slow, _ = adamw_lists(dtype, torch.float32, device, offset, seed, sizes)
    low = []
    if storage == "bf16+int8":
        slow, low = map(list, zip(*(bf16_int8.encode(s) for s in slow)))
    return [params, grads, exp_avgs, exp_avg_sqs, slow, low, *momentum_lists(params, device, offset, seed + 1)]


def run(lists, device, backend, hyper, rows, nesterov=False):
    ops.lookahead_adamw_int8_momentum_step_(*lists[:5], lists[6], lists[7], hyper.to(device), rows.to(device),
                                            slow_low=lists[5] or None, mu=MU, nesterov=nesterov,
                                            backend=backend)  # fmt: skip


def slow_values(lists, i):
    """Param i's slow weight as float32 values."""
    return bf16_int8.decode(lists[4][i], lists[5][i]) if lists[5] else lists[4][i]


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("storage", SLOW_STORAGES)
@pytest.mark.parametrize("sync,nesterov,alpha", [(0, False, 0.5), (1, True, 0.3), (1, False, 1.0)])
@pytest.mark.parametrize("offset", [0, 1])
def test_op_against_float64(device_backend, dtype, storage, sync, nesterov, alpha, offset):
    device, backend = device_backend
    lists = int8_lists(dtype, device, storage, offset)
    before = cpu_copies(lists)
    row = dict(ROW, sync=float(sync), alpha=alpha)
    run(lists, device, backend, hyper_of(sync=float(sync), alpha=alpha), torch.zeros(len(SIZES), dtype=torch.int64),
        nesterov)  # fmt: skip
    after = cpu_copies(lists)
    params, grads, exp_avgs, exp_avg_sqs = after[:4]
    for i in range(len(SIZES)):
        p_new, update_scale = check_adamw_moments(i, [t[i] for t in before[:4]], exp_avgs[i], exp_avg_sqs[i], grads[i],
                                                  row, dtype)  # fmt: skip
        if not sync:
            bounded(params[i], p_new, 8 * ulp(update_scale, dtype), f"param {i}: param (8 ulp)")
            kept = [same_bits(a[i], b[i]) for a, b in zip(after[4:], before[4:]) if b]
            assert all(kept), f"param {i}: the slow weights or the momentum moved off a sync row"
            continue
        slow = slow_values(after, i)
        assert same_bits(params[i], slow.to(dtype)), f"param {i}: the param is not the slow weight as stored"
        kept = p_new.to(dtype).double()  # the sync reads the param as the kernel rounded it
        s0 = slow_values(before, i).double()
        m_old = int8_blocks.decode(before[6][i], before[7][i]).double()
        m_new = MU * m_old + (kept - s0)
        # AdamW's error in the param, the float32 roundings of the three-term sum
        sum_error = 8 * ulp(update_scale, dtype) + 4 * ulp(torch.maximum(m_new.abs(), kept.abs() + s0.abs()),
                                                           torch.float32)  # fmt: skip
        stored = int8_blocks.decode(after[6][i], after[7][i]).double()
        bounded(stored, m_new, sum_error + int8_blocks.error_bound(m_new.abs() + sum_error), f"param {i}: momentum")
        target = kept + MU * (stored if nesterov else m_old)
        expected = sync_float64(target, s0, alpha)
        lerp_error = 2 * sum_error + 8 * ulp(torch.maximum(target.abs(), s0.abs()), torch.float32)
        encoding = ENCODING * expected.abs() if lists[5] else 0.0
        bounded(slow, expected, lerp_error + encoding, f"param {i}: slow")


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("storage", SLOW_STORAGES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_a_step_is_adamws_step_alone_then_the_int8_momentum_sync_of_the_sync_rows_bit_for_bit(device_backend, dtype,
                                                                                             storage, nesterov):  # fmt: skip
    """One call whose entries take two sync rows of different alphas (both lerp sides) and a row without,
    beside a transposed entry (its state in the same strides) and entries of several blocks and tiles with
    a partial last block: the same bits as the backend's AdamW step alone (lookahead_adamw_step_ without
    slow weights) followed by its int8 momentum sync (or compact int8 momentum sync) of the entries on each
    sync row."""
    device, backend = device_backend
    sizes = [600, 7, 3000, 1, 70000]
    lists = int8_lists(dtype, device, storage, offset=1, seed=5, sizes=sizes)
    for tensors in lists[:7]:
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
        if storage == "bf16+int8":
            ops.lookahead_compact_sync_(*pick[:1], pick[4], pick[5], alpha, momentum=pick[6], momentum_scales=pick[7], mu=MU,
                                        nesterov=nesterov, backend=backend)  # fmt: skip
        else:
            ops.lookahead_int8_momentum_sync_(pick[0], pick[4], pick[6], pick[7], alpha, mu=MU, nesterov=nesterov,
                                              backend=backend)  # fmt: skip
    run(lists, device, backend, hyper, rows, nesterov)
    for name, got, want in zip(NAMES, lists, expected):
        for i, (a, b) in enumerate(zip(got, want)):
            assert same_bits(a, b), f"param {i}: {name} is not the composition's"


@pytest.mark.parametrize("storage", SLOW_STORAGES)
def test_bad_lists_are_refused_before_writing(backend, storage):
    lists = int8_lists(torch.float32, "cpu", storage, sizes=[5, 300, 1])
    held = cpu_copies(lists)
    slow, momentum, scales = lists[4], lists[6], lists[7]
    op = "lookahead_adamw_int8_momentum_step_"
    slow_name, slow_dtype = ("slow", "torch.bfloat16") if storage == "bf16+int8" else ("slow", "torch.float32")
    cases = [
        (replaced(lists, 4, 1, slow[1].double()), f"{op}: pair 1: {slow_name} has dtype torch.float64; it must be {slow_dtype}"),
        (replaced(lists, 6, 0, momentum[0].to(torch.uint8)), f"{op}: pair 0: momentum has dtype torch.uint8; it must be torch.int8"),
        (replaced(lists, 7, 1, scales[1][:1]), f"{op}: pair 1: scales has shape \\(1,\\); it must be \\(2,\\)"),
        (replaced(lists, 6, 2, torch.zeros(2, dtype=torch.int8)), f"{op}: pair 2: param has shape \\(1,\\) but momentum"),
        (replaced(lists, 2, 1, lists[2][1].double()), f"{op}: pair 1: exp_avg has dtype torch.float64 but param"),
        ([*lists[:4], slow[:2], *lists[5:]], f"{op}: param has 3 tensors but slow has 2"),
        ([*lists[:7], scales[:1]], f"{op}: param has 3 tensors but scales has 1"),
        (replaced(lists, 6, 2, momentum[1][:1]), f"{op}: pair 1 \\(momentum\\) and pair 2 \\(momentum\\) share memory"),
        (replaced(lists, 7, 2, lists[3][2]), f"{op}: pair 2 \\(exp_avg_sq\\) and pair 2 \\(scales\\) share memory"),
        # two defects: each param before its grad and moments, pair by pair, as in C++
        (replaced(replaced(lists, 1, 0, lists[1][0].double()), 0, 1, torch.zeros(600)[::2]),
         f"{op}: pair 0: grad has dtype torch.float64 but param has torch.float32"),
    ]
    if storage == "bf16+int8":
        cases.append((replaced(lists, 5, 0, lists[5][0].to(torch.uint8)), f"{op}: pair 0: slow_low has dtype torch.uint8"))
        cases.append(([*lists[:5], lists[5][:1], *lists[6:]], f"{op}: param has 3 tensors but slow_low has 1"))
    rows = torch.zeros(3, dtype=torch.int64)
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            run(bad, "cpu", backend, hyper_of(sync=1.0), rows)
    with pytest.raises(ValueError, match=f"{op}: pair 0: param has dtype torch.float64; "):
        doubles = [[t.double() for t in tensors] for tensors in lists[:4]]
        run([*doubles, *lists[4:]], "cpu", backend, hyper_of(sync=1.0), rows)
    with pytest.raises(ValueError, match=f"{op}: outer momentum mu must be a finite number in \\[0, 1\\), got 1.5"):
        ops.lookahead_adamw_int8_momentum_step_(*lists[:5], momentum, scales, hyper_of(sync=1.0), rows,
                                                slow_low=lists[5] or None, mu=1.5, backend=backend)  # fmt: skip
    for tensors, kept in zip(lists, held):
        for t, k in zip(tensors, kept):
            assert same_bits(t, k), "a refused call wrote"
