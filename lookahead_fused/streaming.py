"""Streaming DiLoCo: `fragments=`, `delay=` and `delay_mix=` on a Lookahead with replicas.

[NOTE: streaming] The params are split into `fragments` runs by bytes, in group order (the model's
module order): param i goes to fragment floor((bytes before it + half its bytes) x F / all bytes), so
a fragment is empty only when one param holds more than 1/F of the bytes. Fragment j syncs at its
own phase of the k steps, on the steps t (the count after the inner step) with
t mod k = floor((j + 1) k / F) mod k: the last fragment at the multiples of k, as without fragments,
and each step starts at most one fragment's sync when F <= k (F > k is refused). A fragment's sync
starts with its pack and all-reduce (see [NOTE: replicas] in lookahead_fused/replicas.py) and lands
`delay` = tau inner steps later (0 <= tau < k), after the inner step of step t + tau: then its
averaged pseudo-gradient, taken at step t, moves its slow weights and outer momenta by the fused
sync, and its params become (1 - delay_mix) new slow weights + delay_mix their local values (the
inner steps they took meanwhile; delay_mix = 0 takes the new slow weights alone, delay_mix needs
tau > 0). F = 1, tau = 0 is the sync of replicas.py, bit for bit: the same code runs.

While a fragment's sync is in flight, each of its params' state holds the pseudo-gradient being
reduced (PENDING_DELTA, a view of the fragment's flat buffer, sharded like a sharded param).
state_dict() waits for the reductions in flight and saves the averaged pseudo-gradients (after the
division), zeros for the params of the other fragments (so that its structure does not depend on the
step: torch.distributed.checkpoint loads into a template), and in its "lookahead" section the
fragments, the delay and a flag per fragment in flight; loading keeps the pseudo-gradients of the
flagged fragments, and refuses flags saved with another fragments or delay. A checkpoint taken at
any step resumes bit for bit; one without them (taken by an optimizer without fragments or delay)
loads, and a fragment in flight at its step then has nothing to land. While a sync is in flight,
add_param_group() is refused (it would split the fragments anew).
sync_lookahead() lands the fragments in flight at once and syncs every other fragment now.
Streaming takes pullback_momentum="none" only (a reset or pulled-back first moment would need its
own phase per fragment).
"""

from __future__ import annotations

import dataclasses
import numbers

import torch

from .sharded import local_tensor, sharded_like
from .slow_state import PENDING_DELTA


