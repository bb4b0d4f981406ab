"""The "triton" backend's int8 momentum sync (backends/triton/int8_momentum.py), of float32 slow weights and
of bf16+int8 ones (see [NOTE: compact int8 momentum sync] in csrc/element_math.h): the same bits as the
reference's per-tensor oracle (see [NOTE: int8 blocks] in lookahead_fused/int8_blocks.py) for codes, scales,
slow and fast, in one launch per fast dtype and alignment class, gated or not (without a GPU, in
Triton's interpreter)."""

import pytest
import torch

from lookahead_fused import available_backends, backends, bf16_int8, int8_blocks
from lookahead_fused.backends import reference
from lookahead_fused.contract import INT8_MOMENTUM_FAST_DTYPES

from .helpers import assert_bitwise_equal, snapshot
from .matrix import dtype_id

pytestmark = pytest.mark.skipif("triton" not in available_backends(), reason="triton backend unavailable")
plans = pytest.importorskip("lookahead_fused.backends.triton.plans")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FAST_DTYPES = INT8_MOMENTUM_FAST_DTYPES
SIZES = (0, 1, 255, 256, 257, 1000, 8192 + 257)  # the last: a full chunk and a short one, under the interpreter
CHANNELS_LAST_SHAPE = (2, 6, 9, 11)  # 1188 elements, memory order not the logical order


def _entry(fast_values, slow_values, momentum_values, fast_dtype, compact=False):
    """(fast, slow, codes, scales) with slow's strides, the momentum encoded by the oracle; `compact`:
    (fast, slow_high, slow_low, codes, scales), the slow weights encoded as bf16+int8 by the oracle."""
    slow = slow_values.to(DEVICE)
    fast = torch.empty_like(slow, dtype=fast_dtype).copy_(fast_values)
    codes = torch.empty_like(slow, dtype=int8_blocks.CODE_DTYPE)
    flat_codes, scales = int8_blocks.encode(int8_blocks.memory_order(momentum_values.to(DEVICE), slow))
    int8_blocks.memory_order(codes).copy_(flat_codes)
    if not compact:
        return fast, slow, codes, scales
    high, low = (torch.empty_like(slow, dtype=part.dtype).copy_(part) for part in bf16_int8.encode(slow))
    return fast, high, low, codes, scales


def _random_entry(shape, fast_dtype, generator, memory_format=torch.contiguous_format, compact=False):
    slow = torch.randn(shape, generator=generator).contiguous(memory_format=memory_format)
    fast = slow + 0.1 * torch.randn(shape, generator=generator)
    spread = torch.logspace(-3, 2, int8_blocks.scale_count(slow.numel())).repeat_interleave(int8_blocks.BLOCK)
    momentum = torch.randn(shape, generator=generator) * spread[: slow.numel()].reshape(shape)
    return _entry(fast, slow, momentum, fast_dtype, compact)


def make_int8_lists(fast_dtype, seed=0, compact=False):
    """Lists of every size of SIZES, a channels_last 4-D tensor, and an entry at a 4-byte offset (a launch
    of its own: see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py); `compact`:
    the slow weights as bf16+int8 (their parts of the offset entry at 2- and 1-byte offsets)."""
    generator = torch.Generator().manual_seed(seed)
    entries = [_random_entry((n,), fast_dtype, generator, compact=compact) for n in SIZES]
    entries.append(_random_entry(CHANNELS_LAST_SHAPE, fast_dtype, generator, torch.channels_last, compact))
    *offset, _ = _random_entry((601,), fast_dtype, generator, compact=compact)
    entries.append((*(t[1:] for t in offset), int8_blocks.encode(torch.randn(600, generator=generator))[1]))
    return [list(column) for column in zip(*entries)]


def _special_lists(fast_dtype, compact=False):
    """One tensor of 4 blocks and a tail: a NaN in block 0, block 1 all zero, block 2 below the floor
    (float32 fast only: 2^-100 is zero in float16), block 3 and the tail random. `compact`: the slow weights
    as bf16+int8, and block 2's float32 subnormal (bfloat16's smallest residual unit)."""
    generator = torch.Generator().manual_seed(1)
    n = 4 * int8_blocks.BLOCK + 37
    slow, fast, momentum = (torch.randn(n, generator=generator) for _ in range(3))
    fast[5] = float("nan")
    blocks = [slice(b * int8_blocks.BLOCK, (b + 1) * int8_blocks.BLOCK) for b in range(3)]
    slow[blocks[1]] = fast[blocks[1]] = torch.arange(int8_blocks.BLOCK) % 7 - 3.0  # exact in every fast dtype
    momentum[blocks[1]] = 0.0
    if fast_dtype == torch.float32:
        slow[blocks[2]], fast[blocks[2]], momentum[blocks[2]] = 0.0, 2.0**-100, 0.0
        if compact:
            slow[blocks[2]] = torch.randn(int8_blocks.BLOCK, generator=generator) * 2.0**-130
    return [[t] for t in _entry(fast, slow, momentum, fast_dtype, compact)]


