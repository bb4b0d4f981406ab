"""lookahead_compact_sync_ with an int8 outer momentum, the int8 momentum sync of slow weights kept as
bf16+int8 (see [NOTE: compact int8 momentum sync] in csrc/element_math.h), and its step-gated form, for
every (device, backend) usable here (tests/matrix.py): against the float64 momentum sync of the stored
values within the int8 encoding's bound plus the bf16+int8 one; bit for bit against the reference,
which is the int8 momentum sync of the decoded slow weights followed by their encoding; mu = 0 is the
compact sync bit for bit; the gate; refusals before any write. Then Lookahead(slow_dtype="bf16+int8",
momentum_dtype="int8"): its bytes, each sync of step() against float64, checkpoints and conversions.
The generic behaviours (capturable, compile, slow_weights(), bad input) run on its records in
tests/test_optimizer_matrix.py."""

import copy
import math

import pytest
import torch

from lookahead_fused import LookaheadAdamW, bf16_int8, contract, int8_blocks, ops
from lookahead_fused.backends import reference
from lookahead_fused.contract import COMPACT_FAST_DTYPES
from lookahead_fused.slow_state import OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES, SLOW_HIGH, SLOW_LOW, SLOW_PARAM

from .helpers import assert_bitwise_equal, make_params, run, snapshot
from .matrix import dtype_id, ulp
from .test_compact_slow_weights import check_each_sync_of_step, compact_lookahead

NUMELS = (0, 1, 255, 256, 257, 1000)
SHAPES = ((6, 5), (6,), (300,))
OPTIONS = {"alpha": 0.7, "outer_momentum": 0.9, "nesterov": True, "momentum_dtype": "int8"}
STATE_KEYS = (SLOW_HIGH, SLOW_LOW, OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES)


def _entry(numel: int, fast_dtype: torch.dtype, seed: int, device: str, offset: int, channels_last=False):
    """One entry: fast, its slow weight as (high, low) near it, an int8 momentum; `offset` elements into
    a buffer breaks the 16-byte alignment of fast and the state tensors."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, 4, 4, numel // 32) if channels_last else (numel,)
    fast = torch.randn(shape, generator=g).to(fast_dtype)
    slow = fast.float() + 0.05 * torch.randn(shape, generator=g)
    codes, scales = int8_blocks.encode(0.1 * torch.randn(fast.numel(), generator=g))
    if channels_last:
        fast, slow = (t.contiguous(memory_format=torch.channels_last) for t in (fast, slow))
    high, low = bf16_int8.encode(slow)
    momentum = torch.empty_like(fast, dtype=torch.int8).copy_(int8_blocks.from_memory_order(codes, fast))

    def placed(t):  # a copy `offset` elements into a buffer of its own, in t's layout
        if offset == 0:
            return t.to(device)
        return torch.empty(t.numel() + offset, dtype=t.dtype, device=device)[offset:].view(t.shape).copy_(t)

    return placed(fast), placed(high), placed(low), placed(momentum), scales.to(device)


def make_lists(fast_dtype, device="cpu", seed=0, offset=0):
    entries = [_entry(n, fast_dtype, seed + i, device, offset) for i, n in enumerate(NUMELS)]
    entries.append(_entry(256, fast_dtype, seed + 99, device, 0, channels_last=True))
    return [list(column) for column in zip(*entries)]


def check_lists(before, after, alpha, mu, nesterov):
    """Each entry after a compact int8 momentum sync: a valid encoding, fast its decoded value cast
    exactly; the decoded momentum within its block's a / 254 + 2^-20 a of the float64 mu m + (f - s),
    plus 4 float32 ulp; the decoded slow weight within 8 float32 ulp of the float64 lerp (plus alpha mu
    a / 250 when Nesterov reads the encoded momentum) plus the bf16+int8 encoding's bound."""
    for i, tensors in enumerate(zip(*before, *after)):
        f0, h0, q0, m0, sc0, f, h, q, m, sc = (t.detach().cpu() for t in tensors)
        decoded = bf16_int8.decode(h, q)
        again = bf16_int8.encode(decoded)
        assert torch.equal(again[0], h) and torch.equal(again[1], q), f"pair {i}: not an encoding the encoder makes"
        assert torch.equal(f, decoded.to(f.dtype)), f"pair {i}: fast != the decoded slow weight cast to fast's dtype"
        s64, m64 = reference.compact_int8_momentum_sync_float64(f0, h0, q0, m0, sc0, alpha, mu, nesterov)
        if not f.numel():
            continue
        largest = max(m64.abs().max().item(), s64.abs().max().item(), 1.0)
        stored = int8_blocks.decode(int8_blocks.memory_order(m), sc).double()
        for b in range(0, m64.numel(), int8_blocks.BLOCK):
            block = m64[b : b + int8_blocks.BLOCK]
            a = block.abs().max()
            error = (stored[b : b + int8_blocks.BLOCK] - block).abs()
            assert (error <= a / 254 + a * 2.0**-20 + 4 * 2.0**-23 * largest).all(), f"pair {i}: momentum off"
        lerp_error = 8 * ulp(torch.full_like(s64, largest), torch.float32)
        if nesterov:
            lerp_error = lerp_error + alpha * mu * m64.abs().max() / 250
        bound = lerp_error + bf16_int8.error_bound(s64.abs() + lerp_error)
        error = (int8_blocks.memory_order(decoded).double() - s64).abs()
        assert (error <= bound).all(), f"pair {i}: slow weight error reaches {(error / bound).max():.2f} x the bound"


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("mu,nesterov,alpha", [(0.9, True, 0.5), (0.9, False, 0.3), (0.5, True, 1.0)])
@pytest.mark.parametrize("fast_dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_the_op_is_the_float64_momentum_sync_within_both_encodings_bounds(device_backend, fast_dtype, mu, nesterov,
                                                                          alpha, offset):  # fmt: skip
    device, backend = device_backend
    lists = make_lists(fast_dtype, device, offset=offset)
    before = [snapshot(tensors) for tensors in lists]
    ops.lookahead_compact_sync_(*lists[:3], alpha, momentum=lists[3], momentum_scales=lists[4], mu=mu,
                                nesterov=nesterov, backend=backend)  # fmt: skip
    check_lists(before, lists, alpha, mu, nesterov)


