"""The CPU kernel as built, read with objdump: the AVX2 copy of the chunk loop
(see [NOTE: CPU vectorisation] in csrc/cpu/sync_cpu.cpp) does its lerp 8 floats (4 doubles) at a time in 256-bit
registers, widens bfloat16 8 lanes at a time, and stores whole 256-bit vectors; the baseline copy
uses SSE2's packed instructions. A compiler or flag change that leaves a loop scalar fails here."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

_C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")


def disassembly(function: str) -> str:
    """The instructions of lookahead_fused's `function` (a name in csrc/cpu/) in the extension."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("no objdump (binutils) on PATH")
    if _C.build_info()["cpu_kernel_isa"] not in ("avx2", "baseline"):
        pytest.skip("not an x86-64 build")
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", _C.__file__], capture_output=True, text=True, check=True).stdout
    body = re.search(rf"^[0-9a-f]+ <lookahead_fused::\(anonymous namespace\)::{function}\(.*?>:\n(.*?)\n\n", listing, re.S | re.M)
    assert body, f"{function} not found in {_C.__file__}"
    return body.group(1)


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_avx2_chunk_loop_is_256_bits_wide():
    code = disassembly("run_chunk_avx2")
    assert count(r"\bvf(n)?madd\d+ps\b[^\n]*%ymm", code) >= 2, "float32 lerp: no 8-lane FMA"
    assert count(r"\bvf(n)?madd\d+pd\b[^\n]*%ymm", code) >= 1, "float64 lerp: no 4-lane FMA"
    assert count(r"\bvsubps\b[^\n]*%ymm", code) >= 2, "float32 difference f - s: not 8 lanes"
    assert count(r"\bvpmovzxwd\b[^\n]*%ymm", code) >= 2, "bfloat16 widening: not 8 lanes"
    assert count(r"\bvpackusdw\b[^\n]*%ymm", code) >= 2, "bfloat16 rounding: not 8 lanes"
    assert count(r"\bvmov(ups|dqu|upd)\s+%ymm\d+,\s*-?(0x[0-9a-f]+)?\(", code) >= 4, "no 256-bit stores"


def test_avx2_bfloat16_momentum_loops_are_vectorised():
    """The 12 momentum-sync loops with a bfloat16 momentum beside float32 slow weights (3 fast dtypes,
    2 lerp sides, heavy ball or Nesterov) each round to bfloat16 8 lanes at a time. Built with GCC 12 on
    2026-12-03 the AVX2 copy holds 300 256-bit vpackusdw; with those loops scalar (a NaN select GCC
    would not if-convert, fixed in BF16::store), 284."""
    code = disassembly("run_chunk_avx2")
    assert count(r"\bvpackusdw\b[^\n]*%ymm", code) >= 296, "the bfloat16 momentum loops are not 8 lanes wide"


def test_baseline_chunk_loop_uses_packed_sse2():
    code = disassembly("run_chunk_baseline")
    assert count(r"\bsubps\b", code) >= 2 and count(r"\bmulps\b", code) >= 2, "float32 lerp: not packed"
    assert count(r"\bmovups\b", code) >= 4, "no 128-bit unaligned loads/stores"


# AdamW's loops (csrc/cpu/sync_cpu.cpp adamw_loop): 7 variants (no sync; sync, two lerp sides;
# momentum sync, two sides x heavy ball / Nesterov) per dtype pair. Those of the float32-opmath pairs
# that GCC vectorises (float32, bfloat16, bfloat16 + float32 slow: 21 loops) and of float64 (7) each
# take the square root of 8 (4) lanes at once; with errno semantics (no -fno-math-errno) or with the
# pointers not restrict, the loops stay scalar and these counts drop to 0. float16 stays scalar (as
# in the sync: GCC 12 does not vectorise its conversions).
def test_avx2_adamw_loops_are_256_bits_wide():
    code = disassembly("run_chunk_avx2")
    assert count(r"\bvsqrtps\b[^\n]*%ymm", code) >= 21, "AdamW float32 opmath: square root not 8 lanes wide"
    assert count(r"\bvsqrtpd\b[^\n]*%ymm", code) >= 7, "AdamW float64: square root not 4 lanes wide"
    assert count(r"\bvdivps\b[^\n]*%ymm", code) >= 2 * 21, "AdamW float32 opmath: divisions not 8 lanes wide"


# AdamW's compact loops (csrc/cpu/sync_cpu.cpp adamw_compact_loop;
# see [NOTE: AdamW compact step] in csrc/adamw.h): per fast dtype two lerp sides of the compact sync and eight of the compact momentum sync
# (float32 or bfloat16 momentum, heavy ball or Nesterov); those of float32 and bfloat16 params take AdamW's
# square root 8 lanes at a time and round the encoding's high part 8 lanes at a time. Built with GCC 12 on
# 2026-12-05 the AVX2 copy holds 174 vsqrtps and 176 vroundps; without these loops 70 and 80.
def test_avx2_adamw_compact_loops_are_256_bits_wide():
    code = disassembly("run_chunk_avx2")
    assert count(r"\bvsqrtps\b[^\n]*%ymm", code) >= 165, "AdamW's compact loops: square root not 8 lanes wide"
    assert count(r"\bvroundps\b[^\n]*%ymm", code) >= 165, "AdamW's compact loops: the encoding not 8 lanes wide"


