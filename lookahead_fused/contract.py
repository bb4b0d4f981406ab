"""The op contract of docs/design.md, checked before any backend writes an element.

Every check raises before anything is modified, naming the pair index and what is wrong, so a
rejected call changes nothing. The checks are stricter than "valid for torch.lerp" on purpose:
a fused kernel walks raw storage, so layout and aliasing have to be proven here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from . import int8_blocks

# The element types, once for Python (see [NOTE: dtype list] in csrc/table.h for C++'s list, and a
# test compares the two through _C.build_info()): the checks, messages and tests derive from these.
FAST_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LOW_PRECISION_DTYPES = (torch.float16, torch.bfloat16)
SUPPORTED_NAMES = ", ".join(str(d).removeprefix("torch.") for d in FAST_DTYPES)


def opmath_dtype(slow_dtype: torch.dtype) -> torch.dtype:
    """The dtype the contract computes a pair in: float64 for float64 slow, else float32."""
    return torch.float64 if slow_dtype == torch.float64 else torch.float32


def allowed_slow_dtypes(fast_dtype: torch.dtype) -> tuple[torch.dtype, ...]:
    """Slow weights keep the fast dtype, or float32 for float16/bfloat16 fast weights."""
    if fast_dtype in LOW_PRECISION_DTYPES:
        return (fast_dtype, torch.float32)
    return (fast_dtype,)


DTYPE_PAIRS = tuple((fast, slow) for fast in FAST_DTYPES for slow in allowed_slow_dtypes(fast))  # (fast, slow)


def allowed_momentum_dtypes(slow_dtype: torch.dtype) -> tuple[torch.dtype, ...]:
    """The outer momentum is kept in the slow weights' dtype, or in bfloat16 beside float32 slow
    weights (see [NOTE: entry dtypes] in csrc/table.h)."""
    if slow_dtype == torch.float32:
        return (slow_dtype, torch.bfloat16)
    return (slow_dtype,)


# (fast, slow) pairs whose outer momentum may be bfloat16: LOOKAHEAD_BF16_MOMENTUM_PAIRS in csrc/table.h.
BF16_MOMENTUM_PAIRS = tuple(pair for pair in DTYPE_PAIRS if torch.bfloat16 in allowed_momentum_dtypes(pair[1])[1:])


def allowed_pseudo_gradient_dtypes(slow_dtype: torch.dtype) -> tuple[torch.dtype, ...]:
    """The pseudo-gradient is written in the slow weights' dtype, or in bfloat16 beside float32 slow
    weights (the replicas' bfloat16 wire): out plays the outer momentum's role, with its codes
    (see [NOTE: entry dtypes] in csrc/table.h)."""
    return allowed_momentum_dtypes(slow_dtype)


# The lists of a call by position, as the messages name them (as csrc/contract.cpp's list_names).
SYNC_LIST_NAMES = ("fast", "slow", "momentum")
ADAMW_LIST_NAMES = ("param", "grad", "exp_avg", "exp_avg_sq", "slow", "momentum")
COMPACT_LIST_NAMES = ("fast", "slow_high", "slow_low", "momentum", "scales")  # scales: of an int8 momentum
COMPACT_OP = "lookahead_compact_sync_"
COMPACT_GATED_OP = "lookahead_compact_sync_on_step_"
PSEUDO_GRADIENT_OP = "lookahead_pseudo_gradient_"
PSEUDO_GRADIENT_LIST_NAMES = ("fast", "slow", "out")
ADAMW_COMPACT_OP = "lookahead_adamw_compact_step_"
ADAMW_COMPACT_LIST_NAMES = ("param", "grad", "exp_avg", "exp_avg_sq", "slow_high", "slow_low", "momentum")
ADAMW_INT8_MOMENTUM_OP = "lookahead_adamw_int8_momentum_step_"
ADAMW_INT8_MOMENTUM_LIST_NAMES = ("param", "grad", "exp_avg", "exp_avg_sq", "slow", "slow_low", "momentum", "scales")
ADAMW_DELTA_OP = "lookahead_adamw_delta_step_"
ADAMW_DELTA_LIST_NAMES = ("param", "grad", "exp_avg", "exp_avg_sq", "delta", "scales", "momentum", "momentum_scales")
INT8_DELTA_SYNC_OP = "LookaheadAdamW's int8-delta sync"  # the reference's int8_delta_sync_, as the messages name it
INT8_DELTA_SYNC_LIST_NAMES = ("param", "delta", "scales", "momentum", "momentum_scales")
# The params whose state the encodings keep (the 32-bit opmath dtypes): bf16+int8 slow weights, int8 blocks of
# an outer momentum beside float32 slow weights, int8-delta offsets.
ENCODED_PARAM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The fast dtypes whose slow weights may be kept as bf16+int8, and the dtypes of its two parts.
COMPACT_FAST_DTYPES = ENCODED_PARAM_DTYPES
COMPACT_STATE_DTYPES = (torch.bfloat16, torch.int8)
COMPACT_MOMENTUM_DTYPES = (torch.float32, torch.bfloat16)  # the outer momentum's beside them
# the dtypes of a float outer momentum beside int8-delta offsets (see [NOTE: int8-delta float momentum] in csrc/adamw.h)
DELTA_FLOAT_MOMENTUM_DTYPES = COMPACT_MOMENTUM_DTYPES

INT8_MOMENTUM_LIST_NAMES = ("fast", "slow", "momentum", "scales")
INT8_MOMENTUM_OP = "lookahead_int8_momentum_sync_"
INT8_MOMENTUM_GATED_OP = "lookahead_int8_momentum_sync_on_step_"
# fast's dtypes; slow is float32, momentum int8 and scales float32 (int8_blocks.CODE_DTYPE, SCALE_DTYPE)
INT8_MOMENTUM_FAST_DTYPES = ENCODED_PARAM_DTYPES
# the params' dtypes whose slow weights may be kept as int8-delta (see [NOTE: int8-delta] in csrc/adamw.h)
INT8_DELTA_PARAM_DTYPES = ENCODED_PARAM_DTYPES

# The columns of a row of the AdamW hyper table, in order (see [NOTE: AdamW hyper table] in csrc/adamw.h,
# whose LOOKAHEAD_ADAMW_COLUMNS build_info() reports by name as "adamw_columns").
ADAMW_COLUMNS = ("lr", "beta1", "beta2", "eps", "weight_decay", "step", "alpha", "sync", "maximize")


def check_mu(mu, *, where: str = "outer_momentum") -> float:
    """The outer momentum: a real, finite number in [0, 1); returned as a Python float."""
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real):
        raise TypeError(f"{where} must be a real number in [0, 1), got {type(mu).__name__}")
    value = float(mu)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{where} must be a finite number in [0, 1), got {mu!r}")
    return value


def check_k(k) -> int:
    """The sync period: an int >= 1."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int >= 1, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be an int >= 1, got {k}")
    return int(k)


