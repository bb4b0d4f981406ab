"""lookahead_adamw_delta_step_, AdamW's step with int8-delta slow weights, on every backend
(see [NOTE: int8-delta] in csrc/adamw.h): the moments and the param against float64 AdamW; off a sync step the
stored offset exactly the encoding of the one the outputs imply (the slow weight before the step minus
the new param, in float32) and the slow weight kept within the encoding's bound of the one before; on
a sync step the param against the float64 lerp; a period's drift within the sum of its steps' bounds;
a non-finite block lost loudly; bad input refused before anything is written."""

import pytest
import torch

from lookahead_fused import int8_blocks, ops
from lookahead_fused.backends.reference import sync_float64

from .matrix import dtype_id, ulp
from .test_lookahead_adamw import ROW, adamw_lists, bounded, check_adamw_moments, hyper_of, within

SIZES = [1, 255, 256, 257, 700, 4097]  # inside one block, at a block's edge, several with a short last one
PARAM_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def delta_lists(dtype, device, offset=0, seed=0, sizes=SIZES):
    """params, grads, exp_avgs, exp_avg_sqs, and each param's offset state: int8 codes beside it (as far
    into a buffer as the param is) and its block scales, encoding 1 % of a random slow weight's distance
    from the param."""
    params, grads, exp_avgs, exp_avg_sqs, slow, _ = adamw_lists(dtype, torch.float32, device, offset, seed, sizes)
    codes, scales = [], []
    for p, s in zip(params, slow):
        q, sc = int8_blocks.encode(((s.float() - p.float()) * 0.01).cpu())
        codes.append(torch.empty(p.numel() + offset, dtype=torch.int8, device=device)[offset:].copy_(q))
        scales.append(sc.to(device))
    return [params, grads, exp_avgs, exp_avg_sqs, codes, scales]


def slow_of(p, q, sc):
    """The slow weight a state stands for, in float32 as the kernels decode it: p + q scale."""
    return p.float() + int8_blocks.decode(q, sc)


def slow_in_float64(p, q, sc):
    """The same without the float32 addition's rounding."""
    return p.double() + int8_blocks.decode(q, sc).double()


def run(lists, device, backend, **row):
    rows = torch.zeros(len(lists[0]), dtype=torch.int64, device=device)
    ops.lookahead_adamw_delta_step_(*lists, hyper_of(device, **row), rows, backend=backend)


def cpu_copies(lists):
    return [[t.cpu().clone() for t in tensors] for tensors in lists]


def assert_offset_encodes(i, before, after):
    """Off a sync step: param i's codes and scales are exactly the encoding of (its slow weight before the
    step, decoded in float32) - (its new param), in float32; returns that offset."""
    p0, q0, sc0 = before
    p, q, sc = after
    offset = slow_of(p0, q0, sc0) - p.float()
    expected_codes, expected_scales = int8_blocks.encode(offset)
    assert torch.equal(q, expected_codes), f"param {i}: the codes are not the encoding of the offset"
    assert torch.equal(sc, expected_scales), f"param {i}: the scales are not the encoding's"
    return offset