@pytest.mark.parametrize("fast_dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_every_backend_gives_the_reference_bits(device_backend, fast_dtype):
    """The int8 momentum sync of the decoded slow weights, then their encoding: the reference's bits, a
    NaN block (its scale NaN, its slow weights NaN) included."""
    device, backend = device_backend
    results = []
    for name, where in (("reference", "cpu"), (backend, device)):
        lists = make_lists(fast_dtype, where, seed=5)
        lists[0][3][7] = math.nan
        ops.lookahead_compact_sync_(*lists[:3], 0.6, momentum=lists[3], momentum_scales=lists[4], mu=0.9,
                                    nesterov=True, backend=name)  # fmt: skip
        results.append([[t.cpu() for t in tensors] for tensors in lists])
    for ours, theirs in zip(*results):
        for a, b in zip(ours, theirs):
            assert torch.equal(a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan())


def test_mu_zero_is_the_compact_sync_bit_for_bit(device_backend):
    device, backend = device_backend
    lists = make_lists(torch.bfloat16, device, seed=7)
    plain = [snapshot(tensors) for tensors in lists[:3]]
    ops.lookahead_compact_sync_(*plain, 0.5, backend=backend)
    ops.lookahead_compact_sync_(*lists[:3], 0.5, momentum=lists[3], momentum_scales=lists[4], mu=0.0, backend=backend)
    for ours, theirs in zip(lists[:3], plain):
        assert_bitwise_equal(ours, theirs)


@pytest.mark.parametrize("step,syncs", [(6, True), (7, False)])
def test_the_gated_op_is_the_op_on_sync_steps_and_nothing_else(device_backend, step, syncs):
    device, backend = device_backend
    gated, ungated = make_lists(torch.float16, device, seed=11), make_lists(torch.float16, device, seed=11)
    before = [snapshot(tensors) for tensors in gated]
    ops.lookahead_compact_sync_on_step_(*gated[:3], 0.5, torch.tensor(step, device=device), 3, momentum=gated[3],
                                        momentum_scales=gated[4], mu=0.9, nesterov=True, backend=backend)  # fmt: skip
    if syncs:
        ops.lookahead_compact_sync_(*ungated[:3], 0.5, momentum=ungated[3], momentum_scales=ungated[4], mu=0.9,
                                    nesterov=True, backend=backend)  # fmt: skip
    for ours, theirs in zip(gated, ungated if syncs else before):
        assert_bitwise_equal(ours, theirs)


@pytest.mark.parametrize(
    "spoil,message",
    [
        (lambda f, h, q, m, sc: m.__setitem__(1, m[1].to(torch.uint8)), r"pair 1: momentum has dtype torch.uint8; it must be torch.int8"),
        (lambda f, h, q, m, sc: sc.__setitem__(2, torch.zeros(2)), r"pair 2: scales has shape \(2,\); it must be \(1,\)"),
        (lambda f, h, q, m, sc: sc.__setitem__(3, sc[3].double()), r"pair 3: scales has dtype torch.float64; it must be torch.float32"),
        (lambda f, h, q, m, sc: h.__setitem__(4, h[4].float()), r"pair 4: slow_high has dtype torch.float32; it must be torch.bfloat16"),
        (lambda f, h, q, m, sc: m.__setitem__(4, torch.zeros(514, dtype=torch.int8)[::2]),
         r"pair 4: momentum \(shape \(257,\), strides \(2,\)\) is not dense"),
        (lambda f, h, q, m, sc: sc.__setitem__(2, sc[1]), r"pair 1 \(scales\) and pair 2 \(scales\) share memory"),
        (lambda f, h, q, m, sc: sc.pop(), r"fast has 7 tensors but scales has 6"),
    ],
)
def test_bad_lists_are_refused_before_any_write(backend, spoil, message):
    lists = make_lists(torch.float32, seed=13)
    spoil(*lists)
    before = [snapshot(tensors) for tensors in lists]
    with pytest.raises(ValueError, match=f"lookahead_compact_sync_: {message}"):
        ops.lookahead_compact_sync_(*lists[:3], 0.5, momentum=lists[3], momentum_scales=lists[4], mu=0.9,
                                    backend=backend)  # fmt: skip
    for ours, theirs in zip(lists, before):
        assert_bitwise_equal(ours, theirs)


def test_scales_without_a_momentum_are_refused(backend):
    lists = make_lists(torch.float32, seed=13)
    with pytest.raises(ValueError, match="momentum_scales without momentum"):
        ops.lookahead_compact_sync_(*lists[:3], 0.5, momentum_scales=lists[4], mu=0.9, backend=backend)


@pytest.mark.parametrize("dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_the_slow_state_is_4_bytes_and_a_scale_per_256_weights(dtype):
    params = make_params(dtype, shapes=SHAPES)
    opt = compact_lookahead(params, **OPTIONS)
    for p in params:
        state = {key: t for key, t in opt.state[p].items() if isinstance(t, torch.Tensor)}
        assert set(state) == set(STATE_KEYS)
        assert sum(t.untyped_storage().nbytes() for t in state.values()) == 4 * p.numel() + 4 * math.ceil(p.numel() / 256)


@pytest.mark.parametrize("dtype", COMPACT_FAST_DTYPES, ids=dtype_id)
def test_each_sync_of_step_is_the_float64_momentum_sync_within_its_bounds(backend, dtype):
    params = make_params(dtype, shapes=SHAPES)
    opt = compact_lookahead(params, backend=backend, **OPTIONS)
    check_each_sync_of_step(opt, params, STATE_KEYS, lambda before, after: check_lists(before, after, 0.7, 0.9, True))


def test_the_gated_path_is_the_host_decided_one_bit_for_bit(backend):
    runs = []
    for capturable in (False, True):
        params = make_params(torch.float32, shapes=SHAPES)
        run(compact_lookahead(params, backend=backend, capturable=capturable, **OPTIONS), params, 10)
        runs.append(params)
    assert_bitwise_equal(runs[1], runs[0])


@pytest.mark.parametrize("build", [compact_lookahead, lambda params, **options: LookaheadAdamW(
    params, lr=0.01, k=3, slow_dtype=bf16_int8.SLOW_DTYPE, **options)], ids=["Lookahead", "LookaheadAdamW"])  # fmt: skip
def test_checkpoint_mid_period_resumes_bit_for_bit(backend, build):
    params = make_params(torch.float32, shapes=SHAPES)
    opt = build(params, backend=backend, **OPTIONS)
    run(opt, params, 7)
    saved = copy.deepcopy(opt.state_dict())
    assert saved["lookahead"]["momentum_dtype"] == "int8" and saved["lookahead"]["slow_dtype"] == "bf16+int8"
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = build(resumed_params, backend=backend, **OPTIONS)
    resumed.load_state_dict(saved)
    run(opt, params, 5, first_step=7)
    run(resumed, resumed_params, 5, first_step=7)
    assert_bitwise_equal(resumed_params, params)
    for key in STATE_KEYS:
        assert_bitwise_equal([resumed.state[p][key] for p in resumed_params], [opt.state[p][key] for p in params])


def test_an_exact_checkpoint_converts_to_both_encodings_and_back_with_a_warning_each():
    """float32 slow weights and momentum load into bf16+int8 beside an int8 momentum: one warning for the
    slow weights, one for the momentum, each within its encoding's bound; and the compact checkpoint
    loads back into the exact optimizer, decoded, with the same two warnings."""
    params = make_params(torch.float32, shapes=SHAPES)
    exact = compact_lookahead(params, slow_dtype=None, alpha=0.7, outer_momentum=0.9, nesterov=True)
    run(exact, params, 4)
    compact_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    compact = compact_lookahead(compact_params, **OPTIONS)
    with pytest.warns(UserWarning) as caught:
        compact.load_state_dict(exact.state_dict())
    messages = [str(w.message) for w in caught]
    assert sum("slow_dtype" in m for m in messages) == 1 and sum("momentum_dtype" in m for m in messages) == 1
    for p, q in zip(params, compact_params):
        theirs, ours = exact.state[p], compact.state[q]
        slow = bf16_int8.decode(ours[SLOW_HIGH], ours[SLOW_LOW]).double()
        assert ((slow - theirs[SLOW_PARAM].double()).abs() <= bf16_int8.error_bound(theirs[SLOW_PARAM])).all()
        momentum = int8_blocks.decode(int8_blocks.memory_order(ours[OUTER_MOMENTUM]), ours[OUTER_MOMENTUM_SCALES])
        value = int8_blocks.memory_order(theirs[OUTER_MOMENTUM]).double()
        assert (momentum.double() - value).abs().max() <= value.abs().max() / 250
    back = compact_lookahead([torch.nn.Parameter(p.detach().clone()) for p in params], slow_dtype=None, alpha=0.7,
                             outer_momentum=0.9, nesterov=True)  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        back.load_state_dict(compact.state_dict())
    messages = [str(w.message) for w in caught]
    assert sum("slow_dtype" in m for m in messages) == 1 and sum("momentum_dtype" in m for m in messages) == 1
    for p, q in zip(back.param_groups[0]["params"], compact_params):
        ours, theirs = back.state[p], compact.state[q]
        assert torch.equal(ours[SLOW_PARAM], bf16_int8.decode(theirs[SLOW_HIGH], theirs[SLOW_LOW]))
        assert torch.equal(int8_blocks.memory_order(ours[OUTER_MOMENTUM]),
                           int8_blocks.decode(int8_blocks.memory_order(theirs[OUTER_MOMENTUM]),
                                              theirs[OUTER_MOMENTUM_SCALES]))  # fmt: skip
    run(back, back.param_groups[0]["params"], 3, first_step=4)  # and it goes on


@pytest.mark.parametrize("capturable", [False, True], ids=["host", "gated"])
def test_a_strided_param_syncs_through_the_reference_loop_as_a_dense_one_does(capturable):
    """A strided view syncs through the reference's loop (the gated path: its masked form) beside the
    fused launch: the same bits as the same values in a dense param, and the param equals its decoded
    slow weight after each sync."""
    strided = [torch.nn.Parameter(torch.randn(6, 20)[:, ::2]), torch.nn.Parameter(torch.randn(300))]
    dense = [torch.nn.Parameter(p.detach().clone(memory_format=torch.contiguous_format)) for p in strided]
    runs = []
    for params in (strided, dense):
        opt = compact_lookahead(params, capturable=capturable, **OPTIONS)
        g = torch.Generator().manual_seed(3)
        for _ in range(6):  # the same grads for both (a loss of a strided matmul would round otherwise)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        runs.append((opt, params))
    assert_bitwise_equal(runs[0][1], runs[1][1])
    opt, params = runs[0]
    for p in params:
        assert torch.equal(p.detach(), bf16_int8.decode(opt.state[p][SLOW_HIGH], opt.state[p][SLOW_LOW]))


def test_the_two_checks_refuse_scales_without_codes_in_the_same_words():
    lists = make_lists(torch.float32, seed=13)
    message = "lookahead_compact_sync_: fast has 7 tensors but momentum has 0"
    with pytest.raises(ValueError, match=message):
        contract.check_compact_lists(*lists[:3], None, lists[4])
    native = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")
    with pytest.raises(ValueError, match=message):
        native.check_compact_lists(*lists[:3], (), lists[4])
