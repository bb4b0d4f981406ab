"""The generic behaviours of an optimizer, run over every record of tests/optimizers.py that supports
them: the trajectory against Algorithm 1 in float64 (tests/helpers.PlainLookahead, with the inner
optimizer's own float64 step), a checkpoint mid-period, slow_weights(), sync_lookahead(), bad input,
torch.compile, capturable=True on the CPU, and timm / pytorch_optimizer checkpoints.

Bounds: against the float64 oracle, rtol 1e-10 and atol 1e-14 (float64 params; what is left is the
order of the roundings, the fused AdamW's included); everything else is bit for bit, but the
compiled step, which follows eager to rtol 1e-10 too.

torch.compile is slow on the CPU (tens of seconds a record), so it runs on two representative
records, COMPILED (one of each class), not on every record that supports it. The Lookahead one has
an SGD inner optimizer: a compiled torch.optim.Adam computes its bias correction from a float32
step and leaves eager by 1e-7 in float64, which is torch's inner step, not the Lookahead's."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo

from lookahead_fused.slow_state import OUTER_MOMENTUM, SLOW_MOMENTUM, SLOW_PARAM, slow_weight_value

from .helpers import (PlainLookahead, PytorchOptimizerStyle, TimmStyle, assert_bitwise_equal, clone_params,
                      compiled_beside_eager, make_params, run, set_grads, snapshot, step_side_by_side)  # fmt: skip
from .optimizers import records

SHAPES = ((3, 4), (3,), (5,))
RTOL, ATOL = 1e-10, 1e-14  # against the float64 oracle
COMPILED = ("lookahead-sgd-momentum-pullback", "LookaheadAdamW-outer-nesterov")
INSIDE = r"inside `with optimizer.slow_weights\(\):`"


def over(*supporting: str):
    """Parametrize a test over the records that support all of `supporting`, by name."""
    return pytest.mark.parametrize("record", [pytest.param(r, id=r.name) for r in records(*supporting)])


def trained(record, steps: int, dtype=None, **overrides):
    """(optimizer, params) after `steps` steps on fresh params (of the record's dtype by default)."""
    params = make_params(dtype or record.dtype, shapes=SHAPES)
    opt = record.build(params, **overrides)
    run(opt, params, steps)
    return opt, params


def with_oracle(record):
    """(ours, params, oracle, oracle params): the optimizer and Algorithm 1 written out, on the same
    float64 params."""
    params, oracle_params = make_params(shapes=SHAPES), make_params(shapes=SHAPES)
    oracle = PlainLookahead(record.inner.build(oracle_params), **record.oracle_options())
    return record.build(params), params, oracle, oracle_params


def full_state(opt, params) -> list[torch.Tensor]:
    """Copies of the params, every tensor of Lookahead's and the inner optimizer's per-param state
    (slow weights, moments, step counts) and the counter."""
    tensors = list(params)
    for p in params:
        for store in (opt.state[p], opt.optimizer.state[p]):
            tensors += [store[key] for key in sorted(store) if isinstance(store[key], torch.Tensor)]
    return snapshot(tensors) + [opt._step_count_tensor.clone()]


def assert_follows(ours, params, oracle, oracle_params):
    """ours against the oracle: params, slow weights, the inner first moment, the outer momentum and
    the slow momentum (as far as the oracle has made them), and the counter."""
    compared = [
        ("params", list(params), list(oracle_params)),
        ("slow weights", [ours.state[p][SLOW_PARAM] for p in params], [oracle.slow[q] for q in oracle_params]),
    ]
    if oracle.key is not None:
        ours_moments = [ours.optimizer.state[p][oracle.key] for p in params]
        compared.append(("first moments", ours_moments, [oracle.inner.state[q][oracle.key] for q in oracle_params]))
    if oracle.mu:
        zeros = [torch.zeros_like(q, dtype=torch.float64) for q in oracle_params]
        expected = [oracle.outer.get(q, zero) for q, zero in zip(oracle_params, zeros)]
        compared.append(("outer momentum", [ours.state[p][OUTER_MOMENTUM] for p in params], expected))
    pulled = [(p, q) for p, q in zip(params, oracle_params) if q in oracle.slow_momentum]
    compared.append(("slow momentum", [ours.state[p][SLOW_MOMENTUM] for p, _ in pulled], [oracle.slow_momentum[q] for _, q in pulled]))
    for what, actual, expected in compared:
        torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m, what=what: f"{what}: {m}")
    assert ours.step_count == oracle.count


