"""Entry roles are explicit per op (see [NOTE: entry dtypes] in csrc/table.h): the plan takes each
entry's pair code from the tensors the op names as fast and as state, never from the depth."""

import pytest
import torch

_C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")


def pair_codes(lists: list, fast: int) -> list[int]:
    """The pair code of every entry of a plan built for `lists` with `fast` fast-dtype lists."""
    depth = len(lists)
    words = _C.table_words(lists, fast).tolist()
    return [words[t * (depth + 2) + depth + 1] & 0xFF for t in range(len(lists[0]))]


def code_of(fast: str, state: str) -> int:
    return {(f, s): code for code, f, s in _C.build_info()["dtype_pairs"]}[(fast, state)]


def bf16(count):
    return [torch.randn(16, dtype=torch.bfloat16) for _ in range(count)]


def test_a_four_deep_entry_with_bf16_params_and_fp32_slow_weights():
    # a Lion-like update: param, grad and momentum in the param's dtype, then the slow weight
    params, grads, momenta, slow = bf16(3), bf16(3), bf16(3), [torch.randn(16) for _ in range(3)]
    assert pair_codes([params, grads, momenta, slow], fast=3) == [code_of("bfloat16", "float32")] * 3


def test_adamw_entries_read_the_slow_dtype_after_the_four_fast_tensors():
    lists = [bf16(2), bf16(2), bf16(2), bf16(2), [torch.randn(16) for _ in range(2)]]
    assert pair_codes(lists, fast=4) == [code_of("bfloat16", "float32")] * 2


def test_an_entry_of_fast_tensors_only_takes_the_code_of_its_fast_dtype_twice():
    # AdamW's step alone: param, grad, exp_avg, exp_avg_sq, no state tensor
    assert pair_codes([bf16(2) for _ in range(4)], fast=4) == [code_of("bfloat16", "bfloat16")] * 2
    assert pair_codes([[torch.randn(16)] for _ in range(4)], fast=4) == [code_of("float32", "float32")]


def test_roles_that_do_not_fit_the_lists_are_refused():
    lists = [bf16(1), bf16(1)]
    for fast in (0, 3):
        with pytest.raises(RuntimeError, match="2 lists for an op whose entries hold 2 tensors"):
            _C.table_words(lists, fast)
