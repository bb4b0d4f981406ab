"""A drop-in for timm and pytorch_optimizer users: their checkpoints load and the run continues their
trajectory, params torch.optim accepts (strided views) work, timm's sync_lookahead(), param groups
alike in the checkpoint, and pullback for any inner optimizer (momentum_key=).

The peers' semantics are written out (tests/helpers.py: TimmStyle, PytorchOptimizerStyle) so CI checks the
conversions without either package; the same checks run against the real packages when they are
importable."""

from __future__ import annotations

import copy
import importlib.util
import sys
import types

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, bf16_int8, int8_blocks, sync
from lookahead_fused.slow_state import SLOW_DELTA, SLOW_DELTA_SCALES, SLOW_HIGH, SLOW_LOW, slow_weight_value

from .helpers import PlainLookahead, PytorchOptimizerStyle, TimmStyle, make_params, set_grads

SHAPES = ((3, 4), (3,), (2, 2))


def adamw(params):
    return torch.optim.AdamW(params, lr=0.05, weight_decay=0.01)


def train(opt, params, steps, first_step=0):
    for step in range(first_step, first_step + steps):
        set_grads(params, step)
        opt.step()


def assert_close(actual, expected, tolerance=1e-12):
    for a, e in zip(actual, expected):
        assert torch.allclose(a.detach(), e.detach(), rtol=tolerance, atol=tolerance), (a - e).abs().max()


def resume_and_compare(peer, peer_params, state_dict, steps_before, k, alpha, match):
    """Our Lookahead on copies of the peer's params loads the peer's checkpoint (one warning that
    matches `match`), then both run on and must stay together."""
    ours_params = [torch.nn.Parameter(p.detach().clone()) for p in peer_params]
    ours = Lookahead(adamw(ours_params), k=k, alpha=alpha)
    with pytest.warns(UserWarning, match=match):
        ours.load_state_dict(copy.deepcopy(state_dict))
    for step in range(steps_before, steps_before + 10):
        set_grads(peer_params, step)
        set_grads(ours_params, step)
        peer.step()
        ours.step()
        assert_close(ours_params, peer_params)
    return ours


@pytest.mark.parametrize("stop_at", [3, 6, 13])  # before the first sync, at it, between later ones
def test_a_timm_checkpoint_continues_timms_trajectory(stop_at):
    params = make_params(shapes=SHAPES)
    timm = TimmStyle(adamw(params), alpha=0.5, k=6)
    train(timm, params, stop_at)
    state_dict = timm.state_dict()
    match = "timm Lookahead checkpoint: step %d, k=6" % stop_at
    if stop_at < 6:
        match += ".* holds no slow weight for 3 of 3 params"
        ours_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
        ours = Lookahead(adamw(ours_params), k=5)
        with pytest.warns(UserWarning, match=match):
            ours.load_state_dict(copy.deepcopy(state_dict))
        assert ours.k == 6 and ours.step_count == stop_at
        return
    ours = resume_and_compare(timm, params, state_dict, stop_at, k=5, alpha=0.3, match=match)
    saved = ours.state_dict()
    assert ours.k == 6 and saved["lookahead"]["k"] == 6
    for group in saved["param_groups"]:  # timm's keys are not saved again; its alpha is the group's own
        assert "lookahead_k" not in group and "lookahead_step" not in group and group["lookahead_alpha"] == 0.5
    assert all("lookahead_slow_buff" not in entry for entry in saved["state"].values())


@pytest.mark.parametrize("stop_at", [3, 5, 12])
def test_a_pytorch_optimizer_checkpoint_continues_its_trajectory(stop_at):
    params = make_params(shapes=SHAPES)
    peer = PytorchOptimizerStyle(adamw(params), k=5, alpha=0.5)
    train(peer, params, stop_at)
    ours = resume_and_compare(peer, params, peer.state_dict(), stop_at, k=5, alpha=0.5, match="pytorch_optimizer Lookahead checkpoint: its counter")
    assert ours.step_count == stop_at % 5 + 10  # its counter restarts at each sync; so does the phase
    assert all("counter" not in g for g in ours.state_dict()["param_groups"])


