"""The held sync (see [NOTE: held sync] in csrc/held_sync.h): a launch whose state tensors C++ holds
runs bit for bit as its op, bumps the same versions, refuses what the op refuses in its words before
anything is written, and is dropped or bypassed whenever what it holds may have changed."""

import copy

import pytest
import torch

from lookahead_fused import Lookahead

from .helpers import assert_bitwise_equal

_C = pytest.importorskip("lookahead_fused._C")

# (param dtype, Lookahead options): every launch a held sync runs
CONFIGS = {
    "sync": (torch.float32, {}),
    "bf16-fp32-slow": (torch.bfloat16, {"slow_dtype": torch.float32}),
    "momentum": (torch.float32, {"outer_momentum": 0.9}),
    "nesterov-bf16-momentum": (torch.bfloat16, {"outer_momentum": 0.8, "nesterov": True, "slow_dtype": torch.float32,
                                                "momentum_dtype": torch.bfloat16}),  # fmt: skip
    "compact": (torch.float32, {"slow_dtype": "bf16+int8"}),
    "compact-momentum": (torch.bfloat16, {"slow_dtype": "bf16+int8", "outer_momentum": 0.9}),
}
SHAPES = [(3, 5), (7,), (2, 3, 4), (1,), (0,), (33,)]


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g).to(dtype)) for shape in SHAPES]


def _set_grads(params, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g).to(p.dtype)


def _state_tensors(opt, params):
    return [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor)]


def _train(config, held: bool, steps=7, monkeypatch=None, params=None):
    dtype, options = CONFIGS[config]
    params = params if params is not None else _params(dtype)
    opt = Lookahead(torch.optim.SGD(params, lr=0.1, momentum=0.5), k=2, alpha=0.5, backend="cpu", **options)
    if not held:
        opt._sync._may_hold = lambda launch: False
    for step in range(steps):
        _set_grads(params, step)
        opt.step()
    return params, opt


def _held_of(opt):
    (launch,) = opt._sync.launches(check=False)
    return launch.held


@pytest.mark.parametrize("config", CONFIGS)
def test_a_held_sync_runs_bit_for_bit_as_its_op_and_bumps_the_same_versions(config):
    held_params, held_opt = _train(config, held=True)
    params, opt = _train(config, held=False)
    assert isinstance(_held_of(held_opt), _C.HeldSync) and _held_of(opt) is None
    assert_bitwise_equal(held_params, params)
    assert_bitwise_equal(_state_tensors(held_opt, held_params), _state_tensors(opt, params))
    versions = [[t._version for t in [*ps, *_state_tensors(o, ps)]] for ps, o in ((held_params, held_opt), (params, opt))]
    assert versions[0] == versions[1]


def test_a_held_sync_is_used_from_the_second_sync_on():
    params, opt = _train("momentum", held=True, steps=2)
    held = _held_of(opt)
    assert held is not None and len(held) == len(SHAPES)
    lookups = _C.plan_cache_stats()
    for step in range(2, 6):
        _set_grads(params, step)
        opt.step()
    assert _held_of(opt) is held  # matched at each sync: not rebuilt
    assert _C.plan_cache_stats() == lookups  # neither checked nor looked up again


def _refusal(config, held: bool, spoil):
    """The error of a step after `spoil(params, opt)`, and whether params, grads-free state and
    versions were all left as they were."""
    params, opt = _train(config, held=held, steps=3)  # the next step syncs: it checks before its inner step
    spoil(params, opt)
    _set_grads(params, 3)
    tensors = [*params, *_state_tensors(opt, params)]
    before = [(t.detach().clone(), t._version) for t in tensors]
    with pytest.raises(ValueError) as error:
        opt.step()
    untouched = all(torch.equal(t.detach(), value) and t._version == version for t, (value, version) in zip(tensors, before))
    return str(error.value), untouched


SPOILS = {
    # a param's tensor replaced by one of another shape (same number of elements: the address may be reused)
    "param reshaped": lambda params, opt: setattr(params[0], "data", params[0].detach().reshape(5, 3).clone()),
    "param of another dtype": lambda params, opt: setattr(params[1], "data", params[1].detach().double()),
    "param of another size": lambda params, opt: setattr(params[5], "data", torch.zeros(32)),
    # a state tensor resized in place: its version moves, the held sync steps aside, the op names it
    "state resized": lambda params, opt: next(iter(opt.state[params[2]].values())).resize_(5),
}


@pytest.mark.parametrize("spoil", SPOILS)
@pytest.mark.parametrize("config", ["sync", "compact-momentum"])
def test_a_held_sync_refuses_in_the_words_of_the_op_writing_nothing(config, spoil):
    message, untouched = _refusal(config, True, SPOILS[spoil])
    assert untouched
    assert (message, untouched) == _refusal(config, False, SPOILS[spoil])


def test_a_state_tensor_written_by_someone_else_is_synced_as_it_is_now():
    runs = []
    for held in (True, False):
        params, opt = _train("momentum", held=held, steps=4)
        with torch.no_grad():
            opt.state[params[0]]["slow_param"].add_(1.0)  # in place: the held sync sees its version move
            opt.state[params[2]]["outer_momentum"].mul_(0.5)
        for step in range(4, 8):
            _set_grads(params, step)
            opt.step()
        runs.append((params, opt))
    assert isinstance(_held_of(runs[0][1]), _C.HeldSync)  # held again after the op ran
    assert_bitwise_equal(runs[0][0], runs[1][0])
    assert_bitwise_equal(_state_tensors(runs[0][1], runs[0][0]), _state_tensors(runs[1][1], runs[1][0]))


