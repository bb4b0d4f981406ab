"""Public ops: the Lookahead synchronisation and the fast<->slow swap over lists of tensors.

    lookahead_sync_(fast, slow, alpha)   slow <- lerp(slow, fast, alpha); fast <- slow
    lookahead_sync_(fast, slow, alpha, momentum=m, mu=mu, nesterov=False)
                                         the same with outer momentum (docs/design.md, "The
                                         momentum sync"): three tensors per param, one launch
    lookahead_sync_on_step_(fast, slow, alpha, step, k, [momentum=, mu=, nesterov=])
                                         the same when step % k == 0, decided where step lives
    swap_(a, b)                          exchange the contents of a[i] and b[i]
    lookahead_compact_sync_(fast, slow_high, slow_low, alpha, [momentum=, momentum_scales=, mu=, nesterov=])
                                         the sync of slow weights kept as bf16+int8 (docs/design.md,
                                         "Compact slow weights"), with outer momentum (float32,
                                         bfloat16, or int8 blocks with their scales) or without
    lookahead_compact_sync_on_step_(fast, slow_high, slow_low, alpha, step, k, [momentum=, momentum_scales=,
                                    mu=, nesterov=])
                                         the same when step % k == 0, decided where step lives
    lookahead_int8_momentum_sync_(fast, slow, momentum, scales, alpha, mu, nesterov=False)
                                         the momentum sync with the momentum kept as int8 blocks
                                         (docs/design.md, "An int8 outer momentum")
    lookahead_int8_momentum_sync_on_step_(fast, slow, momentum, scales, alpha, step, k, mu, nesterov=False)
                                         the same when step % k == 0, decided where step lives
    lookahead_adamw_delta_step_(params, grads, exp_avgs, exp_avg_sqs, delta, scales, hyper, rows[, momentum=,
                                momentum_scales=, mu=, nesterov=])
                                         AdamW's step with each slow weight kept as an int8 offset
                                         from its param (docs/design.md, "int8-delta")
    lookahead_adamw_compact_step_(params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, hyper, rows[,
                                  momentum=, mu=, nesterov=])
                                         AdamW's step with bf16+int8 slow weights synced in the same
                                         pass (docs/design.md, "LookaheadAdamW")
    lookahead_pseudo_gradient_(fast, slow, out)
                                         out <- fast - slow in the slow weights' dtype or bfloat16 (a
                                         replica's pseudo-gradient, docs/design.md "Lookahead across replicas")

Each checks the whole call first, then runs one backend per device (backends/), so a rejected call
writes nothing. A call on one device with a native backend ("cpu", "cuda") goes straight to the
kernel's op, which checks it in C++; any other call is checked here in Python (contract.py), with
the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch

from . import backends, contract
from .device_scalars import device_scalar
from .sharded import compact_local_shards, int8_local_shards, local_shards
from .backends import BACKEND_NAMES, available_backends, unavailable_backends  # noqa: F401  (public)
from .backends import native

_OP = "lookahead_sync_"


def _check_call(fast, slow, alpha, backend: str) -> float:
    """The checks every sync entry point makes before any per-tensor work; returns alpha."""
    backends.check_backend_name(backend)
    alpha = contract.check_alpha(alpha, where=f"{_OP}: alpha")
    contract.check_lists(fast, slow, op=_OP)
    return alpha


def _by_device(backend: str, *lists: Sequence[torch.Tensor], on_one_device: bool = False):
    """[(backend, lists on that device)] per device of lists[0], every backend resolved before any runs.
    `on_one_device`: a check found every tensor on one device, so no walk over them is needed."""
    if on_one_device and lists[0]:
        return [(backends.resolve(backend, lists[0][0].device.type), [list(tensors) for tensors in lists])]
    per_device: dict[torch.device, list[list]] = {}
    for tensors in zip(*lists):
        groups = per_device.setdefault(tensors[0].device, [[] for _ in lists])
        for group, t in zip(groups, tensors):
            group.append(t)
    return [(backends.resolve(backend, device.type), groups) for device, groups in per_device.items()]


def _run_native(method: str, first, *args, backend: str) -> bool:
    """Run `method` of a native backend on a call whose tensors are on one device; that backend checks
    the contract itself, in C++, before writing. False (nothing written) when the call needs the
    general path: no native backend for it, or tensors on several devices, sparse tensors or
    non-tensors, which the dispatcher and the C++ checks refuse before any write. So the common call
    costs no Python work per tensor."""
    if backend not in ("auto", "cpu", "cuda") or not first or not isinstance(first[0], torch.Tensor):
        return False
    device_type = first[0].device.type
    if backend not in ("auto", device_type):
        return False
    module = backends.resolve(backend, device_type)
    if not getattr(module, "checks_contract", False):
        return False
    try:
        getattr(module, method)(first, *args)
    except (NotImplementedError, TypeError):
        return False
    except RuntimeError:  # how the dispatcher refuses a list holding a non-tensor; anything else is real
        tensors = chain(first, *(a for a in args if isinstance(a, (list, tuple))))
        if all(isinstance(t, torch.Tensor) for t in tensors):
            raise
        return False
    return True


def _beside_every_pair(fast, momentum) -> bool:
    """Whether `momentum` is None or a list with a tensor per pair: the C++ check_sync_lists reads an
    empty momentum list as none, so any other goes to contract.py's check, which names it."""
    return momentum is None or (isinstance(momentum, (list, tuple)) and len(momentum) == len(fast))


