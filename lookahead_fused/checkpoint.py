"""Lookahead's state_dict format, reading one back with every check done before anything changes, and
committing what was read.

    {"state": {id: {<inner optimizer entries>, "lookahead_slow_param": T, ["lookahead_slow_momentum": T],
                    ["lookahead_outer_momentum": T]}},   (slow_dtype="bf16+int8": "lookahead_slow_high": T,
                                                          "lookahead_slow_low": T for the slow weight;
                                                          slow_dtype="int8-delta": "lookahead_slow_delta": T,
                                                          "lookahead_slow_delta_scales": T and
                                                          "lookahead_slow_delta_dims": T for it;
                                                          momentum_dtype="int8": the outer momentum's
                                                          codes, "lookahead_outer_momentum_scales": T and
                                                          "lookahead_outer_momentum_dims": T;
                                                          with fragments or delay, for every param:
                                                          "lookahead_pending_delta": T)
     "param_groups": <the inner optimizer's groups>,
     "lookahead": {"format_version": 1, "step": int64 tensor, "k", "alpha" (a number or "adaptive"),
                   "pullback_momentum", "slow_dtype", "alpha_bounds", "last_adaptive_alpha",
                   "outer_momentum", "nesterov", "momentum_dtype",
                   ["streaming": {"fragments", "delay", "in_flight": int64 tensor of a flag per fragment}]}}

"lookahead_slow_momentum" is the slow copy of the inner optimizer's first moment (pullback
momentum); "lookahead_outer_momentum" the momentum on the slow weight (outer_momentum > 0). A slow
weight kept as bf16+int8 or int8-delta is saved as its tensors, bit for bit; loaded into an optimizer of
another slow_dtype it is decoded and converted (and an exact one encoded), with the slow_dtype warning
(an int8-delta offset is from the param: converting reads the params as they are when it loads); an
outer momentum saved in another momentum_dtype is cast (int8 blocks decoded or encoded), with the
momentum_dtype warning; int8 blocks saved in the param's memory order load bit for bit.

[NOTE: section mirror] The "lookahead" section is also copied into every param group, because
torch.distributed.checkpoint.state_dict's get/set_optimizer_state_dict keep only "state" and
"param_groups"; a state_dict that lost the top-level section is read from the first group's mirror.
Every group carries the same copy, so the groups of a checkpoint stay alike (a tool that compares
or repeats groups, as timm's tests do, sees one representation).

Slow tensors sit in each param's own entry, as torch optimizers keep per-param state, so tools that
map per-param state to parameter names keep them with their param. A dict without "lookahead" is a
plain inner-optimizer checkpoint: it loads, with a warning, taking the slow weights from the params.
Checkpoints of timm's and pytorch_optimizer's Lookahead are converted first (peer_checkpoints.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import chain

import torch

from . import bf16_int8, contract, first_moment
from .adaptive_alpha import ADAPTIVE, check_alpha_or_adaptive, check_bounds
from .options import check_int8_delta_options
from . import int8_blocks
from .slow_state import ALPHA_KEY, OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES, PENDING_DELTA, SLOW_DELTA
from .slow_state import SLOW_DELTA_SCALES, SLOW_HIGH, SLOW_LOW, SLOW_MOMENTUM, SLOW_PARAM
from .sharded import int8_scale_slots, is_sharded
from .streaming import in_flight_flags
from .slow_state import copy_as, int8_block_value, is_compact, is_int8_delta, is_int8_momentum
from .slow_state import outer_momentum_dtype_for, outer_momentum_state, slow_weight_state, state_dims
from .slow_state import zero_outer_momentum

FORMAT_VERSION = 1
SECTION = "lookahead"
SAVED_SLOW_PARAM = "lookahead_slow_param"
SAVED_SLOW_MOMENTUM = "lookahead_slow_momentum"
SAVED_OUTER_MOMENTUM = "lookahead_outer_momentum"
SAVED_SLOW_HIGH = "lookahead_slow_high"
SAVED_SLOW_LOW = "lookahead_slow_low"
SAVED_OUTER_MOMENTUM_SCALES = "lookahead_outer_momentum_scales"
SAVED_OUTER_MOMENTUM_DIMS = "lookahead_outer_momentum_dims"  # the dims order the int8 blocks were cut in
SAVED_PENDING_DELTA = "lookahead_pending_delta"  # see [NOTE: streaming] in lookahead_fused/streaming.py
SAVED_SLOW_DELTA = "lookahead_slow_delta"  # int8-delta: the offset's codes (see [NOTE: int8-delta] in csrc/adamw.h)
SAVED_SLOW_DELTA_SCALES = "lookahead_slow_delta_scales"
SAVED_SLOW_DELTA_DIMS = "lookahead_slow_delta_dims"
STREAMING = "streaming"  # the section's entry of fragments, delay and the fragments in flight
_SAVED_KEYS = (SAVED_SLOW_PARAM, SAVED_SLOW_MOMENTUM, SAVED_OUTER_MOMENTUM, SAVED_SLOW_HIGH, SAVED_SLOW_LOW,
               SAVED_OUTER_MOMENTUM_SCALES, SAVED_OUTER_MOMENTUM_DIMS, SAVED_PENDING_DELTA, SAVED_SLOW_DELTA,
               SAVED_SLOW_DELTA_SCALES, SAVED_SLOW_DELTA_DIMS)  # fmt: skip
# a slow weight's state key -> its key in a checkpoint
_SAVED_SLOW_KEYS = {SLOW_PARAM: SAVED_SLOW_PARAM, SLOW_HIGH: SAVED_SLOW_HIGH, SLOW_LOW: SAVED_SLOW_LOW}
# int8 blocks in a param's state (codes key, scales key) -> their keys in a checkpoint (codes, scales, the order
# of the dims they were cut in)
_SAVED_INT8_BLOCKS = {
    (SLOW_DELTA, SLOW_DELTA_SCALES): (SAVED_SLOW_DELTA, SAVED_SLOW_DELTA_SCALES, SAVED_SLOW_DELTA_DIMS),
    (OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES): (SAVED_OUTER_MOMENTUM, SAVED_OUTER_MOMENTUM_SCALES, SAVED_OUTER_MOMENTUM_DIMS),
}


def dtype_name(dtype) -> str | None:
    """None, "float32", or "bf16+int8"."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def section_for(opt, step: torch.Tensor, k: int) -> dict:
    """The "lookahead" section of `opt`'s configuration, with this step counter and k."""
    return {
        "format_version": FORMAT_VERSION,
        "step": step,
        "k": k,
        "alpha": opt.alpha,
        "pullback_momentum": opt.pullback_momentum,
        "outer_momentum": opt.defaults["outer_momentum"],
        "nesterov": opt.defaults["nesterov"],
        "slow_dtype": dtype_name(opt.defaults["slow_dtype"]),
        "momentum_dtype": dtype_name(opt.defaults["momentum_dtype"]),
        "alpha_bounds": list(opt.alpha_bounds) if opt.alpha_bounds else None,
        "last_adaptive_alpha": opt.last_adaptive_alpha,
    }


