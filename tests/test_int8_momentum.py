"""momentum_dtype="int8": the outer momentum as int8 codes with one float32 scale per block of 256
(see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py;
see [NOTE: int8 outer momentum] in lookahead_fused/options.py). The encoding against an independent float64 computation; the op on every
backend against the float64 momentum sync of the same stored values (within the encoding's bound) and
bit for bit against the reference; the gate; refusals before any write; and in the optimizer: bytes,
checkpoints, conversions and what is refused."""

import copy
import math

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, int8_blocks, ops
from lookahead_fused.backends import reference
from lookahead_fused.slow_state import OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES, SLOW_PARAM

from .helpers import assert_bitwise_equal, make_params, run, snapshot

SHAPES = ((3, 4), (3,), (300,), (2, 3, 5, 7))
OPTIONS = {"k": 3, "alpha": 0.7, "outer_momentum": 0.9, "nesterov": True, "momentum_dtype": "int8"}
NUMELS = (0, 1, 255, 256, 257, 1000)
FP32_ULP = 2.0**-23


def blocks_in_float64(x: torch.Tensor) -> list[torch.Tensor]:
    return [x[i : i + 256].double() for i in range(0, x.numel(), 256)]


@pytest.mark.parametrize("numel", NUMELS)
def test_the_encoding_is_within_its_bound_of_every_value_in_float64(numel):
    """Each block's codes are round(x * 127 / a) (off by at most one where float32 rounding meets a tie),
    its scale a / 127, and every decoded value within a / 254 + 2^-20 a of x."""
    x = torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * torch.logspace(-3, 3, max(numel, 1))[:numel]
    codes, scales = int8_blocks.encode(x)
    assert codes.dtype == torch.int8 and scales.shape == (math.ceil(numel / 256),)
    decoded = int8_blocks.decode(codes, scales).double()
    for b, block in enumerate(blocks_in_float64(x)):
        a = block.abs().max()
        assert abs(scales[b].item() - a.item() / 127) <= a.item() / 127 * FP32_ULP
        exact = block * 127 / a
        assert ((codes[b * 256 : b * 256 + block.numel()].double() - exact).abs() <= 0.5 + 1e-4).all()
        error = (decoded[b * 256 : b * 256 + block.numel()] - block).abs()
        assert (error <= a / 254 + a * 2.0**-20).all()
        assert error.max() <= 0.004 * a


def test_a_non_finite_block_decodes_to_nan_and_a_tiny_block_to_zero():
    x = torch.randn(768)
    x[300] = math.inf
    x[600:768] = 2.0**-97
    x[512:600] = 0.0
    codes, scales = int8_blocks.encode(x)
    assert math.isnan(scales[1]) and (codes[256:512] == 0).all()
    assert scales[2].item() == 0.0 and (codes[512:] == 0).all()
    decoded = int8_blocks.decode(codes, scales)
    assert decoded[256:512].isnan().all() and (decoded[512:] == 0).all()
    assert torch.equal(decoded[:256], int8_blocks.decode(*int8_blocks.encode(x[:256])))


def test_memory_order_is_the_storage_order_and_back():
    t = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    flat = int8_blocks.memory_order(t)
    storage = torch.as_strided(t, (t.numel(),), (1,))
    assert torch.equal(flat, storage)
    assert torch.equal(int8_blocks.from_memory_order(flat, t), t)


def _op_inputs(numel: int, fast_dtype: torch.dtype, seed: int, channels_last: bool = False):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 4, 4, numel // 32) if channels_last else (numel,)
    fast = torch.randn(shape, generator=g).to(fast_dtype)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    slow = (fast.float() + 0.05 * torch.randn(shape, generator=g)).to(memory_format=torch.preserve_format)
    slow = torch.empty_like(fast, dtype=torch.float32).copy_(slow)
    momentum_value = 0.1 * torch.randn(fast.numel(), generator=g)
    codes, scales = int8_blocks.encode(momentum_value)
    momentum = int8_blocks.from_memory_order(codes, fast)
    momentum = torch.empty_like(fast, dtype=torch.int8).copy_(momentum)
    return fast, slow, momentum, scales


def _inputs(fast_dtype, seed=0):
    lists = [_op_inputs(n, fast_dtype, seed + i) for i, n in enumerate(NUMELS)]
    lists.append(_op_inputs(256, fast_dtype, seed + 99, channels_last=True))
    return [list(column) for column in zip(*lists)]