def step_bound(offset, slow_before):
    """How far one step off a sync may move a slow weight: the encoding's bound of the offset, half an
    ulp of the offset's float32 subtraction and of the slow weight's float32 decoding (one ulp each)."""
    return int8_blocks.error_bound(offset) + ulp(offset.double(), torch.float32) + ulp(slow_before.double(), torch.float32)


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
# the lerp's large side (0.5, 1.0) and its small one (0.3)
@pytest.mark.parametrize("sync,maximize,alpha", [(0, 0, 0.5), (0, 1, 0.5), (1, 0, 0.5), (1, 0, 0.3), (1, 1, 1.0)])
@pytest.mark.parametrize("offset", [0, 1])
def test_op_against_float64(device_backend, dtype, sync, maximize, alpha, offset):
    device, backend = device_backend
    lists = delta_lists(dtype, device, offset)
    before = cpu_copies(lists)
    row = dict(ROW, sync=float(sync), maximize=float(maximize), alpha=alpha)
    run(lists, device, backend, sync=float(sync), maximize=float(maximize), alpha=alpha)
    params, grads, exp_avgs, exp_avg_sqs, codes, scales = cpu_copies(lists)
    p0, _, _, _, q0, sc0 = before
    for i in range(len(SIZES)):
        p_new, update_scale = check_adamw_moments(i, [t[i] for t in before[:4]], exp_avgs[i], exp_avg_sqs[i], grads[i],
                                                  row, dtype)  # fmt: skip
        s0 = slow_of(p0[i], q0[i], sc0[i])
        kept = slow_in_float64(params[i], codes[i], scales[i])
        if not sync:
            within(params[i], p_new, update_scale, 8, dtype, f"param {i}: param")
            offset_ = assert_offset_encodes(i, (p0[i], q0[i], sc0[i]), (params[i], codes[i], scales[i]))
            bounded(kept, s0.double(), step_bound(offset_, s0), f"param {i}: the slow weight kept")
            continue
        # the lerp reads the param as rounded to its dtype: within the param's bound above of this
        fast = p_new.to(dtype).double()
        lerp_error = 8 * ulp(update_scale, dtype) + 8 * ulp(torch.maximum(fast.abs(), s0.double().abs()), torch.float32)
        expected = sync_float64(fast, s0.double(), alpha)
        bounded(params[i], expected, lerp_error + ulp(expected, dtype), f"param {i}: param after the sync")
        if dtype == torch.float32:  # the param holds the slow weight itself: the offset is zero
            assert not codes[i].any() and not scales[i].any(), f"param {i}: an offset beside a float32 param after the sync"
        offset_bound = int8_blocks.error_bound((expected - params[i].double()).abs() + lerp_error)
        bounded(kept, expected, lerp_error + offset_bound, f"param {i}: the slow weight after the sync")


@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=dtype_id)
def test_a_period_drifts_at_most_the_sum_of_its_steps_bounds(device_backend, dtype):
    """Off the sync steps the slow weight stays put up to the offset's re-encoding, which each step makes
    from the value it decoded to: after t steps it is within the sum of those t steps' bounds of where
    the period began (docs/design.md, "int8-delta"), and each step's codes are the exact encoding."""
    device, backend = device_backend
    lists = delta_lists(dtype, device, seed=3)
    start = [slow_in_float64(p, q, sc) for p, q, sc in zip(*(cpu_copies(lists)[n] for n in (0, 4, 5)))]
    drift = [torch.zeros(n, dtype=torch.float64) for n in SIZES]
    for step in range(4, 8):
        before = cpu_copies(lists)
        run(lists, device, backend, step=float(step))
        after = cpu_copies(lists)
        for i in range(len(SIZES)):
            state_before, state_after = ((t[n][i] for n in (0, 4, 5)) for t in (before, after))
            state_before = tuple(state_before)
            offset = assert_offset_encodes(i, state_before, tuple(state_after))
            drift[i] += step_bound(offset, slow_of(*state_before))
    for i, (p, q, sc) in enumerate(zip(*(cpu_copies(lists)[n] for n in (0, 4, 5)))):
        bounded(slow_in_float64(p, q, sc), start[i], drift[i], f"param {i}: the slow weight after four steps")


def test_each_param_takes_its_own_row_past_an_empty_one(device_backend):
    """Two rows, one that syncs and one that does not, alternating over the params, with an empty param in
    the middle: each param ends as a call of its own with its row leaves it, bit for bit."""
    device, backend = device_backend
    sizes = [300, 0, 257, 1, 700]
    lists = delta_lists(torch.bfloat16, device, sizes=sizes)
    alone = [[[t.clone()] for t in tensors] for tensors in zip(*lists)]  # per param, a call's lists of one
    rows_of = [i % 2 for i in range(len(sizes))]
    hyper = torch.cat([hyper_of(device, alpha=0.3), hyper_of(device, sync=1.0, alpha=0.7)])
    rows = torch.tensor(rows_of, dtype=torch.int64, device=device)
    ops.lookahead_adamw_delta_step_(*lists, hyper, rows, backend=backend)
    for i, (single, row) in enumerate(zip(alone, rows_of)):
        ops.lookahead_adamw_delta_step_(*single, hyper[row : row + 1].contiguous(),
                                        torch.zeros(1, dtype=torch.int64, device=device), backend=backend)  # fmt: skip
        for tensors, (got,) in zip(lists, single):
            assert torch.equal(tensors[i], got), f"param {i} (row {row}) left as its own call does not leave it"