def pack(opt, step: torch.Tensor, streaming: dict | None = None) -> dict:
    """`opt`'s state_dict at step counter `step`. With fragments or delay, `streaming` (Stream.section:
    the fragments, the delay and which fragments are in flight) goes into the section, and every param
    gets a SAVED_PENDING_DELTA, zero where no sync is in flight, so that the structure does not depend
    on the step (torch.distributed.checkpoint loads into a template)."""
    inner = opt.optimizer.state_dict()
    state = dict(inner["state"])
    saved_ids = chain.from_iterable(group["params"] for group in inner["param_groups"])
    params = chain.from_iterable(group["params"] for group in opt.param_groups)
    for saved_id, p in zip(saved_ids, params):
        entry = dict(state.get(saved_id, {}))  # a copy: never write into the inner's live state
        mine = opt.state[p]
        for key, saved_key in _SAVED_SLOW_KEYS.items():
            if key in mine:
                entry[saved_key] = mine[key]
        if SLOW_MOMENTUM in mine:
            entry[SAVED_SLOW_MOMENTUM] = mine[SLOW_MOMENTUM]
        if OUTER_MOMENTUM in mine:
            entry[SAVED_OUTER_MOMENTUM] = mine[OUTER_MOMENTUM]
        for (codes, scales), (saved_codes, saved_scales, saved_dims) in _SAVED_INT8_BLOCKS.items():
            if scales in mine:
                entry[saved_codes], entry[saved_scales] = mine[codes], mine[scales]
                entry[saved_dims] = torch.tensor(int8_blocks.memory_dims(mine[codes]))
        if PENDING_DELTA in mine:  # a copy: it is a view of its fragment's buffer, which the fragment's next sync reuses
            entry[SAVED_PENDING_DELTA] = mine[PENDING_DELTA].clone()
        elif streaming is not None:
            entry[SAVED_PENDING_DELTA] = torch.zeros_like(mine[SLOW_PARAM])
        state[saved_id] = entry
    section = section_for(opt, step.cpu().clone(), opt.k)
    if streaming is not None:
        section[STREAMING] = streaming
    groups = inner["param_groups"]  # new dicts (the inner's state_dict() packs them): ours to extend
    for group in groups:  # See [NOTE: section mirror] in lookahead_fused/checkpoint.py
        group[SECTION] = _cloned(section)
    return {"state": state, "param_groups": groups, SECTION: section}


