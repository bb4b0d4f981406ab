"""Lookahead(slow_dtype="bf16+int8"): slow weights kept in 3 bytes (docs/design.md, "Compact slow
weights"). Each sync of step() against the float64 evaluation of that sync from the state before it
(within 2 float32 ulp plus the encoding's bound), the exact invariants after it, the bytes of the
state, checkpoints converting between exact and compact slow weights, and the options it refuses.
The generic behaviours (a checkpoint resumed mid-period bit for bit, slow_weights(), bad input) run
on its record in tests/test_optimizer_matrix.py."""

import copy
import warnings

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, bf16_int8, ops
from lookahead_fused import sync as sync_module
from lookahead_fused.backends.reference import sync_float64
from lookahead_fused.slow_state import SLOW_HIGH, SLOW_LOW, SLOW_MOMENTUM, SLOW_PARAM

from .helpers import compiled_beside_eager, make_params, run, set_grads
from .test_adamw_compact_step import same_bits
from .matrix import backends_under_test, dtype_id, ulp

SHAPES = ((6, 5), (6,), (40,))
COMPACT = bf16_int8.SLOW_DTYPE


def compact_lookahead(params, **options):
    return Lookahead(torch.optim.SGD(params, lr=0.05, momentum=0.9), **{"k": 3, "alpha": 0.5, "slow_dtype": COMPACT, **options})


def decoded(opt, p) -> torch.Tensor:
    return bf16_int8.decode(opt.state[p][SLOW_HIGH], opt.state[p][SLOW_LOW])


def slow_value(opt, p) -> torch.Tensor:
    """p's slow weight as stored: decoded, or float32."""
    return decoded(opt, p) if SLOW_HIGH in opt.state[p] else opt.state[p][SLOW_PARAM]


def twin_before_the_sync(opt, params):
    """A copy of (opt, params), its grads too, that has taken the inner step alone: the params and
    the inner state as the sync of opt.step() finds them."""
    twin_opt, twin_params = copy.deepcopy((opt, params))
    for twin, p in zip(twin_params, params):
        twin.grad = p.grad.clone()  # a Parameter's deepcopy leaves its grad behind
    twin_opt.optimizer.step()
    return twin_opt, twin_params


def check_each_sync_of_step(opt, params, keys, check_sync, steps=10):
    """Run `steps` steps of `opt` (k = 3): off a sync step the slow state under `keys` is unchanged and the
    params are the inner step's; on one, check_sync(before, after), each [params, *each key's tensors],
    before's params the inner step's (twin_before_the_sync)."""
    for step in range(steps):
        set_grads(params, step)
        states = [[opt.state[p][key].clone() for p in params] for key in keys]
        _, twin_params = twin_before_the_sync(opt, params)
        opt.step()
        after = [[opt.state[p][key] for p in params] for key in keys]
        if (step + 1) % 3:
            assert all(torch.equal(a, b) for x, y in zip(states, after) for a, b in zip(x, y))
            assert all(torch.equal(p, fast) for p, fast in zip(params, twin_params))
            continue
        check_sync([twin_params, *states], [[p.detach() for p in params], *after])


def assert_the_compact_sync_of(value, fast, old, alpha):
    """`value` (the decoded slow weight after a sync) is the float64 sync of `fast` with the old slow
    value within 2 float32 ulp (the lerp) plus the encoding's bound."""
    old = old.double()
    expected = sync_float64(fast.detach(), old, alpha)
    lerp_error = 2 * ulp(torch.maximum(fast.detach().double().abs(), old.abs()), torch.float32)
    bound = lerp_error + bf16_int8.error_bound(expected.abs() + lerp_error)
    assert ((value.double() - expected).abs() <= bound).all()


