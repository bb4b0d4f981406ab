"""LookaheadAdamW: AdamW with the Lookahead sync inside its own fused step.

Lookahead around a fused AdamW reads and writes the params twice on a sync step: AdamW's pass
(p, g, m, v read; p, m, v written: 28 B per fp32 param), then the sync's (p and slow: 16 B). Here
one launch per device and step runs AdamW's update for every param and, on a sync step, moves the
slow weights (and the outer momentum) toward the new params and resets them, in the same pass: the
sync adds only slow's read and write (8 B). The math is csrc/adamw.h; the scalars reach the kernel
as a small float64 table (see [NOTE: AdamW hyper table] in csrc/adamw.h).

[NOTE: LookaheadAdamW is a Lookahead] The class is a Lookahead whose inner optimizer is a
torch.optim.AdamW that never steps itself: it holds the param groups (lr, betas, eps, weight_decay,
maximize, which schedulers drive) and the per-param state under torch's keys (step, exp_avg,
exp_avg_sq), so state_dict() is Lookahead(AdamW)'s format and a checkpoint moves between the two
either way; slow_weights(), sync_lookahead(), per-group alpha, pullback momentum, outer momentum
and the checkpoint code are Lookahead's. Only step() differs.

[NOTE: AdamW rows] Host steps (capturable=False) write one row per (group, step count), usually
one per group: the counts are read from the CPU step tensors torch.optim.AdamW keeps, so params
that have taken different numbers of steps (a param without a grad for a while) keep torch's
per-param bias correction. With capturable=True the table lives on the device with one row per
param, and device ops write the step and sync columns on every step, so a captured CUDA graph
replays them.
"""

from __future__ import annotations

import torch

from . import contract, ops
from .adaptive_alpha import ADAPTIVE
from .backends import reference
from .adamw_state import Layout
from .optimizer import Lookahead
from .step_wrapper import wrapped_step

_COLUMN = {name: i for i, name in enumerate(contract.ADAMW_COLUMNS)}
_CACHED_ROW_TENSORS = 8