def _cloned(section: dict) -> dict:
    """A copy of `section` whose tensors are copies (each group's mirror holds its own)."""
    return {key: _cloned(value) if isinstance(value, dict) else value.clone() if isinstance(value, torch.Tensor) else value
            for key, value in section.items()}  # fmt: skip


def _section_of(state_dict) -> dict | None:
    """The "lookahead" section: top level, or else its mirror in the first param group."""
    if SECTION in state_dict:
        return state_dict[SECTION]
    groups = state_dict["param_groups"]
    return groups[0].get(SECTION) if groups and isinstance(groups[0], dict) else None


@dataclass
class Loaded:
    """A checked checkpoint, ready to apply: nothing in it aliases the state_dict it came from."""

    inner_state_dict: dict
    slow: dict = field(default_factory=dict)  # param -> its slow weight's state entries (slow_weight_state)
    slow_momentum: dict = field(default_factory=dict)  # param -> slow first moment
    outer_momentum: dict = field(default_factory=dict)  # param -> its outer momentum's state entries
    pending: dict = field(default_factory=dict)  # param -> its SAVED_PENDING_DELTA
    streaming: dict | None = None  # the section's STREAMING entry, if any
    step: torch.Tensor | None = None
    config: dict = field(default_factory=dict)  # k, alpha, pullback_momentum


def _read_config(opt, section) -> tuple[dict, torch.Tensor]:
    if not isinstance(section, dict):
        raise ValueError(f"state_dict['lookahead'] must be a dict, got {type(section).__name__}")
    version = section.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"state_dict['lookahead'] has format_version {version!r}; this version reads {FORMAT_VERSION}")
    mode = first_moment.check_mode(section.get("pullback_momentum"))
    first_moment.first_moment_key(opt.optimizer, mode, opt.defaults["momentum_key"])
    config = {
        "k": contract.check_k(section.get("k")),
        ALPHA_KEY: check_alpha_or_adaptive(
            section.get("alpha"), opt.alpha_bounds is not None, where="state_dict['lookahead']['alpha']"
        ),
        "pullback_momentum": mode,
    }
    if "outer_momentum" in section:  # absent from checkpoints older than outer momentum: keep this optimizer's
        config["outer_momentum"] = contract.check_mu(section["outer_momentum"], where="state_dict['lookahead']['outer_momentum']")
        config["nesterov"] = bool(section.get("nesterov", False)) and config["outer_momentum"] > 0
        if config["outer_momentum"] and config[ALPHA_KEY] == ADAPTIVE:
            raise ValueError("state_dict['lookahead'] has alpha='adaptive' with outer_momentum > 0, which is not defined")
    if config[ALPHA_KEY] == ADAPTIVE:
        config["alpha_bounds"] = check_bounds(section.get("alpha_bounds"))
        config["last_adaptive_alpha"] = section.get("last_adaptive_alpha")
    step = section.get("step")
    step = torch.as_tensor(step) if isinstance(step, (int, torch.Tensor)) and not isinstance(step, bool) else None
    if step is None or step.dim() != 0 or step.dtype.is_floating_point or step.is_complex() or int(step) < 0:
        raise ValueError(f"state_dict['lookahead']['step'] must be a non-negative integer, got {section.get('step')!r}")
    try:  # the saved k, as this optimizer would take it at construction
        check_int8_delta_options({**opt.defaults, **config})
    except ValueError as error:
        raise ValueError(f"state_dict['lookahead']: {error}") from None
    if section.get("slow_dtype") != dtype_name(opt.defaults["slow_dtype"]):
        against = ""
        if int8_blocks.DELTA_SLOW_DTYPE in (section.get("slow_dtype"), opt.defaults["slow_dtype"]):
            against = " (an int8-delta offset against the params as they are now: load the model's state_dict first)"
        warnings.warn(
            f"the checkpoint was saved with slow_dtype={section.get('slow_dtype')}, this optimizer has "
            f"slow_dtype={dtype_name(opt.defaults['slow_dtype'])}: the slow weights are cast to this optimizer's"
            f"{against}",
            stacklevel=4,
        )
    saved_momentum_dtype = section.get("momentum_dtype")  # absent from checkpoints older than momentum_dtype: None
    if config.get("outer_momentum", 0.0) and saved_momentum_dtype != dtype_name(opt.defaults["momentum_dtype"]):
        warnings.warn(
            f"the checkpoint was saved with momentum_dtype={saved_momentum_dtype}, this optimizer has "
            f"momentum_dtype={dtype_name(opt.defaults['momentum_dtype'])}: the outer momenta are cast to this "
            "optimizer's",
            stacklevel=4,
        )
    return config, step.to(device="cpu", dtype=torch.int64).clone()