def check_alpha(alpha, *, where: str = "alpha") -> float:
    """A real, finite number in [0, 1]; returned as a Python float."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{where} must be a real number in [0, 1], got {type(alpha).__name__}")
    value = float(alpha)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{where} must be a finite number in [0, 1], got {alpha!r}")
    return value


def check_param(t: torch.Tensor, *, where: str) -> None:
    """What a param needs for Lookahead: a strided floating-point tensor whose elements do not
    overlap in memory (as for any in-place update). It may be a strided view that is not dense
    (see [NOTE: strided params] in lookahead_fused/optimizer.py)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where} is a {type(t).__name__}, not a torch.Tensor")
    if t.layout != torch.strided:
        raise ValueError(f"{where} has layout {t.layout}; sparse and other non-strided tensors are not supported")
    if t.dtype not in FAST_DTYPES:
        raise ValueError(
            f"{where} has dtype {t.dtype}; supported: {SUPPORTED_NAMES} "
            "(complex and integer tensors are not supported)"
        )
    if torch._debug_has_internal_overlap(t) == 1:  # 1: yes; 2: too hard to tell (then the op decides)
        raise ValueError(
            f"{where} (shape {tuple(t.shape)}, strides {t.stride()}) has elements that share memory "
            "(an expanded view?); an optimizer cannot update it in place"
        )


def check_param_tensor(t: torch.Tensor, *, where: str) -> None:
    """What a tensor needs to take part in a fused sync (an op input): a param, dense."""
    check_param(t, where=where)
    if not is_non_overlapping_and_dense(t):
        raise ValueError(
            f"{where} (shape {tuple(t.shape)}, strides {t.stride()}) is not dense and non-overlapping; "
            "pass a contiguous (or permuted-contiguous) tensor"
        )


