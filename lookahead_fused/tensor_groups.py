"""The tensors one sync works on, built from a Lookahead's param groups and state (the role of
_init_group in torch's optimizers): the weight pairs by alpha, the launches of one sync (with the
outer momenta and the pullback momenta), the split of strided params from the fused launch, and
the contract check of all of it before anything is written.

A launch is (alpha, lists): lists = (fast, slow) or (fast, slow, outer momentum), one entry per
tensor of the launch."""

from __future__ import annotations

import torch

from . import ops
from .adaptive_alpha import ADAPTIVE
from .slow_state import OUTER_MOMENTUM, SLOW_MOMENTUM, SLOW_PARAM, rehome


def weight_pairs(opt, check: bool = True) -> dict:
    """{alpha: (params, slow weights)}, checked against the op contract. A param that moved
    (model.to(), a new layout) takes its slow weight along."""
    pairs: dict = {}
    for group, alpha in zip(opt.param_groups, opt.group_alphas()):
        fast, slow = pairs.setdefault(alpha, ([], []))
        fast += group["params"]
        slow += [opt.state[p][SLOW_PARAM] for p in group["params"]]
    if not check:
        return pairs
    try:
        check_launches(opt, list(pairs.items()))
    except ValueError:  # move the slow weights along, and check again
        for fast, slow in pairs.values():
            for i, p in enumerate(fast):
                slow[i] = opt.state[p][SLOW_PARAM] = rehome(opt.state[p][SLOW_PARAM], p)
        check_launches(opt, list(pairs.items()))
    return pairs


def launches(opt, pairs: dict, check: bool = True) -> list[tuple]:
    """The updates of one sync. Without outer momentum, the pullback momenta join their params'
    launch; with it, they take one of their own (see [NOTE: outer momentum] in lookahead_fused/optimizer.py)."""
    mu = opt.defaults["outer_momentum"]
    found = []
    for alpha, (fast, slow) in pairs.items():
        moment_fast, moment_slow = momentum_pairs(opt, fast) if opt.pullback_momentum == "pullback" else ([], [])
        if mu:
            found.append((alpha, (fast, slow, [opt.state[p][OUTER_MOMENTUM] for p in fast])))
            if moment_fast:
                found.append((alpha, (moment_fast, moment_slow)))
        else:
            found.append((alpha, (fast + moment_fast, slow + moment_slow)))
    if check and (mu or opt.pullback_momentum == "pullback"):
        check_launches(opt, found)
    return found


def check_launches(opt, found: list[tuple]) -> None:
    """Raise, as the ops would, if a launch breaks the op contract (strided params excepted)."""
    mu = opt.defaults["outer_momentum"]
    for alpha, lists in found:
        checked_alpha = opt._adaptive.bounds[0] if alpha == ADAPTIVE else alpha  # chosen at the sync
        fused, _ = split_strided(opt, *lists)
        momentum = fused[2] if len(fused) == 3 else None
        ops.check_sync_args(fused[0], fused[1], checked_alpha, momentum=momentum, mu=mu, backend=opt.defaults["backend"])


def split_strided(opt, *lists: list) -> tuple[tuple[list, ...], tuple[list, ...]]:
    """(fused lists, strided lists), split by the first list's tensors
    (see [NOTE: strided params] in lookahead_fused/optimizer.py)."""
    if not opt._strided_ids:
        return lists, tuple([] for _ in lists)
    fused, strided = tuple([] for _ in lists), tuple([] for _ in lists)
    for tensors in zip(*lists):
        target = strided if id(tensors[0]) in opt._strided_ids else fused
        for column, t in zip(target, tensors):
            column.append(t)
    return fused, strided


def first_moments(opt, params) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(param, first-moment buffer) for the params whose inner state has one by now."""
    found = []
    for p in params:
        buffer = opt.optimizer.state.get(p, {}).get(opt._momentum_key)
        if isinstance(buffer, torch.Tensor):
            found.append((p, buffer))
    return found


def momentum_pairs(opt, params) -> tuple[list, list]:
    """(first-moment buffers, their slow copies) for "pullback"; a missing slow copy starts at zero
    (the inner optimizer's state at phi_0)."""
    fast, slow = [], []
    for p, buffer in first_moments(opt, params):
        state = opt.state[p]
        held = state.get(SLOW_MOMENTUM)
        if held is None:
            held = torch.zeros_like(buffer, dtype=opt.slow_dtype_for(buffer))
        state[SLOW_MOMENTUM] = rehome(held, buffer)
        fast.append(buffer)
        slow.append(state[SLOW_MOMENTUM])
    return fast, slow