@over("float64_oracle")
def test_trajectory_follows_algorithm_1_in_float64(record):
    ours, params, oracle, oracle_params = with_oracle(record)
    for step in range(3 * record.k + 2):
        step_side_by_side(step, (ours, params), (oracle, oracle_params))
        assert_follows(ours, params, oracle, oracle_params)
    assert oracle.slow_momentum or record.options.get("pullback_momentum") != "pullback"


@over()
def test_checkpoint_mid_period_resumes_bit_for_bit(record):
    saved_at = record.k + 2
    assert saved_at % record.k, "mid-period"
    opt, params = trained(record, saved_at, torch.float32)
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = clone_params(params)
    resumed = record.build(resumed_params)
    resumed.load_state_dict(saved)
    assert resumed.step_count == saved_at
    assert_bitwise_equal(full_state(resumed, resumed_params), full_state(opt, params))
    run(opt, params, 2 * record.k, first_step=saved_at)  # over a sync, to end mid-period again
    run(resumed, resumed_params, 2 * record.k, first_step=saved_at)
    assert_bitwise_equal(full_state(resumed, resumed_params), full_state(opt, params))
    assert not all(torch.equal(p, slow_weight_value(opt.state[p], p)) for p in params), "ends mid-period"


@over()
def test_slow_weights_window(record):
    opt, params = trained(record, record.k + 1, torch.float32)
    fast, slow = snapshot(params), snapshot([slow_weight_value(opt.state[p], p) for p in params])
    assert not all(torch.equal(f, s) for f, s in zip(fast, slow)), "mid-period: fast and slow differ"
    before, saved = full_state(opt, params), opt.state_dict()
    with opt.slow_weights():
        assert_bitwise_equal(params, slow)
        for refused in (opt.step, opt.state_dict, opt.sync_lookahead, lambda: opt.load_state_dict(saved)):
            with pytest.raises(RuntimeError, match=INSIDE):
                refused()
        assert_bitwise_equal(params, slow)
    assert_bitwise_equal(full_state(opt, params), before)
    with pytest.raises(KeyError, match="raised inside"), opt.slow_weights():
        raise KeyError("raised inside")
    assert_bitwise_equal(full_state(opt, params), before)


@over("float64_oracle")
def test_sync_lookahead_syncs_once_and_keeps_the_counter(record):
    ours, params, oracle, oracle_params = with_oracle(record)
    synced_at = record.k + 1
    for step in range(synced_at):
        step_side_by_side(step, (ours, params), (oracle, oracle_params))
    fast = snapshot(params)
    ours.sync_lookahead()
    oracle.sync()
    assert ours.step_count == synced_at
    assert_follows(ours, params, oracle, oracle_params)
    assert_bitwise_equal(params, [ours.state[p][SLOW_PARAM] for p in params])
    assert not any(torch.equal(p, f) for p, f in zip(params, fast)), "the params moved to the new slow weights"
    for step in range(synced_at, 3 * record.k + 1):  # the regular syncs stay at the multiples of k
        step_side_by_side(step, (ours, params), (oracle, oracle_params))
        assert_follows(ours, params, oracle, oracle_params)


@over()
@pytest.mark.parametrize(
    "options,message", [({"k": 0}, "k must be an int >= 1, got 0"), ({"alpha": 1.5}, r"alpha must be a finite number in \[0, 1\]")]
)
def test_bad_options_are_refused_before_anything_changes(record, options, message):
    params = make_params(record.dtype, shapes=SHAPES)
    set_grads(params, 0)
    before = snapshot(params + [p.grad for p in params])
    with pytest.raises(ValueError, match=message):
        record.build(params, **options)
    assert_bitwise_equal(params + [p.grad for p in params], before)


@over()
def test_a_param_added_twice_is_refused_before_anything_changes(record):
    opt, params = trained(record, record.k + 1)
    groups, before = len(opt.param_groups), full_state(opt, params)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [params[0]]})
    assert len(opt.param_groups) == len(opt.optimizer.param_groups) == groups
    assert_bitwise_equal(full_state(opt, params), before)


@over()
def test_a_bad_group_alpha_is_refused_before_the_step_writes(record):
    opt, params = trained(record, record.k - 1)  # the next step syncs
    opt.param_groups[0]["lookahead_alpha"] = float("nan")
    set_grads(params, record.k - 1)
    before = full_state(opt, params)
    with pytest.raises(ValueError, match="param group 0: lookahead_alpha must be a finite number"):
        opt.step()
    assert_bitwise_equal(full_state(opt, params), before)