def test_slow_weights_and_checkpoints_between_held_syncs_change_nothing():
    runs = []
    for held in (True, False):
        params, opt = _train("momentum", held=held, steps=3)
        with opt.slow_weights():  # swaps fast and slow in place and back
            pass
        opt.load_state_dict(opt.state_dict())  # new state tensors: the held syncs are dropped
        if held:
            assert _held_of(opt) is None
        for step in range(3, 9):
            _set_grads(params, step)
            opt.step()
        runs.append((params, opt))
    assert isinstance(_held_of(runs[0][1]), _C.HeldSync)
    assert_bitwise_equal(runs[0][0], runs[1][0])
    assert_bitwise_equal(_state_tensors(runs[0][1], runs[0][0]), _state_tensors(runs[1][1], runs[1][0]))


def test_a_new_param_group_is_synced_by_a_new_held_sync():
    params, opt = _train("sync", held=True, steps=2)
    first = _held_of(opt)
    extra = torch.nn.Parameter(torch.randn(4, 4))
    opt.add_param_group({"params": [extra]})
    start = extra.detach().clone()
    for step in range(2, 4):
        _set_grads(params, step)
        extra.grad = torch.ones_like(extra)
        opt.step()
    (launch,) = opt._sync.launches(check=False)
    assert launch.held is not first and len(launch.held) == len(SHAPES) + 1
    # the new param moved by two SGD steps (momentum 0.5: 0.1 + 0.15), then half way back from its slow weight
    expected = start - 0.5 * 0.25
    torch.testing.assert_close(extra.detach(), expected, rtol=0, atol=1e-6)


def test_the_held_sync_object_checks_as_its_op_and_writes_nothing_when_it_no_longer_matches():
    fast = [torch.randn(3, 4), torch.randn(5)]
    slow = [torch.randn(3, 4), torch.randn(5)]
    with pytest.raises(ValueError) as held_error:
        _C.HeldSync((tuple(fast), (slow[0], slow[1][:4])), False)
    with pytest.raises(ValueError) as op_error:
        _C.sync_(fast, [slow[0], slow[1][:4]], 0.5)
    assert str(held_error.value) == str(op_error.value)
    held = _C.HeldSync((tuple(fast), tuple(slow)), False)
    expected_fast, expected_slow = [f.clone() for f in fast], [s.clone() for s in slow]
    _C.sync_(expected_fast, expected_slow, 0.5)
    with pytest.raises(ValueError, match="alpha must be a finite number in"):
        held.run(tuple(fast), 1.5)
    moved = [torch.randn(3, 4), fast[1]]
    before = [t.clone() for t in (*fast, *slow)]
    assert not held.matches(moved) and held.run(moved, 0.5) is False
    assert not held.matches(fast[:1])
    assert_bitwise_equal([*fast, *slow], before)
    assert held.matches(fast) and held.run(fast, 0.5) is True
    assert_bitwise_equal(slow, expected_slow)
    assert_bitwise_equal(fast, expected_fast)


def test_a_slow_weight_set_to_other_memory_is_never_written_through_the_old_address():
    fast = [torch.randn(64)]
    slow = [torch.randn(64)]
    held = _C.HeldSync((tuple(fast), tuple(slow)), False)
    old = slow[0].clone()
    slow[0].set_(torch.zeros(3))  # the held storage keeps the old memory; the version moved
    assert not held.matches(fast)
    assert held.run(fast, 0.5) is False
    assert torch.equal(slow[0], torch.zeros(3)) and not torch.equal(fast[0], old)


@pytest.mark.parametrize("kind", ["pullback", "adaptive", "strided", "reference backend"])
def test_launches_a_held_sync_does_not_run_keep_their_path(kind):
    params = _params(torch.float32)
    options = {"pullback": {"pullback_momentum": "pullback"}, "adaptive": {"alpha": "adaptive"},
               "reference backend": {"backend": "reference"}}.get(kind, {"backend": "cpu"})  # fmt: skip
    if kind == "strided":
        params[0] = torch.nn.Parameter(torch.randn(6, 5)[::2])  # not dense: the reference's loop runs it
    inner = torch.optim.Adam(params, lr=0.1) if kind == "adaptive" else torch.optim.SGD(params, lr=0.1, momentum=0.5)
    opt = Lookahead(inner, k=1, **options)
    for step in range(3):
        _set_grads(params, step)
        opt.step()
    held = [launch.held for launch in opt._sync.launches(check=False)]
    assert all(h is None for h in held)


def test_a_deep_copy_gathers_and_holds_launches_of_its_own():
    params, opt = _train("momentum", held=True, steps=2)
    twin = copy.deepcopy(opt)
    twin_params = [p for group in twin.param_groups for p in group["params"]]
    assert _held_of(opt) is not None and twin._sync._held is None
    for step in range(2, 6):
        for ps, o in ((params, opt), (twin_params, twin)):
            _set_grads(ps, step)
            o.step()
    assert isinstance(_held_of(twin), _C.HeldSync) and _held_of(twin) is not _held_of(opt)
    assert_bitwise_equal(twin_params, params)
    assert_bitwise_equal(_state_tensors(twin, twin_params), _state_tensors(opt, params))
