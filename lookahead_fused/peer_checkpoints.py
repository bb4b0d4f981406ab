"""Checkpoints of the two most used Lookahead ports, read as this class's own format (checkpoint.py).

    timm (timm.optim.Lookahead): the inner optimizer's state_dict; each param group carries
      lookahead_alpha, lookahead_k and lookahead_step (steps so far); each param's state entry
      carries lookahead_slow_buff once timm has synced it (timm creates the slow weights at its
      first sync, from the fast weights then, and only for params that had a gradient).
    pytorch_optimizer (>= 3, Lookahead): {"lookahead_state": {(group, index): {"slow_params": T,
      ["slow_momentum": T]}}, "base_optimizer": <the inner optimizer's state_dict>}, each inner
      group carrying "counter" (steps since the last sync); k and alpha are not saved.

convert() turns either into {"state", "param_groups", "lookahead"} with one warning that says what
it took from the peer and what it could not, so the run continues the peer's trajectory: timm's k
and per-group alpha, pytorch_optimizer's counter with this optimizer's k and alpha. Params without
a saved slow weight start from their current value (the warning counts them). Keys only the peer
used are dropped, so they are not saved again.
"""

from __future__ import annotations

import warnings

import torch

from . import first_moment
from .checkpoint import SAVED_SLOW_MOMENTUM, SAVED_SLOW_PARAM, SECTION, section_for
from .slow_state import ALPHA_KEY

TIMM_GROUP_KEYS = ("lookahead_k", "lookahead_step")  # with lookahead_alpha, which is ours too
TIMM_SLOW = "lookahead_slow_buff"
PEER_SLOW, PEER_SLOW_MOMENTUM = "slow_params", "slow_momentum"
PEER_COUNTER = "counter"
PEER_MOMENTUM_BUFFER = "momentum_buffer"  # pytorch_optimizer puts one into any inner state for pullback


def convert(opt, state_dict):
    """`state_dict` in this class's format: converted (with a warning) if it is a timm or a
    pytorch_optimizer Lookahead checkpoint, else as it is."""
    if not isinstance(state_dict, dict) or SECTION in state_dict:
        return state_dict
    if "lookahead_state" in state_dict and "base_optimizer" in state_dict:
        return _from_pytorch_optimizer(opt, state_dict)
    groups = state_dict.get("param_groups")
    if isinstance(groups, list) and any(isinstance(g, dict) and "lookahead_k" in g for g in groups):
        return _from_timm(opt, state_dict)
    return state_dict


def _the_same_in_every_group(groups, key: str, peer: str):
    values = {repr(group.get(key)) for group in groups}
    if len(values) != 1:
        raise ValueError(
            f"a {peer} Lookahead checkpoint with different {key!r} in its param groups ({', '.join(sorted(values))}); "
            "this Lookahead keeps one counter and one k for all groups"
        )
    return groups[0].get(key)


def _check_layout(opt, groups, peer: str) -> None:
    if len(groups) != len(opt.param_groups) or any(
        len(saved["params"]) != len(group["params"]) for saved, group in zip(groups, opt.param_groups)
    ):
        raise ValueError(f"the {peer} Lookahead checkpoint was saved for another parameter layout (groups or params differ)")