@over()
def test_a_checkpoint_for_another_layout_is_refused_before_anything_changes(record):
    other, _ = trained(record, 2)
    opt, params = trained(record, 2)
    first_group = {**opt.state_dict(), "param_groups": other.state_dict()["param_groups"][:1]}
    first_group["param_groups"][0]["params"] = first_group["param_groups"][0]["params"][:2]
    before = full_state(opt, params)
    with pytest.raises(ValueError, match="param group 0: the state_dict has 2 params but the group has 3"):
        opt.load_state_dict(first_group)
    assert_bitwise_equal(full_state(opt, params), before)


@pytest.mark.parametrize("name", COMPILED)
def test_a_compiled_step_follows_eager_and_never_recompiles(name):
    (record,) = [r for r in records("compile") if r.name == name]
    torch._dynamo.reset()
    params, twin = make_params(shapes=SHAPES), make_params(shapes=SHAPES)
    eager, compiled = record.build(params), record.build(twin)
    try:
        for _ in compiled_beside_eager(eager, params, compiled, twin, 2 * record.k + 1):
            torch.testing.assert_close(twin, params, rtol=RTOL, atol=ATOL)
            torch.testing.assert_close([compiled.state[p][SLOW_PARAM] for p in twin], [eager.state[p][SLOW_PARAM] for p in params],
                                       rtol=RTOL, atol=ATOL)  # fmt: skip
    finally:
        torch._dynamo.reset()
    assert compiled.step_count == eager.step_count == 2 * record.k + 1


@over("capturable")
def test_capturable_on_the_cpu_follows_the_host_branch_bit_for_bit(record):
    params, twin = make_params(torch.float32, shapes=SHAPES), make_params(torch.float32, shapes=SHAPES)
    host, device = record.build(params), record.build(twin, capturable=True)
    for step in range(3 * record.k + 1):
        step_side_by_side(step, (host, params), (device, twin))
        assert_bitwise_equal(full_state(device, twin), full_state(host, params))


@pytest.mark.parametrize("record", [r for r in records() if not r.capturable], ids=lambda r: r.name)
def test_capturable_is_refused_where_a_record_does_not_support_it(record):
    with pytest.raises(ValueError, match="capturable"):
        record.build(make_params(record.dtype, shapes=SHAPES), capturable=True)


def peer_run(record, peer: str, params, steps: int):
    """A timm- or pytorch_optimizer-style Lookahead around the record's inner optimizer after `steps`
    steps: (its checkpoint, its slow weights, the counter that our Lookahead continues from)."""
    if peer == "timm":
        opt = TimmStyle(record.inner.build(params), alpha=record.alpha, k=record.k)
        run(opt, params, steps)
        return opt.state_dict(), [opt.inner.state[p]["lookahead_slow_buff"] for p in params], steps
    opt = PytorchOptimizerStyle(record.inner.build(params), k=record.k, alpha=record.alpha)
    run(opt, params, steps)
    return opt.state_dict(), [opt.slow[p] for p in params], steps % record.k  # its counter restarts at each sync


@over("peer_checkpoints", "float64_oracle")
@pytest.mark.parametrize("peer", ["timm", "pytorch_optimizer"])
def test_a_peer_checkpoint_loads_and_the_run_continues_as_algorithm_1(record, peer):
    params = make_params(shapes=SHAPES)
    saved_at = record.k + 1  # after timm's first sync, where it makes its slow weights; mid-period
    saved, slow, count = peer_run(record, peer, params, saved_at)
    inner_saved = saved if peer == "timm" else saved["base_optimizer"]
    ours_params, oracle_params = clone_params(params), clone_params(params)
    ours = record.build(ours_params)
    with pytest.warns(UserWarning, match=f"{peer} Lookahead checkpoint"):
        ours.load_state_dict(copy.deepcopy(saved))
    assert ours.step_count == count
    assert_bitwise_equal([ours.state[p][SLOW_PARAM] for p in ours_params], slow)
    for p, saved_id in zip(ours_params, inner_saved["param_groups"][0]["params"]):
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if key in inner_saved["state"][saved_id]:
                assert torch.equal(ours.optimizer.state[p][key], inner_saved["state"][saved_id][key]), key
    oracle = PlainLookahead(record.inner.build(oracle_params), **record.oracle_options())
    oracle.inner.load_state_dict(copy.deepcopy(inner_saved))
    oracle.slow = {q: s.clone() for q, s in zip(oracle_params, slow)}
    oracle.count = count
    for step in range(saved_at, saved_at + 2 * record.k):
        step_side_by_side(step, (ours, ours_params), (oracle, oracle_params))
        assert_follows(ours, ours_params, oracle, oracle_params)