def _check_sync_lists(fast, slow, momentum=None) -> bool:
    """contract.check_sync_lists for a call that no native backend runs (triton, reference, foreach).
    Lists its C++ twin accepts (when the extension is built) pass without Python work per tensor; any
    others get the Python check, whose messages these backends have always given (the C++ ones differ
    for a few inputs, a sparse or expanded tensor among them), as do the lists the C++ check leaves to
    the general path (tensors on several devices, non-tensors) and a short momentum list. True when the
    C++ check accepted the lists: then every tensor is on one device."""
    module = native.built_extension()
    if module is not None and _beside_every_pair(fast, momentum):
        try:
            module.check_sync_lists(fast, slow, () if momentum is None else momentum)
            return True
        except (ValueError, NotImplementedError, TypeError):
            pass  # the Python check names the problem, as it always has for these backends
    contract.check_sync_lists(fast, slow, momentum)
    return False


def check_sync_args(fast, slow, alpha, *, momentum=None, mu: float = 0.0, backend: str = "auto") -> float:
    """Raise, as lookahead_sync_ would, if the call breaks the contract; write nothing. Returns alpha."""
    alpha = _check_call(fast, slow, alpha, backend)
    if momentum is not None:
        mu = contract.check_mu(mu, where=f"{_OP}: outer momentum mu")
        fast, slow, momentum = local_shards(fast, slow, momentum, op=_OP)
        if not (_beside_every_pair(fast, momentum) and _run_native("check_sync_lists", fast, slow, momentum,
                                                                    backend=backend)):  # fmt: skip
            contract.check_sync_lists(fast, slow, momentum)
        return alpha
    fast, slow = local_shards(fast, slow, op=_OP)
    if not _run_native("check_sync_lists", fast, slow, backend=backend):
        contract.check_sync_lists(fast, slow)
    return alpha


@torch.no_grad()
def lookahead_sync_(
    fast: Sequence[torch.Tensor],
    slow: Sequence[torch.Tensor],
    alpha: float,
    *,
    momentum: Sequence[torch.Tensor] | None = None,
    mu: float = 0.0,
    nesterov: bool = False,
    backend: str = "auto",
) -> None:
    """For every pair: slow <- lerp(slow, fast, alpha) in opmath; fast <- slow (cast to fast's dtype).

    With `momentum` (a list beside slow, in slow's dtype): the outer-momentum sync, per element
    m <- mu m + (fast - slow); slow <- slow + alpha (nesterov ? (fast - slow) + mu m : m); fast <- slow.
    See docs/design.md, "The op contract". Raises TypeError/ValueError naming the pair and the
    problem, or BackendUnavailable for an explicit backend that cannot run here, before writing.
    """
    alpha = _check_call(fast, slow, alpha, backend)
    if momentum is not None:
        mu = contract.check_mu(mu, where=f"{_OP}: outer momentum mu")
        return _momentum_sync(fast, slow, momentum, alpha, mu, bool(nesterov), backend, checked=False)
    fast, slow = local_shards(fast, slow, op=_OP)
    if _run_native("sync_", fast, slow, alpha, backend=backend):
        return
    _sync_by_device(fast, slow, alpha, backend, on_one_device=_check_sync_lists(fast, slow))


