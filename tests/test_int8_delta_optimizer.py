"""LookaheadAdamW(slow_dtype="int8-delta")
(see [NOTE: what int8-delta supports] in lookahead_fused/options.py): each period against an exact LookaheadAdamW restarted from its own state
(its checkpoint, decoded), within the decided bound (docs/design.md, "int8-delta"), also beside an int8
outer momentum (see [NOTE: int8-delta outer momentum] in csrc/adamw.h) and a float32 or bfloat16 one
(see [NOTE: int8-delta float momentum] in csrc/adamw.h); the state's bytes;
checkpoints converting both ways; what it refuses. The generic behaviours (mid-period resume bit for bit,
slow_weights(), capturable on the CPU, bad input) run in tests/test_optimizer_matrix.py."""

import copy
import math

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, int8_blocks
from lookahead_fused.backends import reference
from lookahead_fused.backends.step_gate import two_sided_lerp
from lookahead_fused.slow_state import OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES, SLOW_DELTA, SLOW_DELTA_SCALES, SLOW_PARAM
from lookahead_fused.slow_state import int8_block_value, slow_weight_value

from .helpers import clone_params, make_params, run, set_grads
from .matrix import dtype_id, ulp

SHAPES = ((40, 30), (40,), (300,))  # the least-squares weight and bias, and a param of two blocks
K, ALPHA, LR = 5, 0.5, 0.05


def delta_optimizer(params, **options):
    return LookaheadAdamW(params, lr=LR, k=K, alpha=ALPHA, slow_dtype="int8-delta", **options)


def exact_twin(opt, params, **options):
    """An exact LookaheadAdamW (float32 slow weights, and outer momentum with `options`) on copies of
    `params`, loaded from `opt`'s checkpoint: its slow weights are the int8-delta ones decoded (param +
    offset, exact in float32), its momenta the int8 ones decoded (a float one's as they are)."""
    twin = clone_params(params)
    exact = LookaheadAdamW(twin, lr=LR, k=K, alpha=ALPHA, slow_dtype=torch.float32, **options)
    with pytest.warns(UserWarning) as warned:
        exact.load_state_dict(copy.deepcopy(opt.state_dict()))
    momentum_converts = options and options.get("momentum_dtype") != opt.defaults["momentum_dtype"]
    converted = ["slow_dtype=int8-delta"] + ([f"momentum_dtype={opt.defaults['momentum_dtype']}"] if momentum_converts else [])
    assert all(any(f"saved with {c}" in str(w.message) for w in warned) for c in converted), [str(w.message) for w in warned]
    return exact, twin


def period_against_the_exact(opt, params, exact, twin, period):
    """Period `period` of both runs, the last param without a grad at the sync step: the exact slow weights
    at its start, and each param's largest displacement over the steps before the sync."""
    slow = [exact.state[q][SLOW_PARAM].double() for q in twin]
    largest = [torch.zeros((), dtype=torch.float64) for _ in params]
    for t in range(K):
        both_step(period * K + t, [(opt, params), (exact, twin)], without_grad=(2,) if t == K - 1 else ())
        if t < K - 1:
            largest = [torch.maximum(a, (s - q.double()).abs().max()) for a, s, q in zip(largest, slow, twin)]
    return slow, largest


