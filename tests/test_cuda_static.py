"""The CUDA kernels as built, read without a GPU: cuobjdump (shipped in the triton wheel) lists every
kernel of every arch in the extension. Each must use no stack (no spills), few enough registers
for two blocks of 256 threads per SM, 128-bit global loads and stores, and in its unrolled body
issue all the loads of a group before any math (see [NOTE: unrolled body] in csrc/cuda/table_kernel.cuh)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

_C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")
pytestmark = pytest.mark.skipif(not _C.build_info()["cuda"], reason="the extension was built without CUDA kernels")

THREADS_PER_BLOCK = 256
REGISTERS_PER_SM = 65536
MIN_BLOCKS_PER_SM = 2
# Per op (csrc/cuda/table_kernel.cuh): tensors per entry, vector steps unrolled (kUnrollFor; AdamW's
# step runs one at a time), and the entry's tensors in the fast dtype (see [NOTE: entry dtypes] in csrc/table.h).
OPS = {
    "SyncOp": (2, 4, 1),
    "SwapOp": (2, 4, 1),
    "GatedSyncOp": (2, 4, 1),
    "MomentumSyncOp": (3, 2, 1),
    "GatedMomentumSyncOp": (3, 2, 1),
    "AdamWOp4": (4, 1, 4),
    "AdamWOp5": (5, 1, 4),
    "AdamWOp6": (6, 1, 4),
    "CompactSyncOp": (3, 2, 1),
    "GatedCompactSyncOp": (3, 2, 1),
    "PseudoGradientOp": (3, 2, 1),
    "CompactMomentumSyncOp": (4, 1, 1),
    "GatedCompactMomentumSyncOp": (4, 1, 1),
    "AdamWCompactOp6": (6, 1, 4),
    "AdamWCompactOp7": (7, 1, 4),
}
# The 128-bit loads of one vector step where the rule below does not give them: the compact sync's
# step is 16 elements, its fast tensor's packs (four for float32, two for 16-bit), two packs of
# bfloat16 high parts and one of int8 residuals.
PACKS_PER_STEP = {op: (4 + 2 + 1, 2 + 2 + 1) for op in ("CompactSyncOp", "GatedCompactSyncOp")}
# The pseudo-gradient's step loads the fast tensor and the slow weight, never out: one pack each for
# one dtype, one and two for a 16-bit fast tensor beside float32 slow weights.
PACKS_PER_STEP["PseudoGradientOp"] = (1 + 1, 1 + 2)
# The compact momentum sync's step: the compact sync's packs and the momentum's, four of float32 (two
# of bfloat16, below).
PACKS_PER_STEP |= {op: (4 + 2 + 1 + 4, 2 + 2 + 1 + 4) for op in ("CompactMomentumSyncOp", "GatedCompactMomentumSyncOp")}
# The steps with a bfloat16 momentum beside float32 slow weights, 8 elements: each fast tensor's packs
# (two for float32, one for 16-bit; one fast tensor for the momentum sync, four for AdamW's step with
# it), two of slow weights and one of momentum.
# see [NOTE: bf16 momentum step] in csrc/cuda/table_kernel.cuh
BF16_MOMENTUM_PACKS_PER_STEP = {op: (2 + 2 + 1, 1 + 2 + 1) for op in ("MomentumSyncOp", "GatedMomentumSyncOp")}
BF16_MOMENTUM_PACKS_PER_STEP["AdamWOp6"] = (4 * 2 + 2 + 1, 4 * 1 + 2 + 1)
BF16_MOMENTUM_PACKS_PER_STEP |= {op: (4 + 2 + 1 + 2, 2 + 2 + 1 + 2)
                                 for op in ("CompactMomentumSyncOp", "GatedCompactMomentumSyncOp")}  # fmt: skip
# The pseudo-gradient with a bfloat16 out (the same codes): 8 elements, the fast tensor's packs (two for
# float32, one for 16-bit) and two of slow weights; out is only stored.
BF16_MOMENTUM_PACKS_PER_STEP["PseudoGradientOp"] = (2 + 2, 1 + 2)
# AdamW's step with the compact sync, on a sync row: the compact sync's step (the param's packs in its fast
# tensor's place) and the grad's and moments' first packs, then the grad's and moments' next pack at a time
# (ADAMW_COMPACT_LATER_PACKS); with the compact momentum sync also the momentum's packs, four of float32 or
# (below) two of bfloat16. On a row with sync 0, AdamW's step alone: one pack of each fast tensor
# (ADAMW_COMPACT_STEP_ALONE_PACKS).
PACKS_PER_STEP["AdamWCompactOp6"] = (4 + 2 + 1 + 3, 2 + 2 + 1 + 3)
PACKS_PER_STEP["AdamWCompactOp7"] = (4 + 2 + 1 + 3 + 4, 2 + 2 + 1 + 3 + 4)
BF16_MOMENTUM_PACKS_PER_STEP["AdamWCompactOp7"] = (4 + 2 + 1 + 3 + 2, 2 + 2 + 1 + 3 + 2)
ADAMW_COMPACT_OPS = ("AdamWCompactOp6", "AdamWCompactOp7")
ADAMW_COMPACT_LATER_PACKS, ADAMW_COMPACT_STEP_ALONE_PACKS = 3, 4
# The int8 momentum sync's kernels (csrc/cuda/int8_momentum_kernel.cuh), one per gate and slow weights'
# storage (see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh), by op_of's names: per fast
# dtype (float32, float16, bfloat16) a lane's 16-byte accesses, 2 + 2 for float32 fast and slow, 1 + 2 for
# a 16-bit fast, and one 8-byte access to its codes; both divisions of int8_block_scale per dtype. With
# bf16+int8 slow weights (the compact kernels) one 16-byte access to the lane's 8 high parts in place of
# the slow weights' and one 8-byte access to its 8 residuals beside the codes', and encode_bf16_int8's
# division for each of its 8 elements.
INT8_FLOAT32_OPS = ("Int8SyncOp", "GatedInt8SyncOp")
INT8_COMPACT_OPS = ("CompactInt8SyncOp", "GatedCompactInt8SyncOp")
INT8_OPS = INT8_FLOAT32_OPS + INT8_COMPACT_OPS
# per op: (16-byte loads and stores each, 8-byte loads and stores each, divisions)
INT8_COUNTS = {op: ((2 + 2) + 2 * (1 + 2), 3, 2 * 3) for op in INT8_FLOAT32_OPS}
INT8_COUNTS |= {op: ((2 + 1) + 2 * (1 + 1), 3 * 2, 3 * (2 + 8)) for op in INT8_COMPACT_OPS}
# The residual unit of a bfloat16 high part, 2^(E - 15): an FMUL of 2^E by this (residual_unit in csrc/bf16_int8.h).
RESIDUAL_UNIT_FACTOR = "3.0517578125e-05"
# AdamW's step with int8-delta slow weights (csrc/cuda/adamw_delta_kernel.cuh), one kernel. Per param dtype
# (float32, float16, bfloat16), a block's first pass has four forms: without an outer momentum, and on a
# sync step with an int8, a float32 or a bfloat16 one; its last pass two: after the int8 momentum's, and
# the one the others share. A lane's 16-byte loads of param, grad and both moments (two packs each of
# float32, one of 16-bit) in each first pass, its stores of param and moments in each last pass, and
# with a float momentum its loads and stores of the momentum (two packs of float32, one of bfloat16).
# Its codes in one 8-byte access each: loaded in each first pass and stored in each last, and with the
# int8 momentum the momentum's codes too.
DELTA_OP = "AdamWDelta"
DELTA_FIRST_PASSES, DELTA_LAST_PASSES = 4, 2
DELTA_FLOAT_MOMENTUM_PACKS = 3 * (2 + 1)  # a float32 and a bfloat16 momentum beside each param dtype
DELTA_VECTOR_LOADS = DELTA_FIRST_PASSES * (4 * 2 + 2 * 4 * 1) + DELTA_FLOAT_MOMENTUM_PACKS
DELTA_VECTOR_STORES = DELTA_LAST_PASSES * (3 * 2 + 2 * 3 * 1) + DELTA_FLOAT_MOMENTUM_PACKS
DELTA_CODE_LOADS, DELTA_CODE_STORES = 3 * (DELTA_FIRST_PASSES + 1), 3 * (DELTA_LAST_PASSES + 1)
# AdamW's step with an int8 outer momentum (csrc/cuda/adamw_int8_momentum_kernel.cuh), one kernel per slow
# weights' storage (see [NOTE: int8 slow storage] in csrc/cuda/int8_momentum_kernel.cuh), by op_of's names. Per
# param dtype (float32, float16, bfloat16) a block has two first passes, AdamW's step alone off a sync row and
# with the sync's loads on one: in each a lane's 16-byte loads of param, grad and both moments (two packs each of
# float32, one of 16-bit) and stores of the moments and the param (the int8 momentum sync's finish stores the
# param on a sync row). On a sync row also the slow weights' 16-byte loads and stores (two packs of float32, or
# one of bfloat16 high parts) and 8-byte ones of the codes (and of the residuals beside the high parts).
ADAMW_INT8_OPS = ("AdamWInt8Momentum", "AdamWCompactInt8Momentum")
ADAMW_INT8_TENSOR_PACKS = 2 + 1 + 1  # one tensor's packs over the three param dtypes
ADAMW_INT8_SLOW_PACKS = {"AdamWInt8Momentum": 3 * 2, "AdamWCompactInt8Momentum": 3 * 1}
ADAMW_INT8_CODE_ACCESSES = {"AdamWInt8Momentum": 3 * 1, "AdamWCompactInt8Momentum": 3 * 2}
# per op: (16-byte loads, 16-byte stores, 8-byte loads and stores each)
ADAMW_INT8_COUNTS = {
    op: (2 * 4 * ADAMW_INT8_TENSOR_PACKS + ADAMW_INT8_SLOW_PACKS[op],
         2 * 3 * ADAMW_INT8_TENSOR_PACKS + ADAMW_INT8_SLOW_PACKS[op], ADAMW_INT8_CODE_ACCESSES[op])
    for op in ADAMW_INT8_OPS
}  # fmt: skip
# The float32 operations of PTX that are or may become an FMA: fma itself, and a mul, add or sub without a
# rounding mode, which ptxas may fuse (the .rn ones, what ieee_mul and the others emit, it never does).
CONTRACTABLE_PTX = re.compile(r"\s*(?:@!?%p\d+\s+)?(?:fma\.rn|mul|add|sub)\.f32\s")
# Where the int8-delta kernel may have them, by file in csrc/: AdamW's step, and the lerp's weights.
DELTA_CONTRACTABLE_IN = {"adamw.h": "adamw_element", "element_math.h": "two_sided_lerp"}
# Where the AdamW int8 momentum kernels may have them: the int8-delta kernel's places, and the bf16+int8 codec
# of the compact kernel, exact float32 arithmetic (csrc/bf16_int8.h), which a contraction leaves as it is.
ADAMW_INT8_CONTRACTABLE_IN = [*DELTA_CONTRACTABLE_IN.items(), ("bf16_int8.h", "residual_unit"),
                              ("bf16_int8.h", "encode_bf16_int8"), ("bf16_int8.h", "decode_bf16_int8")]  # fmt: skip
CSRC = Path(__file__).resolve().parents[1] / "csrc"
MATH_OR_STORE = re.compile(r"(FFMA|FADD|FMUL|F2F|HFMA2|HADD2|DFMA|DADD|DMUL|STG|ST\.|BRA)")


def cuobjdump() -> str:
    try:
        import triton
    except ImportError:
        triton = None
    candidates = [Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"] if triton else []
    candidates.append(Path(shutil.which("cuobjdump") or "/nonexistent"))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    pytest.skip("no cuobjdump (it ships in the triton wheel and the CUDA toolkit)")


@functools.cache  # one cuobjdump run per flag for the module: disassembling the extension takes seconds
def dump(flag: str) -> str:
    return subprocess.run([cuobjdump(), flag, _C.__file__], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module", autouse=True)
def _release_the_dumps():
    yield
    dump.cache_clear()  # the SASS text is over 100 MB


def resource_usage() -> list[tuple[str, str, int, int]]:
    """(arch, kernel, registers, stack bytes) for every kernel in the extension."""
    rows, arch = [], None
    lines = dump("-res-usage").splitlines()
    for line, following in zip(lines, lines[1:] + [""]):
        if m := re.search(r"arch = (sm_\d+)", line):
            arch = m.group(1)
        if m := re.search(r"Function (\S+):", line):
            usage = re.search(r"REG:(\d+) STACK:(\d+)", following)
            rows.append((arch, m.group(1), int(usage.group(1)), int(usage.group(2))))
    return rows


def sass_functions() -> dict[tuple[str, str], list[str]]:
    """The SASS opcodes of every kernel, by (arch, kernel)."""
    functions, arch, name = {}, None, None
    for line in dump("-sass").splitlines():
        if m := re.search(r"arch = (sm_\d+)", line):
            arch = m.group(1)
        elif m := re.search(r"Function : (\S+)", line):
            name = m.group(1)
            functions[(arch, name)] = []
        elif name and (m := re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", line)):
            functions[(arch, name)].append(m.group(1))
    return functions


def is_vector_load(opcode: str) -> bool:
    return opcode.startswith("LDG") and "128" in opcode


def is_vector_store(opcode: str) -> bool:
    return opcode.startswith("STG") and "128" in opcode


def load_store_groups(opcodes: list[str]) -> list[tuple[int, int]]:
    """(loads, stores) of each group: a run of 128-bit global loads issued before the next math, store
    or branch, and the 128-bit global stores after it, before the next such load or branch."""
    groups, i = [], 0
    while i < len(opcodes):
        if not is_vector_load(opcodes[i]):
            i += 1
            continue
        j, loads, stores = i, 0, 0
        while j < len(opcodes) and not MATH_OR_STORE.match(opcodes[j]):
            loads += is_vector_load(opcodes[j])
            j += 1
        while j < len(opcodes) and not is_vector_load(opcodes[j]) and not opcodes[j].startswith("BRA"):
            stores += is_vector_store(opcodes[j])
            j += 1
        groups.append((loads, stores))
        i = j
    return groups


def load_runs(opcodes: list[str]) -> list[int]:
    """Lengths of the runs of 128-bit global loads issued before the next math, store or branch."""
    return [loads for loads, _ in load_store_groups(opcodes)]


def op_of(kernel: str) -> str:
    """The op a kernel instantiation runs: its template argument's name, and the depth of
    AdamWOp<depth, compact> (mangled ...AdamWOpILi5ELb0EEE...; AdamWCompactOp<depth> is AdamWOp<depth, true>,
    ...AdamWOpILi6ELb1EEE..., named AdamWCompactOp6). An int8 momentum kernel's gate, with Compact after
    Gated for bf16+int8 slow weights (mangled ...int8_momentum_kernelINS_10Int8SyncOpENS_11CompactSlowEEE...);
    one of neither known storage keeps its whole name, which no test expects. AdamW's step with an int8 momentum
    by its slow weights' storage (mangled ...adamw_int8_momentum_step_kernelINS_11CompactSlowEEEv...)."""
    if "adamw_int8_momentum_step_kernel" in kernel:
        if not (m := re.search(r"adamw_int8_momentum_step_kernelINS_\d+(Float32|Compact)SlowE", kernel)):
            return kernel
        return ADAMW_INT8_OPS[0] if m.group(1) == "Float32" else ADAMW_INT8_OPS[1]
    if "int8_momentum_kernel" in kernel:
        if not (m := re.search(r"int8_momentum_kernelINS_\d+(\w+?Op)ENS_\d+(Float32|Compact)SlowE", kernel)):
            return kernel
        return m.group(1) if m.group(2) == "Float32" else re.sub(r"^(Gated)?", r"\1Compact", m.group(1))
    if "adamw_delta_kernel" in kernel:
        return DELTA_OP
    m = re.search(r"table_kernelINS_\d+(\w+?Op)(?:ILi(\d)ELb([01])E)?E", kernel)
    name = "AdamWCompactOp" if m.group(3) == "1" else m.group(1)
    return name + (m.group(2) or "")