def is_non_overlapping_and_dense(t: torch.Tensor) -> bool:
    """True when the elements fill exactly numel() consecutive slots of storage, in some dim order."""
    if t.is_contiguous() or t.numel() <= 1:
        return True
    dims = sorted((stride, size) for size, stride in zip(t.shape, t.stride()) if size != 1)
    expected_stride = 1
    for stride, size in dims:
        if stride != expected_stride:
            return False
        expected_stride *= size
    return True


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and the same memory order; strides of size-1 dims do not change the order."""
    if a.shape != b.shape:
        return False
    if a.numel() == 0 or (a.is_contiguous() and b.is_contiguous()):
        return True
    return all(sa == sb for size, sa, sb in zip(a.shape, a.stride(), b.stride()) if size != 1)


def check_no_overlap(*lists: Sequence[torch.Tensor], op: str, names: tuple[str, ...] | None = None) -> None:
    """No two tensors share a byte of memory, across the lists (fast, slow[, momentum], unless `names`
    says otherwise) and within each."""
    spans = []  # (device key, first byte, end byte, which list, index)
    for which, tensors in enumerate(lists):
        for i, t in enumerate(tensors):
            numel = t.numel()
            if numel and not t.is_meta:
                start = t.data_ptr()
                spans.append(((t.is_cuda, t.get_device()), start, start + numel * t.element_size(), which, i))
    spans.sort()
    for (device_a, _, end_a, *a), (device_b, start_b, _, *b) in zip(spans, spans[1:]):
        if device_a == device_b and start_b < end_a:
            (list_a, i), (list_b, j) = sorted((a, b))
            if names is None:
                names = ADAMW_LIST_NAMES if len(lists) >= 5 else SYNC_LIST_NAMES
            raise ValueError(
                f"{op}: pair {i} ({names[list_a]}) and pair {j} ({names[list_b]}) share memory; "
                "every tensor must have its own storage"
            )


def check_lists(fast, slow, *, op: str) -> None:
    """Two lists (or tuples) of the same length."""
    for name, tensors in (("fast", fast), ("slow", slow)):
        if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence):
            raise TypeError(f"{op}: {name} must be a list or tuple of tensors, got {type(tensors).__name__}")
    if len(fast) != len(slow):
        raise ValueError(f"{op}: fast has {len(fast)} tensors but slow has {len(slow)}")


def _check_pair_layout(i: int, a: torch.Tensor, b: torch.Tensor, *, op: str, names=("fast", "slow")) -> None:
    first, second = names
    if a.device != b.device:
        raise ValueError(f"{op}: pair {i}: {first} is on {a.device} but {second} is on {b.device}")
    if a.shape != b.shape:
        raise ValueError(f"{op}: pair {i}: {first} has shape {tuple(a.shape)} but {second} has shape {tuple(b.shape)}")
    if not same_layout(a, b):
        raise ValueError(f"{op}: pair {i}: {first} has strides {a.stride()} but {second} has strides {b.stride()}")


def _check_pairs(fast, slow, *, op: str) -> None:
    """Each (fast, slow) pair: valid tensors, dtypes that go together, one shape, layout and device."""
    for i, (f, s) in enumerate(zip(fast, slow)):
        check_param_tensor(f, where=f"{op}: pair {i}: fast")
        check_param_tensor(s, where=f"{op}: pair {i}: slow")
        if s.dtype not in allowed_slow_dtypes(f.dtype):
            raise ValueError(
                f"{op}: pair {i}: slow dtype {s.dtype} does not go with fast dtype {f.dtype}; "
                "slow must have the fast dtype, or float32 for float16/bfloat16 fast"
            )
        _check_pair_layout(i, f, s, op=op)


def check_sync_lists(fast, slow, momentum=None, *, overlap: bool = True, op: str = "lookahead_sync_") -> None:
    """Validate the tensor lists of a lookahead_sync_ call: the pairs, and with `momentum` the outer
    momentum beside slow (its dtype, shape and strides), as csrc/contract.cpp's check_sync_pairs and
    check_momentum_triples, word for word and in their order. alpha and mu are checked apart
    (check_alpha, check_mu). overlap=False leaves the overlap check to a caller that has more lists;
    `op` names the op whose lists these are."""
    check_lists(fast, slow, op=op)
    if momentum is not None and (isinstance(momentum, torch.Tensor) or not isinstance(momentum, Sequence)):
        raise TypeError(f"{op}: momentum must be a list or tuple of tensors, got {type(momentum).__name__}")
    _check_pairs(fast, slow, op=op)
    if momentum is not None and len(momentum) != len(fast):
        raise ValueError(f"{op}: fast has {len(fast)} tensors but momentum has {len(momentum)}")
    for i, (s, m) in enumerate(zip(slow, momentum or ())):
        check_param_tensor(m, where=f"{op}: pair {i}: momentum")
        if m.dtype not in allowed_momentum_dtypes(s.dtype):
            raise ValueError(
                f"{op}: pair {i}: momentum has dtype {m.dtype} but slow has {s.dtype}; "
                "the outer momentum is kept in the slow weights' dtype, or in bfloat16 beside float32 slow weights"
            )
        _check_pair_layout(i, m, s, op=op, names=("momentum", "slow"))
    if overlap:
        check_no_overlap(fast, slow, *(() if momentum is None else (momentum,)), op=op)


def check_pseudo_gradient_lists(fast, slow, out) -> None:
    """Validate the lists of a lookahead_pseudo_gradient_ call, as csrc/contract.cpp's
    check_pseudo_gradient_triples and the overlap check: fast and slow as a sync's pairs; out of slow's
    shape and strides, on its device, in a dtype of allowed_pseudo_gradient_dtypes; nothing shared."""
    op = PSEUDO_GRADIENT_OP
    check_list_types(PSEUDO_GRADIENT_LIST_NAMES, (fast, slow, out), op=op)
    check_lists(fast, slow, op=op)
    if len(out) != len(fast):
        raise ValueError(f"{op}: fast has {len(fast)} tensors but out has {len(out)}")
    _check_pairs(fast, slow, op=op)
    for i, (s, o) in enumerate(zip(slow, out)):
        check_param_tensor(o, where=f"{op}: pair {i}: out")
        if o.dtype not in allowed_pseudo_gradient_dtypes(s.dtype):
            raise ValueError(
                f"{op}: pair {i}: out has dtype {o.dtype} but slow has {s.dtype}; "
                "the pseudo-gradient is written in the slow weights' dtype, or in bfloat16 beside float32 slow weights"
            )
        _check_pair_layout(i, o, s, op=op, names=("out", "slow"))
    check_no_overlap(fast, slow, out, op=op, names=PSEUDO_GRADIENT_LIST_NAMES)


def _check_state_tensor(t, dtype: torch.dtype, *, where: str) -> None:
    """A compact state tensor: a strided tensor of `dtype`, dense (csrc/contract.cpp's check_tensor)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where} is a {type(t).__name__}, not a torch.Tensor")
    if t.layout != torch.strided:
        raise ValueError(f"{where} has layout {t.layout}; sparse and other non-strided tensors are not supported")
    if t.dtype != dtype:
        raise ValueError(f"{where} has dtype {t.dtype}; it must be {dtype}")
    if not is_non_overlapping_and_dense(t):
        raise ValueError(
            f"{where} (shape {tuple(t.shape)}, strides {t.stride()}) is not dense and non-overlapping; "
            "pass a contiguous (or permuted-contiguous) tensor"
        )


def check_compact_list_types(*lists) -> None:
    """The three (with outer momentum four, with an int8 one five) lists of a lookahead_compact_sync_ call
    are lists or tuples."""
    check_list_types(COMPACT_LIST_NAMES[: len(lists)], lists, op=COMPACT_OP)


def check_compact_lists(fast, slow_high, slow_low, momentum=None, scales=None) -> None:
    """Validate the lists of a lookahead_compact_sync_ call, as csrc/contract.cpp's
    check_compact_triples (with `momentum`, check_compact_momentum_quads; with `momentum` and its int8
    block `scales`, check_compact_int8_momentum_lists) and the overlap check: fast in float32, float16
    or bfloat16; beside each a bfloat16 high part and an int8 residual of its shape and strides, on its
    device (and the outer momentum, float32 or bfloat16, or int8 codes and their block scales); nothing
    shared."""
    op = COMPACT_OP
    if scales is not None and momentum is None:
        momentum = []  # scales without codes: refused as C++ refuses them, "fast has n tensors but momentum has 0"
    extra = () if momentum is None else (momentum,) if scales is None else (momentum, scales)
    check_compact_list_types(fast, slow_high, slow_low, *extra)
    _check_compact_triples(fast, slow_high, slow_low, op=op, first="fast")
    if scales is not None:
        return _check_compact_int8_momenta(fast, slow_high, slow_low, momentum, scales)
    if momentum is None:
        return check_no_overlap(fast, slow_high, slow_low, op=op, names=COMPACT_LIST_NAMES)
    _check_compact_momenta(fast, momentum, op=op, first="fast")
    check_no_overlap(fast, slow_high, slow_low, momentum, op=op, names=COMPACT_LIST_NAMES)


def _check_compact_triples(fast, slow_high, slow_low, *, op: str, first: str, high: str = "slow_high") -> None:
    """fast (named `first`) in float32, float16 or bfloat16; beside each a bfloat16 high part (its list named
    `high`) and an int8 residual of its shape and strides, on its device: csrc/contract.cpp's
    check_compact_triples."""
    state_names = (high, COMPACT_LIST_NAMES[2])
    for name, tensors in zip(state_names, (slow_high, slow_low)):
        if len(tensors) != len(fast):
            raise ValueError(f"{op}: {first} has {len(fast)} tensors but {name} has {len(tensors)}")
    for i, tensors in enumerate(zip(fast, slow_high, slow_low)):
        f = tensors[0]
        check_param_tensor(f, where=f"{op}: pair {i}: {first}")
        if f.dtype not in COMPACT_FAST_DTYPES:
            raise ValueError(
                f"{op}: pair {i}: {first} has dtype {f.dtype}; bf16+int8 slow weights are for float32, float16 and "
                "bfloat16 params"
            )
        for name, t, dtype in zip(state_names, tensors[1:], COMPACT_STATE_DTYPES):
            _check_state_tensor(t, dtype, where=f"{op}: pair {i}: {name}")
        for name, t in zip(state_names, tensors[1:]):
            _check_pair_layout(i, f, t, op=op, names=(first, name))


def _check_compact_momenta(fast, momentum, *, op: str, first: str) -> None:
    """The outer momentum beside checked compact triples, float32 or bfloat16 of fast's shape and strides:
    the rest of csrc/contract.cpp's check_compact_momentum_quads."""
    if len(momentum) != len(fast):
        raise ValueError(f"{op}: {first} has {len(fast)} tensors but momentum has {len(momentum)}")
    for i, (f, m) in enumerate(zip(fast, momentum)):
        check_param_tensor(m, where=f"{op}: pair {i}: momentum")
        if m.dtype not in COMPACT_MOMENTUM_DTYPES:
            raise ValueError(
                f"{op}: pair {i}: momentum has dtype {m.dtype}; the outer momentum beside bf16+int8 slow weights is "
                "float32 or bfloat16"
            )
        _check_pair_layout(i, m, f, op=op, names=("momentum", first))


def _check_compact_int8_momenta(fast, slow_high, slow_low, momentum, scales) -> None:
    """The int8 momentum codes and block scales beside checked compact triples, and the overlap of all
    five lists, as csrc/contract.cpp's check_compact_int8_momentum_lists."""
    op = COMPACT_OP
    _check_lengths(("fast", "momentum", "scales"), (fast, momentum, scales), op=op)
    _check_int8_codes_beside(fast, momentum, scales, op=op, owner="fast")
    check_no_overlap(fast, slow_high, slow_low, momentum, scales, op=op, names=COMPACT_LIST_NAMES)


def _check_int8_codes_beside(owners, codes, scales, *, op: str, owner: str) -> None:
    """Beside each of `owners` (checked, named `owner`) its int8 momentum codes (its shape and strides) and
    their block scales, as csrc/contract.cpp's check_int8_codes_beside."""
    for i, (f, m, sc) in enumerate(zip(owners, codes, scales)):
        _check_state_tensor(m, torch.int8, where=f"{op}: pair {i}: momentum")
        _check_state_tensor(sc, torch.float32, where=f"{op}: pair {i}: scales")
        _check_pair_layout(i, f, m, op=op, names=(owner, "momentum"))
        _check_block_scales(i, f, sc, op=op, owner=owner, device=owners[0].device)


def check_list_types(names: tuple[str, ...], lists, *, op: str) -> None:
    """Each of `lists` is a list or tuple."""
    for name, tensors in zip(names, lists, strict=True):
        if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence):
            raise TypeError(f"{op}: {name} must be a list or tuple of tensors, got {type(tensors).__name__}")