def check_stream_options(fragments, delay, delay_mix, k: int, pullback_momentum: str, replicas) -> None:
    """Refuse, before anything is built, a fragments/delay/delay_mix that the schedule cannot take
    (see [NOTE: streaming] in lookahead_fused/streaming.py)."""
    for name, value, least in (("fragments", fragments, 1), ("delay", delay, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if isinstance(delay_mix, bool) or not isinstance(delay_mix, numbers.Real) or not 0.0 <= delay_mix <= 1.0:
        raise ValueError(f"delay_mix must be a number in [0, 1], got {delay_mix!r}")
    if not streams(fragments, delay) and not delay_mix:
        return
    if replicas is None:
        raise ValueError("fragments, delay and delay_mix need replicas=<a ProcessGroup>; without replicas nothing is sent")
    if delay_mix and not delay:
        raise ValueError(f"delay_mix={delay_mix} needs delay >= 1: it mixes in the local progress of the delayed steps")
    check_schedule(k, fragments, delay, where="")
    if pullback_momentum != "none":
        raise ValueError(f"fragments and delay take pullback_momentum='none' only, got {pullback_momentum!r}")


def check_schedule(k: int, fragments: int, delay: int, where: str) -> None:
    """F <= k and tau < k: each step starts at most one fragment, each lands before it is sent again."""
    if fragments > k:
        raise ValueError(f"{where}fragments={fragments} needs k >= fragments (each step starts at most one fragment), got k={k}")
    if delay >= k:
        raise ValueError(f"{where}delay={delay} needs k > delay (a fragment's sync lands before its next one starts), got k={k}")


def streams(fragments: int, delay: int) -> bool:
    return fragments > 1 or delay > 0


def in_flight_flags(saved: dict | None) -> list[int]:
    """A checkpoint's streaming entry's flag per fragment in flight (none without an entry)."""
    return torch.as_tensor(saved.get("in_flight", [])).tolist() if saved is not None else []


def fragment_indices(params: list[torch.Tensor], fragments: int) -> list[int]:
    """Each param's fragment, by bytes in order (see [NOTE: streaming] in lookahead_fused/streaming.py)."""
    sizes = [p.numel() * p.element_size() for p in params]
    total, before, found = max(1, sum(sizes)), 0, []
    for size in sizes:
        found.append(min(fragments - 1, (2 * before + size) * fragments // (2 * total)))
        before += size
    return found


class Stream:
    """The fragments' phases and their syncs in flight, for one Lookahead's Replicas."""

    def __init__(self, replicas, fragments: int, delay: int, delay_mix: float, k_of):
        self.replicas = replicas
        self.fragments, self.delay, self.delay_mix = fragments, delay, delay_mix
        self.k_of = k_of
        self._in_flight: dict[int, tuple] = {}  # fragment -> (the finish() of its reduction, the params it sent)
        self._split: tuple[tuple, list[int]] | None = None  # (the params' ids, each one's fragment)

    def check_loaded(self, k, pullback_momentum: str, saved: dict | None) -> None:
        """A checkpoint's k, pullback mode and streaming entry, before anything is loaded."""
        check_schedule(k, self.fragments, self.delay, where="the state_dict's k: ")
        if pullback_momentum != "none":
            raise ValueError(f"the state_dict has pullback_momentum={pullback_momentum!r}; fragments and delay take 'none' only")
        if not any(in_flight_flags(saved)):
            return
        if (saved.get("fragments"), saved.get("delay")) != (self.fragments, self.delay):
            raise ValueError(
                f"the state_dict holds syncs in flight of fragments={saved.get('fragments')}, delay={saved.get('delay')}; "
                f"this optimizer has fragments={self.fragments}, delay={self.delay}: load it into one with those"
            )

    def section(self, params: list[torch.Tensor], slow_state) -> dict:
        """The checkpoint's streaming entry: fragments, delay, and a flag per fragment in flight."""
        fragment_of, flags = self._fragment_of(params), torch.zeros(self.fragments, dtype=torch.int64)
        for p in params:
            if PENDING_DELTA in slow_state[p]:
                flags[fragment_of[id(p)]] = 1
        return {"fragments": self.fragments, "delay": self.delay, "in_flight": flags}

    def has_in_flight(self, params: list[torch.Tensor], slow_state) -> bool:
        return bool(self._in_flight) or any(PENDING_DELTA in slow_state[p] for p in params)

    def _phase(self, fragment: int) -> int:
        k = self.k_of()
        return (fragment + 1) * k // self.fragments % k

    def starting(self, step: int) -> list[int]:
        k = self.k_of()
        return [j for j in range(self.fragments) if step >= 1 and step % k == self._phase(j)]

    def landing(self, step: int) -> list[int]:
        return self.starting(step - self.delay)

    def keep_in_flight_only(self, params: list[torch.Tensor], slow_state, saved: dict | None) -> None:
        """After a checkpoint loaded (every param's PENDING_DELTA, zero where none was in flight): keep
        those of the fragments its streaming entry flags as in flight (none without one)."""
        flags, fragment_of = in_flight_flags(saved), self._fragment_of(params)
        for p in params:
            j = fragment_of[id(p)]
            if not (j < len(flags) and flags[j]):
                slow_state[p].pop(PENDING_DELTA, None)

    def due(self, step: int) -> bool:
        """Whether a fragment's sync starts or lands after the inner step that makes the count `step`."""
        return bool(self.starting(step) or self.landing(step))

    def _fragment_of(self, params: list[torch.Tensor]) -> dict[int, int]:
        key = tuple(map(id, params))
        if self._split is None or self._split[0] != key:
            self._split = (key, fragment_indices(params, self.fragments))
        return dict(zip(key, self._split[1]))

    @torch.no_grad()
    def run(self, launches: list, params: list[torch.Tensor], slow_state, step: int | None) -> list:
        """Start the syncs of the fragments whose phase is `step`, then land those due: (averaged
        launches, (params, buffers), delay_mix) per landing fragment, for Sync.run; delay_mix is 0 for
        a fragment that started in this call. `step` None (sync_lookahead): land every fragment in
        flight and sync every other one now."""
        fragment_of = self._fragment_of(params)
        every = range(self.fragments)
        if step is None:
            waiting = self._in_flight.keys() | {fragment_of[id(p)] for p in params if PENDING_DELTA in slow_state[p]}
            starting = [j for j in every if j not in waiting]
        else:
            starting = self.starting(step)
        for j in starting:
            chosen = _only(launches, fragment_of, j)
            if not any(lists[0] for launch in chosen for lists in (launch.fused, launch.strided)):
                continue
            finish, sent, views = self.replicas.send(chosen, slot=j)
            self._in_flight[j] = (finish, sent)
            for p, view in zip(sent, views):
                slow_state[p][PENDING_DELTA] = sharded_like(view, p)
        landing = every if step is None else self.landing(step)
        landed = []
        for j in landing:
            finish, sent = self._in_flight.pop(j, (None, None))
            if finish is not None:
                finish()
            else:  # loaded from a checkpoint: the fragment's params as they are split now
                sent = [p for p in params if fragment_of[id(p)] == j]
            pending = {id(p): j for p in sent if PENDING_DELTA in slow_state[p]}
            if not pending:
                continue
            chosen = _only(launches, pending, j)
            views = [local_tensor(slow_state[p].pop(PENDING_DELTA)) for p in _first_tensors(chosen)]
            averaged, written_back = self.replicas.with_averages(chosen, views)
            landed.append((averaged, written_back, 0.0 if j in starting else self.delay_mix))
        return landed

    @torch.no_grad()
    def settle(self) -> None:
        """Wait for every reduction in flight; the state's PENDING_DELTA then holds the averages (for state_dict)."""
        for j, (finish, sent) in sorted(self._in_flight.items()):
            finish()
            self._in_flight[j] = (_done, sent)

    def forget(self) -> None:
        """The state was replaced (a checkpoint loaded): wait for what is in flight, keep nothing of it."""
        self.settle()
        self._in_flight.clear()


def _done() -> None:
    """The finish() of a reduction already finished."""


def _only(launches: list, fragment_of: dict[int, int], fragment: int) -> list:
    """The launches with only the params of `fragment` (and their state beside them)."""
    chosen = []
    for launch in launches:
        fused, strided = (_rows_of(lists, fragment_of, fragment) for lists in (launch.fused, launch.strided))
        chosen.append(dataclasses.replace(launch, fused=fused, strided=strided))
    return chosen


def _rows_of(lists: tuple, fragment_of: dict[int, int], fragment: int) -> tuple:
    kept = [row for row in zip(*lists) if fragment_of.get(id(row[0])) == fragment]
    return tuple(list(column) for column in zip(*kept)) if kept else tuple([] for _ in lists)


def _first_tensors(launches: list) -> list[torch.Tensor]:
    return [p for launch in launches for lists in (launch.fused, launch.strided) for p in lists[0]]