@torch.no_grad()
def run_checked_sync_(fast, slow, alpha: float, *, momentum=None, mu: float = 0.0, nesterov: bool = False,
                      backend: str = "auto") -> None:  # fmt: skip
    """lookahead_sync_ for arguments that check_sync_args has already accepted."""
    backends.check_backend_name(backend)
    if momentum is not None:
        return _momentum_sync(fast, slow, momentum, alpha, mu, nesterov, backend, checked=True)
    fast, slow = local_shards(fast, slow, op=_OP)
    if not _run_native("sync_", fast, slow, alpha, backend=backend):
        _sync_by_device(fast, slow, alpha, backend)


def _sync_by_device(fast, slow, alpha: float, backend: str, on_one_device: bool = False) -> None:
    """The general path, for a call the checks accepted: one backend call per device."""
    for module, (fasts, slows) in _by_device(backend, fast, slow, on_one_device=on_one_device):
        module.sync_(fasts, slows, alpha)


def _momentum_sync(fast, slow, momentum, alpha, mu, nesterov, backend, *, checked: bool) -> None:
    fast, slow, momentum = local_shards(fast, slow, momentum, op=_OP)
    if _run_native("momentum_sync_", fast, slow, momentum, alpha, mu, nesterov, backend=backend):
        return
    on_one_device = _check_sync_lists(fast, slow, momentum) if not checked else False
    for module, (fasts, slows, moms) in _by_device(backend, fast, slow, momentum, on_one_device=on_one_device):
        module.momentum_sync_(fasts, slows, moms, alpha, mu, nesterov)


@torch.no_grad()
def lookahead_sync_on_step_(fast, slow, alpha, step: torch.Tensor, k: int, *, momentum=None, mu: float = 0.0,
                            nesterov: bool = False, backend: str = "auto") -> None:  # fmt: skip
    """lookahead_sync_(fast, slow, alpha[, momentum=, mu=, nesterov=]) if step % k == 0, else nothing
    (see [NOTE: step gate] in csrc/table.h). The same call every step, with no host-side branch when
    `step` is on the tensors' device: the kernel reads step (a one-element int64 tensor) and alpha
    (a number, or a one-element float32/float64 tensor) where it runs, so a CUDA graph can capture
    it, and torch.compile traces one graph for sync and non-sync steps. Only on the CPU is a tensor
    alpha's value checked (elsewhere that would synchronise); a step on the CPU is read on the host.
    """
    if momentum is not None:
        mu = contract.check_mu(mu, where=f"{_OP}: outer momentum mu")
    extra = () if momentum is None else (momentum,)
    method = "sync_on_step_" if momentum is None else "momentum_sync_on_step_"
    scalars = () if momentum is None else (mu, bool(nesterov))
    if torch.compiler.is_compiling():
        return _on_step_traced([fast, slow, *extra], alpha, step, k, scalars, method, backend)
    backends.check_backend_name(backend)
    contract.check_lists(fast, slow, op=_OP)
    lists = local_shards(fast, slow, *extra, op=_OP)

    def host_sync(alpha: float) -> None:
        if momentum is None:
            _sync_by_device(*lists, alpha, backend)
        else:
            _momentum_sync(*lists, alpha, mu, bool(nesterov), backend, checked=True)

    check_lists = lambda: contract.check_sync_lists(*lists[:2], lists[2] if extra else None)  # noqa: E731
    _on_step(lists, alpha, step, k, scalars, method, ("lookahead_sync_on_step_", _OP), check_lists, host_sync, backend)