def _check_block_scales(i: int, owner_tensor, sc, *, op: str, owner: str, device: torch.device,
                        name: str = "scales") -> None:  # fmt: skip
    """One scale per block of `owner_tensor`'s elements, 1-D on the call's `device` (pair 0's), as
    csrc/contract.cpp says it (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py)."""
    blocks = int8_blocks.scale_count(owner_tensor.numel())
    if sc.device != device:
        raise NotImplementedError(
            f"{op}: pair {i} has {owner} on {owner_tensor.device} and {name} on {sc.device} but pair 0 is on {device}; "
            "one call of the fused kernel runs on one device"
        )
    if sc.dim() != 1 or sc.numel() != blocks:
        raise ValueError(
            f"{op}: pair {i}: {name} has shape {tuple(sc.shape)}; it must be ({blocks},), one scale per block "
            f"of {int8_blocks.BLOCK} of {owner}'s {owner_tensor.numel()} elements"
        )


def check_int8_momentum_lists(fast, slow, momentum, scales) -> None:
    """Validate the lists of a lookahead_int8_momentum_sync_ call, as csrc/contract.cpp's
    check_int8_momentum_quads and the overlap check: fast in float32, float16 or bfloat16; beside each
    float32 slow weights and int8 momentum codes of its shape and strides, and its block scales, a
    contiguous 1-D float32 tensor of ceil(numel / 256) elements; one device per entry; nothing shared
    (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py)."""
    op, names = INT8_MOMENTUM_OP, INT8_MOMENTUM_LIST_NAMES
    check_list_types(names, (fast, slow, momentum, scales), op=op)
    _check_int8_momentum_quads(fast, slow, momentum, scales, op=op, first="fast")
    check_no_overlap(fast, slow, momentum, scales, op=op, names=names)