@pytest.mark.parametrize("fast_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mu,nesterov,alpha", [(0.9, True, 0.5), (0.9, False, 0.3), (0.5, True, 1.0), (0.9, True, 0.0)])
def test_the_op_is_the_float64_momentum_sync_within_the_encodings_bound(backend, fast_dtype, mu, nesterov, alpha):
    """Per element: the decoded new momentum within its block's a / 254 + 2^-20 a (a its float64 max |m|)
    plus float32 rounding; slow within 8 float32 ulp plus what the rounded momentum moves Nesterov's
    target (alpha mu times that bound); fast == slow cast exactly."""
    fast, slow, momentum, scales = _inputs(fast_dtype)
    expected = [reference.int8_momentum_sync_float64(*t, alpha, mu, nesterov) for t in zip(fast, slow, momentum, scales)]
    ops.lookahead_int8_momentum_sync_(fast, slow, momentum, scales, alpha, mu, nesterov, backend=backend)
    for f, s, q, sc, (s64, m64) in zip(fast, slow, momentum, scales, expected):
        decoded = int8_blocks.decode(int8_blocks.memory_order(q), sc).double()
        largest = max([m64.abs().max().item() if m64.numel() else 0.0, s64.abs().max().item() if s64.numel() else 0.0, 1.0])
        for b, block in enumerate(blocks_in_float64(m64)):
            a = block.abs().max()
            error = (decoded[b * 256 : b * 256 + block.numel()] - block).abs()
            assert (error <= a / 254 + a * 2.0**-20 + 4 * FP32_ULP * largest).all()
        bound = 8 * FP32_ULP * largest + (alpha * mu * (m64.abs().max() / 250) if nesterov and m64.numel() else 0.0)
        assert ((int8_blocks.memory_order(s).double() - s64).abs() <= bound).all()
        assert torch.equal(f, s.to(fast_dtype))


@pytest.mark.parametrize("fast_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_every_backend_gives_the_reference_bits(backend, fast_dtype):
    results = []
    for name in ("reference", backend):
        lists = _inputs(fast_dtype, seed=5)
        lists[0][3][7] = math.nan  # a NaN in one block of one tensor
        ops.lookahead_int8_momentum_sync_(*lists, 0.6, 0.9, True, backend=name)
        results.append(lists)
    for ours, theirs in zip(results[1], results[0]):
        for a, b in zip(ours, theirs):
            assert torch.equal(a.view(torch.uint8) if a.dtype == torch.int8 else a, b.view(torch.uint8) if b.dtype == torch.int8 else b) or (
                a.isnan().any() and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
            )


def test_mu_zero_is_the_plain_sync_bit_for_bit(backend):
    fast, slow, momentum, scales = _inputs(torch.float32, seed=7)
    plain_fast, plain_slow = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_(plain_fast, plain_slow, 0.5, backend=backend)
    ops.lookahead_int8_momentum_sync_(fast, slow, momentum, scales, 0.5, 0.0, False, backend=backend)
    assert_bitwise_equal(slow, plain_slow)
    assert_bitwise_equal(fast, plain_fast)


@pytest.mark.parametrize("step,syncs", [(6, True), (7, False)])
def test_the_gated_op_is_the_op_on_sync_steps_and_nothing_else(backend, step, syncs):
    gated, ungated = _inputs(torch.bfloat16, seed=11), _inputs(torch.bfloat16, seed=11)
    before = [snapshot(tensors) for tensors in gated]
    ops.lookahead_int8_momentum_sync_on_step_(*gated, 0.5, torch.tensor(step), 3, 0.9, True, backend=backend)
    if syncs:
        ops.lookahead_int8_momentum_sync_(*ungated, 0.5, 0.9, True, backend=backend)
        expected = ungated
    else:
        expected = before
    for ours, theirs in zip(gated, expected):
        assert_bitwise_equal(ours, theirs)


@pytest.mark.parametrize(
    "spoil,message",
    [
        (lambda f, s, m, sc: s.__setitem__(0, s[0].double()), r"pair 0: slow has dtype torch.float64; it must be torch.float32"),
        (lambda f, s, m, sc: m.__setitem__(1, m[1].to(torch.uint8)), r"pair 1: momentum has dtype torch.uint8; it must be torch.int8"),
        (lambda f, s, m, sc: sc.__setitem__(2, torch.zeros(2)), r"pair 2: scales has shape \(2,\); it must be \(1,\)"),
        (lambda f, s, m, sc: f.__setitem__(3, f[3].double()), r"pair 3: fast has dtype torch.float64; an int8 outer momentum"),
        (lambda f, s, m, sc: m.__setitem__(4, torch.zeros(514, dtype=torch.int8)[::2]),
         r"pair 4: momentum \(shape \(257,\), strides \(2,\)\) is not dense"),
        (lambda f, s, m, sc: sc.__setitem__(2, sc[1]), r"pair 1 \(scales\) and pair 2 \(scales\) share memory"),
        (lambda f, s, m, sc: s.pop(), r"fast has 7 tensors but slow has 6"),
    ],
)
def test_bad_lists_are_refused_before_any_write(backend, spoil, message):
    lists = _inputs(torch.float32, seed=13)
    spoil(*lists)
    before = [snapshot(tensors) for tensors in lists]
    with pytest.raises(ValueError, match=f"lookahead_int8_momentum_sync_: {message}"):
        ops.lookahead_int8_momentum_sync_(*lists, 0.5, 0.9, True, backend=backend)
    for ours, theirs in zip(lists, before):
        assert_bitwise_equal(ours, theirs)


def build(params, **options):
    return Lookahead(torch.optim.SGD(params, lr=0.05, momentum=0.9), **{**OPTIONS, **options})


def test_the_outer_momentum_takes_one_byte_and_a_scale_per_256_weights():
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params)
    for p in params:
        state = opt.state[p]
        assert state[SLOW_PARAM].dtype == torch.float32 and state[OUTER_MOMENTUM].dtype == torch.int8
        assert state[OUTER_MOMENTUM].untyped_storage().nbytes() == p.numel()
        assert state[OUTER_MOMENTUM_SCALES].untyped_storage().nbytes() == 4 * math.ceil(p.numel() / 256)
    bf16_params = make_params(dtype=torch.bfloat16, shapes=SHAPES)
    opt = build(bf16_params, slow_dtype=torch.float32)
    assert all(opt.state[p][OUTER_MOMENTUM].dtype == torch.int8 for p in bf16_params)