def _on_step(lists, alpha, step, k, scalars, method: str, names: tuple[str, str], check_lists, host_sync,
             backend: str) -> None:  # fmt: skip
    """A step-gated op on lists of one call, their types checked and their local shards taken: the gate
    checked, then the native op (which checks the lists), or check_lists() and, with the step on the
    CPU, host_sync(alpha) when step % k == 0, or the gated op of each device's backend. `names`: the
    gated op's name and the op's own, as the messages name them (C++'s run_on_step names the latter
    when it reads alpha on the host)."""
    op, host_op = names
    fast = lists[0]
    if not isinstance(alpha, torch.Tensor):
        alpha = contract.check_alpha(alpha, where=f"{op}: alpha")
    if fast and isinstance(fast[0], torch.Tensor):
        device = fast[0].device
    else:
        device = step.device if isinstance(step, torch.Tensor) else torch.device("cpu")
    alpha_tensor = alpha if isinstance(alpha, torch.Tensor) else device_scalar(alpha, torch.float64, device)
    if isinstance(step, torch.Tensor) and step.device.type == "cpu" and device.type != "cpu":
        step = step.to(device)  # a CPU counter beside device tensors: no host-side branch either way
    contract.check_step_gate(fast, alpha_tensor, step, k, op)
    if _run_native(method, *lists, alpha_tensor, step, k, *scalars, backend=backend):
        return
    check_lists()
    if step.device.type == "cpu":  # host memory: read it, and spare the masked fallback its work
        if isinstance(alpha, torch.Tensor):  # a number was checked above
            alpha = contract.check_alpha(float(alpha), where=f"{host_op}: alpha")
        if int(step) % k == 0:
            host_sync(alpha)
        return
    for module, (fasts, *more) in _by_device(backend, *lists):  # the gate goes to each device
        where = fasts[0].device
        getattr(module, method)(fasts, *more, alpha_tensor.to(where), step.to(where), k, *scalars)


def _on_step_traced(lists, alpha, step, k, scalars, method, backend):
    """Under torch.compile: only the op itself, so sync and non-sync steps trace the same graph.
    The native kernels check the contract when the compiled code runs; the Python checks would read
    data pointers, which a trace cannot, so the pure-PyTorch and Triton backends rely on the
    caller (Lookahead's pairs are its params and the slow tensors it made for them)."""
    device = lists[0][0].device
    if not isinstance(alpha, torch.Tensor):
        alpha = torch.full((), alpha, dtype=torch.float64, device=device)
    module = backends.resolve(backend, device.type)
    getattr(module, method)(*map(list, lists), alpha.to(device), step.to(device), k, *scalars)


# [NOTE: int8 momentum backends] The int8 momentum sync is one fused launch on the "cpu" backend (the
# C++ kernel), on "cuda" (the CUDA kernel, csrc/cuda/int8_momentum_kernel.cuh: one launch per 64
# params; checked on the host by emulation and statically, never run on a GPU yet) and on "triton";
# "reference" and "foreach" run the reference's per-tensor loop (the encoding has no foreach op).
@torch.no_grad()
def lookahead_int8_momentum_sync_(fast, slow, momentum, scales, alpha: float, mu: float, nesterov: bool = False, *,
                                  backend: str = "auto") -> None:  # fmt: skip
    """The momentum sync (docs/design.md, "The momentum sync") with the outer momentum kept as int8 codes
    and one float32 scale per block of 256 (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py),
    for every param in one launch per device: m = mu decode(momentum, scales) + (fast - slow) in float32;
    (momentum, scales) <- encode(m); slow <- lerp(slow, fast + mu (nesterov ? decode(momentum, scales) :
    the old m), alpha); fast <- slow cast. fast: float32, float16 or bfloat16; slow float32 and momentum
    int8 of fast's shape and strides; scales float32 of ceil(numel / 256). Raises before writing."""
    backends.check_backend_name(backend)
    op = contract.INT8_MOMENTUM_OP
    alpha = contract.check_alpha(alpha, where=f"{op}: alpha")
    mu = contract.check_mu(mu, where=f"{op}: outer momentum mu")
    lists = (fast, slow, momentum, scales)
    contract.check_list_types(contract.INT8_MOMENTUM_LIST_NAMES, lists, op=op)
    lists = int8_local_shards(*lists, op=contract.INT8_MOMENTUM_OP)
    if _run_native("int8_momentum_sync_", *lists, alpha, mu, bool(nesterov), backend=backend):
        return
    contract.check_int8_momentum_lists(*lists)
    _int8_momentum_sync_by_device(lists, alpha, mu, bool(nesterov), backend)