def test_baseline_adamw_loops_use_packed_sse2():
    code = disassembly("run_chunk_baseline")
    assert count(r"\bsqrtps\b", code) >= 21 and count(r"\bsqrtpd\b", code) >= 7, "AdamW: square root not packed"


# The int8 momentum sync's loops (csrc/cpu/int8_momentum_cpu.cpp int8_block): per slow storage (float32,
# bf16+int8), fast dtype, lerp side and Nesterov flag a pass that takes the block's largest magnitude as
# an integer max and a pass that quantises. GCC vectorises those of float32 and bfloat16 fast (8 loops of
# each pass per slow storage: 32 vpmaxud for each storage's 8 first passes, and the compact ones' encoding
# rounds 8 lanes at a time, 32 vroundps); float16 stays scalar as in the sync. The AVX2 copy is built without FMA, so no product and sum are contracted
# (see [NOTE: int8 momentum sync] in csrc/element_math.h). The counts are those of the build with GCC 12; GCC 13
# (Ubuntu 24.04, the lent H200 machine, 2026-12-04) unrolls the bfloat16 stores less: 64 vpackusdw where GCC 12 has 80.
def test_avx2_int8_momentum_loops_are_256_bits_wide_and_unfused():
    code = disassembly("run_int8_blocks_avx2")
    assert count(r"\bvf(n)?m(add|sub)\w*", code) == 0, "a product and a sum contracted into an FMA"
    assert count(r"\bvpmaxud\b[^\n]*%ymm", code) >= 48, "the block's largest magnitude: not 8 lanes"
    assert count(r"\bvroundps\b[^\n]*%ymm", code) >= 16, "the compact slow weights' encoding: not 8 lanes"
    assert count(r"\bvcvttps2dq\b[^\n]*%ymm", code) >= 32, "the codes: not 8 lanes"
    assert count(r"\bvcvtdq2ps\b[^\n]*%ymm", code) >= 48, "the decoded momentum: not 8 lanes"
    assert count(r"\bvpackusdw\b[^\n]*%ymm", code) >= 64, "the bfloat16 fast store: not 8 lanes"


def test_baseline_int8_momentum_loops_use_packed_sse2():
    code = disassembly("run_int8_blocks_baseline")
    assert count(r"\bmulps\b", code) >= 320 and count(r"\bsubps\b", code) >= 128, "float32 math: not packed"
    assert count(r"\bcvttps2dq\b", code) >= 64 and count(r"\bcvtdq2ps\b", code) >= 64, "the codes: not packed"


# AdamW's step with int8-delta slow weights (csrc/cpu/adamw_delta_cpu.cpp delta_block): per param dtype, lerp
# side and sync flag a pass with AdamW's step, the offset and the block's largest magnitude, and a pass that
# quantises; GCC vectorises those of float32 and bfloat16 params (8 loops of each pass), float16 stays scalar.
# A sync step beside a float32 or bfloat16 outer momentum (delta_float_momentum_block, per momentum dtype and
# Nesterov flag too) adds 16 more vectorised first passes, about 88 square roots and largest offsets more
# (see [NOTE: int8-delta float momentum] in csrc/adamw.h). Built without FMA, as the int8 momentum sync's
# (see [NOTE: int8-delta] in csrc/adamw.h). The counts are those of the build with GCC 12 (168 square roots,
# 80 before the float momentum); with one of the 8 loops of a pass scalar they drop by 6 or more.
def test_avx2_int8_delta_loops_are_256_bits_wide_and_unfused():
    code = disassembly("run_delta_blocks_avx2")
    assert count(r"\bvf(n)?m(add|sub)\w*", code) == 0, "a product and a sum contracted into an FMA"
    assert count(r"\bvsqrtps\b[^\n]*%ymm", code) >= 130, "AdamW's square root: not 8 lanes in every first pass"
    assert count(r"\bvpmaxud\b[^\n]*%ymm", code) >= 130, "the block's largest offset: not 8 lanes"
    assert count(r"\bvcvttps2dq\b[^\n]*%ymm", code) >= 48, "the codes: not 8 lanes"
    assert count(r"\bvpackusdw\b[^\n]*%ymm", code) >= 200, "the bfloat16 param and moments' stores: not 8 lanes"


def test_baseline_int8_delta_loops_use_packed_sse2():
    code = disassembly("run_delta_blocks_baseline")
    assert count(r"\bsqrtps\b", code) >= 130 and count(r"\bcvttps2dq\b", code) >= 96, "not packed"