def test_a_pytorch_optimizer_checkpoint_drops_the_momentum_buffer_it_put_into_adam():
    params = make_params(shapes=SHAPES)
    peer = PytorchOptimizerStyle(adamw(params))
    train(peer, params, 2)
    state_dict = peer.state_dict()
    for entry in state_dict["base_optimizer"]["state"].values():
        entry["momentum_buffer"] = torch.zeros(1)  # what its pullback mode adds to any inner state
    ours = Lookahead(adamw([torch.nn.Parameter(p.detach().clone()) for p in params]))
    with pytest.warns(UserWarning, match="Dropped momentum_buffer"):
        ours.load_state_dict(state_dict)
    assert all("momentum_buffer" not in state for state in ours.optimizer.state.values())


def test_a_pytorch_optimizer_checkpoint_keeps_a_momentum_buffer_the_inner_optimizer_owns():
    params = make_params(shapes=SHAPES)
    rmsprop = lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.9)  # noqa: E731  (its own "momentum_buffer")
    peer = PytorchOptimizerStyle(rmsprop(params))
    train(peer, params, 2)
    ours = Lookahead(rmsprop([torch.nn.Parameter(p.detach().clone()) for p in params]))
    with pytest.warns(UserWarning, match="pytorch_optimizer Lookahead checkpoint") as caught:
        ours.load_state_dict(peer.state_dict())
    assert not any("Dropped" in str(w.message) for w in caught)
    assert all("momentum_buffer" in state for state in ours.optimizer.state.values())


def test_a_peer_checkpoint_for_another_layout_is_refused_before_anything_changes():
    params = make_params(shapes=SHAPES)
    timm = TimmStyle(adamw(params[:2]), k=2)
    train(timm, params[:2], 2)
    ours = Lookahead(adamw(params))
    before = ours.state_dict()
    with pytest.raises(ValueError, match="timm Lookahead checkpoint was saved for another parameter layout"):
        ours.load_state_dict(timm.state_dict())
    assert ours.state_dict()["lookahead"]["step"] == before["lookahead"]["step"]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.skipif(not _importable("timm"), reason="timm is not installed (the hand-written TimmStyle runs instead)")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_real_timm_checkpoint_continues_timms_trajectory():
    from timm.optim.lookahead import Lookahead as TimmLookahead

    params = make_params(shapes=SHAPES)
    timm = TimmLookahead(adamw(params), alpha=0.5, k=6)
    train(timm, params, 13)
    resume_and_compare(timm, params, timm.state_dict(), 13, k=5, alpha=0.3, match="timm Lookahead checkpoint: step 13, k=6")


@pytest.mark.skipif(not _importable("pytorch_optimizer"), reason="pytorch_optimizer is not installed (PytorchOptimizerStyle runs instead)")
def test_the_real_pytorch_optimizer_checkpoint_continues_its_trajectory():
    from pytorch_optimizer import Lookahead as PeerLookahead

    params = make_params(shapes=SHAPES)
    peer = PeerLookahead(adamw(params), k=5, alpha=0.5)
    train(peer, params, 12)
    resume_and_compare(peer, params, peer.state_dict(), 12, k=5, alpha=0.5, match="pytorch_optimizer Lookahead checkpoint")


# --- params torch.optim accepts: strided views (see [NOTE: strided params] in lookahead_fused/optimizer.py)
# -----------------------


def strided_params():
    """Two dense params and two strided views, float64."""
    g = torch.Generator().manual_seed(3)
    weight = torch.nn.Parameter(torch.randn(3, 4, 2, generator=g, dtype=torch.float64)[..., 0])  # strides (8, 2)
    bias = torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
    every_other = torch.nn.Parameter(torch.randn(2, 6, generator=g, dtype=torch.float64)[:, ::3])
    dense = torch.nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))
    return [weight, bias, every_other, dense]


def test_strided_params_follow_algorithm_1_and_the_dense_ones_keep_one_fused_launch(monkeypatch):
    params, oracle_params = strided_params(), strided_params()
    assert not params[0].is_contiguous() and not params[2].is_contiguous()
    ours = Lookahead(adamw(params), k=3, alpha=0.5)
    oracle = PlainLookahead(adamw(oracle_params), k=3, alpha=0.5)
    fused_calls = []
    real = sync.run_fused
    monkeypatch.setattr(sync, "run_fused", lambda launch, lists, *a: (fused_calls.append(len(lists[0])), real(launch, lists, *a)))
    for step in range(7):
        set_grads(params, step)
        set_grads(oracle_params, step)
        ours.step()
        oracle.step()
        assert_close(params, oracle_params)
    assert fused_calls == [2, 2]  # the two dense params, in one launch per sync
    with ours.slow_weights():
        assert_close(params, [oracle.slow[p] for p in oracle_params])
    assert_close(params, oracle_params)