def both_step(step, runs, without_grad=()):
    """One step of each (optimizer, params) run on batch `step`, the params at `without_grad` given no grad."""
    for opt, params in runs:
        set_grads(params, step)
        for i in without_grad:
            params[i].grad = None
        opt.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_each_period_ends_within_the_decided_bound_of_the_exact_sync(dtype):
    """At every sync the params are within (k - 1)(1 - alpha) / 254 of the period's largest displacement
    (to first order; plus a few float32 ulp and, for bfloat16 params, one of the final rounding) of an exact
    LookaheadAdamW that started the period from the same state: the offset was encoded again at each of
    the period's k - 1 steps before the sync, each rounding within a / 254 of its block's largest offset a,
    and the sync keeps 1 - alpha of that (docs/design.md, "int8-delta"). The last param has no grad at the
    sync step: it syncs through the reference's loop, on both sides."""
    params = make_params(dtype, shapes=SHAPES)
    opt = delta_optimizer(params)
    for period in range(3):
        exact, twin = exact_twin(opt, params)
        slow, largest = period_against_the_exact(opt, params, exact, twin, period)
        for i, (p, q, s, a) in enumerate(zip(params, twin, slow, largest)):
            magnitude = torch.maximum(q.double().abs(), s.abs())
            slack = 16 * ulp(magnitude, torch.float32) + (ulp(magnitude, dtype) if dtype != torch.float32 else 0)
            # each step's offset is measured from the slow weight as it has drifted so far: (k - 2) / 254 more
            bound = (K - 1) * (1 - ALPHA) * a * (1 / 254 + 2.0**-20) * (1 + (K - 2) / 254) + slack
            error = (p.double() - q.double()).abs()
            assert (error <= bound).all(), f"period {period}, param {i}: error {error.max():.3g} above its bound"
            assert a > 0 and error.max() > 0, "the period moved the params and the offsets' roundings show"


def test_with_an_int8_outer_momentum_each_period_ends_within_its_bound_of_the_exact_sync():
    """SNOO at about 2 bytes a weight: beside an int8 outer momentum (Nesterov), against an exact
    LookaheadAdamW (float32 slow weights and momentum) restarted from the same state each period. The
    slow weight drifts by at most D (the bound of the test above without its 1 - alpha) before the sync;
    the sync then keeps |1 - alpha - alpha mu| of that drift (it enters the slow weight directly and,
    negated, the new momentum that Nesterov's target reads) plus alpha mu of the new momentum's encoding
    error, half a code of its block's largest magnitude. The last param has no grad at the sync step: it
    syncs through the reference's loop, on both sides."""
    mu = 0.9
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params, outer_momentum=mu, nesterov=True, momentum_dtype="int8")
    for period in range(3):
        exact, twin = exact_twin(opt, params, outer_momentum=mu, nesterov=True)
        slow, largest = period_against_the_exact(opt, params, exact, twin, period)
        for i, (p, q, s, a) in enumerate(zip(params, twin, slow, largest)):
            drift = (K - 1) * a * (1 / 254 + 2.0**-20) * (1 + (K - 2) / 254)
            momentum = exact.state[q][OUTER_MOMENTUM].double().abs().max()
            encoding = (momentum + drift) / 254 * (1 + 2.0**-20)
            magnitude = torch.maximum(q.double().abs(), s.abs())
            bound = abs(1 - ALPHA - ALPHA * mu) * drift + ALPHA * mu * encoding + 32 * ulp(magnitude, torch.float32)
            error = (p.double() - q.double()).abs()
            assert (error <= bound).all(), f"period {period}, param {i}: error {error.max():.3g} above its bound"
            assert a > 0 and error.max() > 0, "the period moved the params and the encodings' roundings show"