class LookaheadAdamW(Lookahead):
    """AdamW (torch.optim.AdamW's math and state) with Lookahead every k steps, fused in one pass.

    Equal to Lookahead(torch.optim.AdamW(params, lr, betas, eps, weight_decay, maximize=maximize),
    k, alpha, ...) with the same options to within a few ulp per step. amsgrad=True is refused.
    Params without a grad take no AdamW step (as in torch) but are synced; strided params run the
    per-tensor reference beside the fused launch. See lookahead_fused.Lookahead for the Lookahead
    options; alpha="adaptive" is not supported here. slow_dtype="int8-delta" keeps each slow weight as an
    int8 offset from its param with one float32 scale per 256 elements, written in the same pass at every
    step (about 1 byte a weight; k <= 5: see [NOTE: what int8-delta supports] in lookahead_fused/options.py)."""

    _STEPS_ITSELF = True  # see [NOTE: int8-delta] in csrc/adamw.h: its pass writes the offsets

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        *,
        amsgrad=False,
        maximize=False,
        k=5,
        alpha=0.5,
        slow_dtype=None,
        momentum_dtype=None,
        pullback_momentum="none",
        outer_momentum=0.0,
        nesterov=False,
        capturable=False,
        backend="auto",
        replicas=None,
        replica_dtype=None,
        fragments=1,
        delay=0,
        delay_mix=0.0,
    ):
        if amsgrad:
            raise ValueError(
                "LookaheadAdamW does not support amsgrad=True (its fused step keeps no max_exp_avg_sq); use "
                "Lookahead(torch.optim.AdamW(params, amsgrad=True))"
            )
        if isinstance(alpha, str) and alpha == ADAPTIVE:
            raise ValueError("LookaheadAdamW takes a number alpha; for alpha='adaptive' use Lookahead(torch.optim.AdamW(...))")
        inner = torch.optim.AdamW(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
            capturable=capturable, foreach=False,
        )  # fmt: skip
        # whether the sync runs in a launch of its own after AdamW's pass (which then runs without slow
        # weights) instead of inside it: with replicas, fixed at construction
        # (see [NOTE: replicas] in lookahead_fused/replicas.py)
        self.syncs_apart = replicas is not None
        self._row_tensors: dict = {}
        self._device_table_held: tuple | None = None  # (layout, hyper, rows, each group's host-known row)
        self._cached_layout: Layout | None = None
        super().__init__(
            inner, k, alpha, pullback_momentum=pullback_momentum, outer_momentum=outer_momentum, nesterov=nesterov,
            slow_dtype=slow_dtype, momentum_dtype=momentum_dtype, backend=backend, capturable=capturable,
            replicas=replicas, replica_dtype=replica_dtype, fragments=fragments, delay=delay, delay_mix=delay_mix,
        )  # fmt: skip
        if capturable and self._sync.strided_ids:
            raise ValueError("LookaheadAdamW(capturable=True) needs dense params (a strided view runs the host loop)")
        if capturable and backend in ("reference", "foreach") and self._step_count_tensor.device.type != "cpu":
            raise ValueError(
                f"LookaheadAdamW(capturable=True) on a GPU needs a fused backend ('cuda', 'triton' or 'auto'): the "
                f"{backend!r} loop reads the hyper table on the host, which a CUDA graph cannot capture"
            )

    @property
    def _mu_in_pass(self) -> float:
        """The outer momentum of the sync inside AdamW's pass: none when it syncs apart."""
        return 0.0 if self.syncs_apart else self.defaults["outer_momentum"]

    def _check_group(self, group: dict, where: str) -> None:
        if group.get("amsgrad"):
            raise ValueError(f"{where}: LookaheadAdamW does not support amsgrad=True")
        super()._check_group(group, where)

    def __repr__(self) -> str:
        return "LookaheadAdamW" + super().__repr__()[len("Lookahead"):]

    # -- stepping --------------------------------------------------------------------------------
    # [NOTE: LookaheadAdamW under torch.compile] The step is one fused launch already, so tracing
    # it would gain nothing, and its bookkeeping (the cached layout, the host table) is host work
    # that a trace would turn into guards. So a compiled function runs it eagerly: one graph break
    # at the call (torch.optim's own steps break there too), the same graph on every step, sync or
    # not, and no recompiles.
    @wrapped_step
    @torch.compiler.disable
    @torch.no_grad()
    def step(self, closure=None):
        """AdamW's step for every param with a grad and, after every k-th step, the sync, in one
        launch per device. Returns the closure's loss."""
        if self._shared.in_slow_weights:
            self._refuse_inside_slow_weights("step()")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.defaults["capturable"]:
            self._device_step()
        else:
            self._host_step()
        return loss

    def _entries(self, require_grads: bool) -> list[tuple[int, torch.Tensor]]:
        """(group index, param) for every param with a grad, group by group."""
        found = []
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                grad = p.grad
                if grad is None:
                    if require_grads:
                        raise ValueError(
                            f"LookaheadAdamW(capturable=True): param group {g}: param {i} has no grad; a captured "
                            "step updates every param, so each needs a grad (zero it instead of setting it to None)"
                        )
                    continue
                if grad.is_sparse:
                    raise RuntimeError(f"param group {g}: param {i}: AdamW does not support sparse gradients")
                found.append((g, p))
        return found

    def _layout(self, require_grads: bool) -> Layout:
        entries = self._entries(require_grads)
        layout = self._cached_layout
        if layout is None or layout.generation != self._sync.generation or layout.key != tuple(id(p) for _, p in entries):
            layout = self._cached_layout = Layout(self, entries, self._sync.generation, self._sync.strided_ids)
        return layout

    def _group_row(self, g: int, step: float, syncs: bool, alphas: list, lr: float) -> list[float]:
        group = self.param_groups[g]
        beta1, beta2 = group["betas"]
        return [lr, float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]), step,
                float(alphas[g]), float(syncs), float(bool(group["maximize"]))]  # fmt: skip

    def _host_rows(self, layout: Layout, steps: list[float], syncs: bool) -> tuple[torch.Tensor, list[int]]:
        """The host table and each entry's row: one row per (group, step count)
        (see [NOTE: AdamW rows] in lookahead_fused/adamw.py)."""
        alphas = self.group_alphas()
        table, rows = [], [0] * len(steps)
        for g, start, end in layout.spans:
            counts = steps[start:end]
            lr = float(self.param_groups[g]["lr"])
            if counts.count(counts[0]) == len(counts):  # the common case: the group stepped together
                rows[start:end] = [len(table)] * (end - start)
                table.append(self._group_row(g, counts[0], syncs, alphas, lr))
                continue
            row_of: dict[float, int] = {}
            for n, count in enumerate(counts, start):
                if count not in row_of:
                    row_of[count] = len(table)
                    table.append(self._group_row(g, count, syncs, alphas, lr))
                rows[n] = row_of[count]
        return torch.tensor(table, dtype=torch.float64).reshape(-1, len(contract.ADAMW_COLUMNS)), rows

    def _rows_on(self, device: torch.device, rows: list[int]) -> torch.Tensor:
        key = (device, tuple(rows))
        held = self._row_tensors.get(key)
        if held is None:
            if len(self._row_tensors) >= _CACHED_ROW_TENSORS:
                self._row_tensors.clear()
            held = self._row_tensors[key] = torch.tensor(rows, dtype=torch.int64).to(device)
        return held

    def _host_step(self) -> None:
        """capturable=False: the host knows the counter and the step counts
        (see [NOTE: AdamW rows] in lookahead_fused/adamw.py)."""
        syncs = self._sync.due(self.step_count + 1)
        if syncs:
            launches = self._sync.launches()  # checks them (and moves slow weights along) first
        layout = self._layout(require_grads=False)
        host_table, rows = self._host_rows(layout, (layout.steps + 1).tolist(), syncs and not self.syncs_apart)
        for device, launch in layout.fused.items():
            hyper = host_table if device.type == "cpu" else host_table.pin_memory().to(device, non_blocking=True)
            self._run_pass(launch, hyper, self._rows_on(device, [rows[n] for n in launch.entries]))
        for launch in layout.strided.values():
            self._run_pass(launch, host_table, torch.tensor([rows[n] for n in launch.entries]), strided=True)
        layout.steps.add_(1)
        self._advance_step_count()
        if syncs:  # the params that took no AdamW step (no grad), the pullback momenta, or the reset
            self._sync.run(launches, skip_weights=frozenset() if self.syncs_apart else set(layout.key))

    def _device_step(self) -> None:
        """capturable=True: a device table with one row per param; device ops write its step and sync
        columns, so the same launches run on every step (a CUDA graph replays them)."""
        launches = None
        if self.syncs_apart and (not self._counter_on_host() or (self.step_count + 1) % self.k == 0):
            launches = self._sync.launches()  # checked (and moved along) before the AdamW pass writes
        layout = self._layout(require_grads=True)
        if layout.fused:
            ((device, launch),) = layout.fused.items()  # one device: capturable.py checks it, and no strided params
            self._run_pass(launch, *self._device_table(layout, device))
        self._advance_step_count()
        if self._counter_on_host() and self.step_count % self.k:
            # the momenta's gated reset or sync would do nothing
            # (see [NOTE: a gate the host can read] in lookahead_fused/optimizer.py)
            return
        if launches is not None:
            self._sync.run_gated(launches, self._step_count_tensor, compiling=False)
        elif self.pullback_momentum != "none":
            self._sync.run_gated(self._sync.launches(check=False), self._step_count_tensor, compiling=False, weights=False)

    def _run_pass(self, launch, hyper: torch.Tensor, rows: torch.Tensor, strided: bool = False) -> None:
        """AdamW's fused pass over one device's DeviceLaunch, with its sync where the table says (with
        bf16+int8 slow weights their op, with int8-delta ones the op that writes their offsets, with an int8
        outer momentum beside other slow weights its op: see [NOTE: AdamW int8 momentum step] in csrc/adamw.h);
        `strided`: the reference's loop."""
        grads = [p.grad for p in launch.params]
        if launch.outer_scales and not launch.scales and strided:
            reference.adamw_int8_momentum_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs, launch.slow,
                                                launch.slow_low, launch.outer, launch.outer_scales, hyper, rows,
                                                self._mu_in_pass, self.defaults["nesterov"])  # fmt: skip
        elif launch.outer_scales and not launch.scales:
            ops.lookahead_adamw_int8_momentum_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs,
                                                    launch.slow, launch.outer, launch.outer_scales, hyper, rows,
                                                    slow_low=launch.slow_low, mu=self._mu_in_pass,
                                                    nesterov=self.defaults["nesterov"],
                                                    backend=self.defaults["backend"])  # fmt: skip
        elif launch.slow_low and strided:  # bf16+int8 slow weights (see [NOTE: AdamW compact step] in csrc/adamw.h)
            reference.adamw_compact_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs, launch.slow,
                                          launch.slow_low, launch.outer, hyper, rows, self._mu_in_pass,
                                          self.defaults["nesterov"])  # fmt: skip
        elif launch.slow_low:
            ops.lookahead_adamw_compact_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs, launch.slow,
                                              launch.slow_low, hyper, rows, momentum=launch.outer or None,
                                              mu=self._mu_in_pass, nesterov=self.defaults["nesterov"],
                                              backend=self.defaults["backend"])  # fmt: skip
        elif launch.scales and strided:
            reference.adamw_delta_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs, launch.slow,
                                        launch.scales, launch.outer, launch.outer_scales, hyper, rows, self._mu_in_pass,
                                        self.defaults["nesterov"])  # fmt: skip
        elif launch.scales:
            ops.lookahead_adamw_delta_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs, launch.slow,
                                            launch.scales, hyper, rows, momentum=launch.outer,
                                            momentum_scales=launch.outer_scales, mu=self._mu_in_pass,
                                            nesterov=self.defaults["nesterov"], backend=self.defaults["backend"])  # fmt: skip
        elif strided:
            reference.adamw_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs, launch.slow, launch.outer,
                                  hyper, rows, self._mu_in_pass, self.defaults["nesterov"])  # fmt: skip
        else:
            ops.lookahead_adamw_step_(launch.params, grads, launch.exp_avgs, launch.exp_avg_sqs, launch.slow, hyper,
                                      rows, momentum=launch.outer or None, mu=self._mu_in_pass,
                                      nesterov=self.defaults["nesterov"], backend=self.defaults["backend"])  # fmt: skip

    def _device_table(self, layout: Layout, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The device table of `layout` for this step: the host-known columns of each group, rewritten
        when they change (not while capturing: a captured graph keeps the values it was captured
        with, as torch's capturable AdamW does with a float lr), tensor lrs copied on the device
        (never read on the host), the steps advanced and the sync flag set from the counter."""
        alphas = self.group_alphas()
        group_rows = []
        for g, _, _ in layout.spans:
            lr = self.param_groups[g]["lr"]
            group_rows.append(self._group_row(g, 1.0, False, alphas, 0.0 if isinstance(lr, torch.Tensor) else float(lr)))
        held = self._device_table_held
        if held is None or held[0] is not layout or held[3] != group_rows:
            if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                raise RuntimeError(
                    "LookaheadAdamW(capturable=True): the hyperparameters changed (or the params did) while a CUDA "
                    "graph is being captured; run one step eagerly first, and give a changing lr as a tensor"
                )
            entry_rows = [row for (_, start, end), row in zip(layout.spans, group_rows) for _ in range(end - start)]
            hyper = torch.tensor(entry_rows, dtype=torch.float64).reshape(-1, len(contract.ADAMW_COLUMNS)).to(device)
            held = (layout, hyper, torch.arange(len(entry_rows), dtype=torch.int64, device=device), group_rows)
            self._device_table_held = held
        _, hyper, rows, _ = held
        layout.steps.add_(1)
        hyper[:, _COLUMN["step"]].copy_(layout.steps)
        if not self.syncs_apart:
            hyper[:, _COLUMN["sync"]].copy_(((self._step_count_tensor + 1) % self.k == 0).to(device))
        for g, start, end in layout.spans:
            lr = self.param_groups[g]["lr"]
            if isinstance(lr, torch.Tensor):
                hyper[start:end, _COLUMN["lr"]].copy_(lr.expand(end - start))
        return hyper, rows