def _int8_momentum_sync_by_device(lists, alpha: float, mu: float, nesterov: bool, backend: str) -> None:
    for module, device_lists in _by_device(backend, *lists):
        module.int8_momentum_sync_(*device_lists, alpha, mu, nesterov)


@torch.no_grad()
def lookahead_int8_momentum_sync_on_step_(fast, slow, momentum, scales, alpha, step: torch.Tensor, k: int, mu: float,
                                          nesterov: bool = False, *, backend: str = "auto") -> None:  # fmt: skip
    """lookahead_int8_momentum_sync_(...) if step % k == 0, else nothing, decided where step lives, as
    lookahead_sync_on_step_ decides it (see [NOTE: step gate] in csrc/table.h)."""
    lists = (fast, slow, momentum, scales)
    scalars = (mu, bool(nesterov))
    if torch.compiler.is_compiling():
        return _on_step_traced(lists, alpha, step, k, scalars, "int8_momentum_sync_on_step_", backend)
    backends.check_backend_name(backend)
    names = (contract.INT8_MOMENTUM_GATED_OP, contract.INT8_MOMENTUM_OP)
    contract.check_list_types(contract.INT8_MOMENTUM_LIST_NAMES, lists, op=names[0])
    lists = int8_local_shards(*lists, op=contract.INT8_MOMENTUM_OP)
    mu = contract.check_mu(mu, where=f"{names[0]}: outer momentum mu")
    _on_step(lists, alpha, step, k, (mu, bool(nesterov)), "int8_momentum_sync_on_step_", names,
             lambda: contract.check_int8_momentum_lists(*lists),
             lambda a: _int8_momentum_sync_by_device(lists, a, mu, bool(nesterov), backend), backend)  # fmt: skip


_ADAMW_OP = "lookahead_adamw_step_"


@torch.no_grad()
def lookahead_adamw_step_(params, grads, exp_avgs, exp_avg_sqs, slow, hyper: torch.Tensor, rows: torch.Tensor, *,
                          momentum=None, mu: float = 0.0, nesterov: bool = False, backend: str = "auto") -> None:  # fmt: skip
    """One AdamW step for every param and, on a sync step, the Lookahead sync of the new params, in
    one pass (docs/design.md, "LookaheadAdamW"; the math of csrc/adamw.h). Param i takes the
    scalars of row rows[i] of `hyper`, a float64 (rows, 9) table on the params' device with the
    columns of contract.ADAMW_COLUMNS (lr, beta1, beta2, eps, weight_decay, step after
    this step, alpha, sync 0/1, maximize 0/1). With `momentum` (beside slow, in its dtype or
    bfloat16 beside float32 slow) the sync is the momentum sync with mu and nesterov. An empty `slow`
    (and no momentum) runs AdamW's step alone, every row's sync 0. One device per call. Raises before
    writing."""
    backends.check_backend_name(backend)
    mu = contract.check_mu(mu, where=f"{_ADAMW_OP}: outer momentum mu")
    momentum = list(momentum) if momentum else []
    lists = local_shards(params, grads, exp_avgs, exp_avg_sqs, slow, *([momentum] if momentum else []), op=_ADAMW_OP)
    params, grads, exp_avgs, exp_avg_sqs, slow = lists[:5]
    momentum = lists[5] if momentum else []
    args = (grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu, bool(nesterov))
    if _run_native("adamw_step_", params, *args, backend=backend):
        return
    contract.check_adamw_args(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu)
    if params:
        backends.resolve(backend, params[0].device.type).adamw_step_(params, *args)


