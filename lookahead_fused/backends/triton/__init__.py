"""The "triton" backend: every op as one Triton launch per dtype pair, for CUDA tensors when the C++
extension is not built, and as a second implementation to check the CUDA kernel. plans.py holds
the tables, the plan cache and the launch loop; elementwise.py the element math both kernels share;
sync.py the sync, momentum sync and swap; adamw.py AdamW's fused step, with exact or bf16+int8 slow
weights; adamw_delta.py AdamW's step
with int8-delta slow weights; compact.py the sync and the
momentum sync of bf16+int8 slow weights; int8_momentum.py the momentum sync with an int8-block momentum,
beside float32 or bf16+int8 slow weights; adamw_int8_momentum.py AdamW's step with that momentum sync;
pseudo_gradient.py the replicas' pseudo-gradient.

[NOTE: Triton plan] A plan per parameter set holds, per dtype pair, a device table of fast and slow
addresses and sizes plus a chunk map (pair index << 40 | chunk index, one program per chunk of
BLOCK elements). It is found again by content (addresses, sizes, dtypes), so steady state uploads
nothing. Triton fixes a pointer's element type at compile time, so each dtype pair is its own
launch, split once more into the pairs that start on 16-byte boundaries and the rest
(see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py).

[NOTE: Triton custom ops] Each op of the op list (see [NOTE: op list] in lookahead_fused/op_list.py)
is registered from that list as the custom op lookahead_fused::triton_<name>, with the list's
schema and a fake that does nothing, so that torch.compile keeps each whole: tracing into a
kernel would hand it fake tensors, whose addresses a table cannot hold. Eager calls skip them, as the
native backend's skip the dispatcher (see [NOTE: eager entry points] in csrc/module.cpp).
"""

from __future__ import annotations

import torch

from ...op_list import OPS
from .. import BackendUnavailable, triton_interpreting
from . import adamw, adamw_delta, adamw_int8_momentum, compact, int8_momentum, pseudo_gradient, sync

IMPLEMENTATIONS = {  # op name -> the function that runs it, on normalised arguments
    "sync_": sync.sync_,
    "sync_on_step_": sync.sync_on_step_,
    "swap_": sync.swap_,
    "momentum_sync_": sync.momentum_sync_,
    "momentum_sync_on_step_": sync.momentum_sync_on_step_,
    "adamw_step_": adamw.adamw_step_,
    "compact_sync_": compact.compact_sync_,
    "compact_sync_on_step_": compact.compact_sync_on_step_,
    "int8_momentum_sync_": int8_momentum.int8_momentum_sync_,
    "int8_momentum_sync_on_step_": int8_momentum.int8_momentum_sync_on_step_,
    "pseudo_gradient_": pseudo_gradient.pseudo_gradient_,
    "compact_momentum_sync_": compact.compact_momentum_sync_,
    "compact_momentum_sync_on_step_": compact.compact_momentum_sync_on_step_,
    "adamw_delta_step_": adamw_delta.adamw_delta_step_,
    "adamw_compact_step_": adamw.adamw_compact_step_,
    "compact_int8_momentum_sync_": int8_momentum.compact_int8_momentum_sync_,
    "compact_int8_momentum_sync_on_step_": int8_momentum.compact_int8_momentum_sync_on_step_,
    "adamw_int8_momentum_step_": adamw_int8_momentum.adamw_int8_momentum_step_,
}


def _fake(*args) -> None:
    return None


def _register(op):
    custom = torch.library.custom_op(
        f"lookahead_fused::triton_{op.name}", IMPLEMENTATIONS[op.name], mutates_args=op.written, schema=op.schema()
    )
    custom.register_fake(_fake)
    return custom


CUSTOM_OPS = {op.name: _register(op) for op in OPS}


def _forwarding(op, custom):
    implementation = IMPLEMENTATIONS[op.name]
    written = [i for i, argument in enumerate(op.arguments) if argument.written]

    def forward(*args) -> None:
        args = op.normalize(args)
        if torch.compiler.is_compiling():
            custom(*args)
            return
        implementation(*args)
        for i in written:  # what the custom op would do, one call per list (see [NOTE: versions] in csrc/ops.cpp)
            torch.autograd.graph.increment_version(args[i])

    forward.__name__ = op.name
    return forward


class TritonBackend:
    """Trusts its inputs: lookahead_fused.ops checks the contract first. One method per op of the op
    list: a compiled step calls its custom op, an eager call its implementation (the custom op's
    dispatch walks every tensor of the lists in Python, bumping each version one call at a time)."""

    name = "triton"

    def __init__(self):
        for op in OPS:
            setattr(self, op.name, _forwarding(op, CUSTOM_OPS[op.name]))


def load() -> TritonBackend:
    if not (torch.cuda.is_available() or triton_interpreting()):
        raise BackendUnavailable("no CUDA GPU is available (TRITON_INTERPRET=1 runs it on the CPU, for tests)")
    return TritonBackend()