def test_each_sync_keeps_the_momentum_within_one_percent_of_the_tensors_largest(backend):
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params, backend=backend)
    before = {}
    opt.optimizer.register_step_post_hook(
        lambda *_: before.update({id(p): snapshot([p, *(opt.state[p][key] for key in (SLOW_PARAM, OUTER_MOMENTUM,
                                                                                     OUTER_MOMENTUM_SCALES))])
                                  for p in params})
    )  # fmt: skip
    for step in range(12):
        run(opt, params, 1, first_step=step)
        if (step + 1) % OPTIONS["k"]:
            continue
        for p in params:
            _, expected_m = reference.int8_momentum_sync_float64(*before[id(p)], 0.7, 0.9, True)
            state = opt.state[p]
            m = int8_blocks.decode(int8_blocks.memory_order(state[OUTER_MOMENTUM]), state[OUTER_MOMENTUM_SCALES])
            assert (m.double() - expected_m).abs().max() <= 0.01 * expected_m.abs().max()
            assert torch.equal(p.detach(), state[SLOW_PARAM])


def test_the_gated_path_is_the_host_decided_one_bit_for_bit(backend):
    runs = []
    for options in ({"backend": backend}, {"backend": backend, "capturable": True}):
        params = make_params(dtype=torch.float32, shapes=SHAPES)
        run(build(params, **options), params, 10)
        runs.append(params)
    assert_bitwise_equal(runs[1], runs[0])


def test_checkpoint_mid_period_resumes_bit_for_bit(backend):
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params, backend=backend)
    run(opt, params, 7)
    saved = copy.deepcopy(opt.state_dict())
    assert saved["lookahead"]["momentum_dtype"] == "int8"
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = build(resumed_params, backend=backend)
    resumed.load_state_dict(saved)
    run(opt, params, 5, first_step=7)
    run(resumed, resumed_params, 5, first_step=7)
    assert_bitwise_equal(resumed_params, params)
    for key in (OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES):
        assert_bitwise_equal([resumed.state[p][key] for p in resumed_params], [opt.state[p][key] for p in params])