def test_every_built_arch_has_every_kernel():
    archs = {f"sm_{a.replace('.', '').removesuffix('+PTX')}" for a in _C.build_info()["cuda_archs"].split(";")}
    found = {(arch, op_of(name)) for arch, name, _, _ in resource_usage()}
    assert found == {(arch, op) for arch in archs for op in (*OPS, *INT8_OPS, DELTA_OP, *ADAMW_INT8_OPS)}


# Read at collection, before pytestmark skips the module: an extension without CUDA kernels has no device code.
@pytest.mark.parametrize("row", resource_usage() if _C.build_info()["cuda"] else [],
                         ids=lambda r: f"{r[0]}-{op_of(r[1])}")
def test_no_spills_and_two_blocks_per_sm(row):
    arch, kernel, registers, stack = row
    assert stack == 0, f"{arch} {kernel}: {stack} bytes of stack (spills to local memory)"
    assert registers * THREADS_PER_BLOCK * MIN_BLOCKS_PER_SM <= REGISTERS_PER_SM, f"{arch} {kernel}: {registers} registers"


def test_vector_body_uses_128_bit_accesses_with_every_load_of_a_group_in_flight():
    for (arch, kernel), opcodes in sass_functions().items():
        if op_of(kernel) in (*INT8_OPS, DELTA_OP, *ADAMW_INT8_OPS):  # not table kernels: their own tests below
            continue
        loads = [op for op in opcodes if is_vector_load(op)]
        stores = [op for op in opcodes if is_vector_store(op)]
        assert loads and stores, f"{arch} {kernel}: no 128-bit global loads or stores"
        runs = load_runs(opcodes)
        # the unrolled groups: a step loads one pack per tensor for same-dtype entries, and two per
        # float32 state tensor beside 16-bit fast ones; every load of a group before any math
        depth, unroll, fast = OPS[op_of(kernel)]
        same_dtype, mixed = PACKS_PER_STEP.get(op_of(kernel), (depth, fast + 2 * (depth - fast)))
        assert same_dtype * unroll in runs and mixed * unroll in runs, f"{arch} {kernel}: load runs {runs}"
        for packs in BF16_MOMENTUM_PACKS_PER_STEP.get(op_of(kernel), ()):
            assert packs * unroll in runs, f"{arch} {kernel}: bf16 momentum, load runs {runs}"


