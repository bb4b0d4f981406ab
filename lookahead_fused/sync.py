"""The Lookahead sync, in one place: which tensors a sync moves (its launches), their check against
the op contract before the inner step writes anything, and the launches themselves, decided on the
host or gated on the device by the step counter. Lookahead.step, sync_lookahead and LookaheadAdamW
all sync through a Sync.

Its inputs are explicit: the inner optimizer (the param groups and the first moments), the slow
state (Lookahead's per-param state), the options (Lookahead's defaults: k, alpha, outer momentum,
nesterov, pullback mode, slow dtype, backend) and the adaptive-alpha chooser, if any.

[NOTE: launches held] The tensors of a sync (per alpha and device: params, slow weights, outer
momenta, split into the fused launch and the strided params beside it) are gathered once and held
while the param groups hold the same params (compared by address, in C++ when the extension is
built: a Python loop would write each param's reference count) and no slow state was replaced
(invalidate(): a new group, a loaded checkpoint, a slow weight moved after its param). Gathering
them takes a dict lookup per param, each through Tensor.__hash__ in Python, which on thousands of
params costs more than the sync's own host work. They are held as Python lists: each call hands
the params to the kernel as they are now, so a param whose tensor torch.utils.swap_tensors
replaced under the same Python object is synced as it is (C++ references would also make that swap
refuse). The state tensors of a launch its op alone checks, the optimizer's own, are also held by
C++ after its first sync, so that a sync walks only the params
(see [NOTE: held sync] in csrc/held_sync.h); invalidate() drops them with the lists. Under
torch.compile they are gathered afresh, since a trace would turn the held lists into guards. The
pullback momenta are gathered at every sync: the inner optimizer creates and replaces its buffers
as it likes.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
from dataclasses import dataclass, field
from itertools import chain

import torch

from . import backends, bf16_int8, contract, first_moment, int8_blocks, ops
from . import replicas as replicas_module
from .adaptive_alpha import ADAPTIVE, check_alpha_or_adaptive
from .backends import reference
from .backends.step_gate import masked_compact_momentum_sync_on_step_, masked_compact_sync_on_step_
from .backends.step_gate import masked_compact_int8_momentum_sync_on_step_, masked_int8_momentum_sync_on_step_
from .backends.step_gate import masked_momentum_sync_on_step_, masked_sync_on_step_
from .sharded import compact_local_shards, dtensor_type, int8_local_shards
from .slow_state import ALPHA_KEY, INT8_BLOCK_KEYS, SLOW_DELTA, SLOW_HIGH, SLOW_LOW, SLOW_MOMENTUM, SLOW_PARAM
from .slow_state import OUTER_MOMENTUM, int8_block_state, int8_block_value, is_compact, is_int8_delta
from .slow_state import outer_momentum_keys, rehome, slow_dtype_for, slow_keys, state_dims


def _same_objects_in_python(held: list[list], now: list[list]) -> bool:
    return len(held) == len(now) and all(len(a) == len(b) and all(map(operator.is_, a, b)) for a, b in zip(held, now))


def same_objects(held: list[list], now: list[list]) -> bool:
    """Whether each list of `now` holds the objects of `held`'s, by identity: in C++ once a native
    backend has loaded the extension (see [NOTE: launches held] in lookahead_fused/sync.py), so
    importing the package loads nothing more."""
    native = getattr(sys.modules.get(f"{__package__}._C"), "same_objects", None)
    return (native or _same_objects_in_python)(held, now)


@dataclass
class Launch:
    """The tensors of one alpha on one device: `fused` lists run in one launch of `backend`, `strided`
    ones through the reference loop beside it (see [NOTE: strided params] in lookahead_fused/optimizer.py).
    Each is (params, slow weights) or, with outer momentum, (params, slow weights, outer momenta), as
    tuples, which a native entry borrows as they are (see [NOTE: borrowed lists] in csrc/module.cpp).
    `backend` is None when the lists hold DTensors, which the ops unwrap to their local shards."""

    alpha: float | str
    fused: tuple
    strided: tuple
    backend: object | None
    moments: tuple = field(default_factory=lambda: ([], []))  # the pullback momenta: (first moments, their slow copies)
    compact: bool = False  # the slow weights are (high parts, residuals): the compact sync, not the momentum sync
    delta: bool = False  # the slow weights are int8-delta (codes, scales): the reference's int8_delta_sync_
    held: object | None = None  # the `fused` lists held by C++ (see [NOTE: held sync] in csrc/held_sync.h)


def _check_in_one_layer(backend, check: str, *lists) -> None:
    """contract.<check> on the lists, or its C++ twin, the backend's method of that name, when the
    backend checks the contract itself (a native one)."""
    checker = getattr(backend, check) if getattr(backend, "checks_contract", False) else getattr(contract, check)
    checker(*lists)


class Sync:
    def __init__(self, inner: torch.optim.Optimizer, slow_state, options: dict, adaptive=None, replicas=None):
        self.inner = inner
        self.slow_state = slow_state
        self.options = options
        self.adaptive = adaptive
        self.replicas = replicas  # see [NOTE: replicas] in lookahead_fused/replicas.py
        self.strided_ids: set[int] = set()
        self.alpha_tensors: dict[tuple[float, torch.device], torch.Tensor] = {}
        self.generation = 0  # counts the changes of the slow state's tensors (LookaheadAdamW's layout follows it)
        # momentum_key, and _held: (each group's params, alphas, launches)
        # (see [NOTE: launches held] in lookahead_fused/sync.py)
        self.invalidate()

    def __getstate__(self) -> dict:
        """A copy (pickle, deepcopy) gathers its launches anew: the held lists are the originals' tensors."""
        return {**self.__dict__, "_held": None}

    # -- what a sync moves ------------------------------------------------------------------------
    def add_params(self, params) -> None:
        """Params that have just got their slow state."""
        self.strided_ids.update(id(p) for p in params if not contract.is_non_overlapping_and_dense(p))
        self.invalidate()

    def invalidate(self) -> None:
        """The slow state or the options changed: gather the launches again at the next sync."""
        self.momentum_key = first_moment.first_moment_key(
            self.inner, self.options["pullback_momentum"], self.options["momentum_key"]
        )
        self._held = None
        self.generation += 1

    def split_strided(self, *lists: list) -> tuple[tuple[list, ...], tuple[list, ...]]:
        """(fused lists, strided lists), split by the first list's tensors
        (see [NOTE: strided params] in lookahead_fused/optimizer.py)."""
        fused, strided = tuple([] for _ in lists), tuple([] for _ in lists)
        for tensors in zip(*lists):
            target = strided if id(tensors[0]) in self.strided_ids else fused
            for column, t in zip(target, tensors):
                column.append(t)
        return fused, strided

    def params(self) -> list[torch.Tensor]:
        return [p for group in self.inner.param_groups for p in group["params"]]

    def group_alphas(self) -> list[float | str]:
        """Each group's alpha, checked (a user may have edited a group's "lookahead_alpha"); the held
        ones were checked when they were gathered."""
        raw = self._raw_alphas()
        if self._held is not None and raw == self._held[1]:
            return raw
        return [
            check_alpha_or_adaptive(alpha, self.adaptive is not None, where=f"param group {g}: {ALPHA_KEY}")
            for g, alpha in enumerate(raw)
        ]

    def _raw_alphas(self) -> list:
        default = self.options[ALPHA_KEY]
        return [group.get(ALPHA_KEY, default) for group in self.inner.param_groups]

    def _gather(self, alphas: list) -> list[Launch]:
        slow = slow_keys(self.options["slow_dtype"])
        compact, delta = is_compact(self.options["slow_dtype"]), is_int8_delta(self.options["slow_dtype"])
        by_launch: dict = {}  # (alpha, device, state keys) -> lists
        for group, alpha in zip(self.inner.param_groups, alphas):
            for p in group["params"]:
                state = self.slow_state[p]
                # a param whose momentum fell back from int8 blocks to a dtype takes the momentum sync's launch
                keys = slow + (outer_momentum_keys(state) if self.options["outer_momentum"] else ())
                lists = by_launch.setdefault((alpha, p.device, keys), tuple([] for _ in range(1 + len(keys))))
                lists[0].append(p)
                for column, key in zip(lists[1:], keys):
                    column.append(state[key])
        dtensor = dtensor_type()
        launches = []
        for (alpha, device, _), lists in by_launch.items():
            sharded = dtensor is not None and any(isinstance(p, dtensor) for p in lists[0])
            # a compiled step runs the gated ops, which pick the backend themselves
            direct = not sharded and not torch.compiler.is_compiling()
            backend = backends.resolve(self.options["backend"], device.type) if direct else None
            fused, strided = (tuple(map(tuple, part)) for part in self.split_strided(*lists))
            launches.append(Launch(alpha, fused, strided, backend, compact=compact, delta=delta))
        return launches

    def launches(self, check: bool = True) -> list[Launch]:
        """The weights' launches of a sync, checked against the op contract (unless `check` is False,
        as under torch.compile). A param that moved (model.to(), a new layout) takes its slow state
        along. Raises, writing nothing, when a launch breaks the contract."""
        if torch.compiler.is_compiling():
            return self._gather(self.group_alphas())
        group_params, raw_alphas = [group["params"] for group in self.inner.param_groups], self._raw_alphas()
        held = self._held
        if held is None or held[1] != raw_alphas or not same_objects(held[0], group_params):
            self._held = ([list(params) for params in group_params], raw_alphas, self._gather(self.group_alphas()))
        launches = self._held[2]
        if not check:
            return launches
        try:
            self._check(launches)
        except (ValueError, NotImplementedError):  # a param moved (a new device raises NotImplementedError):
            # move the slow state along, and check again
            self._rehome()
            launches = self.launches(check=False)
            self._check(launches)
        return launches

    def _rehome(self) -> None:
        for p in self.params():
            state = self.slow_state[p]
            for codes, scales in INT8_BLOCK_KEYS:
                if scales in state and int8_blocks.memory_dims(state[codes]) != state_dims(p):
                    # int8 blocks follow the memory order: a new layout is encoded anew (a new shape is not
                    # a layout: the check that follows names it)
                    value = int8_block_value(state, codes, scales)
                    if value.shape == p.shape:
                        state.update(int8_block_state(value, p, codes, scales))
            for key in (SLOW_PARAM, SLOW_HIGH, SLOW_LOW, SLOW_DELTA, OUTER_MOMENTUM):
                if key in state:
                    state[key] = rehome(state[key], p)
            for _, scales in INT8_BLOCK_KEYS:
                if scales in state:  # one per block: it follows the device only
                    state[scales] = state[scales].to(p.device)
        self.invalidate()

    def _check(self, launches: list[Launch]) -> None:
        """Raise, as the ops would, if a launch breaks the op contract (the strided params excepted:
        the reference loop takes any layout). A held launch whose fast tensors still match is checked by
        that walk alone (see [NOTE: held sync] in csrc/held_sync.h)."""
        for launch in launches:
            if launch.held is not None and launch.held.matches(launch.fused[0]):
                continue
            launch.held = None
            self._check_lists(launch, *launch.fused, compact=launch.compact, delta=launch.delta)

    def _check_lists(self, launch: Launch, fast, slow, *rest, compact: bool, delta: bool = False) -> None:
        """The one check of a launch's lists: in C++ for a native backend, else contract.py's. alpha and
        mu were checked when they were set. `compact` lists are (fast, high parts, residuals[, momentum[,
        its int8 block scales]]);
        `delta` lists (params, int8-delta codes, scales[, momentum[, its int8 block scales]]); other four
        lists are (fast, slow, int8 momentum codes, their scales); else (fast, slow[, momentum])."""
        if delta:
            _check_in_one_layer(launch.backend, "check_int8_delta_lists", *_int8_delta_local_shards((fast, slow, *rest)))
        elif compact:
            _check_in_one_layer(launch.backend, "check_compact_lists", *compact_local_shards(fast, slow, *rest))
        elif is_int8_momentum_lists((fast, slow, *rest)):
            _check_in_one_layer(launch.backend, "check_int8_momentum_lists",
                                *int8_local_shards(fast, slow, *rest, op=contract.INT8_MOMENTUM_OP))  # fmt: skip
        elif launch.backend is None:
            momentum = rest[0] if rest else None
            alpha = self.adaptive.bounds[0] if launch.alpha == ADAPTIVE else launch.alpha  # chosen at the sync
            ops.check_sync_args(fast, slow, alpha, momentum=momentum, mu=self.options["outer_momentum"],
                                backend=self.options["backend"])  # fmt: skip
        else:
            _check_in_one_layer(launch.backend, "check_sync_lists", fast, slow, *rest[:1])

    # -- the pullback momenta ---------------------------------------------------------------------
    def first_moments(self, params) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(param, first-moment buffer) for the params whose inner state has one by now."""
        found = []
        for p in params:
            buffer = self.inner.state.get(p, {}).get(self.momentum_key)
            if isinstance(buffer, torch.Tensor):
                found.append((p, buffer))
        return found

    def momentum_pairs(self, params) -> tuple[list, list]:
        """(first-moment buffers, their slow copies) for "pullback"; a missing slow copy starts at
        zero (the inner optimizer's state at phi_0)."""
        fast, slow = [], []
        for p, buffer in self.first_moments(params):
            state = self.slow_state[p]
            held = state.get(SLOW_MOMENTUM)
            if held is None:
                held = torch.zeros_like(buffer, dtype=slow_dtype_for(buffer, self.options["slow_dtype"]))
            state[SLOW_MOMENTUM] = rehome(held, buffer)
            fast.append(buffer)
            slow.append(state[SLOW_MOMENTUM])
        return fast, slow

    def create_slow_momenta(self) -> None:
        """With "pullback", a slow momentum for every first moment that has none yet."""
        if self.options["pullback_momentum"] == "pullback":
            self.momentum_pairs(self.params())

    def _with_moments(self, launches: list[Launch], check: bool) -> list[Launch]:
        """The launches with their pullback momenta, checked as they will run before any runs: joined
        with the weights' launch, or beside outer momentum or compact slow weights in a launch of their own."""
        if self.options["pullback_momentum"] != "pullback":
            return launches
        found = [
            dataclasses.replace(launch, moments=self.momentum_pairs(chain(launch.fused[0], launch.strided[0])))
            for launch in launches
        ]
        if check:
            for launch in found:
                lists = _joined(launch.fused, launch.moments) if self._moments_join(launch) else launch.moments
                self._check_lists(launch, *lists, compact=False)
        return found

    def _moments_join(self, launch: Launch) -> bool:
        """Whether the pullback momenta run in the weights' launch: without outer momentum, beside exact
        slow weights (see [NOTE: outer momentum] in lookahead_fused/optimizer.py;
        see [NOTE: what compact slow weights support] in lookahead_fused/options.py;
        see [NOTE: what int8-delta supports] in lookahead_fused/options.py)."""
        return not self.options["outer_momentum"] and not launch.compact and not launch.delta

    # -- the sync, decided on the host ------------------------------------------------------------
    # [NOTE: a launch its op checks] A sync that is one fused launch of a backend that checks the
    # contract itself (no strided params, no pullback momenta, no adaptive alpha to choose first) is
    # checked by its op alone, which refuses before it writes. Only when it refuses is the sync
    # checked again as a whole (Sync.launches), which moves a moved param's slow state along or
    # raises. Any other sync, and every sync of step(), whose inner step writes first, is checked
    # whole before anything is written.
    def run_now(self) -> None:
        """Gather, check and run a sync at once: sync_lookahead(), where nothing writes between the
        check and the sync (see [NOTE: a launch its op checks] in lookahead_fused/sync.py)."""
        launches = self.launches(check=False)
        if len(launches) == 1 and self._checked_by_its_op(launches[0]):
            try:
                self.run(launches)
                return
            except (ValueError, NotImplementedError):
                pass  # the op wrote nothing: check as below, which moves a moved param's slow state along
        self.run(self.launches(), now=True)

    def due(self, step: int) -> bool:
        """Whether a sync runs after the inner step that makes the count `step`: at the multiples of k, or
        when a fragment's sync starts or lands (see [NOTE: streaming] in lookahead_fused/streaming.py)."""
        stream = self._stream()
        return stream.due(step) if stream is not None else step % self.options["k"] == 0

    def _stream(self):
        return self.replicas.stream if self.replicas is not None else None

    def settle(self) -> None:
        """Before a state_dict: every fragment's reduction in flight finished, its state holding the averages."""
        if self._stream() is not None:
            self._stream().settle()

    def has_in_flight(self) -> bool:
        """Whether a fragment's sync is in flight (see [NOTE: streaming] in lookahead_fused/streaming.py)."""
        return self._stream() is not None and self._stream().has_in_flight(self.params(), self.slow_state)

    def forget_in_flight(self) -> None:
        """A checkpoint replaced the state: nothing in flight is kept."""
        if self._stream() is not None:
            self._stream().forget()

    def _averages(self) -> bool:
        """Whether a sync averages the fast weights of several replicas first
        (see [NOTE: replicas] in lookahead_fused/replicas.py)."""
        return self.replicas is not None and self.replicas.averages

    def _checked_by_its_op(self, launch: Launch) -> bool:
        """Whether its op alone checks `launch`
        (see [NOTE: a launch its op checks] in lookahead_fused/sync.py)."""
        return (
            getattr(launch.backend, "checks_contract", False)
            and not self._averages()  # its collectives ran before the op could refuse
            and self._stream() is None
            and not launch.strided[0]
            and not launch.delta  # the reference's loop runs it: it checks nothing
            and launch.alpha != ADAPTIVE
            and self.options["pullback_momentum"] != "pullback"
        )

    @torch.no_grad()
    def run(self, launches: list[Launch], skip_weights=frozenset(), now: bool = False) -> None:
        """Sync the checked `launches` now: the weights (but those whose id is in `skip_weights`,
        which a fused AdamW pass has synced) and their pullback momenta, or the reset. With fragments
        or delay, the fragments due at this step (`now`: every fragment, for sync_lookahead)."""
        launches = self._with_moments(self._choose_adaptive(launches), check=True)
        stream = self._stream()
        if stream is not None:  # pullback_momentum="none" (see [NOTE: streaming] in lookahead_fused/streaming.py)
            step = None if now else int(self.replicas.counter)
            for averaged, written_back, mix in stream.run(launches, self.params(), self.slow_state, step):
                self._run_weights(averaged, skip_weights)
                replicas_module.write_back(*written_back, mix)
            return
        written_back = None
        if self._averages():
            launches, written_back = self.replicas.average(launches)
        self._run_weights(launches, skip_weights)
        if written_back is not None:
            replicas_module.write_back(*written_back)
        if self.options["pullback_momentum"] == "reset":
            for _, buffer in self.first_moments(self.params()):
                buffer.zero_()

    def _run_weights(self, launches: list[Launch], skip_weights) -> None:
        """The fused launches of the weights (and of the pullback momenta joining them), the strided loop."""
        mu, nesterov, backend = self.options["outer_momentum"], self.options["nesterov"], self.options["backend"]
        for launch in launches:
            fused, strided = _without(launch.fused, skip_weights), _without(launch.strided, skip_weights)
            moments = launch.moments
            if moments[0] and self._moments_join(launch):
                fused, moments = _joined(fused, moments), ([], [])
            if fused[0]:
                run_fused(launch, fused, mu, nesterov, backend)
                if launch.held is None and fused is launch.fused and self._may_hold(launch):
                    launch.held = launch.backend.hold(fused, launch.compact)
            if strided[0]:
                _run(reference, strided, launch.alpha, mu, nesterov, backend, launch.compact, launch.delta)
            if moments[0]:
                _run(launch.backend, moments, launch.alpha, mu, nesterov, backend)

    def _may_hold(self, launch: Launch) -> bool:
        """Whether C++ may hold `launch`'s lists: one its op alone checks, whose state lists are all the
        optimizer's slow state, of an op a held sync runs (see [NOTE: held sync] in csrc/held_sync.h)."""
        depths = (3, 4) if launch.compact else (2, 3)
        return (
            hasattr(launch.backend, "hold")
            and self._checked_by_its_op(launch)
            and len(launch.fused) in depths
            and not torch.compiler.is_compiling()
        )

    def _choose_adaptive(self, launches: list[Launch]) -> list[Launch]:
        """alpha="adaptive": choose it from the weights (before the momenta join), and run its params
        in the launch of that alpha on their device, if another group has it."""
        adaptive = [launch for launch in launches if launch.alpha == ADAPTIVE]
        if not adaptive:
            return launches
        fast = [t for launch in adaptive for t in launch.fused[0] + launch.strided[0]]
        slow = chain.from_iterable(_slow_values(launch, lists) for launch in adaptive for lists in (launch.fused,
                                                                                                 launch.strided))
        alpha = self.adaptive.choose(fast, slow)
        chosen = {_device_of(launch): dataclasses.replace(launch, alpha=alpha) for launch in adaptive}
        others = []
        for launch in launches:
            device = _device_of(launch)
            if launch.alpha == alpha and device in chosen:
                joining = chosen[device]
                backend = launch.backend if joining.backend is not None else None  # DTensors: through the ops
                chosen[device] = dataclasses.replace(
                    launch, fused=_joined(launch.fused, joining.fused), strided=_joined(launch.strided, joining.strided),
                    backend=backend,
                )
            elif launch.alpha != ADAPTIVE:
                others.append(launch)
        return others + list(chosen.values())

    # -- the sync, gated on the device ------------------------------------------------------------
    @torch.no_grad()
    def run_gated(self, launches: list[Launch], counter: torch.Tensor, compiling: bool, weights: bool = True) -> None:
        """The step-gated sync (see [NOTE: step gate] in csrc/table.h): the same launches on every
        step, each syncing when counter % k == 0, decided where the counter lives. Without
        `weights`, only the pullback momenta (LookaheadAdamW syncs the weights in its own pass)."""
        k, backend = self.options["k"], self.options["backend"]
        for launch in self._with_moments(launches, check=not compiling):
            fused, strided, moments = launch.fused, launch.strided, launch.moments
            alpha = self._alpha_on(_device_of(launch, counter), launch.alpha, compiling)
            if weights and self._moments_join(launch):
                fused, moments = _joined(fused, moments), ([], [])
            if weights and launch.compact:
                self._run_gated_compact(fused, strided, alpha, counter)
            elif weights:
                self._run_gated_weights(fused, strided, alpha, counter)
            if moments[0]:
                ops.lookahead_sync_on_step_(*moments, alpha, counter, k, backend=backend)
        if self.options["pullback_momentum"] == "reset":
            syncs = counter % k == 0
            for _, buffer in self.first_moments(self.params()):
                buffer.masked_fill_(syncs.to(buffer.device), 0)

    def _run_gated_compact(self, fused, strided, alpha, counter) -> None:
        """The gated sync of bf16+int8 slow weights (and their outer momenta, if any)."""
        k, mu, nesterov, backend = (self.options[key] for key in ("k", "outer_momentum", "nesterov", "backend"))
        if fused[0]:
            ops.lookahead_compact_sync_on_step_(*fused[:3], alpha, counter, k, **_compact_momentum(fused, mu, nesterov),
                                                backend=backend)  # fmt: skip
        if strided[0] and len(strided) == 5:
            masked_compact_int8_momentum_sync_on_step_(*strided, alpha, counter, k, mu, nesterov)
        elif strided[0] and len(strided) == 4:
            masked_compact_momentum_sync_on_step_(*strided, alpha, counter, k, mu, nesterov)
        elif strided[0]:
            masked_compact_sync_on_step_(*strided, alpha, counter, k)

    def _run_gated_weights(self, fused, strided, alpha, counter) -> None:
        """The gated sync of exact slow weights (and their outer momenta, if any)."""
        k, mu, nesterov, backend = (self.options[key] for key in ("k", "outer_momentum", "nesterov", "backend"))
        if is_int8_momentum_lists(fused):
            if fused[0]:
                ops.lookahead_int8_momentum_sync_on_step_(*fused, alpha, counter, k, mu, nesterov, backend=backend)
            if strided[0]:
                masked_int8_momentum_sync_on_step_(*strided, alpha, counter, k, mu, nesterov)
            return
        if fused[0] and mu:
            ops.lookahead_sync_on_step_(*fused[:2], alpha, counter, k, momentum=fused[2], mu=mu, nesterov=nesterov,
                                        backend=backend)  # fmt: skip
        elif fused[0]:
            ops.lookahead_sync_on_step_(*fused, alpha, counter, k, backend=backend)
        if strided[0] and mu:
            masked_momentum_sync_on_step_(*strided, alpha, counter, k, mu, nesterov)
        elif strided[0]:
            masked_sync_on_step_(*strided, alpha, counter, k)

    def _alpha_on(self, device: torch.device, alpha: float, compiling: bool) -> torch.Tensor:
        """alpha as a device tensor: a constant in a compiled graph; kept (stable memory) for capture."""
        if compiling:
            return torch.full((), alpha, dtype=torch.float64, device=device)
        key = (alpha, device)
        if key not in self.alpha_tensors:
            self.alpha_tensors[key] = torch.full((), alpha, dtype=torch.float64, device=device)
        return self.alpha_tensors[key]


def run_fused(launch: Launch, lists: tuple, mu: float, nesterov: bool, backend_name: str) -> None:
    """One fused launch of the weights' `lists`, checked, at the launch's alpha: through the launch's
    held sync when `lists` are its own and still match it, else through its op
    (see [NOTE: held sync] in csrc/held_sync.h)."""
    if lists is launch.fused and launch.held is not None and launch.held.run(lists[0], launch.alpha, mu, nesterov):
        return
    launch.held = None
    _run(launch.backend, lists, launch.alpha, mu, nesterov, backend_name, launch.compact, launch.delta)


def _run(backend, lists: tuple, alpha: float, mu: float, nesterov: bool, backend_name: str, compact=False,
         delta=False) -> None:  # fmt: skip
    """One checked launch: the plain sync of two lists, the momentum sync of three, the int8 momentum
    sync of four, with `compact` the compact (momentum) sync of (fast, high parts, residuals[,
    momentum]), or with `delta` the int8-delta sync of (params, codes, scales[, momentum[, its int8 block
    scales]]), the reference's loop (see [NOTE: what int8-delta supports] in lookahead_fused/options.py). A
    launch without a backend (DTensors) goes through the ops, which unwrap the local shards."""
    if delta:
        params, codes, scales, *outer = _int8_delta_local_shards(lists)
        reference.int8_delta_sync_(params, codes, scales, alpha, *outer, mu=mu, nesterov=nesterov)
    elif compact:
        _run_compact(backend, lists, alpha, mu, nesterov, backend_name)
    elif is_int8_momentum_lists(lists) and backend is None:
        ops.lookahead_int8_momentum_sync_(*lists, alpha, mu, nesterov, backend=backend_name)
    elif is_int8_momentum_lists(lists):
        backend.int8_momentum_sync_(*lists, alpha, mu, nesterov)
    elif backend is None and len(lists) == 3:
        ops.run_checked_sync_(*lists[:2], alpha, momentum=lists[2], mu=mu, nesterov=nesterov, backend=backend_name)
    elif backend is None:
        ops.run_checked_sync_(*lists, alpha, backend=backend_name)
    elif len(lists) == 3:
        backend.momentum_sync_(*lists, alpha, mu, nesterov)
    else:
        backend.sync_(*lists, alpha)


def _run_compact(backend, lists: tuple, alpha: float, mu: float, nesterov: bool, backend_name: str) -> None:
    """The compact sync of (fast, high parts, residuals), with an outer momentum (a fourth list) or an
    int8 one (its codes and block scales, a fourth and a fifth)."""
    if backend is None:
        ops.lookahead_compact_sync_(*lists[:3], alpha, **_compact_momentum(lists, mu, nesterov), backend=backend_name)
    elif len(lists) == 5:
        backend.compact_int8_momentum_sync_(*lists, alpha, mu, nesterov)
    elif len(lists) == 4:
        backend.compact_momentum_sync_(*lists, alpha, mu, nesterov)
    else:
        backend.compact_sync_(*lists, alpha)


def _compact_momentum(lists: tuple, mu: float, nesterov: bool) -> dict:
    """The outer momentum's arguments of ops.lookahead_compact_sync_ (or its gated form) for a compact
    launch's lists: none, its momentum, or its int8 codes and their scales."""
    if len(lists) == 3:
        return {}
    scales = {"momentum_scales": lists[4]} if len(lists) == 5 else {}
    return {"momentum": lists[3], **scales, "mu": mu, "nesterov": nesterov}


def _int8_delta_local_shards(lists: tuple) -> tuple:
    """The lists of an int8-delta launch, (params, codes, scales[, momentum[, its int8 block scales]]), with
    their local shards."""
    return int8_local_shards(*lists, op=contract.INT8_DELTA_SYNC_OP, scales_at=(2, 4) if len(lists) == 5 else (2,))


def is_int8_momentum_lists(lists: tuple) -> bool:
    """Whether the lists of a launch that is not compact are (fast, slow, int8 momentum codes, their
    scales): the only four."""
    return len(lists) == 4


def _slow_values(launch: Launch, lists: tuple):
    """The slow weights of a launch's `lists`: the tensors, or the values of compact ones, decoded one
    at a time as they are iterated (never a float32 copy of every slow weight at once)."""
    if launch.compact:
        return (bf16_int8.decode(high, low) for high, low in zip(lists[1], lists[2]))
    return lists[1]


def _device_of(launch: Launch, default: torch.Tensor | None = None) -> torch.device:
    return (launch.fused[0] or launch.strided[0] or launch.moments[0] or [default])[0].device


def _without(lists: tuple, skip) -> tuple:
    """`lists` without the entries whose first tensor's id is in `skip`."""
    if not skip or not lists[0]:
        return lists
    kept = [tensors for tensors in zip(*lists) if id(tensors[0]) not in skip]
    return tuple(list(column) for column in zip(*kept)) if kept else tuple([] for _ in lists)


def _joined(a: tuple, b: tuple) -> tuple:
    return tuple([*x, *y] for x, y in zip(a, b))
