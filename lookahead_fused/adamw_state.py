"""LookaheadAdamW's per-step bookkeeping, built once per set of params with grads and reused while
that set and the state tensors stay: each device's launch lists, and the params' step counts.

[NOTE: shared step counts] torch.optim.AdamW keeps a 0-dim 'step' tensor per param and adds 1 to
each every step (a foreach call over N tensors, a share of a fused step that bench/adamw_step.py
measures). Here the 'step' of each param with a grad is a view of one float32 buffer (on the CPU,
or on the device with capturable=True), so a step adds 1 with one op and the host reads every count
with one tolist(). state_dict() holds the views, which torch.optim.AdamW loads like its own; the
step tensors of a loaded checkpoint are gathered into a new buffer when the layout is rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .slow_state import OUTER_MOMENTUM, OUTER_MOMENTUM_SCALES, SLOW_DELTA, SLOW_DELTA_SCALES, SLOW_HIGH, SLOW_LOW
from .slow_state import SLOW_PARAM


@dataclass
class DeviceLaunch:
    """The tensors of one device's launch: fused (dense params) and strided ones (the reference loop)."""

    params: list = field(default_factory=list)
    exp_avgs: list = field(default_factory=list)
    exp_avg_sqs: list = field(default_factory=list)
    slow: list = field(default_factory=list)  # the slow weights (bf16+int8 ones' high parts), or int8-delta's codes
    slow_low: list = field(default_factory=list)  # bf16+int8 slow weights' residuals, else empty
    scales: list = field(default_factory=list)  # with int8-delta the offsets' block scales, else empty
    outer: list = field(default_factory=list)  # the outer momenta (an int8 one's codes), or empty
    outer_scales: list = field(default_factory=list)  # an int8 outer momentum's block scales, else empty
    entries: list = field(default_factory=list)  # positions in the layout's entries (their rows)


class Layout:
    """entries: [(group index, param)] of the params with a grad, group by group; generation: the
    Sync's count of slow-state changes it was built at; strided_ids: the params the fused launch skips."""

    def __init__(self, opt, entries: list, generation: int, strided_ids: set):
        self.key = tuple(id(p) for _, p in entries)
        self.generation = generation
        self.spans = _group_spans(entries)  # [(group, start, end)]
        capturable = opt.defaults["capturable"]
        for _, p in entries:
            state = opt.optimizer.state[p]
            if not state:  # as torch.optim.AdamW's first step creates it
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.steps = _shared_steps(opt, entries, entries[0][1].device if capturable and entries else torch.device("cpu"))
        mu = opt.defaults["outer_momentum"] and not opt.syncs_apart  # the pass syncs with outer momentum
        self.fused: dict[torch.device, DeviceLaunch] = {}
        self.strided: dict[torch.device, DeviceLaunch] = {}
        for n, (_, p) in enumerate(entries):
            target = self.strided if id(p) in strided_ids else self.fused
            launch = target.setdefault(p.device, DeviceLaunch())
            inner, outer = opt.optimizer.state[p], opt.state[p]
            launch.params.append(p)
            launch.exp_avgs.append(inner["exp_avg"])
            launch.exp_avg_sqs.append(inner["exp_avg_sq"])
            if SLOW_DELTA in outer:  # see [NOTE: int8-delta] in csrc/adamw.h
                launch.slow.append(outer[SLOW_DELTA])
                launch.scales.append(outer[SLOW_DELTA_SCALES])
            elif not opt.syncs_apart:  # else the pass is AdamW's step alone, without slow weights
                if SLOW_HIGH in outer:  # see [NOTE: AdamW compact step] in csrc/adamw.h
                    launch.slow.append(outer[SLOW_HIGH])
                    launch.slow_low.append(outer[SLOW_LOW])
                else:
                    launch.slow.append(outer[SLOW_PARAM])
            if mu:
                launch.outer.append(outer[OUTER_MOMENTUM])
            if mu and OUTER_MOMENTUM_SCALES in outer:  # int8 blocks
                launch.outer_scales.append(outer[OUTER_MOMENTUM_SCALES])
            launch.entries.append(n)


def _group_spans(entries: list) -> list[tuple[int, int, int]]:
    spans = []
    for n, (g, _) in enumerate(entries):
        if spans and spans[-1][0] == g:
            spans[-1] = (g, spans[-1][1], n + 1)
        else:
            spans.append((g, n, n + 1))
    return spans


def _shared_steps(opt, entries: list, device: torch.device) -> torch.Tensor:
    """One buffer of the entries' step counts; each param's state['step'] becomes a view of it
    (see [NOTE: shared step counts] in lookahead_fused/adamw_state.py)."""
    steps = [opt.optimizer.state[p]["step"] for _, p in entries]
    buffer = torch.stack([s.to(device=device, dtype=torch.float32) for s in steps]) if steps else torch.zeros(0, device=device)
    for n, (_, p) in enumerate(entries):
        opt.optimizer.state[p]["step"] = buffer[n]
    return buffer