def test_adamw_compact_step_loads_a_pack_of_grad_and_moments_at_a_time():
    """See [NOTE: AdamW compact step] in csrc/adamw.h: a sync row's vector step loads the grad's and moments'
    later packs three at a time, after the compact sync's packs and their first; a row with sync 0 runs
    AdamW's step alone, a pack of each of the four fast tensors."""
    found = {(arch, op_of(kernel)): opcodes for (arch, kernel), opcodes in sass_functions().items()
             if op_of(kernel) in ADAMW_COMPACT_OPS}  # fmt: skip
    assert {op for _, op in found} == set(ADAMW_COMPACT_OPS)
    for (arch, op), opcodes in found.items():
        runs = load_runs(opcodes)
        assert ADAMW_COMPACT_LATER_PACKS in runs and ADAMW_COMPACT_STEP_ALONE_PACKS in runs, f"{arch} {op}: {runs}"


def test_pseudo_gradient_stores_one_bfloat16_pack_per_step():
    """A bfloat16 out beside float32 slow weights: each 8-element step stores one 16-byte pack of out,
    after the fast tensor's packs (two of float32, one of 16-bit) and two of slow weights; a float32
    out beside a 16-bit fast tensor stores two."""
    _, unroll, _ = OPS["PseudoGradientOp"]
    for (arch, kernel), opcodes in sass_functions().items():
        if op_of(kernel) == "PseudoGradientOp":
            groups = set(load_store_groups(opcodes))
            wanted = {((2 + 2) * unroll, unroll), ((1 + 2) * unroll, unroll), ((1 + 2) * unroll, 2 * unroll)}
            assert wanted <= groups, f"{arch} {kernel}: (loads, stores) groups {sorted(groups)}"