def _check_int8_momentum_quads(fast, slow, momentum, scales, *, op: str, first: str) -> None:
    """The lengths, then pair by pair fast (named `first`) and beside it its float32 slow weights, int8
    momentum codes and block scales, as csrc/contract.cpp's check_int8_momentum_quads."""
    names = INT8_MOMENTUM_LIST_NAMES
    _check_lengths((first,) + names[1:], (fast, slow, momentum, scales), op=op)
    for i, (f, s, m, sc) in enumerate(zip(fast, slow, momentum, scales)):
        check_param_tensor(f, where=f"{op}: pair {i}: {first}")
        if f.dtype not in INT8_MOMENTUM_FAST_DTYPES:
            raise ValueError(
                f"{op}: pair {i}: {first} has dtype {f.dtype}; an int8 outer momentum is for float32, float16 and "
                "bfloat16 params"
            )
        for name, t, dtype in ((names[1], s, torch.float32), (names[2], m, torch.int8), (names[3], sc, torch.float32)):
            _check_state_tensor(t, dtype, where=f"{op}: pair {i}: {name}")
        for name, t in ((names[1], s), (names[2], m)):
            _check_pair_layout(i, f, t, op=op, names=(first, name))
        _check_block_scales(i, f, sc, op=op, owner=first, device=fast[0].device)