@pytest.mark.parametrize("momentum_dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_with_a_float_outer_momentum_each_period_ends_within_its_bound_of_the_exact_sync(momentum_dtype):
    """Beside a float32 or bfloat16 outer momentum (Nesterov), against an exact LookaheadAdamW (float32
    slow weights, the momentum in the same dtype) restarted from the same state each period: the drift D
    of the test above, kept |1 - alpha - alpha mu| by the sync, and in bfloat16 alpha mu of one rounding of
    the new momentum apart (the two runs' new momenta differ by at most D before rounding)."""
    mu = 0.9
    momentum_option = None if momentum_dtype == torch.float32 else momentum_dtype
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params, outer_momentum=mu, nesterov=True, momentum_dtype=momentum_option)
    for period in range(3):
        exact, twin = exact_twin(opt, params, outer_momentum=mu, nesterov=True, momentum_dtype=momentum_option)
        slow, largest = period_against_the_exact(opt, params, exact, twin, period)
        for i, (p, q, s, a) in enumerate(zip(params, twin, slow, largest)):
            assert opt.state[p][OUTER_MOMENTUM].dtype == momentum_dtype
            drift = (K - 1) * a * (1 / 254 + 2.0**-20) * (1 + (K - 2) / 254)
            momentum = exact.state[q][OUTER_MOMENTUM].double().abs().max()
            rounding = ulp(momentum + drift, momentum_dtype) if momentum_dtype != torch.float32 else 0
            magnitude = torch.maximum(q.double().abs(), s.abs())
            bound = abs(1 - ALPHA - ALPHA * mu) * drift + ALPHA * mu * rounding + 32 * ulp(magnitude, torch.float32)
            error = (p.double() - q.double()).abs()
            assert (error <= bound).all(), f"period {period}, param {i}: error {error.max():.3g} above its bound"
            assert a > 0 and error.max() > 0, "the period moved the params and the offsets' roundings show"


@pytest.mark.parametrize("momentum_dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_with_a_float_outer_momentum_the_state_is_a_byte_and_the_momentum_an_element(momentum_dtype):
    """The offsets' codes, a byte each, a float32 scale per block, and the momentum in its dtype beside
    the param: 5.016 bytes a weight with float32, 3.016 with bfloat16."""
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params, outer_momentum=0.9, momentum_dtype=None if momentum_dtype == torch.float32 else momentum_dtype)
    for p in params:
        state = opt.state[p]
        assert set(state) == {SLOW_DELTA, SLOW_DELTA_SCALES, OUTER_MOMENTUM}
        momentum = state[OUTER_MOMENTUM]
        assert momentum.dtype == momentum_dtype and momentum.stride() == p.stride() and not momentum.any()
        blocks = math.ceil(p.numel() / int8_blocks.BLOCK)
        size = momentum.element_size()
        assert sum(t.numel() * t.element_size() for t in state.values()) == (1 + size) * p.numel() + 4 * blocks


def test_with_an_int8_outer_momentum_the_state_is_about_two_bytes_an_element():
    """The offsets' and the momentum's codes, a byte each, and a float32 scale per block of each: at most
    2.2 bytes a weight, the goal of issue 26 for SNOO."""
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params, outer_momentum=0.9, momentum_dtype="int8")
    total = 0
    for p in params:
        state = opt.state[p]
        assert set(state) == {SLOW_DELTA, SLOW_DELTA_SCALES, OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES}
        assert state[OUTER_MOMENTUM].dtype == torch.int8 and state[OUTER_MOMENTUM].stride() == p.stride()
        blocks = math.ceil(p.numel() / int8_blocks.BLOCK)
        assert sum(t.numel() * t.element_size() for t in state.values()) == 2 * (p.numel() + 4 * blocks)
        total += sum(t.numel() * t.element_size() for t in state.values())
    assert total / sum(p.numel() for p in params) <= 2.2


def test_the_state_is_one_byte_an_element_and_a_scale_a_block():
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params)
    for p in params:
        state = opt.state[p]
        assert set(state) == {SLOW_DELTA, SLOW_DELTA_SCALES}
        codes, scales = state[SLOW_DELTA], state[SLOW_DELTA_SCALES]
        assert codes.dtype == torch.int8 and codes.shape == p.shape and codes.stride() == p.stride()
        assert scales.dtype == torch.float32 and scales.shape == (math.ceil(p.numel() / int8_blocks.BLOCK),)
        assert sum(t.numel() * t.element_size() for t in state.values()) == p.numel() + 4 * scales.numel()
        assert torch.equal(slow_weight_value(state, p), p), "at the start the slow weight is the param"