def streaming(opcodes: list[str], width: int) -> tuple[int, int]:
    """The streaming (evict-first) global loads and stores of `width` bits among `opcodes`."""
    return tuple(sum(o.startswith(kind) and o.endswith(f"EF.{width}") for o in opcodes) for kind in ("LDG", "STG"))


def int8_sass() -> dict[tuple[str, str], list[tuple[int, str, str]]]:
    """(address, opcode, operands) of every instruction of the int8 momentum sync's kernels, by (arch, op)."""
    functions, arch, op = {}, None, None
    for line in dump("-sass").splitlines():
        if m := re.search(r"arch = (sm_\d+)", line):
            arch = m.group(1)
        elif m := re.search(r"Function : (\S+)", line):
            op = op_of(m.group(1)) if "int8_momentum_kernel" in m.group(1) else None
            if op:
                functions[(arch, op)] = []
        elif op and (m := re.search(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)\s*([^;]*)", line)):
            functions[(arch, op)].append((int(m.group(1), 16), m.group(2), m.group(3)))
    return functions


def test_int8_kernel_uses_vector_accesses():
    """See [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh: each lane's 8 elements in
    16-byte accesses to fast and slow (or the slow weights' high parts) and 8-byte accesses to its codes
    (and the slow weights' residuals), streaming, in every kernel of both storages of the slow weights."""
    functions = int8_sass()
    assert {op for _, op in functions} == set(INT8_OPS)
    for (arch, op), code in functions.items():
        opcodes = [opcode for _, opcode, _ in code]
        vectors, codes, _ = INT8_COUNTS[op]
        assert streaming(opcodes, 128) == (vectors,) * 2, f"{arch} {op}: {opcodes}"
        assert streaming(opcodes, 64) == (codes,) * 2, f"{arch} {op}: {opcodes}"


def test_adamw_delta_kernel_uses_vector_accesses():
    """A lane's 8 elements of each of the param, grad, moments and a float outer momentum in 16-byte
    accesses and its codes in one 8-byte access, streaming, for each param dtype and pass: every form of
    the first pass is in the kernel (see [NOTE: int8-delta] in csrc/adamw.h;
    see [NOTE: int8-delta outer momentum] in csrc/adamw.h;
    see [NOTE: int8-delta float momentum] in csrc/adamw.h)."""
    found = {arch: opcodes for (arch, kernel), opcodes in sass_functions().items() if op_of(kernel) == DELTA_OP}
    assert found, "no int8-delta kernel"
    for arch, opcodes in found.items():
        assert streaming(opcodes, 128) == (DELTA_VECTOR_LOADS, DELTA_VECTOR_STORES), arch
        assert streaming(opcodes, 64) == (DELTA_CODE_LOADS, DELTA_CODE_STORES), arch


def test_adamw_int8_kernel_uses_vector_accesses():
    """A lane's 8 elements of each of the param, grad and moments, and on a sync row of the slow weights (or their
    high parts), in 16-byte accesses and its codes (and residuals) in 8-byte ones, streaming, for each param dtype
    and both first passes (see [NOTE: AdamW int8 momentum step] in csrc/adamw.h), in the kernel of each storage
    of the slow weights."""
    found = {(arch, op_of(kernel)): opcodes for (arch, kernel), opcodes in sass_functions().items()
             if op_of(kernel) in ADAMW_INT8_OPS}  # fmt: skip
    assert {op for _, op in found} == set(ADAMW_INT8_OPS)
    for (arch, op), opcodes in found.items():
        loads, stores, codes = ADAMW_INT8_COUNTS[op]
        assert streaming(opcodes, 128) == (loads, stores), f"{arch} {op}"
        assert streaming(opcodes, 64) == (codes, codes), f"{arch} {op}"


def multiplicand_writers(code: list[tuple[int, str, str]]) -> dict[int, list[str]]:
    """What last wrote the two multiplicands of each FFMA, by its address: the opcode, and an FMUL's
    last operand too. In address order, branches aside: a pattern that the compiler spreads over blocks
    fails the test that looks for it, rather than passing unseen."""
    found, writer = {}, {}
    for address, opcode, operands in code:
        fields = [field.strip() for field in operands.split(",")]
        if opcode.startswith("FFMA"):
            found[address] = sorted(writer.get(re.sub(r"^-|\.reuse$", "", field), "") for field in fields[1:3])
        if fields and (m := re.fullmatch(r"R(\d+)", fields[0])):
            width = 4 if ".128" in opcode else 2 if ".64" in opcode or ".WIDE" in opcode else 1
            for r in range(int(m.group(1)), int(m.group(1)) + width):
                writer[f"R{r}"] = f"FMUL {fields[-1]}" if opcode == "FMUL" else opcode
    return found


def is_decoding(writers: list[str]) -> bool:
    """Whether an FFMA is decode_bf16_int8's hi + q u (csrc/bf16_int8.h), contracted: one multiplicand
    the residual q widened (I2F.S8, |q| <= 128), the other the residual unit u (an FMUL by 2^-15, a power
    of two of at least 2^-141). q u is exact, so the fused sum rounds once, as the unfused one does."""
    return writers == [f"FMUL {RESIDUAL_UNIT_FACTOR}", "I2F.S8"]


def test_int8_kernel_contracts_nothing_into_an_fma():
    """See [NOTE: int8 momentum sync] in csrc/element_math.h: every FFMA of the int8 kernel belongs to a
    correctly rounded division (int8_block_scale's two per fast dtype, and in the compact kernels
    encode_bf16_int8's one per element): its inline part, from the FCHK to the call of the out-of-line
    path, and that path (after the first call's target). In the compact kernels also the refinement of
    a division's reciprocal (a multiplicand from MUFU.RCP), which the scheduler may move above the FCHK
    there, and exact bf16+int8 decodings (is_decoding)."""
    for (arch, op), code in int8_sass().items():
        calls = [int(operands.split()[0], 16) for _, opcode, operands in code if opcode.startswith("CALL.REL")]
        assert sum(opcode == "FCHK" for _, opcode, _ in code) == INT8_COUNTS[op][2], f"{arch} {op}"
        out_of_line = min(calls)
        writers = multiplicand_writers(code)
        in_division, stray = False, []
        for address, opcode, operands in code:
            if opcode == "FCHK":
                in_division = True
            elif opcode.startswith("CALL.REL"):
                in_division = False
            elif opcode.startswith(("FFMA", "HFMA2", "DFMA")) and not opcode.endswith(".MMA"):
                if in_division or address >= out_of_line:
                    continue
                found = writers.get(address, [])
                if not (op in INT8_COMPACT_OPS and ("MUFU.RCP" in found or is_decoding(found))):
                    stray.append(f"{address:#x} {opcode} {operands}")
        assert not stray, f"{arch} {op}: fused multiply-adds outside the divisions: {stray}"


def function_lines(path: Path, name: str) -> range:
    """The lines of the function `name` in `path`, from its definition to the "}" that closes it."""
    lines = path.read_text().splitlines()
    defines = re.compile(rf"^LOOKAHEAD_\w+_FN .*\b{name}\(")
    first = next(i for i, line in enumerate(lines, 1) if defines.match(line))
    last = next(i for i, line in enumerate(lines[first:], first + 1) if line.startswith("}"))
    return range(first, last + 1)


def contractable_lines(kernel: str) -> Counter[tuple[str, int]]:
    """The (file name, line) of each contractable float32 operation (CONTRACTABLE_PTX) in the PTX module
    that defines `kernel`, as its line info (-lineinfo) places it; a skip if the build embeds no PTX."""
    modules = [module for module in dump("-ptx").split("Fatbin ptx code:") if kernel in module]
    if not modules:
        pytest.skip("the extension embeds no PTX (TORCH_CUDA_ARCH_LIST without +PTX)")
    files = dict(re.findall(r'^\.file\s+(\d+)\s+"([^"]+)"', modules[0], re.MULTILINE))
    found, where = Counter(), None
    for line in modules[0].splitlines():
        if m := re.match(r"\s*\.loc\s+(\d+)\s+(\d+)", line):
            where = (Path(files[m.group(1)]).name, int(m.group(2)))
        elif CONTRACTABLE_PTX.match(line):
            found[where] += 1
    return found


def contractable_strays(kernel: str, places) -> dict[tuple[str, int], int]:
    """The contractable float32 operations (contractable_lines) of the PTX module of `kernel` outside the
    functions `places` ((file in csrc/, function) pairs), by (file, line)."""
    allowed = set()
    for file, function in places:
        allowed |= {(file, line) for line in function_lines(CSRC / file, function)}
    found = contractable_lines(kernel)
    assert None not in found, "no line info in the PTX (the extension is built with -lineinfo)"
    assert found, "no contractable operation at all: AdamW's step is missing"
    return {where: count for where, count in found.items() if where not in allowed}


def test_adamw_delta_kernel_contracts_only_adamws_step():
    """See [NOTE: int8-delta] in csrc/adamw.h: the compiler may contract AdamW's step into FMAs, but neither
    the offset's math nor the outer momentum's, each spelled in IEEE operations
    (see [NOTE: int8-delta float momentum] in csrc/adamw.h). Read in the PTX the build embeds, where each
    operation names its source line: every float32 operation that is or may become an FMA is in
    adamw_element or two_sided_lerp (DELTA_CONTRACTABLE_IN)."""
    stray = contractable_strays("adamw_delta_kernel", DELTA_CONTRACTABLE_IN.items())
    assert not stray, f"contractable float32 operations outside AdamW's step, by (file, line): {stray}"


def test_adamw_int8_kernel_contracts_only_adamws_step():
    """See [NOTE: AdamW int8 momentum step] in csrc/adamw.h: the compiler may contract AdamW's step into FMAs, as
    it does in the AdamW-alone table kernel, but not the int8 momentum sync, spelled in IEEE operations
    (see [NOTE: int8 momentum sync] in csrc/element_math.h). Read in the PTX as for the int8-delta kernel: every
    float32 operation that is or may become an FMA is in adamw_element, two_sided_lerp or the exact bf16+int8
    codec (ADAMW_INT8_CONTRACTABLE_IN)."""
    stray = contractable_strays("adamw_int8_momentum_step_kernel", ADAMW_INT8_CONTRACTABLE_IN)
    assert not stray, f"contractable float32 operations outside AdamW's step, by (file, line): {stray}"