def test_strided_params_checkpoint_and_capturable_step():
    params, twin = strided_params(), strided_params()
    host = Lookahead(adamw(params), k=2, alpha=0.7)
    device_gated = Lookahead(adamw(twin), k=2, alpha=0.7, capturable=True)
    train(host, params, 3)
    train(device_gated, twin, 3)
    assert_close(twin, params)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = Lookahead(adamw(resumed_params), k=2, alpha=0.7)
    resumed.load_state_dict(copy.deepcopy(host.state_dict()))
    train(host, params, 4, first_step=3)
    train(resumed, resumed_params, 4, first_step=3)
    assert_close(resumed_params, params, tolerance=0)


# --- sync_lookahead: timm's epoch-end call ------------------------------------------------------


def test_sync_lookahead_syncs_now_and_keeps_the_schedule():
    params = make_params(shapes=SHAPES)
    opt = Lookahead(adamw(params), k=5, alpha=0.25)
    train(opt, params, 2)
    fast = [p.detach().clone() for p in params]
    slow = [opt.state[p]["slow_param"].clone() for p in params]
    opt.sync_lookahead()
    for p, f, s in zip(params, fast, slow):
        expected = s + 0.25 * (f - s)
        assert torch.allclose(opt.state[p]["slow_param"], expected, rtol=0, atol=1e-15)
        assert torch.equal(p.detach(), opt.state[p]["slow_param"])
    assert opt.step_count == 2
    moved = [p.detach().clone() for p in params]
    train(opt, params, 2, first_step=2)
    assert all(not torch.equal(p.detach(), opt.state[p]["slow_param"]) for p in params)  # step 4: no sync
    train(opt, params, 1, first_step=4)
    assert all(torch.equal(p.detach(), opt.state[p]["slow_param"]) for p in params)  # step 5: the sync
    assert not all(torch.equal(a, b) for a, b in zip(moved, params))


def test_sync_lookahead_is_refused_inside_slow_weights():
    opt = Lookahead(adamw(make_params()))
    with opt.slow_weights(), pytest.raises(RuntimeError, match="sync_lookahead\\(\\) inside"):
        opt.sync_lookahead()


# --- param groups alike in the checkpoint ---------------------------------------------------------


def test_every_param_group_carries_the_same_section():
    """timm's test: repeated param groups have the same representation in the state_dict."""
    weight, bias = make_params()
    opt = Lookahead(adamw([{"params": [weight]}, {"params": [bias], "lr": 0.01}]), k=3)
    train(opt, [weight, bias], 4)
    groups = opt.state_dict()["param_groups"]
    assert groups[0]["lookahead"]["k"] == groups[1]["lookahead"]["k"] == 3
    assert torch.equal(groups[0]["lookahead"]["step"], groups[1]["lookahead"]["step"])
    single = Lookahead(adamw(make_params()))
    repeated = Lookahead(adamw(make_params()))
    repeated.param_groups.extend(repeated.param_groups)
    last, last_repeated = single.state_dict()["param_groups"][-1], repeated.state_dict()["param_groups"][-1]
    assert last.keys() == last_repeated.keys() and last["lookahead"].keys() == last_repeated["lookahead"].keys()
    assert last["params"] == last_repeated["params"]


# --- pullback for any inner optimizer: momentum_key= and known third-party keys -------------------


class MomentumSGD(torch.optim.Optimizer):
    """An optimizer this package does not know, keeping its first moment under "velocity"."""

    def __init__(self, params, lr=0.1, beta=0.9):
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                velocity = self.state[p].setdefault("velocity", torch.zeros_like(p))
                velocity.mul_(group["beta"]).add_(p.grad)
                p.add_(velocity, alpha=-group["lr"])


@pytest.mark.parametrize("mode", ["reset", "pullback"])
def test_momentum_key_names_the_first_moment_of_any_optimizer(mode):
    params, oracle_params = make_params(), make_params()
    with pytest.raises(ValueError, match="momentum_key="):
        Lookahead(MomentumSGD(params), pullback_momentum=mode)
    ours = Lookahead(MomentumSGD(params), k=2, pullback_momentum=mode, momentum_key="velocity")
    oracle = PlainLookahead(MomentumSGD(oracle_params), k=2, alpha=0.5, pullback=mode, momentum_key="velocity")
    for step in range(5):
        set_grads(params, step)
        set_grads(oracle_params, step)
        ours.step()
        oracle.step()
        assert_close(params, oracle_params)
        assert_close([ours.optimizer.state[p]["velocity"] for p in params], [oracle.inner.state[p]["velocity"] for p in oracle_params])
    resumed = Lookahead(MomentumSGD(make_params()), k=2, pullback_momentum=mode, momentum_key="velocity")
    resumed.load_state_dict(ours.state_dict())