def test_many_tensors_in_one_call_split_across_threads(backend):
    """Enough blocks for the CPU kernel's parallel region to split them, across tensors, mid-tensor."""
    sizes = [1 + (997 * i) % 3001 for i in range(300)]
    lists = delta_lists(torch.bfloat16, "cpu", sizes=sizes)
    before = cpu_copies(lists)
    run(lists, "cpu", backend)
    for i in range(len(sizes)):
        assert_offset_encodes(i, tuple(before[n][i] for n in (0, 4, 5)), tuple(lists[n][i] for n in (0, 4, 5)))


def test_a_non_finite_offset_loses_its_block_loudly(device_backend):
    """A NaN grad makes its param NaN and its block's offset unrepresentable: that block's scale becomes
    NaN and its codes 0 (its slow weights decode to NaN), and the other blocks keep theirs."""
    device, backend = device_backend
    lists = delta_lists(torch.float32, device, sizes=[700])
    lists[1][0][300] = float("nan")
    run(lists, device, backend)
    p, q, sc = (lists[n][0].cpu() for n in (0, 4, 5))
    assert torch.isnan(p[300]) and torch.isfinite(p[:300]).all() and torch.isfinite(p[301:]).all()
    assert torch.isnan(sc[1]) and not q[256:512].any()
    assert torch.isfinite(sc[[0, 2]]).all() and q[:256].any() and q[512:].any()


def replaced(lists, which, i, tensor):
    """`lists` with list `which`'s tensor i replaced by `tensor` (the others as they are)."""
    changed = [list(tensors) for tensors in lists]
    changed[which][i] = tensor
    return changed


def test_bad_input_is_refused_before_writing(backend):
    lists = delta_lists(torch.float32, "cpu")
    held = cpu_copies(lists)
    rows = torch.zeros(len(SIZES), dtype=torch.int64)
    codes, scales = lists[4], lists[5]
    float64_lists = [[t.double() for t in tensors] for tensors in lists[:4]] + lists[4:]
    cases = [
        (replaced(lists, 4, 1, codes[1].to(torch.uint8)), "pair 1: delta has dtype torch.uint8; it must be torch.int8"),
        (replaced(lists, 5, 2, torch.zeros(3)), r"pair 2: scales has shape \(3,\); it must be \(1,\)"),
        (replaced(lists, 4, 3, torch.zeros(258, dtype=torch.int8)), "pair 3: param has shape"),
        (replaced(lists, 4, 4, torch.zeros(1400, dtype=torch.int8)[::2]), "pair 4: delta .* is not dense"),
        (replaced(lists, 4, 1, codes[0].expand(255)), "pair 1: delta"),
        (replaced(lists, 4, 1, codes[4][:255]), "share memory"),
        (float64_lists, "pair 0: param has dtype torch.float64; int8-delta slow weights are for float32, float16"),
        ([*lists[:5], scales[:-1]], "param has 6 tensors but scales has 5"),
        (replaced(lists, 2, 0, lists[2][0].half()), "pair 0: exp_avg has dtype torch.float16 but param has torch.float32"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            ops.lookahead_adamw_delta_step_(*bad, hyper_of(), rows, backend=backend)
    with pytest.raises(ValueError, match="rows must be"):
        ops.lookahead_adamw_delta_step_(*lists, hyper_of(), rows[:2], backend=backend)
    with pytest.raises(ValueError, match="row"):
        ops.lookahead_adamw_delta_step_(*lists, hyper_of(), rows + 1, backend=backend)
    if backend in ("auto", "cpu"):  # the Python backends trust the values their caller wrote
        with pytest.raises(ValueError, match="out of range"):
            ops.lookahead_adamw_delta_step_(*lists, hyper_of(alpha=2.0), rows, backend=backend)
    for tensors, kept in zip(lists, held):
        for t, k in zip(tensors, kept):
            assert torch.equal(t, k), "a refused call wrote"