@pytest.mark.parametrize("backend", backends_under_test("cpu"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=dtype_id)
def test_each_sync_of_step_is_the_float64_sync_within_the_encodings_bound(dtype, backend):
    params = make_params(dtype, shapes=SHAPES)
    opt = compact_lookahead(params, backend=backend)
    for step in range(10):
        set_grads(params, step)
        states = [(opt.state[p][SLOW_HIGH].clone(), opt.state[p][SLOW_LOW].clone()) for p in params]
        _, twin_params = twin_before_the_sync(opt, params)
        opt.step()
        syncs = (step + 1) % 3 == 0
        for p, fast, (high, low) in zip(params, twin_params, states):
            if not syncs:
                assert torch.equal(opt.state[p][SLOW_HIGH], high) and torch.equal(opt.state[p][SLOW_LOW], low)
                assert torch.equal(p, fast)
                continue
            value = decoded(opt, p)
            assert torch.equal(p, value.to(dtype)), "the params are the decoded slow weights, cast"
            again = bf16_int8.encode(value)
            assert torch.equal(again[0], opt.state[p][SLOW_HIGH]) and torch.equal(again[1], opt.state[p][SLOW_LOW])
            assert_the_compact_sync_of(value, fast, bf16_int8.decode(high, low), 0.5)


# LookaheadAdamW's modes whose sync runs inside its pass: (params' dtype, options, the pass's op in ops)
IN_PASS_MODES = [
    *((dtype, dict(slow_dtype=COMPACT, **outer), "lookahead_adamw_compact_step_")
      for dtype in (torch.float32, torch.bfloat16, torch.float16)
      for outer in ({}, {"outer_momentum": 0.9, "nesterov": True},
                    {"outer_momentum": 0.5, "momentum_dtype": torch.bfloat16})),  # fmt: skip
    *((dtype, dict(slow_dtype=slow_dtype, outer_momentum=0.9, nesterov=nesterov, momentum_dtype="int8"),
       "lookahead_adamw_int8_momentum_step_")
      for dtype, slow_dtype, nesterov in ((torch.float32, COMPACT, True), (torch.float16, COMPACT, False),
                                          (torch.float32, None, False), (torch.bfloat16, torch.float32, True))),  # fmt: skip
]


def in_pass_id(mode) -> str:
    dtype, options, _ = mode
    return "-".join([dtype_id(dtype)] + [f"{k}={v}" for k, v in options.items()])


@pytest.mark.parametrize("backend", backends_under_test("cpu"))
@pytest.mark.parametrize("mode", IN_PASS_MODES, ids=in_pass_id)
def test_lookahead_adamw_syncs_inside_its_pass_as_its_pass_and_the_sync_would(mode, backend, monkeypatch):
    """LookaheadAdamW with bf16+int8 slow weights (see [NOTE: AdamW compact step] in csrc/adamw.h) or an
    int8 outer momentum (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h) runs one launch a step, its
    pass's op, which syncs the params with a grad, and no weights' launch of the sync beside it but for a
    param without a grad; every step gives, bit for bit, what its pass without slow weights followed by
    the sync's launch gives (the twin below, the path replicas take). The params are the slow weights as
    stored after each sync."""
    dtype, mode_options, pass_op = mode
    params = make_params(dtype, shapes=SHAPES)
    params.append(torch.nn.Parameter(torch.randn(3).to(dtype)))  # never has a grad: the sync's own launch
    options = dict(lr=0.01, k=3, alpha=0.5, backend=backend, **mode_options)
    opt = LookaheadAdamW(params, **options)
    twin_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin = LookaheadAdamW(twin_params, **options)
    twin.syncs_apart = True  # set before the first step builds the layout: its pass without slow weights
    compact_passes, weight_launches = [], []
    real_pass, real_run_fused = getattr(ops, pass_op), sync_module.run_fused

    def pass_recording(*args, **kwargs):
        compact_passes.append(len(args[0]))
        return real_pass(*args, **kwargs)

    def run_fused_recording(launch, lists, *args):
        weight_launches.append(len(lists[0]))
        return real_run_fused(launch, lists, *args)

    monkeypatch.setattr(ops, pass_op, pass_recording)
    monkeypatch.setattr(sync_module, "run_fused", run_fused_recording)
    for step in range(9):
        for group in (params[:-1], twin_params[:-1]):
            set_grads(group, step)
        compact_passes.clear()
        weight_launches.clear()
        opt.step()
        assert compact_passes == [len(params) - 1], "one pass a step over the params with a grad"
        assert weight_launches == ([] if (step + 1) % 3 else [1]), "a sync launch for the param without a grad alone"
        weight_launches.clear()
        twin.step()
        assert weight_launches == ([] if (step + 1) % 3 else [len(params)]), "the twin's sync is a launch of its own"
        for p, q in zip(params, twin_params):
            assert torch.equal(p, q)
            assert opt.state[p].keys() == twin.state[q].keys()
            for key, value in opt.state[p].items():
                assert same_bits(value, twin.state[q][key]), f"{key} is not the twin's"
            if (step + 1) % 3 == 0:
                assert torch.equal(p, slow_value(opt, p).to(dtype)), "the params are the slow weights as stored, cast"


@pytest.mark.parametrize("dtype, exact_bytes", [(torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2)], ids=str)
def test_the_slow_state_is_3_bytes_a_weight(dtype, exact_bytes):
    params = make_params(dtype, shapes=SHAPES)
    compact, exact = compact_lookahead(params), Lookahead(torch.optim.SGD(params, lr=0.1))
    numel = sum(p.numel() for p in params)

    def state_bytes(opt):
        return sum(t.numel() * t.element_size() for p in params for t in opt.state[p].values())

    assert state_bytes(compact) == bf16_int8.BYTES_PER_ELEMENT * numel
    assert state_bytes(exact) == exact_bytes * numel


def test_a_strided_param_syncs_through_the_reference_loop():
    params = [torch.nn.Parameter(torch.randn(6, 10)[:, ::2]), torch.nn.Parameter(torch.randn(6))]
    opt = compact_lookahead(params)
    run(opt, params, 6)
    for p in params:
        assert torch.equal(p, decoded(opt, p))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("outer", [{}, {"outer_momentum": 0.9, "momentum_dtype": torch.bfloat16}], ids=["none", "bf16"])
def test_lookahead_adamw_syncs_a_strided_param_in_the_reference_loop_as_a_dense_one(dtype, outer):
    """LookaheadAdamW(slow_dtype="bf16+int8", backend="reference"): a strided param (its pass is the reference's
    loop beside the fused launch) takes the same bits as the same values dense, its state too."""
    dense = [torch.nn.Parameter(torch.randn(6, 5).to(dtype)), torch.nn.Parameter(torch.randn(6).to(dtype))]
    strided = [torch.nn.Parameter(torch.empty(6, 10, dtype=dtype)[:, ::2].copy_(dense[0])),
               torch.nn.Parameter(dense[1].detach().clone())]  # fmt: skip
    options = dict(lr=0.01, k=3, alpha=0.5, slow_dtype=COMPACT, backend="reference", **outer)
    opts = [LookaheadAdamW(params, **options) for params in (dense, strided)]
    for step in range(6):  # the last one a sync step (k = 3)
        for params, opt in zip((dense, strided), opts):
            set_grads(params, step)
            opt.step()
        for p, q in zip(dense, strided):
            assert torch.equal(p, q)
            for key in opts[0].state[p]:
                assert torch.equal(opts[0].state[p][key], opts[1].state[q][key]), key
    for p in strided:
        assert torch.equal(p, decoded(opts[1], p).to(dtype)), "the params are the decoded slow weights after a sync"


@pytest.mark.parametrize("param_dtype, exact_slow", [(torch.float32, None), (torch.bfloat16, torch.float32)], ids=str)
def test_checkpoints_convert_between_exact_and_compact_slow_weights_with_one_warning(param_dtype, exact_slow):
    params = make_params(param_dtype, shapes=SHAPES)
    exact = Lookahead(torch.optim.SGD(params, lr=0.05, momentum=0.9), k=3, alpha=0.5, slow_dtype=exact_slow)
    run(exact, params, 4)  # mid-period
    compact = compact_lookahead(params)
    with pytest.warns(UserWarning, match="slow_dtype") as caught:
        compact.load_state_dict(exact.state_dict())
    assert len(caught) == 1
    for p in params:
        high, low = bf16_int8.encode(exact.state[p][SLOW_PARAM].float())
        assert torch.equal(compact.state[p][SLOW_HIGH], high) and torch.equal(compact.state[p][SLOW_LOW], low)
    back = Lookahead(torch.optim.SGD(params, lr=0.05, momentum=0.9), k=3, alpha=0.5, slow_dtype=exact_slow)
    with pytest.warns(UserWarning, match="slow_dtype") as caught:
        back.load_state_dict(compact.state_dict())
    assert len(caught) == 1
    for p in params:
        assert torch.equal(back.state[p][SLOW_PARAM], decoded(compact, p).to(back.state[p][SLOW_PARAM].dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compact_lookahead(params).load_state_dict(compact.state_dict())


def test_a_checkpoint_with_half_a_compact_slow_weight_is_refused_before_anything_changes():
    params = make_params(torch.float32, shapes=SHAPES)
    opt = compact_lookahead(params)
    run(opt, params, 2)
    saved = opt.state_dict()
    del saved["state"][1]["lookahead_slow_low"]
    before = [t.clone() for p in params for t in opt.state[p].values()]
    with pytest.raises(ValueError, match="param group 0, param 1: a bf16\\+int8 slow weight needs"):
        opt.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(before, [t for p in params for t in opt.state[p].values()]))


def test_an_unknown_slow_dtype_is_refused_at_construction():
    params = make_params(torch.float32, shapes=SHAPES)
    with pytest.raises(ValueError, match="slow_dtype must be None .*'bf16\\+int8'"):
        compact_lookahead(params, slow_dtype="int8")


def test_float64_params_are_refused():
    with pytest.raises(ValueError, match="param group 0: param 0 has dtype torch.float64; slow_dtype='bf16\\+int8'"):
        compact_lookahead(make_params(torch.float64, shapes=SHAPES))
    with pytest.raises(ValueError, match="param group 0: param 0 has dtype torch.float64; slow_dtype='bf16\\+int8'"):
        LookaheadAdamW(make_params(torch.float64, shapes=SHAPES), slow_dtype=COMPACT)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_a_compiled_step_runs_the_gated_compact_sync_and_follows_eager(backend):
    """torch.compile of step(): the step-gated compact sync (the native op, or the masked fallback of
    the pure-PyTorch backends; tests/test_compile.py checks that neither breaks the graph), no
    recompilation between sync and non-sync steps,
    and the run of eager within the sync's contract: a compiled step may round otherwise (the SGD
    step's update, and the fallback's lerp, which inductor may fuse), and a float32 value one ulp
    away may encode one residual unit (2^-15 of it) away; four units cover the two syncs."""
    torch._dynamo.reset()
    params, twin = make_params(torch.float32, shapes=SHAPES), make_params(torch.float32, shapes=SHAPES)
    eager, compiled = compact_lookahead(params, backend=backend), compact_lookahead(twin, backend=backend)
    try:
        for i in compiled_beside_eager(eager, params, compiled, twin, 7):
            torch.testing.assert_close(twin, params, rtol=2**-13, atol=1e-6)
            for p, q in zip(twin, params):
                value = decoded(compiled, p)
                torch.testing.assert_close(value, decoded(eager, q), rtol=2**-13, atol=1e-6)
                if (i + 1) % 3 == 0:
                    assert torch.equal(p, value), "after a sync the params are the decoded slow weights"
    finally:
        torch._dynamo.reset()
    assert compiled.step_count == eager.step_count == 7


@pytest.mark.parametrize("capturable", [False, True])
def test_pullback_momenta_sync_exactly_beside_compact_slow_weights(capturable):
    """pullback_momentum="pullback": the slow momenta stay exact (float32, as the first moments), and
    at each sync the first moment and its slow copy become the exact sync of the two, while the slow
    weights take the compact one (capturable=True runs the gated ops)."""
    params = make_params(torch.float32, shapes=SHAPES)
    opt = compact_lookahead(params, pullback_momentum="pullback", capturable=capturable)
    for step in range(7):
        set_grads(params, step)
        twin_opt, twin_params = twin_before_the_sync(opt, params)
        opt.step()
        if (step + 1) % 3:
            continue
        for p, twin in zip(params, twin_params):
            buffer, slow = opt.optimizer.state[p]["momentum_buffer"], opt.state[p][SLOW_MOMENTUM]
            assert slow.dtype == torch.float32 and torch.equal(buffer, slow)
            fast_before = twin_opt.optimizer.state[twin]["momentum_buffer"]
            slow_before = twin_opt.state[twin].get(SLOW_MOMENTUM, torch.zeros_like(fast_before))
            expected = sync_float64(fast_before, slow_before, 0.5)
            bound = 2 * ulp(torch.maximum(fast_before.double().abs(), slow_before.double().abs()), torch.float32)
            assert ((slow.double() - expected).abs() <= bound).all()


def test_an_adaptive_alpha_is_chosen_from_the_decoded_slow_weights():
    """alpha="adaptive": at each sync the alpha that AdaptiveAlpha chooses from the params and the
    float32 values the compact slow weights encode (computed on a twin just before the sync), and the
    compact sync at that alpha, within the encoding's bound."""
    params = make_params(torch.float32, shapes=SHAPES)
    opt = Lookahead(torch.optim.Adam(params, lr=0.05), k=3, alpha="adaptive", slow_dtype=COMPACT)
    for step in range(9):
        set_grads(params, step)
        twin_opt, twin_params = twin_before_the_sync(opt, params)
        opt.step()
        if (step + 1) % 3:
            continue
        before = [decoded(twin_opt, twin) for twin in twin_params]
        expected_alpha = twin_opt._adaptive.choose(twin_params, before)
        assert opt._adaptive.last_alpha == expected_alpha
        for p, fast, old in zip(params, twin_params, before):
            value = decoded(opt, p)
            assert torch.equal(p, value)
            assert_the_compact_sync_of(value, fast, old, expected_alpha)