def _triton():
    return backends.resolve("triton", torch.device(DEVICE).type)


def _reference_copies(lists):
    """Copies of the lists on the CPU, for the reference to update."""
    return [[t.cpu() for t in snapshot(column)] for column in lists]


def _flat(lists):
    return [t.cpu() for column in lists for t in column]


_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32}


def assert_same_bits(actual, expected):
    """Bit for bit, the sign of zero included, except a NaN's sign and payload: only where the NaNs are. IEEE 754
    leaves which operand's NaN an operation returns open, and torch's own bfloat16 conversions differ (its
    vectorised CPU one gives 0xFFFF, c10::BFloat16 and round_to 0x7FC0)."""
    nan = [torch.isnan(a) if a.is_floating_point() else torch.zeros_like(a, dtype=torch.bool) for a in actual]
    assert_bitwise_equal(nan, [torch.isnan(e) if e.is_floating_point() else torch.zeros_like(e, dtype=torch.bool)
                               for e in expected])  # fmt: skip
    assert_bitwise_equal([a.view(_BITS[a.element_size()])[~n] for a, n in zip(actual, nan)],
                         [e.view(_BITS[e.element_size()])[~n] for e, n in zip(expected, nan)])  # fmt: skip


# The two forms of the op: float32 slow weights, and bf16+int8 ones
# (see [NOTE: compact int8 momentum sync] in csrc/element_math.h), by their name in the backends.
FORMS = {"float32 slow": "int8_momentum_sync_", "bf16+int8 slow": "compact_int8_momentum_sync_"}


def launches_matching_the_reference(form: str, lists, alpha: float, mu: float, nesterov: bool) -> int:
    """Run the Triton op of `form` on `lists` and the reference on copies of them; assert the same bits and
    return how many launches the Triton op took."""
    expected = _reference_copies(lists)
    getattr(reference, FORMS[form])(*expected, alpha, mu, nesterov)
    before = plans.launch_count
    getattr(_triton(), FORMS[form])(*lists, alpha, mu, nesterov)
    launches = plans.launch_count - before
    assert_same_bits(_flat(lists), _flat(expected))
    return launches


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fast_dtype", FAST_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("mu", [0.0, 0.9])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_int8_momentum_sync_matches_the_reference_bit_for_bit(form, fast_dtype, mu, nesterov, alpha):
    lists = make_int8_lists(fast_dtype, compact=form != "float32 slow")
    launches = launches_matching_the_reference(form, lists, alpha, mu, nesterov)
    assert launches == 2, "one launch for the aligned entries, one for the offset one"