def test_a_param_in_a_new_memory_layout_takes_its_momentum_encoded_anew():
    """model.to(memory_format=...) changes the param's memory order, which the blocks follow: its momentum
    is decoded in the old order and encoded in the new one, and the sync goes on."""
    conv = torch.nn.Conv2d(8, 16, 3)
    opt = Lookahead(torch.optim.SGD(conv.parameters(), lr=0.05), k=1, alpha=0.5, outer_momentum=0.9,
                    momentum_dtype="int8")  # fmt: skip
    x = torch.randn(2, 8, 6, 6)
    conv(x).square().sum().backward()
    opt.step()
    weight = conv.weight
    before = opt.state[weight]
    value = int8_blocks.from_memory_order(
        int8_blocks.decode(int8_blocks.memory_order(before[OUTER_MOMENTUM]), before[OUTER_MOMENTUM_SCALES]),
        before[OUTER_MOMENTUM])  # fmt: skip
    conv.to(memory_format=torch.channels_last)
    opt.zero_grad()
    conv(x.to(memory_format=torch.channels_last)).square().sum().backward()
    opt._sync.launches()  # the check before a sync: the slow state follows the param
    state = opt.state[weight]
    assert state[OUTER_MOMENTUM].stride() == weight.stride()
    assert_bitwise_equal([int8_blocks.memory_order(state[OUTER_MOMENTUM]), state[OUTER_MOMENTUM_SCALES]],
                         list(int8_blocks.encode(int8_blocks.memory_order(value, weight))))  # fmt: skip
    opt.step()
    assert torch.equal(weight.detach(), state[SLOW_PARAM])


def _conv_run(conv, opt, steps, channels_last=False):
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        x = torch.randn(2, 8, 6, 6, generator=g).to(next(conv.parameters()).dtype)
        opt.zero_grad()
        conv(x.to(memory_format=torch.channels_last) if channels_last else x).float().square().sum().backward()
        opt.step()


def _int8_conv(seed=0):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(8, 16, 3).to(memory_format=torch.channels_last)
    return conv, Lookahead(torch.optim.SGD(conv.parameters(), lr=0.01), k=2, alpha=0.5, outer_momentum=0.9,
                           momentum_dtype="int8")  # fmt: skip


def test_a_checkpoint_whose_tensors_were_made_contiguous_resumes_bit_for_bit():
    """The blocks of a channels_last param follow its memory order; a tool that saves the codes
    contiguous (safetensors, .contiguous()) keeps their values, and the saved dims order says how the
    blocks were cut, so the resume is bit for bit."""
    conv, opt = _int8_conv()
    _conv_run(conv, opt, 3, channels_last=True)
    saved = copy.deepcopy(opt.state_dict())
    for entry in saved["state"].values():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                entry[key] = value.contiguous()
    resumed_conv, resumed = _int8_conv(seed=1)
    resumed_conv.load_state_dict(conv.state_dict())
    resumed.load_state_dict(saved)
    _conv_run(conv, opt, 3, channels_last=True)
    _conv_run(resumed_conv, resumed, 3, channels_last=True)
    assert_bitwise_equal(list(resumed_conv.parameters()), list(conv.parameters()))


def test_a_param_made_float16_keeps_syncing_with_its_momentum_in_float16():
    """int8 blocks sit beside float32 slow weights only: a param made float16 after it joined loads its
    slow weights as float16, its momentum follows them (decoded), and its sync runs in the momentum
    sync's launch, also after a new memory layout."""
    conv, opt = _int8_conv()
    _conv_run(conv, opt, 3, channels_last=True)
    saved = opt.state_dict()
    conv.half()
    opt.load_state_dict(saved)
    weight = conv.weight
    assert opt.state[weight][OUTER_MOMENTUM].dtype == torch.float16 and OUTER_MOMENTUM_SCALES not in opt.state[weight]
    _conv_run(conv, opt, 2, channels_last=True)
    conv.to(memory_format=torch.contiguous_format)
    _conv_run(conv, opt, 3)  # the 8th step: a sync
    assert torch.equal(weight.detach(), opt.state[weight][SLOW_PARAM])