def test_checkpoints_convert_to_and_from_exact_slow_weights():
    """An exact checkpoint loads into an int8-delta optimizer (the offset from the params encoded, with the
    slow_dtype warning) and back; each slow weight within the encoding's bound of the one saved; an
    int8-delta checkpoint into an int8-delta optimizer bit for bit."""
    params = make_params(torch.float32, shapes=SHAPES)
    exact = LookaheadAdamW(params, lr=LR, k=K, alpha=ALPHA)
    run(exact, params, K + 2)
    saved = [exact.state[p][SLOW_PARAM].clone() for p in params]
    opt = delta_optimizer(params)
    with pytest.warns(UserWarning, match="int8-delta offset against the params as they are now"):
        opt.load_state_dict(copy.deepcopy(exact.state_dict()))
    for p, s in zip(params, saved):
        offset = int8_blocks.memory_order(s - p)
        bound = int8_blocks.error_bound(offset) + ulp(s.double().abs(), torch.float32).reshape(-1)
        error = (int8_blocks.memory_order(slow_weight_value(opt.state[p], p)).double() - int8_blocks.memory_order(s).double()).abs()
        assert (error <= bound).all()
    assert opt.step_count == K + 2
    again = delta_optimizer(params)
    again.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in params:
        for key in (SLOW_DELTA, SLOW_DELTA_SCALES):
            assert torch.equal(again.state[p][key], opt.state[p][key])
    back = LookaheadAdamW(params, lr=LR, k=K, alpha=ALPHA)
    with pytest.warns(UserWarning, match="saved with slow_dtype=int8-delta"):
        back.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in params:
        assert torch.equal(back.state[p][SLOW_PARAM], slow_weight_value(opt.state[p], p))


def test_an_exact_snoo_checkpoint_converts_to_an_int8_outer_momentum_beside_int8_delta():
    """An exact SNOO checkpoint (float32 slow weights and outer momentum) loads into int8-delta beside an
    int8 outer momentum with one warning for each of the two conversions; each slow weight and each
    momentum within its encoding's bound of the one saved; the run goes on."""
    params = make_params(torch.float32, shapes=SHAPES)
    exact = LookaheadAdamW(params, lr=LR, k=K, alpha=ALPHA, outer_momentum=0.9, nesterov=True)
    run(exact, params, K + 2)
    saved = {p: (exact.state[p][SLOW_PARAM].clone(), exact.state[p][OUTER_MOMENTUM].clone()) for p in params}
    opt = delta_optimizer(params, outer_momentum=0.9, nesterov=True, momentum_dtype="int8")
    with pytest.warns(UserWarning) as warned:
        opt.load_state_dict(copy.deepcopy(exact.state_dict()))
    messages = [str(w.message) for w in warned]
    assert len(messages) == 2, messages
    assert any("saved with slow_dtype=None" in m for m in messages) and any("saved with momentum_dtype=None" in m for m in messages)
    for p, (slow, momentum) in saved.items():
        offset = int8_blocks.memory_order(slow - p)
        bound = int8_blocks.error_bound(offset) + ulp(slow.double().abs(), torch.float32).reshape(-1)
        error = (int8_blocks.memory_order(slow_weight_value(opt.state[p], p)) - int8_blocks.memory_order(slow)).double().abs()
        assert (error <= bound).all()
        decoded = int8_block_value(opt.state[p], OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES)
        error = (int8_blocks.memory_order(decoded) - int8_blocks.memory_order(momentum)).double().abs()
        assert (error <= int8_blocks.error_bound(int8_blocks.memory_order(momentum))).all()
    assert opt.step_count == K + 2
    run(opt, params, K)
    assert all(torch.isfinite(p).all() for p in params) and opt.step_count == 2 * K + 2


