"""The C++ extension: build info, the plan and its cache (its torch.library ops: tests/test_opcheck.py),
and the package without the extension."""

import os
import shutil
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch

from lookahead_fused import Lookahead, available_backends, contract, ops

from .helpers import make_params, run
from .matrix import check_against_contract, make_pair_lists
from .helpers import snapshot

_C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")


@pytest.fixture(autouse=True)
def _fresh_plan_cache():
    _C.clear_plan_cache()


def test_build_info():
    info = _C.build_info()
    assert info["torch_version"] == torch.__version__.split("+")[0]
    assert info["cpu_kernel_isa"] in ("avx2", "baseline")
    if shutil.which("nvcc") and os.environ.get("LOOKAHEAD_FUSED_BUILD", "auto") == "auto":
        assert info["cuda"], "nvcc is on PATH, so the CUDA kernels should have been compiled and linked"
        assert "9.0" in info["cuda_archs"] and "8.0" in info["cuda_archs"]
    assert "cpu" in available_backends()


def test_steady_state_reuses_one_plan():
    fast, slow = make_pair_lists([7, 4097, 70000], torch.float32, torch.float32)
    for _ in range(5):
        ops.lookahead_sync_(fast, slow, 0.5, backend="cpu")
    assert _C.plan_cache_stats() == {"builds": 1, "hits": 4}


def test_plan_is_rebuilt_when_a_tensor_is_reallocated():
    fast, slow = make_pair_lists([7, 4097], torch.float32, torch.float32)
    ops.lookahead_sync_(fast, slow, 0.5, backend="cpu")
    fast[1] = fast[1].clone()  # new storage, same size
    fast0, slow0 = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_(fast, slow, 0.5, backend="cpu")
    assert _C.plan_cache_stats()["builds"] == 2
    check_against_contract(fast0, slow0, fast, slow, 0.5)


@pytest.mark.parametrize("change", ["size", "dtype"])
def test_plan_is_rebuilt_for_the_same_addresses_with_another_size_or_dtype(change):
    fast_memory, slow_memory = torch.rand(64), torch.rand(64)
    ops.lookahead_sync_([fast_memory[:32]], [slow_memory[:32]], 0.5, backend="cpu")
    if change == "size":  # the same addresses, fewer elements
        fast, slow = [fast_memory[:16]], [slow_memory[:16]]
    else:  # the same addresses and bytes, bfloat16 params beside the float32 slow weights
        fast, slow = [fast_memory.view(torch.bfloat16)[:32]], [slow_memory[:32]]
        fast[0].copy_(torch.rand(32))
    fast0, slow0 = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_(fast, slow, 0.5, backend="cpu")
    assert _C.plan_cache_stats()["builds"] == 2
    check_against_contract(fast0, slow0, fast, slow, 0.5)


def _changed_lists(change: str):
    """(valid lists, lists of the same addresses and sizes that the contract refuses) for `change`."""
    memory = [torch.rand(16) for _ in range(3)]
    valid = [[m[:16].view(4, 4)] for m in memory]
    if change == "transposed fast":  # same address, size and dtype; other strides than slow's
        return valid, [[valid[0][0].t()], valid[1], valid[2]]
    if change == "reshaped slow":  # same address and size, another shape
        return valid, [valid[0], [memory[1].view(2, 8)], valid[2]]
    if change == "momentum dtype":  # the same address and element count, neither slow's dtype nor bfloat16
        return valid, [valid[0], valid[1], [memory[2].view(torch.float16)[:16].view(4, 4)]]
    if change == "longer slow":
        return valid, [valid[0], valid[1] + [torch.rand(4, 4)], valid[2]]
    raise AssertionError(change)


@pytest.mark.parametrize("change", ["transposed fast", "reshaped slow", "momentum dtype", "longer slow"])
@pytest.mark.parametrize("entry", ["momentum_sync_", "check_sync_lists"])
def test_a_cached_plan_vouches_only_for_lists_the_full_check_accepts(change, entry):
    """see [NOTE: a cached plan vouches] in csrc/plan.h: with the plan of the same addresses cached, a
    refused call raises what it raises without it, and writes nothing."""
    valid, changed = _changed_lists(change)
    call = {
        "momentum_sync_": lambda lists: _C.momentum_sync_(*lists, 0.5, 0.9, False),
        "check_sync_lists": lambda lists: _C.check_sync_lists(*lists),
    }[entry]
    messages = []
    for cached in (False, True):
        _C.clear_plan_cache()
        if cached:
            _C.momentum_sync_(*valid, 0.5, 0.9, False)
        before = snapshot([t for lists in changed for t in lists])
        with pytest.raises(ValueError) as refused:
            call(changed)
        assert all(torch.equal(a, b) for a, b in zip([t for lists in changed for t in lists], before))
        messages.append(str(refused.value).splitlines()[0])
    assert messages[0] == messages[1]


