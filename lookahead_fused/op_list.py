"""[NOTE: op list] The fused ops, once for Python: what every backend implements, with the arguments
each takes, in order (see [NOTE: backend protocol] in lookahead_fused/backends/__init__.py). C++
has the same list (csrc/op_list.h, an X-macro); a test compares the two through
build_info()["ops"], and each schema follows from this table (`OpSpec.schema`). From it follow the
native backend's forwarding (backends/native.py), the Triton backend's custom ops and their fakes
(backends/triton/__init__.py) and the argument conversion of both (`normalize`).

Adding a fused update: its element math, one line in each list (here and in csrc/op_list.h), its
kernel entry in csrc/ops.cpp, its implementation in the reference backend (the oracle) and the
Triton backend, and its public entry in ops.py (docs/design.md, "The op list, and adding an op").
"""

from __future__ import annotations

from dataclasses import dataclass

# An argument's kind: its schema type, and how a backend's inputs are normalised to it.
SCHEMA_TYPES = {"tensors": "Tensor[]", "tensor": "Tensor", "float": "float", "int": "int", "bool": "bool"}
_NORMALISE = {"tensors": list, "tensor": lambda t: t, "float": float, "int": int, "bool": bool}


@dataclass(frozen=True)
class Argument:
    name: str
    kind: str  # a key of SCHEMA_TYPES
    written: bool = False  # a tensor list the op writes in place


@dataclass(frozen=True)
class OpSpec:
    name: str  # the torch.library name (lookahead_fused::<name>) and the backends' method name
    arguments: tuple[Argument, ...]

    @property
    def argument_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arguments)

    @property
    def written(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arguments if a.written)

    def schema(self) -> str:
        """The schema after the op's name, with an alias set per written list, as csrc/op_list.h writes it."""
        parts, alias = [], iter("abcdefgh")
        for a in self.arguments:
            kind = SCHEMA_TYPES[a.kind]
            if a.written:
                kind = kind.replace("Tensor", f"Tensor({next(alias)}!)")
            parts.append(f"{kind} {a.name}")
        return f"({', '.join(parts)}) -> ()"

    def normalize(self, args: tuple) -> list:
        """The arguments as the kernels take them: lists for tensor lists, Python scalars."""
        return [_NORMALISE[spec.kind](value) for spec, value in zip(self.arguments, args, strict=True)]


def _args(text: str) -> tuple[Argument, ...]:
    """'fast:tensors! slow:tensors! alpha:float' -> Arguments; '!' marks a written list."""
    arguments = []
    for word in text.split():
        name, kind = word.split(":")
        arguments.append(Argument(name, kind.rstrip("!"), kind.endswith("!")))
    return tuple(arguments)


OPS = (
    OpSpec("sync_", _args("fast:tensors! slow:tensors! alpha:float")),
    OpSpec("sync_on_step_", _args("fast:tensors! slow:tensors! alpha:tensor step:tensor k:int")),
    OpSpec("swap_", _args("first:tensors! second:tensors!")),
    OpSpec("momentum_sync_", _args("fast:tensors! slow:tensors! momentum:tensors! alpha:float mu:float nesterov:bool")),
    OpSpec(
        "momentum_sync_on_step_",
        _args("fast:tensors! slow:tensors! momentum:tensors! alpha:tensor step:tensor k:int mu:float nesterov:bool"),
    ),
    OpSpec(
        "adamw_step_",
        _args(
            "params:tensors! grads:tensors exp_avgs:tensors! exp_avg_sqs:tensors! slow:tensors! momentum:tensors! "
            "hyper:tensor rows:tensor mu:float nesterov:bool"
        ),
    ),
    OpSpec("compact_sync_", _args("fast:tensors! slow_high:tensors! slow_low:tensors! alpha:float")),
    OpSpec(
        "compact_sync_on_step_",
        _args("fast:tensors! slow_high:tensors! slow_low:tensors! alpha:tensor step:tensor k:int"),
    ),
    OpSpec(
        "int8_momentum_sync_",
        _args("fast:tensors! slow:tensors! momentum:tensors! scales:tensors! alpha:float mu:float nesterov:bool"),
    ),
    OpSpec(
        "int8_momentum_sync_on_step_",
        _args(
            "fast:tensors! slow:tensors! momentum:tensors! scales:tensors! alpha:tensor step:tensor k:int mu:float "
            "nesterov:bool"
        ),
    ),
    OpSpec("pseudo_gradient_", _args("fast:tensors slow:tensors out:tensors!")),
    OpSpec(
        "compact_momentum_sync_",
        _args("fast:tensors! slow_high:tensors! slow_low:tensors! momentum:tensors! alpha:float mu:float nesterov:bool"),
    ),
    OpSpec(
        "compact_momentum_sync_on_step_",
        _args(
            "fast:tensors! slow_high:tensors! slow_low:tensors! momentum:tensors! alpha:tensor step:tensor k:int "
            "mu:float nesterov:bool"
        ),
    ),
    OpSpec(
        "adamw_delta_step_",
        _args(
            "params:tensors! grads:tensors exp_avgs:tensors! exp_avg_sqs:tensors! delta:tensors! scales:tensors! "
            "momentum:tensors! momentum_scales:tensors! hyper:tensor rows:tensor mu:float nesterov:bool"
        ),
    ),
    OpSpec(
        "compact_int8_momentum_sync_",
        _args(
            "fast:tensors! slow_high:tensors! slow_low:tensors! momentum:tensors! scales:tensors! alpha:float "
            "mu:float nesterov:bool"
        ),
    ),
    OpSpec(
        "compact_int8_momentum_sync_on_step_",
        _args(
            "fast:tensors! slow_high:tensors! slow_low:tensors! momentum:tensors! scales:tensors! alpha:tensor "
            "step:tensor k:int mu:float nesterov:bool"
        ),
    ),
    OpSpec(
        "adamw_compact_step_",
        _args(
            "params:tensors! grads:tensors exp_avgs:tensors! exp_avg_sqs:tensors! slow_high:tensors! "
            "slow_low:tensors! momentum:tensors! hyper:tensor rows:tensor mu:float nesterov:bool"
        ),
    ),
    OpSpec(
        "adamw_int8_momentum_step_",
        _args(
            "params:tensors! grads:tensors exp_avgs:tensors! exp_avg_sqs:tensors! slow:tensors! slow_low:tensors! "
            "momentum:tensors! scales:tensors! hyper:tensor rows:tensor mu:float nesterov:bool"
        ),
    ),
)
OP_NAMES = tuple(op.name for op in OPS)