@torch.no_grad()
def lookahead_adamw_compact_step_(params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, hyper: torch.Tensor,
                                  rows: torch.Tensor, *, momentum=None, mu: float = 0.0, nesterov: bool = False,
                                  backend: str = "auto") -> None:  # fmt: skip
    """lookahead_adamw_step_ with the slow weights kept as bf16+int8 (a bfloat16 high part and an int8
    residual per param, see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py), in one pass
    per device: AdamW's step for every param and, on a sync row, the compact sync of the new param
    (with `momentum`, float32 or bfloat16 per param, the compact momentum sync with mu and nesterov);
    see [NOTE: AdamW compact step] in csrc/adamw.h. params in float32, float16 or bfloat16. One device
    per call. Raises before writing."""
    backends.check_backend_name(backend)
    lists = (params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, [] if momentum is None else momentum)
    contract.check_list_types(contract.ADAMW_COMPACT_LIST_NAMES, lists, op=contract.ADAMW_COMPACT_OP)
    mu = contract.check_mu(mu, where=f"{contract.ADAMW_COMPACT_OP}: outer momentum mu")
    lists = local_shards(*lists, op=contract.ADAMW_COMPACT_OP)
    if _run_native("adamw_compact_step_", *lists, hyper, rows, mu, bool(nesterov), backend=backend):
        return
    contract.check_adamw_compact_args(*lists, hyper, rows, mu)
    if lists[0]:
        backends.resolve(backend, lists[0][0].device.type).adamw_compact_step_(*lists, hyper, rows, mu,
                                                                                 bool(nesterov))  # fmt: skip


@torch.no_grad()
def lookahead_adamw_int8_momentum_step_(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, scales,
                                        hyper: torch.Tensor, rows: torch.Tensor, *, slow_low=None, mu: float = 0.0,
                                        nesterov: bool = False, backend: str = "auto") -> None:  # fmt: skip
    """lookahead_adamw_step_ with the outer momentum kept as int8 blocks (per param int8 codes of its shape
    and strides and float32 block scales of ceil(numel / 256),
    see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py), in one pass per device: AdamW's step for
    every param and, on a sync row, the int8 momentum sync of the new param with mu and nesterov
    (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h). The slow weights are float32, or with
    `slow_low` (int8 residuals) bf16+int8, `slow` their bfloat16 high parts. params in float32, float16
    or bfloat16. One device per call. Raises before writing."""
    backends.check_backend_name(backend)
    op = contract.ADAMW_INT8_MOMENTUM_OP
    lists = (params, grads, exp_avgs, exp_avg_sqs, slow, [] if slow_low is None else slow_low, momentum, scales)
    contract.check_list_types(contract.ADAMW_INT8_MOMENTUM_LIST_NAMES, lists, op=op)
    mu = contract.check_mu(mu, where=f"{op}: outer momentum mu")
    lists = int8_local_shards(*lists, op=op, scales_at=(7,))
    if _run_native("adamw_int8_momentum_step_", *lists, hyper, rows, mu, bool(nesterov), backend=backend):
        return
    contract.check_adamw_int8_momentum_args(*lists, hyper, rows, mu)
    if lists[0]:
        backends.resolve(backend, lists[0][0].device.type).adamw_int8_momentum_step_(*lists, hyper, rows, mu,
                                                                                       bool(nesterov))  # fmt: skip