def _read_saved_tensor(entry, key, p, where) -> torch.Tensor | None:
    saved = entry.get(key)
    if saved is None:
        return None
    if not isinstance(saved, torch.Tensor) or saved.shape != p.shape:
        found = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
        raise ValueError(
            f"{where}: the state_dict's {key} is {found} but the param has shape {tuple(p.shape)}; "
            "the state_dict was saved for another parameter layout"
        )
    return saved


def _read_slow_weight(opt, entry, p, where: str, plain: bool) -> dict:
    """The state entries of `p`'s saved slow weight (exact, bf16+int8 or int8-delta) in this optimizer's
    slow_dtype: kept bit for bit when the kinds agree, else decoded or encoded. A plain checkpoint: the param."""
    slow_dtype = opt.defaults["slow_dtype"]
    high = _read_saved_tensor(entry, SAVED_SLOW_HIGH, p, where)
    low = _read_saved_tensor(entry, SAVED_SLOW_LOW, p, where)
    if (high is None) != (low is None) or (high is not None and (high.dtype, low.dtype) != bf16_int8.STATE_DTYPES):
        raise ValueError(
            f"{where}: a bf16+int8 slow weight needs {SAVED_SLOW_HIGH} (bfloat16) and {SAVED_SLOW_LOW} (int8) together"
        )
    if high is not None and is_compact(slow_dtype):
        return {SLOW_HIGH: copy_as(high, p, high.dtype), SLOW_LOW: copy_as(low, p, low.dtype)}
    if high is not None:
        return slow_weight_state(bf16_int8.decode(high.to(p.device), low.to(p.device)), p, slow_dtype)
    delta = _read_saved_tensor(entry, SAVED_SLOW_DELTA, p, where)
    if delta is not None:  # an offset from the param as it is now
        # (see [NOTE: what int8-delta supports] in lookahead_fused/options.py)
        return _read_int8_blocks(entry, delta, p, where, (SLOW_DELTA, SLOW_DELTA_SCALES), is_int8_delta(slow_dtype),
                                 lambda offset: slow_weight_state(p.float() + offset, p, slow_dtype),
                                 "int8-delta slow weight")  # fmt: skip
    slow = _read_saved_tensor(entry, SAVED_SLOW_PARAM, p, where)
    if slow is None and not plain:
        raise ValueError(f"{where}: the state_dict has no {SAVED_SLOW_PARAM}")
    return slow_weight_state(p if plain else slow, p, slow_dtype)


def _read_outer_momentum(opt, entry, outer: torch.Tensor, p, where: str) -> dict:
    """The state entries of `p`'s saved outer momentum in this optimizer's momentum_dtype: int8 blocks kept
    bit for bit when this optimizer keeps them and they are in the param's memory order, else decoded
    and cast or encoded (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py)."""
    if entry.get(SAVED_OUTER_MOMENTUM_SCALES) is None:
        if outer.dtype == int8_blocks.CODE_DTYPE:
            raise ValueError(f"{where}: an int8 outer momentum needs its {SAVED_OUTER_MOMENTUM_SCALES}")
        return outer_momentum_state(outer, p, opt.defaults)
    keeps = is_int8_momentum(outer_momentum_dtype_for(p, opt.defaults))
    return _read_int8_blocks(entry, outer, p, where, (OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES), keeps,
                             lambda value: outer_momentum_state(value, p, opt.defaults), "int8 outer momentum")  # fmt: skip