def test_an_exact_snoo_checkpoint_loads_beside_a_float_outer_momentum_with_one_warning():
    """An exact SNOO checkpoint into int8-delta beside a float32 outer momentum: the slow weights converted
    (one warning, slow_dtype), the momenta loaded bit for bit; then an int8-delta checkpoint with an int8
    outer momentum into it, the momenta decoded, and its checkpoint into a bfloat16 and an int8 one, the
    momenta rounded and encoded, each with the momentum_dtype warning."""
    params = make_params(torch.float32, shapes=SHAPES)
    exact = LookaheadAdamW(params, lr=LR, k=K, alpha=ALPHA, outer_momentum=0.9, nesterov=True)
    run(exact, params, K + 2)
    opt = delta_optimizer(params, outer_momentum=0.9, nesterov=True)
    with pytest.warns(UserWarning) as warned:
        opt.load_state_dict(copy.deepcopy(exact.state_dict()))
    messages = [str(w.message) for w in warned]
    assert len(messages) == 1 and "saved with slow_dtype=None" in messages[0], messages
    for p in params:
        assert torch.equal(opt.state[p][OUTER_MOMENTUM], exact.state[p][OUTER_MOMENTUM])
    run(opt, params, K)
    assert all(torch.isfinite(p).all() for p in params) and opt.step_count == 2 * K + 2
    int8 = delta_optimizer(params, outer_momentum=0.9, nesterov=True, momentum_dtype="int8")
    run(int8, params, K + 1)
    with pytest.warns(UserWarning, match="saved with momentum_dtype=int8"):
        opt.load_state_dict(copy.deepcopy(int8.state_dict()))
    for p in params:
        decoded = int8_block_value(int8.state[p], OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES)
        assert torch.equal(opt.state[p][OUTER_MOMENTUM], decoded) and decoded.any()
        assert torch.equal(opt.state[p][SLOW_DELTA], int8.state[p][SLOW_DELTA])
    half = delta_optimizer(params, outer_momentum=0.9, nesterov=True, momentum_dtype=torch.bfloat16)
    with pytest.warns(UserWarning, match="saved with momentum_dtype=None"):
        half.load_state_dict(copy.deepcopy(opt.state_dict()))
    with pytest.warns(UserWarning, match="saved with momentum_dtype=None"):
        int8.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in params:
        momentum = opt.state[p][OUTER_MOMENTUM]
        assert torch.equal(half.state[p][OUTER_MOMENTUM], momentum.to(torch.bfloat16))
        encoded = int8_block_value(int8.state[p], OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES)
        error = (int8_blocks.memory_order(encoded) - int8_blocks.memory_order(momentum)).double().abs()
        assert (error <= int8_blocks.error_bound(int8_blocks.memory_order(momentum))).all()


def test_what_it_refuses():
    params = make_params(torch.float32, shapes=SHAPES)
    refusals = [
        (lambda: LookaheadAdamW(params, k=6, slow_dtype="int8-delta"), "takes k <= 5, got k=6"),
        (lambda: Lookahead(torch.optim.AdamW(params), slow_dtype="int8-delta"), "only LookaheadAdamW's own pass"),
        (lambda: delta_optimizer(make_params(torch.float64, shapes=SHAPES)), "param 0 has dtype torch.float64"),
    ]
    for build, message in refusals:
        with pytest.raises(ValueError, match=message):
            build()
    opt = delta_optimizer(params)
    run(opt, params, 2)
    held = [p.clone() for p in params] + [opt.state[p][key].clone() for p in params for key in (SLOW_DELTA, SLOW_DELTA_SCALES)]
    longer = LookaheadAdamW(clone_params(params), k=5)
    saved = longer.state_dict()
    saved["lookahead"]["k"] = 10
    with pytest.raises(ValueError, match=r"state_dict\['lookahead'\]: slow_dtype='int8-delta' takes k <= 5, got k=10"):
        opt.load_state_dict(saved)
    after = [p for p in params] + [opt.state[p][key] for p in params for key in (SLOW_DELTA, SLOW_DELTA_SCALES)]
    assert all(torch.equal(a, b) for a, b in zip(after, held)) and opt.step_count == 2