def _from_timm(opt, state_dict) -> dict:
    groups = state_dict["param_groups"]
    _check_layout(opt, groups, "timm")
    k = _the_same_in_every_group(groups, "lookahead_k", "timm")
    step = _the_same_in_every_group(groups, "lookahead_step", "timm")
    state, missing = {}, 0
    for saved_group, group in zip(groups, opt.param_groups):
        for saved_id, p in zip(saved_group["params"], group["params"]):
            entry = dict(state_dict["state"].get(saved_id, {}))
            slow = entry.pop(TIMM_SLOW, None)
            if slow is None:
                missing += 1
                slow = p.detach()
            entry[SAVED_SLOW_PARAM] = slow
            state[saved_id] = entry
    converted_groups = [{key: value for key, value in g.items() if key not in TIMM_GROUP_KEYS} for g in groups]
    alphas = sorted({g.get(ALPHA_KEY) for g in converted_groups}, key=repr)
    note = ""
    if missing:
        note = (
            f" It holds no slow weight for {missing} of {len(state)} params (timm creates them at its first sync, "
            f"step {k}, and only for params with a gradient): those start from the params' current values, so until "
            "the next sync the run differs from timm's, which would start them at that sync."
        )
    warnings.warn(
        f"loading a timm Lookahead checkpoint: step {step}, k={k} and alpha {', '.join(map(repr, alphas))} (as each "
        f"group's {ALPHA_KEY}) are taken from it and replace this optimizer's k={opt.k}; timm's own keys are "
        f"dropped.{note}",
        stacklevel=4,
    )
    return {"state": state, "param_groups": converted_groups, SECTION: _peer_section(opt, torch.tensor(int(step)), int(k))}


def _peer_section(opt, step: torch.Tensor, k: int) -> dict:
    """This optimizer's "lookahead" section with the peer's counter and k, less the outer momentum:
    a peer keeps none, so checkpoint.read keeps this optimizer's mu and starts its momentum at zero,
    as for a checkpoint saved before outer momentum existed."""
    section = section_for(opt, step, k)
    del section["outer_momentum"], section["nesterov"]
    return section


def _from_pytorch_optimizer(opt, state_dict) -> dict:
    inner, saved = state_dict["base_optimizer"], state_dict["lookahead_state"]
    groups = inner["param_groups"]
    _check_layout(opt, groups, "pytorch_optimizer")
    counter = _the_same_in_every_group(groups, PEER_COUNTER, "pytorch_optimizer")
    inner_key = opt.defaults["momentum_key"] or first_moment.known_key(opt.optimizer)
    keeps_momentum_buffer = inner_key == PEER_MOMENTUM_BUFFER  # SGD's, RMSprop's, LARS's own buffer stays
    state, missing, dropped = {}, 0, []
    for g, (saved_group, group) in enumerate(zip(groups, opt.param_groups)):
        for i, (saved_id, p) in enumerate(zip(saved_group["params"], group["params"])):
            entry = dict(inner["state"].get(saved_id, {}))
            if not keeps_momentum_buffer and entry.pop(PEER_MOMENTUM_BUFFER, None) is not None:
                dropped.append(PEER_MOMENTUM_BUFFER)
            peer_entry = saved.get((g, i), {})
            slow = peer_entry.get(PEER_SLOW)
            if slow is None:
                missing += 1
                slow = p.detach()
            entry[SAVED_SLOW_PARAM] = slow
            slow_momentum = peer_entry.get(PEER_SLOW_MOMENTUM)
            if slow_momentum is not None and opt.pullback_momentum == "pullback" and keeps_momentum_buffer:
                entry[SAVED_SLOW_MOMENTUM] = slow_momentum
            elif slow_momentum is not None:
                dropped.append(PEER_SLOW_MOMENTUM)
            state[saved_id] = entry
    converted_groups = [{key: value for key, value in g.items() if key != PEER_COUNTER} for g in groups]
    note = f" It holds no slow weight for {missing} params: those start from the params' current values." if missing else ""
    if dropped:
        note += (
            f" Dropped {', '.join(sorted(set(dropped)))}: pytorch_optimizer keeps a 'momentum_buffer' for any inner "
            f"optimizer, which {type(opt.optimizer).__name__} does not use."
        )
    warnings.warn(
        f"loading a pytorch_optimizer Lookahead checkpoint: its counter ({counter} steps since its last sync) becomes "
        f"step {counter}; it saves no k or alpha, so this optimizer's k={opt.k} and alpha={opt.alpha!r} apply.{note}",
        stacklevel=4,
    )
    return {"state": state, "param_groups": converted_groups, SECTION: _peer_section(opt, torch.tensor(int(counter)), opt.k)}