def _read_int8_blocks(entry, codes, p, where: str, keys: tuple[str, str], keeps: bool, convert, what: str) -> dict:
    """`p`'s saved int8 blocks (`codes` and, beside them in `entry`, their scales and dims; `keys`: their
    state keys) as state entries: kept bit for bit when this optimizer `keeps` them and they are in the
    param's memory order, else convert(the float32 value they encode)."""
    saved_codes, saved_scales, _ = _SAVED_INT8_BLOCKS[keys]
    scales = entry.get(saved_scales)
    if is_sharded(p):
        return _read_sharded_int8_blocks(codes, scales, p, where, keys, keeps, convert, what)
    blocks = int8_blocks.scale_count(p.numel())
    if not isinstance(scales, torch.Tensor) or scales.dtype != int8_blocks.SCALE_DTYPE or scales.shape != (blocks,):
        found = (tuple(scales.shape), scales.dtype) if isinstance(scales, torch.Tensor) else type(scales).__name__
        raise ValueError(f"{where}: the state_dict's {saved_scales} is {found}; it must be ({blocks},) float32")
    if codes.dtype != int8_blocks.CODE_DTYPE:
        raise ValueError(f"{where}: the state_dict's {saved_codes} has dtype {codes.dtype} beside scales; it must be int8")
    dims = _read_saved_dims(entry, codes, keys, where)
    flat_codes = int8_blocks.flatten_in(codes.to(p.device), dims)  # the order the blocks were cut in, whatever
    # the saved tensor's strides now (a tool may have made it contiguous)
    if keeps and dims == state_dims(p):
        kept = int8_blocks.unflatten_in(flat_codes, p.shape, dims)
        return {keys[0]: copy_as(kept, p, kept.dtype), keys[1]: scales.to(p.device, copy=True)}
    value = int8_blocks.decode(flat_codes, scales.to(p.device))
    return convert(int8_blocks.unflatten_in(value, p.shape, dims))


def _read_sharded_int8_blocks(codes, scales, p, where: str, keys: tuple[str, str], keeps: bool, convert,
                              what: str) -> dict:  # fmt: skip
    """A sharded param's int8 blocks, saved laid out as this optimizer lays them out
    (see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py): kept bit for bit, or decoded
    where this optimizer keeps another dtype."""
    slots = (p.device_mesh.size(), int8_scale_slots(p))
    if not (is_sharded(codes) and is_sharded(scales) and codes.dtype == int8_blocks.CODE_DTYPE
            and codes.placements == p.placements and scales.dtype == int8_blocks.SCALE_DTYPE and scales.shape == slots
            and scales.device_mesh == p.device_mesh and scales.placements == p.placements):  # fmt: skip
        raise ValueError(
            f"{where}: a sharded param's {what} loads only as it was saved: int8 codes sharded like the "
            f"param and float32 scales of shape {slots} sharded on its mesh (saved on as many ranks)"
        )
    state = {keys[0]: codes.clone(), keys[1]: scales.clone()}
    return state if keeps else convert(int8_block_value(state, *keys))


def _read_saved_dims(entry, codes: torch.Tensor, keys: tuple[str, str], where: str) -> list[int]:
    """The dims order of saved int8 blocks: their saved dims, or the saved codes' own memory order where a
    checkpoint has none."""
    saved_dims = _SAVED_INT8_BLOCKS[keys][2]
    dims = entry.get(saved_dims)
    if dims is None:
        return int8_blocks.memory_dims(codes)
    found = dims.tolist() if isinstance(dims, torch.Tensor) and dims.dim() == 1 else None
    if found is None or sorted(found) != list(range(codes.dim())):
        raise ValueError(f"{where}: the state_dict's {saved_dims} is {dims!r}; it must be an order of "
                         f"the {codes.dim()} dims")  # fmt: skip
    return found


