"""The Triton kernel compiled ahead of time for sm_80 and sm_90 with triton.compile and a GPUTarget:
no GPU needed, and the interpreter (which the other CPU tests use) accepts code that the compiler
rejects. Every dtype pair compiles in each mode the backend launches (a lerp with alpha known on the
host, alpha read on the device behind the step gate, the swap, misaligned pairs; the compact and the
int8 momentum syncs for each fast dtype they take, the latter beside float32 and beside bf16+int8 slow
weights; the pseudo-gradient; AdamW's step with int8-delta slow weights, without an outer momentum and
with an int8, float32 or bfloat16 one; AdamW's step with bf16+int8 slow weights, without an outer
momentum and with a float32 or bfloat16 one; AdamW's step with an int8 outer momentum beside float32 or
bf16+int8 slow weights), and the aligned launches use 16-byte
global loads and stores (see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from lookahead_fused.contract import COMPACT_FAST_DTYPES, INT8_DELTA_PARAM_DTYPES, INT8_MOMENTUM_FAST_DTYPES  # noqa: E402
from lookahead_fused.contract import opmath_dtype  # noqa: E402
from tests.matrix import DTYPE_PAIRS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARCHS = [80, 90]
SIGNATURE = {
    "fast_addresses": "*i64", "slow_addresses": "*i64", "mom_addresses": "*i64", "numels": "*i64", "chunks": "*i64",
    "num_chunks": "i64", "alpha_ptr": "*fp32", "mu_ptr": "*fp32",
    "step_ptr": "*i64", "k": "i64", "FAST": "constexpr", "SLOW": "constexpr", "OPMATH": "constexpr",
    "SWAP": "constexpr", "LERP_SIDE": "constexpr", "GATED": "constexpr", "ALIGNED": "constexpr",
    "BLOCK": "constexpr", "CHUNK_BITS": "constexpr", "MOMENTUM": "constexpr", "NESTEROV": "constexpr", "MOM": "constexpr",
}  # fmt: skip
MODES = {  # name -> (SWAP, LERP_SIDE, GATED, ALIGNED, MOMENTUM, NESTEROV)
    "lerp": (False, 0, False, True, False, False),
    "gated": (False, 2, True, True, False, False),
    "swap": (True, 0, False, True, False, False),
    "misaligned": (False, 1, False, False, False, False),
    "momentum": (False, 1, False, True, True, False),
    "gated-nesterov": (False, 2, True, True, True, True),
    "momentum-bf16m": (False, 1, False, True, True, False),
    "gated-nesterov-bf16m": (False, 2, True, True, True, True),
}
# AdamW's fused step (backends/triton/adamw.py): name -> (ALIGNED, MOMENTUM, NESTEROV)
# AdamW's step (backends/triton/adamw.py): name -> (ALIGNED, MOMENTUM, NESTEROV, HAS_SLOW); "adamw-alone" has no
# slow weights (its state dtype is the params')
ADAMW_MODES = {"adamw": (True, False, False, True), "adamw-nesterov": (True, True, True, True),
               "adamw-misaligned": (False, False, False, True), "adamw-nesterov-bf16m": (True, True, True, True),
               "adamw-alone": (True, False, False, False)}  # fmt: skip
# Modes whose outer momentum is bfloat16 beside float32 slow weights (MOM; else the slow dtype)
BF16_MOMENTUM_MODES = ("momentum-bf16m", "gated-nesterov-bf16m", "adamw-nesterov-bf16m")
ADAMW_SIGNATURE = {
    **{f"{name}_addresses": "*i64" for name in ("param", "grad", "exp_avg", "exp_avg_sq", "slow", "low", "mom")},
    "numels": "*i64", "row_of": "*i64", "chunks": "*i64", "num_chunks": "i64", "derived": "*fp64", "mu_ptr": "*fp32",
    **{name: "constexpr" for name in ("FAST", "SLOW", "OPMATH", "ALIGNED", "BLOCK", "CHUNK_BITS", "MOMENTUM", "NESTEROV",
                                      "COLUMNS", "MOM", "HAS_SLOW", "COMPACT")},
}  # fmt: skip
# AdamW's step with bf16+int8 slow weights (the same kernel with COMPACT): name -> (ALIGNED, the outer momentum's
# dtype or None, NESTEROV), for each param dtype it takes
ADAMW_COMPACT_MODES = {
    "adamw-compact": (True, None, False), "adamw-compact-misaligned": (False, None, False),
    "adamw-compact-momentum": (True, torch.float32, False),
    "adamw-compact-nesterov-bf16m": (True, torch.bfloat16, True),
    "adamw-compact-momentum-misaligned-bf16m": (False, torch.bfloat16, False),
}  # fmt: skip
# The compact sync and its momentum sync (backends/triton/compact.py): name -> (LERP_SIDE, GATED, ALIGNED, MOM: the
# momentum's dtype or None), for each fast dtype they take
COMPACT_MODES = {
    "compact": (0, False, True, None), "compact-large-alpha-misaligned": (1, False, False, None),
    "compact-gated": (2, True, True, None), "compact-momentum": (0, False, True, torch.float32),
    "compact-momentum-gated-bf16m": (2, True, True, torch.bfloat16),
    "compact-momentum-misaligned-bf16m": (1, False, False, torch.bfloat16),
}  # fmt: skip
# each aligned compact momentum mode, and the compact mode it adds the momentum to
COMPACT_WITHOUT_MOMENTUM = {"compact-momentum": "compact", "compact-momentum-gated-bf16m": "compact-gated"}
COMPACT_SIGNATURE = {
    **{f"{name}_addresses": "*i64" for name in ("fast", "high", "low", "mom")}, "numels": "*i64", "chunks": "*i64",
    "num_chunks": "i64", "alpha_ptr": "*fp32", "mu_ptr": "*fp32", "step_ptr": "*i64", "k": "i64",
    **{name: "constexpr" for name in ("FAST", "LERP_SIDE", "GATED", "ALIGNED", "BLOCK", "CHUNK_BITS", "ROUNDING_SHIFT",
                                      "MOMENTUM", "NESTEROV", "MOM")},
}  # fmt: skip
# The int8 momentum sync (backends/triton/int8_momentum.py): name -> (LERP_SIDE, GATED, ALIGNED, NESTEROV), for each
# fast dtype it takes
INT8_MOMENTUM_MODES = {
    "int8-momentum": (0, False, True, False), "int8-momentum-gated-nesterov": (2, True, True, True),
    "int8-momentum-large-alpha-misaligned": (1, False, False, False),
}  # fmt: skip
INT8_MOMENTUM_SIGNATURE = {
    **{f"{name}_addresses": "*i64" for name in ("fast", "slow", "codes", "scales")}, "numels": "*i64", "chunks": "*i64",
    "num_chunks": "i64", "alpha_ptr": "*fp32", "mu_ptr": "*fp32", "step_ptr": "*i64", "k": "i64",
    **{name: "constexpr" for name in ("FAST", "LERP_SIDE", "GATED", "ALIGNED", "NESTEROV", "BLOCK", "QBLOCK",
                                      "CHUNK_BITS", "CODE_LIMIT", "FLUSH_BELOW", "ROUNDING_SHIFT")},
}  # fmt: skip
# Its compact form, the slow weights as bf16+int8 (compact_int8_momentum_kernel): as INT8_MOMENTUM_MODES
COMPACT_INT8_MOMENTUM_MODES = {
    "compact-int8-momentum": (0, False, True, False), "compact-int8-momentum-gated-nesterov": (2, True, True, True),
    "compact-int8-momentum-large-alpha-misaligned": (1, False, False, False),
}  # fmt: skip
COMPACT_INT8_MOMENTUM_SIGNATURE = {
    **{f"{name}_addresses": "*i64" for name in ("fast", "high", "low", "codes", "scales")},
    **{name: kind for name, kind in INT8_MOMENTUM_SIGNATURE.items() if not name.endswith("_addresses")},
}
# AdamW's step with int8-delta slow weights (backends/triton/adamw_delta.py): name -> (ALIGNED, the outer momentum's
# dtype beside the offsets (int8: codes and scales) or None, NESTEROV), for each param dtype it takes
ADAMW_DELTA_MODES = {
    "adamw-delta": (True, None, False), "adamw-delta-misaligned": (False, None, False),
    "adamw-delta-momentum": (True, torch.int8, False), "adamw-delta-nesterov-misaligned": (False, torch.int8, True),
    "adamw-delta-momentum-f32m": (True, torch.float32, False),
    "adamw-delta-nesterov-bf16m": (True, torch.bfloat16, True),
    "adamw-delta-momentum-misaligned-bf16m": (False, torch.bfloat16, False),
}  # fmt: skip
ADAMW_DELTA_SIGNATURE = {
    **{f"{name}_addresses": "*i64" for name in ("param", "grad", "exp_avg", "exp_avg_sq", "codes", "scales", "momentum",
                                                "momentum_scales")},
    "numels": "*i64", "row_of": "*i64", "chunks": "*i64", "num_chunks": "i64", "derived": "*fp64", "mu_ptr": "*fp32",
    **{name: "constexpr" for name in ("FAST", "ALIGNED", "BLOCK", "QBLOCK", "CHUNK_BITS", "COLUMNS", "MOMENTUM", "MOM",
                                      "NESTEROV", "CODE_LIMIT", "FLUSH_BELOW", "ROUNDING_SHIFT")},
}  # fmt: skip
# AdamW's step with an int8 outer momentum (backends/triton/adamw_int8_momentum.py): name -> (ALIGNED, NESTEROV), for
# each param dtype it takes, beside float32 slow weights ("float32+int8m") and bf16+int8 ones ("bf16+int8+int8m",
# COMPACT)
ADAMW_INT8_MOMENTUM_MODES = {
    "adamw-int8-momentum": (True, False), "adamw-int8-momentum-nesterov": (True, True),
    "adamw-int8-momentum-misaligned": (False, False),
}  # fmt: skip
ADAMW_INT8_MOMENTUM_SIGNATURE = {
    **{f"{name}_addresses": "*i64" for name in ("param", "grad", "exp_avg", "exp_avg_sq", "slow", "low", "codes",
                                                "scales")},
    "numels": "*i64", "row_of": "*i64", "chunks": "*i64", "num_chunks": "i64", "derived": "*fp64", "mu_ptr": "*fp32",
    **{name: "constexpr" for name in ("FAST", "ALIGNED", "COMPACT", "NESTEROV", "BLOCK", "QBLOCK", "CHUNK_BITS",
                                      "COLUMNS", "CODE_LIMIT", "FLUSH_BELOW", "ROUNDING_SHIFT")},
}  # fmt: skip
# The pseudo-gradient (backends/triton/pseudo_gradient.py): name -> (ALIGNED, out bfloat16), for every
# dtype pair (out bfloat16: beside float32 slow weights only, the replicas' bfloat16 wire)
PSEUDO_GRADIENT_MODES = {
    "pseudo-gradient": (True, False), "pseudo-gradient-misaligned": (False, False),
    "pseudo-gradient-bf16out": (True, True), "pseudo-gradient-bf16out-misaligned": (False, True),
}  # fmt: skip
PSEUDO_GRADIENT_SIGNATURE = {
    **{f"{name}_addresses": "*i64" for name in ("fast", "slow", "out")}, "numels": "*i64", "chunks": "*i64",
    "num_chunks": "i64",
    **{name: "constexpr" for name in ("FAST", "SLOW", "OUT", "OPMATH", "ALIGNED", "BLOCK", "CHUNK_BITS")},
}  # fmt: skip
GLOBAL_ACCESS = re.compile(r"(?:ld|st)\.global[.\w]*")
VECTOR_16_BYTES = re.compile(r"(ld|st)\.global(\.[a-z_]+)*\.(v4\.b32|v2\.b64)")


def assert_16_byte_accesses(ptx):
    accesses = {m.group(1) for m in VECTOR_16_BYTES.finditer(ptx)}
    seen = sorted(set(GLOBAL_ACCESS.findall(ptx)))
    assert accesses == {"ld", "st"}, f"no 16-byte loads and stores, only {seen}"


def assert_momentum_vectors(ptx, without):
    """More 16-byte accesses than `without`, the same kernel without the outer momentum: the momentum's."""
    vectors = lambda text: len(VECTOR_16_BYTES.findall(text))  # noqa: E731
    assert vectors(ptx) > vectors(without), "the momentum is not read and written in 16-byte accesses"


