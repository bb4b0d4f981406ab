"""state_dict / load_state_dict: bitwise resume, plain inner checkpoints, layout errors, and the
param_groups that LR schedulers rely on."""

import copy
import io

import pytest
import torch

from lookahead_fused import Lookahead

from .helpers import assert_bitwise_equal, clone_params, make_params, run, set_grads, snapshot


def roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _make(params, mode="pullback", backend="auto", **kwargs):
    return Lookahead(torch.optim.Adam(params, lr=0.01), k=4, alpha=0.6, pullback_momentum=mode, backend=backend, **kwargs)


def _only_state_and_groups(state_dict):
    """What torch.distributed.checkpoint.state_dict's get/set_optimizer_state_dict keep."""
    return {"state": state_dict["state"], "param_groups": state_dict["param_groups"]}


KEEP = {"whole": lambda sd: sd, "state and param_groups only": _only_state_and_groups}


@pytest.mark.parametrize("keep", list(KEEP))
@pytest.mark.parametrize("mode", ["none", "reset", "pullback"])
@pytest.mark.parametrize("stop_at", [6, 8, 9])  # mid-period, right after a sync, one past it
def test_resume_follows_the_same_trajectory_bitwise(backend, mode, stop_at, keep):
    params = make_params(torch.float32)
    uninterrupted = clone_params(params)
    opt = _make(uninterrupted, mode, backend)
    run(opt, uninterrupted, stop_at)
    saved_params, saved_opt = roundtrip(snapshot(uninterrupted)), roundtrip(KEEP[keep](opt.state_dict()))
    run(opt, uninterrupted, 11, first_step=stop_at)

    resumed = clone_params(make_params(torch.float32, seed=99))  # other values, same layout
    opt2 = _make(resumed, mode, backend)
    with torch.no_grad():
        for p, saved in zip(resumed, saved_params):
            p.copy_(saved)
    opt2.load_state_dict(saved_opt)
    assert opt2.step_count == stop_at
    assert all("lookahead" not in group for group in opt2.optimizer.param_groups)  # the mirror stays ours
    run(opt2, resumed, 11, first_step=stop_at)
    assert_bitwise_equal(resumed, uninterrupted)
    assert_bitwise_equal([opt2.state[p]["slow_param"] for p in resumed], [opt.state[p]["slow_param"] for p in uninterrupted])


def test_state_dict_contents():
    params = make_params(torch.float32)
    opt = _make(params)
    run(opt, params, 5)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups", "lookahead"}
    assert sd["lookahead"]["k"] == 4 and sd["lookahead"]["alpha"] == 0.6
    assert sd["lookahead"]["pullback_momentum"] == "pullback" and int(sd["lookahead"]["step"]) == 5
    for i, p in enumerate(params):
        entry = sd["state"][i]
        assert {"exp_avg", "exp_avg_sq", "step", "lookahead_slow_param", "lookahead_slow_momentum"} <= set(entry)
        assert torch.equal(entry["lookahead_slow_param"], opt.state[p]["slow_param"])
    assert "lookahead_slow_param" not in opt.optimizer.state[params[0]]  # the inner's live state is untouched


def test_load_restores_k_alpha_and_mode_from_the_checkpoint():
    params = make_params(torch.float32)
    opt = _make(params)
    run(opt, params, 2)
    other = Lookahead(torch.optim.Adam(clone_params(params), lr=0.01), k=7, alpha=0.1, pullback_momentum="none")
    other.load_state_dict(opt.state_dict())
    assert (other.k, other.alpha, other.pullback_momentum, other.step_count) == (4, 0.6, "pullback", 2)


def test_load_casts_to_the_params_device_and_dtype():
    params = make_params(torch.bfloat16)
    opt = _make(params, slow_dtype=torch.float32)
    run(opt, params, 3)
    sd = opt.state_dict()
    for entry in sd["state"].values():
        entry["lookahead_slow_param"] = entry["lookahead_slow_param"].double()
    fresh = _make(clone_params(params), slow_dtype=torch.float32)
    fresh.load_state_dict(sd)
    for p in fresh.param_groups[0]["params"]:
        assert fresh.state[p]["slow_param"].dtype == torch.float32


def test_loaded_slow_weights_do_not_alias_the_checkpoint():
    params = make_params(torch.float32)
    opt = _make(params)
    run(opt, params, 3)
    sd = opt.state_dict()
    fresh_params = clone_params(params)
    fresh = _make(fresh_params)
    fresh.load_state_dict(sd)
    assert all(fresh.state[p]["slow_param"].data_ptr() != sd["state"][i]["lookahead_slow_param"].data_ptr() for i, p in enumerate(fresh_params))


