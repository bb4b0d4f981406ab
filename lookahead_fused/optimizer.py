"""The Lookahead optimizer (Zhang, Lucas, Hinton, Ba, NeurIPS 2019), Algorithm 1 exactly.

The inner optimizer updates the fast weights (the model's params). After every k-th step the slow
weights move toward them, slow <- slow + alpha * (fast - slow), and the fast weights are reset to
the slow ones; that synchronisation is one call of ops.lookahead_sync_ per distinct alpha.

[NOTE: outer momentum] With outer_momentum = mu > 0 each param also keeps m (the slow weights' dtype,
float32 beside bf16+int8 ones, or momentum_dtype's; zero at start), and a sync is the momentum sync of ops.lookahead_sync_: m <- mu m + (fast - slow);
slow <- slow + alpha (nesterov ? (fast - slow) + mu m : m); fast <- slow, one fused launch of three
tensors per param. It is an outer optimizer over the pseudo-gradient slow - fast, like DiLoCo's
with one worker; nesterov=True is SNOO. The pullback momenta, if any, take a launch of their own.

[NOTE: strided params] torch.optim accepts a param that is a strided view (nn.Parameter(x[:, ::2])),
which the fused kernels cannot walk as one run of memory. Such params keep a dense slow weight and
are synced by the per-tensor loop of the reference backend (torch.lerp_, the contract's formula),
next to the one fused launch that the dense params keep.

[NOTE: shared param_groups] `param_groups` is a property that returns the inner optimizer's list,
so it stays the same list even after the inner's load_state_dict replaces it, and LR schedulers
built on either object drive the inner optimizer. `state` holds only Lookahead's per-param state
(the slow weights); the inner optimizer keeps its own.
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch.optim import Optimizer

from . import backends, checkpoint, contract, first_moment, options, peer_checkpoints, streaming, wrapping
from . import replicas as replicas_module
from .adaptive_alpha import ADAPTIVE, AdaptiveAlpha, check_alpha_or_adaptive
from .capturable import capturable_device, check_capturable_group
from .inner_state import create_inner_state
from .shared_state import SharedState, on_the_lookahead
from .slow_state import ALPHA_KEY, slow_dtype_for, slow_weight_state, slow_weight_value
from .slow_state import zero_outer_momentum
from .step_wrapper import wrapped_step
from .sync import Sync
from .weight_swap import slow_weights_in

_EXTENSION = f"{__package__}._C"  # read from sys.modules when loaded, never imported here


class Lookahead(Optimizer):
    """Wrap `optimizer`; sync the slow weights every `k` steps with interpolation factor `alpha`.

    pullback_momentum: "none" keeps the inner state; "reset" zeroes the first-moment buffers at each
    sync; "pullback" interpolates them like the weights, against their own slow copies (zero at start).
    momentum_key: the inner optimizer's state key of that buffer (e.g. "exp_avg"); known for torch's
    optimizers and common timm / pytorch_optimizer ones, needed for any other with pullback_momentum.
    outer_momentum (mu) and nesterov: momentum on the slow weights
    (see [NOTE: outer momentum] in lookahead_fused/optimizer.py); mu = 0
    is plain Lookahead bit for bit; nesterov=True with mu > 0 is SNOO's outer step.
    slow_dtype: None keeps slow weights in each param's dtype; torch.float32 keeps them in float32 for
    float16/bfloat16 params; "bf16+int8" keeps each in 3 bytes, within 2^-15 of its float32 value
    (docs/design.md, "Compact slow weights";
    see [NOTE: what compact slow weights support] in lookahead_fused/options.py). momentum_dtype: None
    keeps the outer momentum in the slow weights' dtype (float32 beside bf16+int8 ones); torch.bfloat16
    keeps it in 2 bytes beside float32, bfloat16 or bf16+int8 slow weights
    (see [NOTE: bf16 outer momentum] in lookahead_fused/options.py);
    "int8" keeps it in int8 blocks, 1.016 bytes an element, beside float32 slow weights
    (see [NOTE: int8 outer momentum] in lookahead_fused/options.py).
    backend: "auto" or a name from ops.available_backends().
    alpha="adaptive": at each sync, the alpha of the paper's section 3.1 (adaptive_alpha.py), clipped
    to alpha_bounds, from curvature(param) and gradient(param) (defaults: Adam's second moment, grad).
    replicas: None, or a torch.distributed ProcessGroup whose ranks are data-parallel replicas that
    train on their own and, at each sync, average their fast weights (DiLoCo; replica_dtype: the
    dtype sent, None for the slow weights' own; see [NOTE: replicas] in lookahead_fused/replicas.py).
    fragments, delay, delay_mix: Streaming DiLoCo with replicas, the params synced in `fragments`
    parts at their own phases, each landing `delay` steps after it is sent, mixed with the local
    progress by `delay_mix` (see [NOTE: streaming] in lookahead_fused/streaming.py).
    """

    _STEPS_ITSELF = False  # whether the inner step is this class's own fused pass (LookaheadAdamW's)

    def __init__(
        self,
        optimizer,
        k=5,
        alpha=0.5,
        *,
        pullback_momentum="none",
        momentum_key=None,
        outer_momentum=0.0,
        nesterov=False,
        slow_dtype=None,
        momentum_dtype=None,
        backend="auto",
        capturable=False,
        alpha_bounds=(0.0, 1.0),
        curvature=None,
        gradient=None,
        replicas=None,
        replica_dtype=None,
        fragments=1,
        delay=0,
        delay_mix=0.0,
    ):
        if isinstance(optimizer, Lookahead):
            raise TypeError("cannot wrap a Lookahead in a Lookahead; wrap the inner optimizer once")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        defaults = options.checked_defaults(
            k=k, alpha=alpha, pullback_momentum=pullback_momentum, momentum_key=momentum_key, outer_momentum=outer_momentum,
            nesterov=nesterov, slow_dtype=slow_dtype, momentum_dtype=momentum_dtype, backend=backend,
            capturable=capturable, steps_itself=self._STEPS_ITSELF,
        )  # fmt: skip
        replicas_module.check_replica_options(replicas, replica_dtype, defaults)
        streaming.check_stream_options(fragments, delay, delay_mix, defaults["k"], defaults["pullback_momentum"], replicas)
        self._adaptive = AdaptiveAlpha(optimizer, alpha_bounds, curvature, gradient) if alpha == ADAPTIVE else None
        first_moment.first_moment_key(optimizer, pullback_momentum, momentum_key)
        self.optimizer = optimizer
        self._step_count_tensor = torch.zeros((), dtype=torch.int64, device=capturable_device(optimizer, capturable, alpha))
        self._constructing = True
        self._replicas = None if replicas is None else replicas_module.Replicas(
            replicas, replica_dtype, self._step_count_tensor, lambda: self.defaults["k"],
            lambda: self.defaults["backend"], fragments, delay, delay_mix,
        )  # fmt: skip
        self._shared = SharedState(self)  # see [NOTE: one state for every handle] in lookahead_fused/shared_state.py
        # Optimizer.__init__ sets up the hooks and calls add_param_group for each inner group,
        # which only creates the slow weights, as the groups are already the inner's.
        self._sync = None
        super().__init__(optimizer.param_groups, defaults)
        self._constructing = False
        backends.prepare(backend, {p.device.type for p in self._params()})

    # -- the shared param_groups (see [NOTE: shared param_groups] in lookahead_fused/optimizer.py)
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups):
        if not self.__dict__.get("_constructing", False):
            self.optimizer.param_groups = groups

    def __getstate__(self):
        return {key: value for key, value in self.__dict__.items() if key != "param_groups"}

    @classmethod
    def wrapping(cls, inner_class: type, **options) -> type:
        """A Lookahead class that takes the inner optimizer's arguments: `Lookahead.wrapping(torch.optim.AdamW,
        k=5)(params, lr=1e-3)` is `Lookahead(torch.optim.AdamW(params, lr=1e-3), k=5)`. For trainers that
        build the optimizer as `cls(param_groups, **kwargs)`, as transformers' `optimizer_cls_and_kwargs`
        does (see lookahead_fused/wrapping.py)."""
        if cls is not Lookahead:
            raise TypeError(f"{cls.__name__} takes the params itself: pass ({cls.__name__}, {{...}}) as the class")
        return wrapping.wrapping_class(cls, inner_class, options)

    # -- configuration ---------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return self.defaults["k"]

    @property
    def alpha(self) -> float | str:
        """The default alpha ("adaptive" or a number); a group's own "lookahead_alpha" overrides it."""
        return self.defaults[ALPHA_KEY]

    @property
    def alpha_bounds(self) -> tuple[float, float] | None:
        """The bounds alpha="adaptive" clips its alpha to (None when alpha is fixed at construction)."""
        return self._adaptive.bounds if self._adaptive else None

    @property
    def last_adaptive_alpha(self) -> float | None:
        """The alpha that alpha="adaptive" chose at the last sync (None before one, or when fixed)."""
        return self._adaptive.last_alpha if self._adaptive else None

    @property
    def pullback_momentum(self) -> str:
        return self.defaults["pullback_momentum"]

    @property
    def momentum_key(self) -> str | None:
        """The inner optimizer's state key of the first moment that pullback_momentum resets or pulls
        back (None with pullback_momentum="none")."""
        return self._sync.momentum_key

    @property
    def step_count(self) -> int:
        """Inner steps taken so far (the global counter of Algorithm 1)."""
        native = self._native_counter("host_count")
        return int(self._step_count_tensor) if native is None else native(self._step_count_tensor)

    def _advance_step_count(self) -> None:
        """The counter += 1, in place (its version bumped, as by add_)."""
        native = self._native_counter("advance_host_count")
        if native is None:
            self._step_count_tensor.add_(1)
        else:
            native(self._step_count_tensor)

    def _native_counter(self, name: str):
        """The extension's function `name` for a counter in host memory outside a compiled step when the
        extension is loaded, else None: torch's ops then (see [NOTE: host step counter] in csrc/module.cpp)."""
        if torch.compiler.is_compiling() or not self._counter_on_host():
            return None
        return getattr(sys.modules.get(_EXTENSION), name, None)

    def __repr__(self) -> str:
        return options.describe(self.defaults, self.optimizer)

    # -- param groups ----------------------------------------------------------------------------
    @on_the_lookahead
    def add_param_group(self, param_group: dict) -> None:
        """Add a group to the inner optimizer (if it is not already one of its groups) and create its
        slow weights from the current params. Everything is checked before anything is added."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if self._sync is not None and self._sync.has_in_flight():
            raise RuntimeError(
                "add_param_group() while a fragment's sync is in flight would split the fragments anew; add it when "
                "none is (see docs/design.md, 'Streaming')"
            )
        registered = any(group is param_group for group in self.optimizer.param_groups)
        if not registered:
            params = param_group.get("params")
            if params is None:
                raise ValueError("param_group has no 'params'")
            param_group["params"] = [params] if isinstance(params, torch.Tensor) else list(params)
        self._check_group(param_group, where=f"param group {len(self.optimizer.param_groups) - registered}")
        if not registered:
            self.optimizer.add_param_group(param_group)
        with torch.no_grad():
            for p in param_group["params"]:
                self.state[p].update(slow_weight_state(p, p, self.defaults["slow_dtype"]))
                if self.defaults["outer_momentum"]:
                    self.state[p].update(zero_outer_momentum(p, self.defaults))
        if self._sync is None:
            self._sync = Sync(self.optimizer, self.state, self.defaults, self._adaptive, self._replicas)
        self._sync.add_params(param_group["params"])

    def _check_group(self, group: dict, where: str) -> None:
        if ALPHA_KEY in group:
            check_alpha_or_adaptive(group[ALPHA_KEY], self._adaptive is not None, where=f"{where}: {ALPHA_KEY}")
        for i, p in enumerate(group["params"]):
            contract.check_param(p, where=f"{where}: param {i}")
            options.check_momentum_dtype_of(p, self.defaults, where=f"{where}: param {i}")
            options.check_slow_dtype_of(p, self.defaults, where=f"{where}: param {i}")
        first_moment.check_group_keeps_first_moment(self.optimizer, group, self.pullback_momentum, where)
        if self.defaults["capturable"]:
            check_capturable_group(self.optimizer, group, self._step_count_tensor.device, where)
        if self._replicas is not None:  # last: a collective, which every replica reaches with the same group
            self._replicas.check_identical(group["params"], where)

    def _params(self) -> list[torch.Tensor]:
        """Every param, group by group."""
        return self._sync.params()

    def slow_dtype_for(self, param: torch.Tensor) -> torch.dtype:
        return slow_dtype_for(param, self.defaults["slow_dtype"])

    def group_alphas(self) -> list[float | str]:
        """Each group's alpha, checked (a user may have edited a group's "lookahead_alpha")."""
        return self._sync.group_alphas()

    # -- stepping --------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @wrapped_step
    def step(self, closure=None):
        """One inner step; after every k-th, the sync. Returns what the inner step returns (the loss).

        With capturable=True on a device, and under torch.compile, the sync is the step-gated one on
        every step, decided on the device by the counter (see [NOTE: step gate] in csrc/table.h): a
        CUDA graph captures it once and a compiled step traces one graph for sync and non-sync steps.
        Otherwise the host knows the counter and checks and syncs after every k-th step only.

        [NOTE: a gate the host can read] capturable=True with params on the CPU keeps its counter in
        host memory, where the gated op would read it anyway: a non-sync step would only check every
        pair and bump versions of tensors nothing writes, from caches the training step has just
        flushed (measured in bench/RESULTS.md, issue 14). So there it checks and runs the gated op on the sync steps only, as the host branch does;
        a bad pair is still refused before the inner step of a sync step writes anything."""
        if self._shared.in_slow_weights:
            self._refuse_inside_slow_weights("step()")
        compiling = torch.compiler.is_compiling()
        if compiling and self._replicas is not None:
            raise RuntimeError("Lookahead with replicas: a compiled step() is not supported yet; compile the model, not the step")
        advance = self._native_counter("advance_host_count")  # found first: the sync path enters no file again
        gated = self.defaults["capturable"] or (compiling and self._adaptive is None)
        every_step = gated and (compiling or not self._counter_on_host())
        syncs_now = every_step or self._sync.due(self.step_count + 1)
        if syncs_now:  # check the launches before the inner step changes anything
            launches = self._sync.launches(check=not compiling)
        loss = self.optimizer.step(closure)
        if advance is None:  # as _advance_step_count, without a call into this file after the inner step
            self._step_count_tensor.add_(1)
        else:
            advance(self._step_count_tensor)
        if gated and syncs_now:
            self._sync.run_gated(launches, self._step_count_tensor, compiling)
        elif syncs_now:
            self._sync.run(launches)
        return loss

    def _counter_on_host(self) -> bool:
        """Whether the step counter is host memory
        (see [NOTE: a gate the host can read] in lookahead_fused/optimizer.py)."""
        return self._step_count_tensor.is_cpu

    @on_the_lookahead
    @torch.no_grad()
    def init_state(self) -> None:
        """Create the inner optimizer's per-param state as its first step would, with zero grads and
        a zero learning rate, so no param and not the counter changes. Then state_dict() has the
        structure of a trained optimizer: the template that torch.distributed.checkpoint.load fills
        in place. The values it creates are placeholders for that load."""
        if self.optimizer.state:
            return
        create_inner_state(self.optimizer, self._params())
        self._sync.create_slow_momenta()

    # -- evaluation with the slow weights ---------------------------------------------------------
    @on_the_lookahead
    @contextlib.contextmanager
    def slow_weights(self):
        """Put the slow weights into the params for the block; the fast ones come back on exit, also
        on an exception. Same-dtype pairs are swapped in place; params with float32 slow weights are
        set from them (rounded) and restored from a copy of the params, not of the slow weights. With
        slow_dtype="bf16+int8" or "int8-delta" the slow weights are decoded first, into float32 copies."""
        self._refuse_inside_slow_weights("slow_weights()")
        params = self._params()
        slow = [slow_weight_value(self.state[p], p) for p in params]
        with slow_weights_in(params, slow, self._sync.split_strided, self.defaults["backend"]):
            self._shared.in_slow_weights = True
            try:
                yield self
            finally:
                self._shared.in_slow_weights = False

    @on_the_lookahead
    def sync_lookahead(self) -> None:
        """Sync now, whatever the step: move the slow weights toward the params by each group's alpha
        and set the params to them (timm's meaning: its train.py calls this at the end of each epoch,
        before evaluating). It changes the trajectory: the params jump to the new slow weights, and
        the regular syncs stay at the multiples of k. To evaluate the slow weights without changing
        anything, use `with optimizer.slow_weights():` instead."""
        self._refuse_inside_slow_weights("sync_lookahead()")
        self._sync.run_now()

    def _refuse_inside_slow_weights(self, what: str) -> None:
        if self._shared.in_slow_weights:
            raise RuntimeError(f"{what} inside `with optimizer.slow_weights():`; the params hold the slow weights there")

    # -- checkpoints -----------------------------------------------------------------------------
    @on_the_lookahead
    def state_dict(self) -> dict:
        """The inner optimizer's state dict, with each param's slow weight (and slow momentum) added to
        its state entry, and the counter and k/alpha/mode under "lookahead"."""
        self._refuse_inside_slow_weights("state_dict()")
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        self._sync.create_slow_momenta()
        self._sync.settle()
        stream = self._replicas.stream if self._replicas is not None else None
        streaming = stream.section(self._params(), self.state) if stream is not None else None
        state_dict = checkpoint.pack(self, self._step_count_tensor, streaming)
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    @on_the_lookahead
    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state_dict() of this class, a timm or pytorch_optimizer Lookahead checkpoint
        (converted, with a warning: peer_checkpoints.py), or a plain inner-optimizer one (with a
        warning: the slow weights are then taken from the current params). Checked fully before
        anything changes."""
        self._refuse_inside_slow_weights("load_state_dict()")
        state_dict = dict(state_dict)
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        state_dict = peer_checkpoints.convert(self, state_dict)
        stream = self._replicas.stream if self._replicas is not None else None
        loaded = checkpoint.read(self, state_dict, keeps_pending=stream is not None)
        if stream is not None:
            stream.check_loaded(loaded.config.get("k", self.k), loaded.config.get("pullback_momentum", "none"),
                                loaded.streaming)  # fmt: skip
        self.optimizer.load_state_dict(loaded.inner_state_dict)
        self._sync.forget_in_flight()
        checkpoint.restore(loaded, self.state, self._step_count_tensor, self.defaults, self._adaptive)
        if stream is not None:
            stream.keep_in_flight_only(self._params(), self.state, loaded.streaming)
        self._sync.invalidate()
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)