def _sync_lists_with(*defects: str):
    """(fast, slow, momentum) of three pairs with `defects`, in the order a check could meet them."""
    fast, slow = make_pair_lists([5, 8, 3], torch.float32, torch.float32)
    momentum = [torch.zeros_like(s) for s in slow]
    for defect in defects:
        if defect == "a short momentum list":
            momentum = momentum[:2]
        elif defect == "a momentum's dtype":
            momentum[1] = momentum[1].half()
        elif defect == "a slow weight's dtype":
            slow[2] = slow[2].half()
        elif defect == "a slow weight's shape":
            slow[0] = torch.zeros(6)
        elif defect == "a short slow list":
            slow = slow[:2]
    return fast, slow, momentum


@pytest.mark.parametrize("defects", [
    ("a short momentum list", "a slow weight's dtype"), ("a momentum's dtype", "a slow weight's shape"),
    ("a short slow list", "a momentum's dtype"), ("a momentum's dtype",), ("a short momentum list",),
])  # fmt: skip
def test_the_python_sync_check_says_what_the_native_one_says(defects):
    """contract.check_sync_lists (the check without the extension) against _C.check_sync_lists, word for
    word and in the order they meet the defects."""
    messages = []
    for check in (contract.check_sync_lists, _C.check_sync_lists):
        with pytest.raises(ValueError) as refused:
            check(*_sync_lists_with(*defects))
        messages.append(str(refused.value))
    assert messages[0] == messages[1]


def test_eager_ops_borrow_their_lists_without_keeping_or_dropping_a_reference():
    fast, slow = make_pair_lists([5, 300], torch.float32, torch.float32)
    counts = [sys.getrefcount(t) for t in fast + slow]
    for _ in range(100):  # a reference dropped per call would have freed them
        _C.sync_(fast, tuple(slow), 0.5)
        _C.check_sync_lists(fast, slow)
    assert [sys.getrefcount(t) for t in fast + slow] == counts
    assert all(torch.equal(f, s) for f, s in zip(fast, slow))
    watched = weakref.ref(fast[0])
    del fast
    assert watched() is None, "a reference kept after the call"


def test_eager_ops_refuse_a_list_holding_anything_but_tensors_before_writing():
    fast, slow = make_pair_lists([5, 6], torch.float32, torch.float32)
    before = snapshot(fast + slow)
    for bad_fast, bad_slow in ((fast + [1.0], slow + [slow[0]]), (fast, "ab"), (fast, None)):
        with pytest.raises(TypeError, match="incompatible function arguments"):
            _C.sync_(bad_fast, bad_slow, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(fast + slow, before))


def test_same_objects_compares_identity_as_the_python_fallback_does():
    from lookahead_fused.sync import _same_objects_in_python

    a, b, c = torch.zeros(1), torch.zeros(1), torch.zeros(1)
    twin_of_b = torch.zeros(1)  # an equal value, another object
    cases = [
        ([[a, b], [c]], [[a, b], [c]], True),
        ([[a, b], [c]], [[a, twin_of_b], [c]], False),
        ([[a, b], [c]], [[a, b]], False),
        ([[a, b], [c]], [[a], [b, c]], False),
        ([[a, b], []], [[a, b], []], True),
        ([], [], True),
    ]
    for held, now, same in cases:
        assert _C.same_objects(held, now) is same
        assert _same_objects_in_python(held, now) is same


def test_lookahead_class_builds_its_plan_once():
    params = make_params(torch.float32, shapes=((64, 32), (64,), (1000,)))
    opt = Lookahead(torch.optim.SGD(params, lr=0.1, momentum=0.9), k=2, pullback_momentum="pullback", backend="cpu")
    run(opt, params, 10)  # five syncs
    assert _C.plan_cache_stats()["builds"] == 1