def test_plain_inner_checkpoint_loads_with_a_warning(backend):
    params = make_params(torch.float32)
    inner_only = torch.optim.Adam(params, lr=0.01)
    for step in range(3):
        set_grads(params, step)
        inner_only.step()
    plain_sd = roundtrip(inner_only.state_dict())

    a, b = clone_params(params), clone_params(params)
    loaded = Lookahead(torch.optim.Adam(a, lr=0.01), k=4, alpha=0.6, backend=backend)
    run(loaded, a, 2, first_step=50)  # some history that the load must replace
    with torch.no_grad():
        for p, p0 in zip(a, params):
            p.copy_(p0)
    with pytest.warns(UserWarning, match="slow weights are taken from the current params"):
        loaded.load_state_dict(plain_sd)
    assert loaded.step_count == 0
    assert_bitwise_equal([loaded.state[p]["slow_param"] for p in a], snapshot(params))

    inner_b = torch.optim.Adam(b, lr=0.01)
    inner_b.load_state_dict(roundtrip(plain_sd))  # its own copy: torch keeps Adam's step tensor by reference
    wrapped_after_load = Lookahead(inner_b, k=4, alpha=0.6, backend=backend)
    run(loaded, a, 9, first_step=3)
    run(wrapped_after_load, b, 9, first_step=3)
    assert_bitwise_equal(a, b)


def test_param_groups_stay_the_inner_list_after_load():
    params = make_params(torch.float32)
    opt = _make(params)
    run(opt, params, 2)
    sd = opt.state_dict()
    opt.load_state_dict(sd)
    assert opt.param_groups is opt.optimizer.param_groups
    opt.optimizer.load_state_dict(opt.optimizer.state_dict())  # even a load on the inner directly
    assert opt.param_groups is opt.optimizer.param_groups


@pytest.mark.parametrize("built_on", ["wrapper", "inner"])
def test_scheduler_drives_the_inner_lr_also_after_a_load(built_on):
    params = make_params(torch.float32)
    opt = _make(params)
    scheduler = torch.optim.lr_scheduler.StepLR(opt if built_on == "wrapper" else opt.optimizer, step_size=1, gamma=0.5)
    run(opt, params, 1)
    scheduler.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    sd, scheduler_sd = opt.state_dict(), scheduler.state_dict()

    fresh = _make(clone_params(params))
    fresh_scheduler = torch.optim.lr_scheduler.StepLR(fresh if built_on == "wrapper" else fresh.optimizer, step_size=1, gamma=0.5)
    fresh.load_state_dict(sd)
    fresh_scheduler.load_state_dict(scheduler_sd)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    run(fresh, fresh.param_groups[0]["params"], 1)
    fresh_scheduler.step()
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.0025)


def _tampered(sd, how):
    sd = copy.deepcopy(sd)
    if how == "groups":
        sd["param_groups"].append(copy.deepcopy(sd["param_groups"][0]))
    elif how == "params":
        sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"][:1]
    elif how == "shape":
        sd["state"][0]["lookahead_slow_param"] = torch.zeros(4, 3)
    elif how == "missing slow":
        del sd["state"][1]["lookahead_slow_param"]
    elif how == "step":
        sd["lookahead"]["step"] = torch.tensor(-1)
    elif how == "k":
        sd["lookahead"]["k"] = 0
    elif how == "alpha":
        sd["lookahead"]["alpha"] = 2.0
    elif how == "group alpha":
        sd["param_groups"][0]["lookahead_alpha"] = float("nan")
    elif how == "mode":
        sd["lookahead"]["pullback_momentum"] = "sideways"
    elif how == "version":
        sd["lookahead"]["format_version"] = 99
    return sd


@pytest.mark.parametrize(
    "how,message",
    [
        ("groups", "2 param groups but this optimizer has 1"),
        ("params", "param group 0: the state_dict has 1 params but the group has 2"),
        ("shape", "param group 0, param 0: the state_dict's lookahead_slow_param is (4, 3)"),
        ("missing slow", "param group 0, param 1: the state_dict has no lookahead_slow_param"),
        ("step", "non-negative integer"),
        ("k", "k must be an int >= 1"),
        ("alpha", "alpha"),
        ("group alpha", "lookahead_alpha"),
        ("mode", "pullback_momentum must be one of"),
        ("version", "format_version 99"),
    ],
)
def test_bad_checkpoint_is_rejected_before_anything_changes(how, message):
    params = make_params(torch.float32)
    opt = _make(params)
    run(opt, params, 6)
    good = roundtrip(opt.state_dict())
    before = roundtrip(opt.state_dict())
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        opt.load_state_dict(_tampered(good, how))
    after = opt.state_dict()
    assert int(after["lookahead"]["step"]) == 6
    for i in before["state"]:
        for key, value in before["state"][i].items():
            assert torch.equal(after["state"][i][key], value), (i, key)
    assert after["param_groups"] == before["param_groups"]


def test_deepcopy_gives_an_independent_working_optimizer():
    params = make_params(torch.float32)
    opt = _make(params)
    run(opt, params, 3)
    twin = copy.deepcopy(opt)
    twin_params = twin.param_groups[0]["params"]
    assert twin.param_groups is twin.optimizer.param_groups
    run(opt, params, 3, first_step=3)
    run(twin, twin_params, 3, first_step=3)
    assert_bitwise_equal(twin_params, params)