# [NOTE: int8-delta backends] AdamW's step with int8-delta slow weights is one fused launch on the "cpu"
# backend (the C++ kernel, csrc/cpu/adamw_delta_cpu.cpp), on "cuda" (csrc/cuda/adamw_delta_kernel.cuh: one
# launch per 32 params; checked on the host by emulation and statically, never run on a GPU yet) and on
# "triton" (backends/triton/adamw_delta.py, never run on a GPU); "reference" and "foreach" run the
# reference's per-tensor loop (the encoding has no foreach op).
@torch.no_grad()
def lookahead_adamw_delta_step_(params, grads, exp_avgs, exp_avg_sqs, delta, scales, hyper: torch.Tensor,
                                rows: torch.Tensor, *, momentum=None, momentum_scales=None, mu: float = 0.0,
                                nesterov: bool = False, backend: str = "auto") -> None:  # fmt: skip
    """AdamW's step for every param with its slow weight kept as an int8 offset from the param
    (see [NOTE: int8-delta] in csrc/adamw.h), in one pass per device: s = param + decode(delta, scales);
    the param takes AdamW's step (lookahead_adamw_step_'s math and hyper table); on a sync row s moves
    toward it by alpha and the param becomes s; (delta, scales) <- encode(s - param). With `momentum`
    and `momentum_scales` (an int8 outer momentum per param, its codes and block scales) a sync row runs
    the int8 momentum sync of the new param instead of the lerp
    (see [NOTE: int8-delta outer momentum] in csrc/adamw.h); with `momentum` alone (float32 or bfloat16
    per param) the momentum sync (see [NOTE: int8-delta float momentum] in csrc/adamw.h). params in
    float32, float16 or bfloat16; delta and an int8 momentum int8 of each param's shape and strides, a
    float momentum of them too; their scales float32 of ceil(numel / 256). One device per call. Raises
    before writing."""
    backends.check_backend_name(backend)
    outer = [[] if tensors is None else tensors for tensors in (momentum, momentum_scales)]
    lists = (params, grads, exp_avgs, exp_avg_sqs, delta, scales, *outer)
    contract.check_list_types(contract.ADAMW_DELTA_LIST_NAMES, lists, op=contract.ADAMW_DELTA_OP)
    if outer[0] or outer[1]:
        mu = contract.check_mu(mu, where=f"{contract.ADAMW_DELTA_OP}: outer momentum mu")
    lists = int8_local_shards(*lists, op=contract.ADAMW_DELTA_OP, scales_at=(5, 7))
    if _run_native("adamw_delta_step_", *lists, hyper, rows, float(mu), bool(nesterov), backend=backend):
        return
    contract.check_adamw_delta_args(*lists, hyper, rows, mu)
    if lists[0]:
        backends.resolve(backend, lists[0][0].device.type).adamw_delta_step_(*lists, hyper, rows, float(mu),
                                                                               bool(nesterov))  # fmt: skip


@torch.no_grad()
def swap_(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], *, backend: str = "auto") -> None:
    """Exchange the contents of a[i] and b[i] in place (same dtype, shape, strides, device)."""
    backends.check_backend_name(backend)
    contract.check_lists(a, b, op="swap_")
    a, b = local_shards(a, b, op="swap_")
    if _run_native("swap_", a, b, backend=backend):
        return
    contract.check_swap_args(a, b)
    for module, (xs, ys) in _by_device(backend, a, b):
        module.swap_(xs, ys)


@torch.no_grad()
def lookahead_compact_sync_(fast, slow_high, slow_low, alpha: float, *, momentum=None, momentum_scales=None,
                            mu: float = 0.0, nesterov: bool = False, backend: str = "auto") -> None:  # fmt: skip
    """The sync of slow weights kept as bf16+int8
    (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py), for every param in one launch per device: s = decode(slow_high,
    slow_low); s' = lerp(s, fast, alpha) in float32; (slow_high, slow_low) <- encode(s');
    fast <- decode(slow_high, slow_low) cast to fast's dtype. fast: float32, float16 or bfloat16;
    slow_high: bfloat16 and slow_low: int8, each of fast's shape and strides. With `momentum` (float32
    or bfloat16, beside fast) the momentum sync in float32 instead
    (see [NOTE: compact momentum sync] in csrc/element_math.h); with `momentum` int8 codes of fast's
    shape and strides and `momentum_scales` their float32 block scales, ceil(numel / 256) each, the int8
    momentum sync (see [NOTE: compact int8 momentum sync] in csrc/element_math.h). Raises before writing."""
    backends.check_backend_name(backend)
    op = contract.COMPACT_OP
    alpha = contract.check_alpha(alpha, where=f"{op}: alpha")
    extra, scalars, method = _compact_variant(momentum, momentum_scales, mu, nesterov, op)
    contract.check_compact_list_types(fast, slow_high, slow_low, *extra)
    lists = compact_local_shards(fast, slow_high, slow_low, *extra)
    if _run_native(method, *lists, alpha, *scalars, backend=backend):
        return
    contract.check_compact_lists(*lists)
    _compact_sync_by_device(lists, alpha, scalars, method, backend)