@pytest.mark.parametrize("offsets,expected_head", [((0, 0), 0), ((1, 1), 3), ((3, 3), 1), ((1, 0), -1), ((2, 1), -1)])
def test_plan_vector_head_for_storage_offsets(offsets, expected_head):
    fast_offset, slow_offset = offsets
    fast = torch.zeros(100 + fast_offset)[fast_offset:]
    slow = torch.zeros(100 + slow_offset)[slow_offset:]
    assert fast.data_ptr() % 16 == 4 * fast_offset % 16  # the CPU allocator aligns storages to 64 bytes
    plan = _C.SyncPlan([fast], [slow])
    meta = int(plan.words()[3])
    assert (meta >> 8) - 1 == expected_head


def test_plan_chunks_cover_every_element():
    sizes = [0, 1, 65536, 65537, 200000]
    fast, slow = make_pair_lists(sizes, torch.bfloat16, torch.float32)
    plan = _C.SyncPlan(fast, slow)
    # CPU plans keep the largest chunk (see [NOTE: CPU grain] in csrc/cpu/sync_cpu.cpp)
    assert plan.chunk_elements == 65536
    assert plan.num_pairs == 5
    assert plan.num_chunks == sum(-(-n // 65536) for n in sizes)
    fast0, slow0 = snapshot(fast), snapshot(slow)
    ops.lookahead_sync_(fast, slow, 0.3, backend="cpu")
    check_against_contract(fast0, slow0, fast, slow, 0.3)


def test_op_rejects_bad_alpha_in_cpp_too():
    fast, slow = make_pair_lists([3], torch.float32, torch.float32)
    with pytest.raises(ValueError, match="alpha must be a finite number in \\[0, 1\\]"):
        torch.ops.lookahead_fused.sync_(fast, slow, float("nan"))


def test_package_works_without_the_extension():
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["lookahead_fused._C"] = None  # as if the build had failed
        import torch
        import lookahead_fused as lf
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backends = lf.available_backends()
            missing = lf.unavailable_backends()
            p = torch.nn.Parameter(torch.ones(3))
            opt = lf.Lookahead(torch.optim.SGD([p], lr=0.1), k=1)
            p.grad = torch.ones(3)
            opt.step()
        assert backends[:2] == ["reference", "foreach"] and not {"cpu", "cuda"} & set(backends), backends
        assert "lookahead_fused._C" in missing["cpu"], missing
        assert len([w for w in caught if "C++ extension" in str(w.message)]) == 1, [str(w.message) for w in caught]
        assert torch.allclose(p.detach(), torch.full((3,), 0.95))
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_cpu_kernel_runs_on_several_threads():
    """See [NOTE: OpenMP] in csrc/cpu/sync_cpu.cpp: without OpenMP in the build, every chunk runs on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _C.cpu_parallel_threads(64) == 2
    finally:
        torch.set_num_threads(threads)


def test_the_dtype_lists_of_cpp_and_python_agree():
    """See [NOTE: dtype list] in csrc/table.h: csrc/table.h's LOOKAHEAD_DTYPE_PAIRS, as the built extension reports it,
    is lookahead_fused.contract.DTYPE_PAIRS, and every code is distinct."""
    from lookahead_fused.contract import DTYPE_PAIRS

    reported = _C.build_info()["dtype_pairs"]
    assert len({code for code, _, _ in reported}) == len(reported)
    name = lambda dtype: str(dtype).removeprefix("torch.")  # noqa: E731
    assert sorted((fast, slow) for _, fast, slow in reported) == sorted((name(f), name(s)) for f, s in DTYPE_PAIRS)


def test_the_bf16_momentum_lists_of_cpp_and_python_agree():
    """csrc/table.h's LOOKAHEAD_BF16_MOMENTUM_PAIRS is lookahead_fused.contract.BF16_MOMENTUM_PAIRS, and
    its codes are distinct from every other entry code."""
    from lookahead_fused.contract import BF16_MOMENTUM_PAIRS

    info = _C.build_info()
    reported = info["bf16_momentum_pairs"]
    codes = {code for code, _, _ in reported}
    assert len(codes) == len(reported) and not codes & {code for code, _, _ in info["dtype_pairs"]}
    name = lambda dtype: str(dtype).removeprefix("torch.")  # noqa: E731
    assert sorted((f, s) for _, f, s in reported) == sorted((name(f), name(s)) for f, s in BF16_MOMENTUM_PAIRS)


def _int8_momentum_lists(sizes, fast_dtype, seed=0):
    """fast, float32 slow, and an encoded int8 momentum (codes, scales) for each size."""
    from lookahead_fused import int8_blocks

    generator = torch.Generator().manual_seed(seed)
    fast = [torch.randn(n, generator=generator).to(fast_dtype) for n in sizes]
    slow = [torch.randn(n, generator=generator) for n in sizes]
    codes, scales = zip(*(int8_blocks.encode(torch.randn(n, generator=generator)) for n in sizes))
    return [fast, slow, list(codes), list(scales)]


def _same_bits(a, b):
    """Equal, NaN where the other is NaN (a bfloat16 NaN's payload is torch's copy path's, see BF16::store)."""
    if a.is_floating_point():
        if not torch.equal(a.isnan(), b.isnan()):
            return False
        a, b = torch.where(a.isnan(), 0, a), torch.where(b.isnan(), 0, b)
    return torch.equal(a.view(torch.int8) if a.dim() else a, b.view(torch.int8) if b.dim() else b)


@pytest.mark.parametrize("fast_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("alpha,mu,nesterov", [(0.5, 0.9, True), (0.3, 0.9, False), (1.0, 0.0, True)])
def test_int8_momentum_sync_matches_the_reference_bit_for_bit(fast_dtype, alpha, mu, nesterov):
    """See [NOTE: int8 momentum sync] in csrc/element_math.h: the CPU kernel is the oracle's math, op for op."""
    from lookahead_fused.backends import reference

    lists = _int8_momentum_lists([0, 1, 255, 256, 257, 1000, 70000], fast_dtype)
    lists[0][5][3] = float("nan")  # a block that is not finite: scale NaN, codes 0
    lists[1][4].copy_(lists[0][4].float())  # fast == slow and ...
    lists[2][4].zero_()  # ... no momentum: a block of zeros (scale 0)
    expected = [[t.clone() for t in tensors] for tensors in lists]
    reference.int8_momentum_sync_(*expected, alpha, mu, nesterov)
    _C.int8_momentum_sync_(*lists, alpha, mu, nesterov)
    for got, want in zip(lists, expected):
        assert all(_same_bits(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("step", [3, 4])
def test_int8_momentum_sync_on_step_runs_on_sync_steps_only(step):
    from lookahead_fused.backends import reference

    lists = _int8_momentum_lists([300, 5], torch.bfloat16)
    before = [[t.clone() for t in tensors] for tensors in lists]
    expected = [[t.clone() for t in tensors] for tensors in lists]
    gate = (torch.tensor(0.4, dtype=torch.float64), torch.tensor(step), 2, 0.9, True)
    reference.int8_momentum_sync_on_step_(*expected, *gate)
    torch.ops.lookahead_fused.int8_momentum_sync_on_step_(*lists, *gate)
    for got, want, old in zip(lists, expected, before):
        assert all(_same_bits(a, b) for a, b in zip(got, want))
        assert all(_same_bits(a, b) for a, b in zip(got, old)) == (step % 2 != 0)


def _bad_int8_momentum_lists():
    """(what is wrong, lists the contract refuses)."""
    def lists():
        return _int8_momentum_lists([300], torch.float32)

    cases = []
    for name, change in [
        ("float64 fast", lambda ls: ls[0].__setitem__(0, ls[0][0].double())),
        ("bfloat16 slow", lambda ls: ls[1].__setitem__(0, ls[1][0].bfloat16())),
        ("uint8 codes", lambda ls: ls[2].__setitem__(0, ls[2][0].to(torch.uint8))),
        ("short scales", lambda ls: ls[3].__setitem__(0, ls[3][0][:1])),
        ("strided scales", lambda ls: ls[3].__setitem__(0, torch.zeros(4)[::2])),
        ("reshaped codes", lambda ls: ls[2].__setitem__(0, ls[2][0].view(3, 100))),
        ("missing scales", lambda ls: ls[3].clear()),
        ("scales inside slow", lambda ls: ls[3].__setitem__(0, ls[1][0][:2])),
    ]:
        bad = lists()
        change(bad)
        cases.append((name, bad))
    return cases


@pytest.mark.parametrize("name,lists", _bad_int8_momentum_lists(), ids=lambda v: v if isinstance(v, str) else "")
def test_int8_momentum_sync_refuses_in_the_python_contracts_words_before_writing(name, lists):
    from lookahead_fused import contract

    with pytest.raises(ValueError) as python:
        contract.check_int8_momentum_lists(*lists)
    before = snapshot([t for tensors in lists for t in tensors])
    calls = (
        lambda: _C.check_int8_momentum_lists(*lists),
        lambda: _C.int8_momentum_sync_(*lists, 0.5, 0.9, True),
        lambda: torch.ops.lookahead_fused.int8_momentum_sync_on_step_(*lists, torch.tensor(0.5), torch.tensor(2), 2,
                                                                      0.9, True),
    )
    for call in calls:
        with pytest.raises(ValueError) as native:
            call()
        assert str(native.value).splitlines()[0] == str(python.value)
    assert all(torch.equal(a, b) for a, b in zip([t for tensors in lists for t in tensors], before))


def _int8_momentum_cuda_lists(fast_dtype, offset):
    """_int8_momentum_lists on the GPU with a block that is not finite and a zero block; `offset`
    elements into their storage, which breaks every tensor's vector alignment."""
    lists = _int8_momentum_lists([0, 1, 255, 256, 257, 1000, 70000], fast_dtype)
    lists[0][5][3] = float("nan")
    lists[1][4].copy_(lists[0][4].float())
    lists[2][4].zero_()
    moved = []
    for tensors in lists:
        shifted = []
        for t in tensors:
            storage = torch.empty(t.numel() + offset, dtype=t.dtype, device="cuda")
            shifted.append(storage[offset:].view(t.shape).copy_(t))
        moved.append(shifted)
    return moved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("fast_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("alpha,mu,nesterov", [(0.5, 0.9, True), (0.3, 0.9, False), (1.0, 0.0, True)])
def test_int8_momentum_sync_on_cuda_matches_the_reference_bit_for_bit(fast_dtype, alpha, mu, nesterov, offset):
    """The CUDA kernel (csrc/cuda/int8_momentum_kernel.cuh) is the oracle's math, op for op, without FMA."""
    from lookahead_fused.backends import reference

    lists = _int8_momentum_cuda_lists(fast_dtype, offset)
    expected = [[t.clone() for t in tensors] for tensors in lists]
    reference.int8_momentum_sync_(*expected, alpha, mu, nesterov)
    _C.int8_momentum_sync_(*lists, alpha, mu, nesterov)
    for got, want in zip(lists, expected):
        assert all(_same_bits(a, b) for a, b in zip(got, want))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("step", [3, 4])
def test_int8_momentum_sync_on_step_on_cuda_runs_on_sync_steps_only(step):
    from lookahead_fused.backends import reference

    lists = _int8_momentum_cuda_lists(torch.bfloat16, 0)
    before = [[t.clone() for t in tensors] for tensors in lists]
    expected = [[t.clone() for t in tensors] for tensors in lists]
    gate = (torch.tensor(0.4, dtype=torch.float64, device="cuda"), torch.tensor(step, device="cuda"), 2, 0.9, True)
    reference.int8_momentum_sync_on_step_(*expected, *gate)
    torch.ops.lookahead_fused.int8_momentum_sync_on_step_(*lists, *gate)
    for got, want, old in zip(lists, expected, before):
        assert all(_same_bits(a, b) for a, b in zip(got, want))
        assert all(_same_bits(a, b) for a, b in zip(got, old)) == (step % 2 != 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_int8_momentum_sync_on_cuda_takes_more_entries_than_one_launch_holds():
    """More entries than one launch's parameter holds.
    see [NOTE: int8 launch table] in csrc/cuda/int8_momentum_kernel.cuh"""
    from lookahead_fused.backends import reference

    lists = [[t.cuda() for t in tensors] for tensors in _int8_momentum_lists([300, 1, 256, 7] * 40, torch.float16)]
    expected = [[t.clone() for t in tensors] for tensors in lists]
    reference.int8_momentum_sync_(*expected, 0.5, 0.9, True)
    _C.int8_momentum_sync_(*lists, 0.5, 0.9, True)
    for got, want in zip(lists, expected):
        assert all(_same_bits(a, b) for a, b in zip(got, want))