def test_an_int8_momentum_in_a_new_layout_stays_int8_beside_float32_slow_weights():
    """A param made float16 keeps its float32 slow weights until a load; a new memory layout then encodes
    its int8 momentum anew, still int8 (the kind its state holds, not one guessed from the param)."""
    conv, opt = _int8_conv()
    _conv_run(conv, opt, 3, channels_last=True)
    conv.half()
    conv.to(memory_format=torch.contiguous_format)
    _conv_run(conv, opt, 2)
    state = opt.state[conv.weight]
    assert state[OUTER_MOMENTUM].dtype == torch.int8 and state[SLOW_PARAM].dtype == torch.float32
    assert state[OUTER_MOMENTUM].stride() == conv.weight.stride()


@pytest.mark.parametrize("saved_dtype,loading_dtype", [(None, "int8"), ("int8", None), ("int8", torch.bfloat16)])
def test_a_checkpoint_of_another_momentum_dtype_converts_with_one_warning(saved_dtype, loading_dtype):
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params, momentum_dtype=saved_dtype)
    run(opt, params, 4)
    saved = opt.state_dict()
    loading = build([torch.nn.Parameter(p.detach().clone()) for p in params], momentum_dtype=loading_dtype)
    with pytest.warns(UserWarning, match="momentum_dtype") as caught:
        loading.load_state_dict(saved)
    assert len([w for w in caught if "momentum_dtype" in str(w.message)]) == 1
    for p, q in zip(params, loading.param_groups[0]["params"]):
        theirs, ours = opt.state[p], loading.state[q]
        value = int8_blocks.decode(int8_blocks.memory_order(theirs[OUTER_MOMENTUM]), theirs.get(OUTER_MOMENTUM_SCALES)) \
            if saved_dtype == "int8" else int8_blocks.memory_order(theirs[OUTER_MOMENTUM])  # fmt: skip
        if loading_dtype == "int8":
            assert ours[OUTER_MOMENTUM].dtype == torch.int8
            assert_bitwise_equal(
                [int8_blocks.memory_order(ours[OUTER_MOMENTUM]), ours[OUTER_MOMENTUM_SCALES]], list(int8_blocks.encode(value))
            )
        else:
            assert OUTER_MOMENTUM_SCALES not in ours
            assert torch.equal(int8_blocks.memory_order(ours[OUTER_MOMENTUM]), value.to(ours[OUTER_MOMENTUM].dtype))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"momentum_dtype": "int4"}, r"momentum_dtype must be None \(the slow weights' dtype\), torch.bfloat16 or 'int8'"),
        ({"outer_momentum": 0.0, "nesterov": False}, "momentum_dtype=int8 needs outer_momentum > 0"),
    ],
)
def test_refused_options(options, message):
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    with pytest.raises(ValueError, match=message):
        build(params, **options)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_params_whose_slow_weights_are_not_float32_are_refused(dtype):
    params = make_params(dtype=dtype, shapes=SHAPES)
    before = snapshot(params)
    with pytest.raises(ValueError, match=f"param 0: its slow weights are {dtype}; momentum_dtype=int8 keeps"):
        build(params)
    assert_bitwise_equal(params, before)


def test_lookahead_adamw_syncs_it_inside_its_pass(backend):
    """LookaheadAdamW(momentum_dtype="int8"): the int8 momentum sync inside AdamW's fused pass; the
    host-decided and gated paths bit for bit alike, and Lookahead(AdamW) with the same options within
    float32 rounding (the fused AdamW rounds like torch's to a few ulp). The one pass a step and its bits
    against a twin that syncs apart: tests/test_compact_slow_weights.py."""
    runs = []
    for options in ({"backend": backend}, {"backend": backend, "capturable": True}):
        params = make_params(dtype=torch.float32, shapes=SHAPES)
        opt = LookaheadAdamW(params, lr=0.05, weight_decay=0.01, **OPTIONS, **options)
        run(opt, params, 10)
        assert all(opt.state[p][OUTER_MOMENTUM].dtype == torch.int8 for p in params)
        runs.append(params)
    assert_bitwise_equal(runs[1], runs[0])
    composed_params = make_params(dtype=torch.float32, shapes=SHAPES)
    composed = Lookahead(torch.optim.AdamW(composed_params, lr=0.05, weight_decay=0.01), **OPTIONS, backend=backend)
    run(composed, composed_params, 10)
    for ours, theirs in zip(runs[0], composed_params):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