def _compact_variant(momentum, momentum_scales, mu, nesterov, op: str) -> tuple[tuple, tuple, str]:
    """(the extra lists, the extra scalars, the op's name) of a compact sync without `momentum`, with it,
    or with it as int8 codes and their `momentum_scales`."""
    if momentum is None and momentum_scales is None:
        return (), (), "compact_sync_"
    if momentum is None:
        raise ValueError(f"{op}: momentum_scales without momentum; the scales are those of an int8 momentum's codes")
    mu = contract.check_mu(mu, where=f"{op}: outer momentum mu")
    if momentum_scales is None:
        return (momentum,), (mu, bool(nesterov)), "compact_momentum_sync_"
    return (momentum, momentum_scales), (mu, bool(nesterov)), "compact_int8_momentum_sync_"


def _compact_sync_by_device(lists, alpha: float, scalars: tuple, method: str, backend: str) -> None:
    for module, device_lists in _by_device(backend, *lists):
        getattr(module, method)(*device_lists, alpha, *scalars)


@torch.no_grad()
def lookahead_compact_sync_on_step_(fast, slow_high, slow_low, alpha, step: torch.Tensor, k: int, *, momentum=None,
                                    momentum_scales=None, mu: float = 0.0, nesterov: bool = False,
                                    backend: str = "auto") -> None:  # fmt: skip
    """lookahead_compact_sync_(fast, slow_high, slow_low, alpha[, momentum=, momentum_scales=, mu=, nesterov=])
    if step % k == 0, else nothing, decided where step lives, as lookahead_sync_on_step_ decides it
    (see [NOTE: step gate] in csrc/table.h)."""
    op = contract.COMPACT_OP
    extra, scalars, method = _compact_variant(momentum, momentum_scales, mu, nesterov, contract.COMPACT_GATED_OP)
    gated = method.replace("sync_", "sync_on_step_")
    if torch.compiler.is_compiling():
        return _on_step_traced([fast, slow_high, slow_low, *extra], alpha, step, k, scalars, gated, backend)
    backends.check_backend_name(backend)
    contract.check_compact_list_types(fast, slow_high, slow_low, *extra)
    lists = compact_local_shards(fast, slow_high, slow_low, *extra)
    _on_step(lists, alpha, step, k, scalars, gated, (contract.COMPACT_GATED_OP, op),
             lambda: contract.check_compact_lists(*lists),
             lambda a: _compact_sync_by_device(lists, a, scalars, method, backend), backend)  # fmt: skip


@torch.no_grad()
def lookahead_pseudo_gradient_(fast, slow, out, *, backend: str = "auto") -> None:
    """out <- fast - slow for every param in one launch per device, computed in the slow dtype's opmath
    and rounded once to out's dtype, slow's or bfloat16 beside float32 slow weights
    (see [NOTE: pseudo-gradient] in csrc/element_math.h): a replica's pseudo-gradient, what Lookahead
    across replicas packs into its buffers. fast and slow as for lookahead_sync_ and only read; out of slow's shape and
    strides. Raises before writing."""
    backends.check_backend_name(backend)
    op = contract.PSEUDO_GRADIENT_OP
    contract.check_list_types(contract.PSEUDO_GRADIENT_LIST_NAMES, (fast, slow, out), op=op)
    fast, slow, out = local_shards(fast, slow, out, op=op)
    if _run_native("pseudo_gradient_", fast, slow, out, backend=backend):
        return
    contract.check_pseudo_gradient_lists(fast, slow, out)
    for module, (fasts, slows, outs) in _by_device(backend, fast, slow, out):
        module.pseudo_gradient_(fasts, slows, outs)