@pytest.mark.parametrize("fast_dtype", FAST_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov", [False, True])
def test_a_nan_block_a_zero_block_and_a_block_below_the_floor_as_the_reference(fast_dtype, nesterov):
    lists = _special_lists(fast_dtype)
    expected = _reference_copies(lists)
    reference.int8_momentum_sync_(*expected, 0.3, 0.9, nesterov)
    _triton().int8_momentum_sync_(*lists, 0.3, 0.9, nesterov)
    assert_same_bits(_flat(lists), _flat(expected))
    scales, codes = lists[3][0].cpu(), lists[2][0].cpu()
    assert scales[0].isnan() and not codes[: int8_blocks.BLOCK].any(), "the NaN block is lost, loudly"
    assert scales[1] == 0 and not codes[int8_blocks.BLOCK : 2 * int8_blocks.BLOCK].any(), "the zero block"
    if fast_dtype == torch.float32:
        assert scales[2] == 0 and not codes[2 * int8_blocks.BLOCK : 3 * int8_blocks.BLOCK].any(), "below the floor"
    assert scales[3:].isfinite().all() and (scales[3:] > 0).all()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fast_dtype", FAST_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_gated_int8_momentum_sync_runs_only_on_multiples_of_k(form, fast_dtype, nesterov, alpha):
    lists = make_int8_lists(fast_dtype, seed=2, compact=form != "float32 slow")
    gated = getattr(_triton(), FORMS[form].replace("sync_", "sync_on_step_"))
    alpha_tensor = torch.tensor(alpha, dtype=torch.float64, device=DEVICE)
    for step in (1, 2, 4, 5):  # k = 3: not a sync step
        before = [t.clone() for column in lists for t in column]
        gated(*lists, alpha_tensor, torch.tensor(step, device=DEVICE), 3, 0.9, nesterov)
        assert_same_bits([t for column in lists for t in column], before)
    expected = _reference_copies(lists)
    getattr(reference, FORMS[form])(*expected, alpha, 0.9, nesterov)
    before = plans.launch_count
    gated(*lists, alpha_tensor, torch.tensor(6, device=DEVICE), 3, 0.9, nesterov)
    assert plans.launch_count - before == 2, "one launch for the aligned entries, one for the offset one"
    assert_same_bits(_flat(lists), _flat(expected))


def test_one_launch_for_many_tensors_of_one_fast_dtype():
    generator = torch.Generator().manual_seed(3)
    entries = [_random_entry(((i % 7) * 300 + 1,), torch.float32, generator) for i in range(40)]
    lists = [list(column) for column in zip(*entries)]
    before = plans.launch_count
    _triton().int8_momentum_sync_(*lists, 0.5, 0.9, False)
    assert plans.launch_count - before == 1


@pytest.mark.parametrize("fast_dtype", FAST_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("nesterov", [False, True])
def test_compact_a_nan_block_a_zero_block_and_a_block_below_the_floor_as_the_reference(fast_dtype, nesterov):
    lists = _special_lists(fast_dtype, compact=True)
    expected = _reference_copies(lists)
    reference.compact_int8_momentum_sync_(*expected, 0.3, 0.9, nesterov)
    _triton().compact_int8_momentum_sync_(*lists, 0.3, 0.9, nesterov)
    assert_same_bits(_flat(lists), _flat(expected))
    high, low, codes, scales = (lists[i][0].cpu() for i in (1, 2, 3, 4))
    assert scales[0].isnan() and not codes[: int8_blocks.BLOCK].any(), "the NaN block is lost, loudly"
    if nesterov:  # the target reads the lost block's momentum: NaN, stored with no residual
        assert high[: int8_blocks.BLOCK].isnan().all() and not low[: int8_blocks.BLOCK].any()
    assert scales[1] == 0 and not codes[int8_blocks.BLOCK : 2 * int8_blocks.BLOCK].any(), "the zero block"
    if fast_dtype == torch.float32:
        assert scales[2] == 0 and not codes[2 * int8_blocks.BLOCK : 3 * int8_blocks.BLOCK].any(), "below the floor"
    assert scales[3:].isfinite().all() and (scales[3:] > 0).all()


@pytest.mark.parametrize("fast_dtype", FAST_DTYPES, ids=dtype_id)
def test_compact_int8_momentum_sync_with_alpha_0_keeps_the_slow_bits_and_gives_fast_their_value(fast_dtype):
    """An encoding is a fixed point of the codec (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py)."""
    lists = make_int8_lists(fast_dtype, seed=4, compact=True)
    high, low = (snapshot(column) for column in lists[1:3])
    _triton().compact_int8_momentum_sync_(*lists, 0.0, 0.9, True)
    assert_bitwise_equal(lists[1] + lists[2], high + low)
    assert_bitwise_equal(lists[0], [bf16_int8.decode(h, q).to(fast_dtype) for h, q in zip(high, low)])


@pytest.mark.parametrize("part", [1, 2], ids=["high", "low"])
def test_a_slow_part_off_the_16_byte_boundary_takes_its_entry_to_the_misaligned_launch(part):
    """Only one part of the slow weights is offset: the entry is still misaligned
    (see [NOTE: Triton vector accesses] in lookahead_fused/backends/triton/sync.py)."""
    generator = torch.Generator().manual_seed(5)
    entries = [list(_random_entry((n,), torch.float32, generator, compact=True)) for n in (1000, 8192 + 257)]
    aligned = entries[1][part]
    entries[1][part] = torch.empty(aligned.numel() + 1, dtype=aligned.dtype, device=DEVICE)[1:].copy_(aligned)
    lists = [list(column) for column in zip(*entries)]
    assert launches_matching_the_reference("bf16+int8 slow", lists, 0.7, 0.9, True) == 2


def test_compact_one_launch_for_many_tensors_of_one_fast_dtype_and_one_per_fast_dtype():
    generator = torch.Generator().manual_seed(3)
    entries = [_random_entry(((i % 7) * 300 + 1,), torch.float32, generator, compact=True) for i in range(40)]
    lists = [list(column) for column in zip(*entries)]
    assert launches_matching_the_reference("bf16+int8 slow", lists, 0.5, 0.9, False) == 1
    dtypes = [FAST_DTYPES[i % len(FAST_DTYPES)] for i in range(9)]
    lists = [list(column) for column in zip(*(_random_entry((300 * i + 7,), dtype, generator, compact=True)
                                              for i, dtype in enumerate(dtypes)))]  # fmt: skip
    assert launches_matching_the_reference("bf16+int8 slow", lists, 0.5, 0.9, False) == len(FAST_DTYPES)