def read(opt, state_dict, keeps_pending: bool = False) -> Loaded:
    """`state_dict` checked and copied; the saved pseudo-gradients of fragments only where
    `keeps_pending` (the optimizer has fragments or delay; Stream.keep_in_flight_only then keeps those
    in flight), else dropped, with a warning where one was in flight."""
    if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError("not an optimizer state_dict: it needs 'state' and 'param_groups'")
    groups, saved_groups = opt.param_groups, state_dict["param_groups"]
    if len(saved_groups) != len(groups):
        raise ValueError(
            f"the state_dict has {len(saved_groups)} param groups but this optimizer has {len(groups)}; "
            "it was saved for another parameter layout"
        )
    section = _section_of(state_dict)
    plain = section is None
    inner_groups = [{key: value for key, value in group.items() if key != SECTION} for group in saved_groups]
    loaded = Loaded(inner_state_dict={"state": {}, "param_groups": inner_groups})
    if not plain:
        loaded.config, loaded.step = _read_config(opt, section)
        loaded.streaming = section.get(STREAMING)
    mode = loaded.config.get("pullback_momentum", opt.pullback_momentum)
    for g, (group, saved) in enumerate(zip(groups, saved_groups)):
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(
                f"param group {g}: the state_dict has {len(saved['params'])} params but the group has "
                f"{len(group['params'])}; it was saved for another parameter layout"
            )
        if ALPHA_KEY in saved:
            check_alpha_or_adaptive(
                saved[ALPHA_KEY], opt.alpha_bounds is not None, where=f"the state_dict's param group {g}: {ALPHA_KEY}"
            )
        first_moment.check_group_keeps_first_moment(opt.optimizer, saved, mode, where=f"the state_dict's param group {g}")
        for j, (saved_id, p) in enumerate(zip(saved["params"], group["params"])):
            where = f"param group {g}, param {j}"
            entry = state_dict["state"].get(saved_id, {})
            inner_entry = {key: value for key, value in entry.items() if key not in _SAVED_KEYS}
            if inner_entry or saved_id in state_dict["state"]:
                loaded.inner_state_dict["state"][saved_id] = inner_entry
            with torch.no_grad():
                loaded.slow[p] = _read_slow_weight(opt, entry, p, where, plain)
                slow_momentum = _read_saved_tensor(entry, SAVED_SLOW_MOMENTUM, p, where)
                if slow_momentum is not None:
                    loaded.slow_momentum[p] = copy_as(slow_momentum, p, opt.slow_dtype_for(p))
                outer = _read_saved_tensor(entry, SAVED_OUTER_MOMENTUM, p, where)
                if outer is None and loaded.config.get("outer_momentum", 0.0) > 0:
                    raise ValueError(f"{where}: the state_dict was saved with outer momentum but has no {SAVED_OUTER_MOMENTUM}")
                if outer is not None:
                    loaded.outer_momentum[p] = _read_outer_momentum(opt, entry, outer, p, where)
                pending = _read_saved_tensor(entry, SAVED_PENDING_DELTA, p, where)
                if pending is not None:
                    loaded.pending[p] = copy_as(pending, p, opt.slow_dtype_for(p))
    if loaded.pending and not keeps_pending:
        loaded.pending.clear()
        if any(in_flight_flags(loaded.streaming)):
            warnings.warn(
                "the state_dict holds syncs of fragments in flight (saved with fragments or delay); this optimizer has "
                "neither: they are dropped",
                stacklevel=3,
            )
    if plain:
        warnings.warn(
            f"the state_dict holds no Lookahead state (a plain {type(opt.optimizer).__name__} checkpoint?): "
            "the slow weights are taken from the current params and the step counter starts at 0",
            stacklevel=3,
        )
    return loaded


def restore(loaded: Loaded, state, step_count: torch.Tensor, defaults: dict, adaptive) -> None:
    """Commit `loaded` (after the inner optimizer has loaded its part): the slow state into `state`,
    the counter into `step_count` in place (a captured CUDA graph holds that tensor), the saved
    configuration into `defaults` and the AdaptiveAlpha `adaptive`."""
    state.clear()
    for p, slow in loaded.slow.items():
        state[p].update(slow)
    for p, slow_momentum in loaded.slow_momentum.items():
        state[p][SLOW_MOMENTUM] = slow_momentum
    for p, pending in loaded.pending.items():
        state[p][PENDING_DELTA] = pending
    if loaded.step is not None:
        step_count.copy_(loaded.step)
        config = dict(loaded.config)
        if "alpha_bounds" in config:
            adaptive.bounds = config.pop("alpha_bounds")
            adaptive.last_alpha = config.pop("last_adaptive_alpha")
        defaults.update(config)
    else:
        step_count.zero_()
    if defaults["outer_momentum"]:  # saved ones, or zero (a checkpoint from before outer momentum)
        for p in loaded.slow:
            saved = loaded.outer_momentum.get(p)
            state[p].update(saved if saved is not None else zero_outer_momentum(p, defaults))