def _check_lengths(names: tuple[str, ...], lists, *, op: str) -> None:
    """As many tensors in each list as in the first, named as C++'s check_lengths names them."""
    for name, tensors in zip(names[1:], lists[1:]):
        if len(tensors) != len(lists[0]):
            raise ValueError(f"{op}: {names[0]} has {len(lists[0])} tensors but {name} has {len(tensors)}")


def _check_adamw_moments(params, grads, exp_avgs, exp_avg_sqs, *, op: str) -> None:
    """Each param, then its grad and moments beside it (their dtype, shape, strides), pair by pair, and
    one device for the call, as csrc/contract.cpp's check_adamw_moments."""
    others = {"grad": grads, "exp_avg": exp_avgs, "exp_avg_sq": exp_avg_sqs}
    for i, p in enumerate(params):
        check_param_tensor(p, where=f"{op}: pair {i}: param")
        for name, tensors in others.items():
            t = tensors[i]
            check_param_tensor(t, where=f"{op}: pair {i}: {name}")
            if t.dtype != p.dtype:
                raise ValueError(f"{op}: pair {i}: {name} has dtype {t.dtype} but param has {p.dtype}")
            _check_pair_layout(i, t, p, op=op, names=(name, "param"))
    devices = {t.device for t in params}
    if len(devices) > 1:
        raise ValueError(f"{op}: params on {sorted(map(str, devices))}; one call runs on one device")


def _check_adamw_table(params, hyper, rows, syncs: bool, *, op: str) -> None:
    """The hyper table and the rows of AdamW's step, as csrc/contract.cpp's check_adamw_hyper says it."""
    columns = len(ADAMW_COLUMNS)
    if hyper.dtype != torch.float64 or hyper.dim() != 2 or hyper.shape[1] != columns or not hyper.is_contiguous():
        raise ValueError(f"{op}: hyper must be a contiguous float64 tensor of shape (rows, {columns})")
    if rows.dtype != torch.int64 or rows.dim() != 1 or rows.numel() != len(params) or not rows.is_contiguous():
        raise ValueError(f"{op}: rows must be a contiguous int64 tensor of one row index per param ({len(params)})")
    if not params:
        return
    device = params[0].device
    if hyper.device != device or rows.device != device:
        raise ValueError(f"{op}: hyper is on {hyper.device} and rows on {rows.device} but the params are on {device}; "
                         "the kernel reads both where it runs")  # fmt: skip
    # the values only where reading them is free (csrc/contract.cpp does the same): on a GPU it would
    # synchronise, and a captured step could not run it
    if device.type != "cpu":
        return
    outside = ((rows < 0) | (rows >= hyper.shape[0])).nonzero()
    if outside.numel():
        i = int(outside[0])
        raise ValueError(f"{op}: param {i} names row {int(rows[i])} of a hyper table of {hyper.shape[0]} rows")
    if not syncs and bool((hyper[:, ADAMW_COLUMNS.index("sync")] != 0).any()):
        row = int((hyper[:, ADAMW_COLUMNS.index("sync")] != 0).nonzero()[0])
        raise ValueError(
            f"{op}: hyper row {row} has sync = 1 but the call has no slow weights to sync; without slow weights the "
            "step runs AdamW alone, with sync 0 in every row"
        )


def check_adamw_args(params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu) -> None:
    """Validate a lookahead_adamw_step_ call for the pure-PyTorch and Triton backends as
    csrc/contract.cpp's check_adamw_args and adamw_step_ do, word for word and in their order: the
    lists, one device, the hyper table and its rows, mu beside the momentum. An empty `slow` (with
    params) is AdamW's step alone: no momentum then, and sync 0 in every row."""
    op = "lookahead_adamw_step_"
    syncs = bool(slow) or not params
    if not syncs and momentum:
        raise ValueError(f"{op}: momentum has {len(momentum)} tensors but slow has none; the outer momentum goes with slow weights")
    # an empty slow or momentum list has no length to check (an empty slow beside params: AdamW's step alone)
    kept = [(name, tensors) for name, tensors in zip(ADAMW_LIST_NAMES, (params, grads, exp_avgs, exp_avg_sqs, slow, momentum))
            if tensors or name not in ("slow", "momentum")]  # fmt: skip
    _check_lengths(tuple(name for name, _ in kept), [tensors for _, tensors in kept], op=op)
    _check_adamw_moments(params, grads, exp_avgs, exp_avg_sqs, op=op)
    if syncs:
        check_sync_lists(params, slow, momentum or None, overlap=False, op=op)
    _check_adamw_table(params, hyper, rows, syncs, op=op)
    if mu != 0 and not momentum:
        raise ValueError(f"{op}: outer momentum mu = {mu} needs the momentum tensors")
    check_no_overlap(params, grads, exp_avgs, exp_avg_sqs, slow, *([momentum] if momentum else []), op=op)