def test_sync_lookahead_syncs_each_param_as_the_reference_would():
    """sync_lookahead() mid-period, a param moved to another memory layout first: its offset follows it
    (decoded, and encoded anew in the new order), then each float32 param becomes the float32 two-sided
    lerp of its slow weight toward it, exactly, and keeps no offset."""
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params)
    run(opt, params, 2)
    offsets = [int8_block_value(opt.state[p], SLOW_DELTA, SLOW_DELTA_SCALES) for p in params]
    with torch.no_grad():
        params[0].data = params[0].data.t().contiguous().t()  # the same values, column-major
    moved = int8_blocks.memory_order(offsets[0], params[0])
    offsets[0] = int8_blocks.from_memory_order(int8_blocks.decode(*int8_blocks.encode(moved)), params[0])
    fast = [p.detach().clone() for p in params]
    slow = [f + offset for f, offset in zip(fast, offsets)]
    opt.sync_lookahead()
    assert opt.step_count == 2
    for p, s, f in zip(params, slow, fast):
        expected = two_sided_lerp(s, f, torch.tensor(ALPHA, dtype=torch.float32))
        assert torch.equal(p, expected)
        assert not opt.state[p][SLOW_DELTA].any() and not opt.state[p][SLOW_DELTA_SCALES].any()
    assert opt.state[params[0]][SLOW_DELTA].stride() == params[0].stride()


def test_sync_lookahead_with_a_bfloat16_outer_momentum_is_the_momentum_sync_of_the_decoded_slow_weights():
    """sync_lookahead() mid-period beside a bfloat16 outer momentum: bit for bit the momentum sync of each
    param and its slow weight decoded in float32, each step one float32 operation, the new momentum rounded
    to bfloat16; a float32 param keeps no offset."""
    mu = 0.9
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params, outer_momentum=mu, nesterov=True, momentum_dtype=torch.bfloat16)
    run(opt, params, K + 2)
    expected = []
    for p in params:
        kept, slow, momentum = p.detach().float(), slow_weight_value(opt.state[p], p).float(), opt.state[p][OUTER_MOMENTUM]
        assert momentum.any(), "the periods before left a momentum"
        m_new = (mu * momentum.float() + (kept - slow)).to(torch.bfloat16)
        target = kept + mu * m_new.float()
        expected.append((two_sided_lerp(slow, target, torch.tensor(ALPHA, dtype=torch.float32)), m_new))
    opt.sync_lookahead()
    for p, (s, m) in zip(params, expected):
        assert torch.equal(p, s) and torch.equal(opt.state[p][OUTER_MOMENTUM], m)
        assert not opt.state[p][SLOW_DELTA].any() and not opt.state[p][SLOW_DELTA_SCALES].any()


def test_sync_lookahead_with_an_int8_outer_momentum_is_the_int8_momentum_sync_of_the_decoded_slow_weights():
    """sync_lookahead() mid-period beside an int8 outer momentum: bit for bit the int8 momentum sync (the
    reference's) of each param and its slow weight decoded in float32; a float32 param keeps no offset."""
    params = make_params(torch.float32, shapes=SHAPES)
    opt = delta_optimizer(params, outer_momentum=0.9, nesterov=True, momentum_dtype="int8")
    run(opt, params, K + 2)
    fast = [p.detach().clone() for p in params]
    slow = [slow_weight_value(opt.state[p], p).float() for p in params]
    momentum = [opt.state[p][OUTER_MOMENTUM].clone() for p in params]
    momentum_scales = [opt.state[p][OUTER_MOMENTUM_SCALES].clone() for p in params]
    assert any(m.any() for m in momentum), "the periods before left a momentum"
    reference.int8_momentum_sync_(fast, slow, momentum, momentum_scales, ALPHA, 0.9, True)
    opt.sync_lookahead()
    for p, f, m, sc in zip(params, fast, momentum, momentum_scales):
        assert torch.equal(p, f)
        assert torch.equal(opt.state[p][OUTER_MOMENTUM], m) and torch.equal(opt.state[p][OUTER_MOMENTUM_SCALES], sc)
        assert not opt.state[p][SLOW_DELTA].any() and not opt.state[p][SLOW_DELTA_SCALES].any()