FMA = re.compile(r"\bfma\.rn\.f(?:32|64)\b")
SQRT_RN = re.compile(r"\bsqrt\.rn\.f(?:32|64)\b")


def assert_adamw_fmas(ptx, per_thread, alone=True):
    """AdamW's three explicit fmas an element
    (see [NOTE: Triton AdamW fmas] in lookahead_fused/backends/triton/adamw.py), beside its one square root an
    element and code path: `per_thread` elements a thread in each of the two paths (whole
    and tail chunks). `alone`: no other fma (a kernel compiled without fusion, or AdamW's step alone)."""
    fmas, roots = len(FMA.findall(ptx)), len(SQRT_RN.findall(ptx))
    assert roots == 2 * per_thread, f"{roots} rounded square roots, not one an element in each path"
    if alone:
        assert fmas == 3 * roots, f"{fmas} fmas, not AdamW's 3 an element: another multiply-add fused"
    else:
        assert fmas >= 3 * roots, f"{fmas} fmas, fewer than AdamW's 3 an element"


def momentum_dtype(slow_dtype, mode):
    return torch.bfloat16 if mode in BF16_MOMENTUM_MODES else slow_dtype


def compile_variant(fast_dtype, slow_dtype, mode, arch):
    """PTX and cubin of one variant. Runs where triton.jit makes compilable kernels, i.e. without
    TRITON_INTERPRET (see compile_all)."""
    from lookahead_fused.backends.triton import elementwise, plans, sync

    opmath = opmath_dtype(slow_dtype)
    scalar = "*fp64" if opmath == torch.float64 else "*fp32"
    if mode in ADAMW_MODES or mode in ADAMW_COMPACT_MODES:
        return compile_adamw_variant(fast_dtype, slow_dtype, mode, arch, opmath, scalar)
    if mode in COMPACT_MODES:
        return compile_compact_variant(fast_dtype, mode, arch)
    if mode in INT8_MOMENTUM_MODES or mode in COMPACT_INT8_MOMENTUM_MODES:
        return compile_int8_momentum_variant(fast_dtype, mode, arch)
    if mode in PSEUDO_GRADIENT_MODES:
        return compile_pseudo_gradient_variant(fast_dtype, slow_dtype, mode, arch, opmath)
    if mode in ADAMW_DELTA_MODES:
        return compile_adamw_delta_variant(fast_dtype, mode, arch)
    if mode in ADAMW_INT8_MOMENTUM_MODES:
        return compile_adamw_int8_momentum_variant(fast_dtype, slow_dtype, mode, arch)
    swap, side, gated, aligned, momentum, nesterov = MODES[mode]
    signature = dict(SIGNATURE, alpha_ptr=scalar, mu_ptr=scalar)
    tl_dtypes = elementwise.TL_DTYPES
    constexprs = {
        "FAST": tl_dtypes[fast_dtype], "SLOW": tl_dtypes[slow_dtype], "OPMATH": tl_dtypes[opmath], "SWAP": swap,
        "LERP_SIDE": side, "GATED": gated, "ALIGNED": aligned, "BLOCK": 1024, "CHUNK_BITS": plans.CHUNK_BITS,
        "MOMENTUM": momentum, "NESTEROV": nesterov, "MOM": tl_dtypes[momentum_dtype(slow_dtype, mode)],
    }  # fmt: skip
    source = ASTSource(fn=sync.table_kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
    return compiled.asm["ptx"], len(compiled.asm["cubin"])


def compile_adamw_variant(fast_dtype, slow_dtype, mode, arch, opmath, scalar):
    from lookahead_fused.backends.triton import adamw, elementwise, plans

    compact = mode in ADAMW_COMPACT_MODES
    if compact:  # the kernel's slow weights are the high parts, beside the residuals
        (aligned, mom, nesterov), has_slow = ADAMW_COMPACT_MODES[mode], True
        slow_dtype, momentum, mom = torch.bfloat16, mom is not None, mom or torch.bfloat16
        block, warps = adamw.COMPACT_GPU_CONFIG
    else:
        aligned, momentum, nesterov, has_slow = ADAMW_MODES[mode]
        mom, (block, warps) = momentum_dtype(slow_dtype, mode), adamw._GPU_CONFIG
    tl_dtypes = elementwise.TL_DTYPES
    constexprs = {
        "FAST": tl_dtypes[fast_dtype], "SLOW": tl_dtypes[slow_dtype], "OPMATH": tl_dtypes[opmath], "ALIGNED": aligned,
        "BLOCK": block, "CHUNK_BITS": plans.CHUNK_BITS, "MOMENTUM": momentum, "NESTEROV": nesterov,
        "COLUMNS": adamw.DERIVED_COLUMNS, "MOM": tl_dtypes[mom], "HAS_SLOW": has_slow, "COMPACT": compact,
    }  # fmt: skip
    signature = dict(ADAMW_SIGNATURE, mu_ptr=scalar)
    source = ASTSource(fn=adamw.adamw_table_kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    return compiled.asm["ptx"], len(compiled.asm["cubin"])


def compile_compact_variant(fast_dtype, mode, arch):
    from lookahead_fused.backends.triton import compact, elementwise, plans

    side, gated, aligned, momentum = COMPACT_MODES[mode]
    constexprs = {
        "FAST": elementwise.TL_DTYPES[fast_dtype], "LERP_SIDE": side, "GATED": gated, "ALIGNED": aligned, "BLOCK": 1024,
        "CHUNK_BITS": plans.CHUNK_BITS, "ROUNDING_SHIFT": compact.ROUNDING_SHIFT, "MOMENTUM": momentum is not None,
        "NESTEROV": gated, "MOM": elementwise.TL_DTYPES[momentum or torch.bfloat16],
    }  # fmt: skip
    source = ASTSource(fn=compact.compact_kernel, signature=COMPACT_SIGNATURE, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
    return compiled.asm["ptx"], len(compiled.asm["cubin"])


def compile_int8_momentum_variant(fast_dtype, mode, arch):
    from lookahead_fused import int8_blocks
    from lookahead_fused.backends.triton import compact, elementwise, int8_momentum, plans

    compact_slow = mode in COMPACT_INT8_MOMENTUM_MODES
    side, gated, aligned, nesterov = (COMPACT_INT8_MOMENTUM_MODES if compact_slow else INT8_MOMENTUM_MODES)[mode]
    block, warps = int8_momentum._GPU_CONFIG
    constexprs = {
        "FAST": elementwise.TL_DTYPES[fast_dtype], "LERP_SIDE": side, "GATED": gated, "ALIGNED": aligned,
        "NESTEROV": nesterov, "BLOCK": block, "QBLOCK": int8_blocks.BLOCK, "CHUNK_BITS": plans.CHUNK_BITS,
        "CODE_LIMIT": int8_blocks.CODE_LIMIT, "FLUSH_BELOW": int8_blocks.FLUSH_BELOW,
        "ROUNDING_SHIFT": compact.ROUNDING_SHIFT,
    }  # fmt: skip
    if compact_slow:
        kernel, signature = int8_momentum.compact_int8_momentum_kernel, COMPACT_INT8_MOMENTUM_SIGNATURE
    else:
        kernel, signature = int8_momentum.int8_momentum_kernel, INT8_MOMENTUM_SIGNATURE
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    options = {"num_warps": warps, **int8_momentum.COMPILE_OPTIONS}
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    return compiled.asm["ptx"], len(compiled.asm["cubin"])


def compile_adamw_delta_variant(fast_dtype, mode, arch):
    from lookahead_fused import int8_blocks
    from lookahead_fused.backends.triton import adamw, adamw_delta, compact, elementwise, int8_momentum, plans

    block, warps = adamw_delta._GPU_CONFIG
    aligned, momentum, nesterov = ADAMW_DELTA_MODES[mode]
    constexprs = {
        "FAST": elementwise.TL_DTYPES[fast_dtype], "ALIGNED": aligned, "BLOCK": block, "QBLOCK": int8_blocks.BLOCK,
        "CHUNK_BITS": plans.CHUNK_BITS, "COLUMNS": adamw.DERIVED_COLUMNS, "MOMENTUM": momentum is not None,
        "MOM": adamw_delta.MOMENTUM_ELEMENTS[momentum or torch.int8], "NESTEROV": nesterov,
        "CODE_LIMIT": int8_blocks.CODE_LIMIT, "FLUSH_BELOW": int8_blocks.FLUSH_BELOW,
        "ROUNDING_SHIFT": compact.ROUNDING_SHIFT,
    }  # fmt: skip
    source = ASTSource(fn=adamw_delta.adamw_delta_kernel, signature=ADAMW_DELTA_SIGNATURE, constexprs=constexprs)
    options = {"num_warps": warps, **int8_momentum.COMPILE_OPTIONS}
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    return compiled.asm["ptx"], len(compiled.asm["cubin"])


def compile_adamw_int8_momentum_variant(fast_dtype, slow, mode, arch):
    from lookahead_fused import int8_blocks
    from lookahead_fused.backends.triton import adamw, adamw_int8_momentum, compact, elementwise, int8_momentum, plans

    block, warps = adamw_int8_momentum.GPU_CONFIG
    aligned, nesterov = ADAMW_INT8_MOMENTUM_MODES[mode]
    constexprs = {
        "FAST": elementwise.TL_DTYPES[fast_dtype], "ALIGNED": aligned, "COMPACT": slow == "bf16+int8+int8m",
        "NESTEROV": nesterov, "BLOCK": block, "QBLOCK": int8_blocks.BLOCK, "CHUNK_BITS": plans.CHUNK_BITS,
        "COLUMNS": adamw.DERIVED_COLUMNS, "CODE_LIMIT": int8_blocks.CODE_LIMIT, "FLUSH_BELOW": int8_blocks.FLUSH_BELOW,
        "ROUNDING_SHIFT": compact.ROUNDING_SHIFT,
    }  # fmt: skip
    source = ASTSource(fn=adamw_int8_momentum.adamw_int8_momentum_kernel, signature=ADAMW_INT8_MOMENTUM_SIGNATURE,
                       constexprs=constexprs)  # fmt: skip
    options = {"num_warps": warps, **int8_momentum.COMPILE_OPTIONS}
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    return compiled.asm["ptx"], len(compiled.asm["cubin"])


def compile_pseudo_gradient_variant(fast_dtype, slow_dtype, mode, arch, opmath):
    from lookahead_fused.backends.triton import elementwise, plans, pseudo_gradient

    tl_dtypes = elementwise.TL_DTYPES
    block, warps = pseudo_gradient._GPU_CONFIG
    aligned, bf16_out = PSEUDO_GRADIENT_MODES[mode]
    constexprs = {
        "FAST": tl_dtypes[fast_dtype], "SLOW": tl_dtypes[slow_dtype], "OPMATH": tl_dtypes[opmath],
        "OUT": tl_dtypes[torch.bfloat16 if bf16_out else slow_dtype], "ALIGNED": aligned, "BLOCK": block,
        "CHUNK_BITS": plans.CHUNK_BITS,
    }  # fmt: skip
    source = ASTSource(fn=pseudo_gradient.pseudo_gradient_kernel, signature=PSEUDO_GRADIENT_SIGNATURE,
                       constexprs=constexprs)  # fmt: skip
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    return compiled.asm["ptx"], len(compiled.asm["cubin"])


CASES = [
    (fast, slow, mode, arch)
    for fast, slow in DTYPE_PAIRS
    for mode in [*MODES, *ADAMW_MODES, *PSEUDO_GRADIENT_MODES]
    for arch in ARCHS
    if not (mode == "swap" and fast != slow)  # the swap pairs tensors of one dtype
    and not (mode in BF16_MOMENTUM_MODES and slow != torch.float32)
    and not (PSEUDO_GRADIENT_MODES.get(mode, (0, False))[1] and slow != torch.float32)
    and not (mode == "adamw-alone" and fast != slow)  # without slow weights the state dtype is the params'
] + [  # the compact sync: its slow weight is bf16+int8 whatever the fast dtype (named "bf16+int8" in the ids)
    (fast, "bf16+int8", mode, arch) for fast in COMPACT_FAST_DTYPES for mode in COMPACT_MODES for arch in ARCHS
] + [  # the int8 momentum sync: float32 slow weights beside int8 codes and float32 scales ("float32+int8m")
    (fast, "float32+int8m", mode, arch) for fast in INT8_MOMENTUM_FAST_DTYPES for mode in INT8_MOMENTUM_MODES
    for arch in ARCHS
] + [  # and beside bf16+int8 slow weights ("bf16+int8+int8m")
    (fast, "bf16+int8+int8m", mode, arch) for fast in INT8_MOMENTUM_FAST_DTYPES for mode in COMPACT_INT8_MOMENTUM_MODES
    for arch in ARCHS
] + [  # AdamW's step with int8-delta slow weights: int8 codes and float32 scales beside the param ("int8-delta")
    (fast, "int8-delta", mode, arch) for fast in INT8_DELTA_PARAM_DTYPES for mode in ADAMW_DELTA_MODES for arch in ARCHS
] + [  # AdamW's step with bf16+int8 slow weights
    (fast, "bf16+int8", mode, arch) for fast in COMPACT_FAST_DTYPES for mode in ADAMW_COMPACT_MODES for arch in ARCHS
] + [  # AdamW's step with an int8 outer momentum, beside float32 or bf16+int8 slow weights
    (fast, slow, mode, arch) for fast in INT8_MOMENTUM_FAST_DTYPES for slow in ("float32+int8m", "bf16+int8+int8m")
    for mode in ADAMW_INT8_MOMENTUM_MODES for arch in ARCHS
]


def compile_all(part: int = 0, parts: int = 1) -> dict:
    """Every `parts`-th variant from the `part`-th."""
    results = {}
    for fast, slow, mode, arch in CASES[part::parts]:
        ptx, cubin_bytes = compile_variant(fast, slow, mode, arch)
        results[case_id(fast, slow, mode, arch)] = {"ptx": ptx, "cubin_bytes": cubin_bytes}
    return results


def case_id(fast, slow, mode, arch):
    return f"{str(fast).removeprefix('torch.')}-{str(slow).removeprefix('torch.')}-{mode}-sm{arch}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every variant, compiled in child processes without TRITON_INTERPRET (which the CPU test
    session sets, and under which triton.jit makes interpreter functions that cannot compile), one
    per core (at most two), each a share of the variants, at once: a compile runs on one core."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    parts = min(2, os.cpu_count() or 1)
    out = tmp_path_factory.mktemp("aot")
    children = []
    for part in range(parts):
        code = f"import json, sys; from tests import test_triton_aot as t; json.dump(t.compile_all({part}, {parts}), sys.stdout)"
        with open(out / f"{part}.json", "w") as stdout, open(out / f"{part}.log", "w") as stderr:
            children.append(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=stdout, stderr=stderr))
    try:
        for child in children:
            child.wait(timeout=600)
    finally:  # a child past its time, or an interrupt: none is left running
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    results = {}
    for part, child in enumerate(children):
        assert child.returncode == 0, (out / f"{part}.log").read_text()[-4000:]
        results.update(json.loads((out / f"{part}.json").read_text()))
    assert len(results) == len(CASES)
    return results


@pytest.mark.parametrize("fast_dtype,slow_dtype,mode,arch", CASES,
                         ids=[case_id(*case) for case in CASES])  # fmt: skip
def test_compiles_and_aligned_launches_use_16_byte_accesses(compiled, fast_dtype, slow_dtype, mode, arch):
    variant = compiled[case_id(fast_dtype, slow_dtype, mode, arch)]
    assert variant["cubin_bytes"] > 0, "no cubin"
    ptx = variant["ptx"]
    if mode in ADAMW_MODES or mode in ADAMW_COMPACT_MODES:  # IEEE-rounded division and square root, as the C++ kernels'
        assert "div.full" not in ptx and "div.approx" not in ptx and "sqrt.approx" not in ptx, "approximate math"
        assert re.search(r"div\.rn\.f(32|64)", ptx) and re.search(r"sqrt\.rn\.f(32|64)", ptx), "no rounded div/sqrt"
        from lookahead_fused.backends.triton import adamw

        # fusion is on: a sync's multiply-adds fuse too, so only AdamW's step alone has no fma but AdamW's
        block, warps = adamw.COMPACT_GPU_CONFIG if mode in ADAMW_COMPACT_MODES else adamw._GPU_CONFIG
        assert_adamw_fmas(ptx, block // (32 * warps), alone=mode == "adamw-alone")
    if mode in ADAMW_COMPACT_MODES:  # the compact sync's encoding, and the momentum's accesses
        assert "0f4B400000" in ptx, "the rounding by adding and subtracting 1.5 * 2^23 was folded away"
        aligned, mom, _ = ADAMW_COMPACT_MODES[mode]
        if mom is not None and aligned:
            assert_momentum_vectors(ptx, compiled[case_id(fast_dtype, slow_dtype, "adamw-compact", arch)]["ptx"])
        if aligned:
            assert_16_byte_accesses(ptx)
        return
    if mode in COMPACT_MODES:  # the encoding is exact only with an IEEE-rounded division; its packs are narrower
        assert "div.full" not in ptx and "div.approx" not in ptx and re.search(r"div\.rn\.f32", ptx), "approximate division"
        assert "0f4B400000" in ptx, "the rounding by adding and subtracting 1.5 * 2^23 was folded away"
        if COMPACT_MODES[mode][3] is not None and COMPACT_MODES[mode][2]:  # the momentum's loads and stores
            without = compiled[case_id(fast_dtype, slow_dtype, COMPACT_WITHOUT_MOMENTUM[mode], arch)]["ptx"]
            assert_momentum_vectors(ptx, without)
        return
    int8_momentum_modes = {**INT8_MOMENTUM_MODES, **COMPACT_INT8_MOMENTUM_MODES}
    adamw_int8_modes = {**ADAMW_DELTA_MODES, **ADAMW_INT8_MOMENTUM_MODES}  # (ALIGNED, ...)
    if mode in int8_momentum_modes or mode in adamw_int8_modes:  # one IEEE operation a step: no fma but AdamW's
        assert "div.full" not in ptx and "div.approx" not in ptx and re.search(r"div\.rn\.f32", ptx), "approximate division"
        assert "sqrt.approx" not in ptx, "approximate square root"
        if mode in ADAMW_INT8_MOMENTUM_MODES:  # AdamW's square root, as adamw.py's kernel rounds it
            assert re.search(r"sqrt\.rn\.f32", ptx), "no rounded square root"
        assert "0f4B400000" in ptx, "the rounding by adding and subtracting 1.5 * 2^23 was folded away"
        if mode in adamw_int8_modes:  # AdamW's explicit fmas only
            # (see [NOTE: Triton AdamW fmas] in lookahead_fused/backends/triton/adamw.py)
            from lookahead_fused.backends.triton import adamw_delta, adamw_int8_momentum

            block, warps = adamw_delta._GPU_CONFIG if mode in ADAMW_DELTA_MODES else adamw_int8_momentum.GPU_CONFIG
            assert not re.search(r"\bfma\.(?!rn\.f32\b)", ptx), "an fma other than float32's"
            assert_adamw_fmas(ptx, block // (32 * warps))
        else:
            assert not re.search(r"\bfma\.", ptx), "a multiply and an add fused into one rounding"
        if mode in ADAMW_DELTA_MODES and ADAMW_DELTA_MODES[mode][1] is not None:  # the momentum's accesses too
            plain = compiled[case_id(fast_dtype, slow_dtype, "adamw-delta", arch)]["ptx"]
            assert len(GLOBAL_ACCESS.findall(ptx)) > len(GLOBAL_ACCESS.findall(plain)), "the momentum is not accessed"
            if ADAMW_DELTA_MODES[mode][0] and ADAMW_DELTA_MODES[mode][1] != torch.int8:  # a float momentum, aligned
                assert_momentum_vectors(ptx, plain)
        if int8_momentum_modes[mode][2] if mode in int8_momentum_modes else adamw_int8_modes[mode][0]:
            assert_16_byte_accesses(ptx)
        return
    if mode in PSEUDO_GRADIENT_MODES:
        if PSEUDO_GRADIENT_MODES[mode][0]:
            assert_16_byte_accesses(ptx)
        return
    if (MODES.get(mode) or ADAMW_MODES[mode])[3 if mode in MODES else 0]:
        assert_16_byte_accesses(ptx)