def check_adamw_compact_args(params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum, hyper, rows,
                             mu=0.0) -> None:  # fmt: skip
    """Validate a lookahead_adamw_compact_step_ call, as csrc/contract.cpp's check_adamw_compact_args: the
    lengths; grads and moments as for lookahead_adamw_step_; the params and their bf16+int8 slow weights
    as the compact sync's (with `momentum`, a float32 or bfloat16 outer momentum beside them); the hyper
    table and rows; nothing shared (see [NOTE: AdamW compact step] in csrc/adamw.h)."""
    op, names = ADAMW_COMPACT_OP, ADAMW_COMPACT_LIST_NAMES
    lists = (params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum)
    check_list_types(names, lists, op=op)
    check_mu(mu, where=f"{op}: outer momentum mu")
    _check_lengths(names[:6] + (names[6:] if momentum else ()), lists[:6] + ((momentum,) if momentum else ()), op=op)
    _check_adamw_moments(params, grads, exp_avgs, exp_avg_sqs, op=op)
    _check_compact_triples(params, slow_high, slow_low, op=op, first="param")
    if momentum:
        _check_compact_momenta(params, momentum, op=op, first="param")
    _check_adamw_table(params, hyper, rows, True, op=op)
    if mu != 0.0 and not momentum:
        raise ValueError(f"{op}: outer momentum mu = {mu} needs the momentum tensors")
    check_no_overlap(*lists, op=op, names=names)


def check_adamw_int8_momentum_args(params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales, hyper,
                                   rows, mu=0.0) -> None:  # fmt: skip
    """Validate a lookahead_adamw_int8_momentum_step_ call, as csrc/contract.cpp's
    check_adamw_int8_momentum_args: the lengths; grads and moments as for lookahead_adamw_step_; with
    `slow_low` empty the params, float32 slow weights, momentum codes and scales as the int8 momentum sync's,
    else the params and bf16+int8 slow weights (`slow` their high parts) as the compact sync's and the codes
    and scales beside the params; the hyper table and rows; nothing shared
    (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h)."""
    op, names = ADAMW_INT8_MOMENTUM_OP, ADAMW_INT8_MOMENTUM_LIST_NAMES
    lists = (params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales)
    check_list_types(names, lists, op=op)
    check_mu(mu, where=f"{op}: outer momentum mu")
    present = [n for n in range(len(lists)) if n != 5 or slow_low]
    _check_lengths(tuple(names[n] for n in present), tuple(lists[n] for n in present), op=op)
    _check_adamw_moments(params, grads, exp_avgs, exp_avg_sqs, op=op)
    if slow_low:
        _check_compact_triples(params, slow, slow_low, op=op, first="param", high="slow")
        _check_int8_codes_beside(params, momentum, scales, op=op, owner="param")
    else:
        _check_int8_momentum_quads(params, slow, momentum, scales, op=op, first="param")
    _check_adamw_table(params, hyper, rows, True, op=op)
    check_no_overlap(*lists, op=op, names=names)


def check_adamw_delta_args(params, grads, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales, hyper,
                           rows, mu=0.0) -> None:  # fmt: skip
    """Validate a lookahead_adamw_delta_step_ call, as csrc/contract.cpp's check_adamw_delta_args: params
    in float32, float16 or bfloat16; grads and moments as for lookahead_adamw_step_; beside each param
    its int8 offset codes (its shape and strides) and block scales (a dense 1-D float32 tensor of
    ceil(numel / 256) elements), and its int8 outer momentum's alike, or a float32 or bfloat16 outer
    momentum of its shape and strides with no momentum scales, or both momentum lists empty; the hyper
    table and rows; nothing shared (see [NOTE: int8-delta] in csrc/adamw.h)."""
    op, names = ADAMW_DELTA_OP, ADAMW_DELTA_LIST_NAMES
    lists = (params, grads, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales)
    check_list_types(names, lists, op=op)
    if momentum or momentum_scales:
        check_mu(mu, where=f"{op}: outer momentum mu")
    _check_lengths(names[:4], lists[:4], op=op)
    _check_int8_delta_lengths(params, *lists[4:], op=op)
    _check_adamw_moments(params, grads, exp_avgs, exp_avg_sqs, op=op)
    _check_int8_delta_codes(params, *lists[4:], op=op)
    _check_adamw_table(params, hyper, rows, True, op=op)
    check_no_overlap(*lists, op=op, names=names)


def check_int8_delta_lists(params, delta, scales, momentum=(), momentum_scales=()) -> None:
    """Validate the lists of a sync of int8-delta slow weights without AdamW's step (LookaheadAdamW's
    params without a grad, sync_lookahead()): as lookahead_adamw_delta_step_'s (params, delta, scales[,
    momentum, momentum_scales])."""
    op, names = INT8_DELTA_SYNC_OP, INT8_DELTA_SYNC_LIST_NAMES
    lists = (params, delta, scales, momentum, momentum_scales)
    check_list_types(names, lists, op=op)
    _check_int8_delta_lengths(*lists, op=op)
    for i, p in enumerate(params):
        check_param_tensor(p, where=f"{op}: pair {i}: param")
    _check_int8_delta_codes(*lists, op=op)
    check_no_overlap(*lists, op=op, names=names)