@pytest.mark.parametrize(
    "package,name,key",
    [("timm", "AdamP", "exp_avg"), ("timm", "SGDP", "momentum"), ("timm", "Lars", "momentum_buffer"),
     ("pytorch_optimizer", "Lion", "exp_avg"), ("pytorch_optimizer", "Ranger", "exp_avg")],
)  # fmt: skip
def test_known_third_party_first_moment_keys(package, name, key):
    """Recognised by package and class name, without importing the package (a stand-in class here)."""
    from lookahead_fused import first_moment

    module = types.ModuleType(f"{package}.optim.stand_in")
    cls = type(name, (MomentumSGD,), {"__module__": module.__name__})
    assert first_moment.first_moment_key(cls(make_params()), "reset") == key
    assert first_moment.first_moment_key(cls(make_params()), "reset", momentum_key="velocity") == "velocity"
    assert f"{package}.optim.stand_in" not in sys.modules


@pytest.mark.parametrize("peer_style", [TimmStyle, PytorchOptimizerStyle])
def test_a_peer_checkpoint_loads_into_compact_slow_weights(peer_style):
    """A peer's float32 slow weights are encoded on load (with the one warning of the peer's
    conversion: a peer has no slow_dtype to differ from ours), decode to within the encoding's bound
    of the peer's, and the run continues beside the peer's (the two differ by that rounding at each sync)."""
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    peer = peer_style(adamw(params), k=5, alpha=0.5)
    train(peer, params, 7)
    peer_slow = [peer.slow_weight(p).clone() for p in params]
    ours_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ours = Lookahead(adamw(ours_params), k=5, alpha=0.5, slow_dtype=bf16_int8.SLOW_DTYPE)
    with pytest.warns(UserWarning) as caught:
        ours.load_state_dict(copy.deepcopy(peer.state_dict()))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "Lookahead checkpoint" in messages[0], messages
    for p, slow in zip(ours_params, peer_slow, strict=True):
        state = ours.state[p]
        assert set(state) == {SLOW_HIGH, SLOW_LOW}
        decoded = bf16_int8.decode(state[SLOW_HIGH], state[SLOW_LOW])
        assert torch.all((decoded.double() - slow.double()).abs() <= bf16_int8.error_bound(slow))
    for step in range(7, 17):
        set_grads(params, step)
        set_grads(ours_params, step)
        peer.step()
        ours.step()
    assert_close(ours_params, params, tolerance=1e-3)


@pytest.mark.parametrize("peer_style", [TimmStyle, PytorchOptimizerStyle])
def test_a_peer_checkpoint_loads_into_int8_delta_slow_weights(peer_style):
    """LookaheadAdamW(slow_dtype="int8-delta") takes a peer's Lookahead(AdamW) checkpoint: each float32 slow
    weight becomes an offset from the param as loaded, encoded (with the one warning of the peer's
    conversion), within the encoding's bound of the peer's, and the run continues beside the peer's."""
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    peer = peer_style(adamw(params), k=5, alpha=0.5)
    train(peer, params, 7)
    peer_slow = [peer.slow_weight(p).clone() for p in params]
    ours_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    hyper = adamw(ours_params).defaults
    ours = LookaheadAdamW(ours_params, lr=hyper["lr"], weight_decay=hyper["weight_decay"], k=5, alpha=0.5,
                          slow_dtype=int8_blocks.DELTA_SLOW_DTYPE)  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        ours.load_state_dict(copy.deepcopy(peer.state_dict()))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "Lookahead checkpoint" in messages[0], messages
    for p, slow in zip(ours_params, peer_slow, strict=True):
        assert set(ours.state[p]) == {SLOW_DELTA, SLOW_DELTA_SCALES}
        offset = int8_blocks.memory_order(slow - p)
        bound = int8_blocks.error_bound(offset) + 2.0**-23 * int8_blocks.memory_order(slow).double().abs()
        decoded = int8_blocks.memory_order(slow_weight_value(ours.state[p], p))
        assert torch.all((decoded.double() - int8_blocks.memory_order(slow).double()).abs() <= bound)
    for step in range(7, 17):
        set_grads(params, step)
        set_grads(ours_params, step)
        peer.step()
        ours.step()
    assert_close(ours_params, params, tolerance=1e-3)