def _check_int8_delta_lengths(params, delta, scales, momentum, momentum_scales, *, op: str) -> None:
    """As many offsets and scales as params, and as many momenta (or none) and as many momentum scales (or
    none beside float momenta), named as csrc/contract.cpp's check_int8_delta_entries names them."""
    names = INT8_DELTA_SYNC_LIST_NAMES
    _check_lengths(names[:3], (params, delta, scales), op=op)
    if momentum:
        _check_lengths((names[0], names[3]), (params, momentum), op=op)
    if not momentum or momentum_scales:
        _check_lengths(names[3:], (momentum, momentum_scales), op=op)


def _check_int8_delta_codes(params, delta, scales, momentum, momentum_scales, *, op: str) -> None:
    """Each param in float32, float16 or bfloat16, beside it its offset codes (int8, its shape and strides)
    and block scales (see [NOTE: int8-delta] in csrc/adamw.h), and its outer momentum, if any: int8 codes
    and block scales, or without scales float32 or bfloat16 momenta
    (see [NOTE: int8-delta float momentum] in csrc/adamw.h)."""
    for i, p in enumerate(params):
        if p.dtype not in INT8_DELTA_PARAM_DTYPES:
            raise ValueError(
                f"{op}: pair {i}: param has dtype {p.dtype}; int8-delta slow weights are for float32, float16 and "
                "bfloat16 params"
            )
    device = params[0].device if params else None
    float_momentum = momentum if momentum and not momentum_scales else ()  # checked after the codes, as in C++
    int8_momentum = () if float_momentum else momentum
    for codes, block_scales, names in ((delta, scales, ("delta", "scales")),
                                       (int8_momentum, momentum_scales, ("momentum", "momentum_scales"))):  # fmt: skip
        for i, (p, q, sc) in enumerate(zip(params, codes, block_scales)):
            _check_state_tensor(q, torch.int8, where=f"{op}: pair {i}: {names[0]}")
            _check_state_tensor(sc, torch.float32, where=f"{op}: pair {i}: {names[1]}")
            _check_pair_layout(i, p, q, op=op, names=("param", names[0]))
            _check_block_scales(i, p, sc, op=op, owner="param", device=device, name=names[1])
    _check_float_momenta_beside(params, float_momentum, op=op)


def _check_float_momenta_beside(params, momentum, *, op: str) -> None:
    """Float outer momenta beside int8-delta offsets: each float32 or bfloat16, of its param's shape and
    strides, as csrc/contract.cpp's check_float_momenta_beside."""
    for i, (p, m) in enumerate(zip(params, momentum)):
        if isinstance(m, torch.Tensor) and m.dtype not in DELTA_FLOAT_MOMENTUM_DTYPES:
            raise ValueError(
                f"{op}: pair {i}: momentum has dtype {m.dtype}; the outer momentum beside int8-delta offsets is "
                "float32 or bfloat16, or int8 codes with their block scales"
            )
        check_param_tensor(m, where=f"{op}: pair {i}: momentum")
        _check_pair_layout(i, p, m, op=op, names=("param", "momentum"))


def _describe(t) -> str:
    return f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def check_step_gate(fast, alpha, step, k, op: str = "lookahead_sync_on_step_") -> None:
    """The gate of a step-gated op (csrc/contract.cpp word for word): alpha a one-element
    float32/float64 tensor, step a one-element int64 tensor, both on the pairs' device; k >= 1."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{op}: k must be an int >= 1, got {k!r}")
    if not (isinstance(alpha, torch.Tensor) and alpha.numel() == 1 and alpha.dtype in (torch.float32, torch.float64)):
        raise ValueError(f"{op}: alpha must be a number or a one-element float32/float64 tensor, got {_describe(alpha)}")
    if not (isinstance(step, torch.Tensor) and step.numel() == 1 and step.dtype == torch.int64):
        raise ValueError(f"{op}: step must be a one-element int64 tensor, got {_describe(step)}")
    if fast and (alpha.device != fast[0].device or step.device != fast[0].device):
        raise ValueError(
            f"{op}: alpha is on {alpha.device} and step on {step.device} but the tensors are on {fast[0].device}; "
            "the kernel reads both where it runs"
        )


def check_swap_args(a, b) -> None:
    """Validate a swap_ call: pairs of the same dtype, shape, strides and device, nothing shared."""
    op = "swap_"
    check_lists(a, b, op=op)
    for i, (x, y) in enumerate(zip(a, b)):
        check_param_tensor(x, where=f"{op}: pair {i}: first")
        check_param_tensor(y, where=f"{op}: pair {i}: second")
        if x.dtype != y.dtype:
            raise ValueError(f"{op}: pair {i}: dtypes differ ({x.dtype} and {y.dtype}); a swap needs one dtype")
        _check_pair_layout(i, x, y, op=op)
    check_no_overlap(a, b, op=op)

