"""The op list (see [NOTE: op list] in lookahead_fused/op_list.py) agrees with csrc/op_list.h, with the
schemas the dispatcher holds, and with every backend: each backend has one callable per op, and
the module backends take the op's arguments by the list's names, in its order."""

import inspect

import pytest
import torch

from lookahead_fused import available_backends
from lookahead_fused.backends import resolve
from lookahead_fused.op_list import OP_NAMES, OPS, Argument, OpSpec

_C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")


def test_the_cpp_list_is_the_python_list():
    assert [(op.name, op.schema()) for op in OPS] == [tuple(entry) for entry in _C.build_info()["ops"]]


@pytest.mark.parametrize("op", OPS, ids=OP_NAMES)
def test_the_registered_schema_is_the_lists(op):
    assert str(getattr(torch.ops.lookahead_fused, op.name).default._schema) == f"lookahead_fused::{op.name}{op.schema()}"


def test_written_lists_take_alias_sets_in_order():
    op = OpSpec("x_", (Argument("a", "tensors", True), Argument("b", "tensors"), Argument("c", "tensors", True),
                       Argument("k", "int")))  # fmt: skip
    assert op.schema() == "(Tensor(a!)[] a, Tensor[] b, Tensor(b!)[] c, int k) -> ()"
    assert op.written == ("a", "c")
    assert op.normalize(((1,), (2,), (3,), 4.0)) == [[1], [2], [3], 4]


@pytest.mark.parametrize("backend", ["reference", "foreach", "cpu", "triton"])
def test_every_backend_has_every_op(backend):
    if backend not in available_backends():
        pytest.skip(f"the {backend!r} backend is unavailable here")
    module = resolve(backend, "cpu" if backend != "triton" or not torch.cuda.is_available() else "cuda")
    for op in OPS:
        assert callable(getattr(module, op.name, None)), f"{backend} lacks {op.name}"
        if inspect.ismodule(module):
            names = tuple(inspect.signature(getattr(module, op.name)).parameters)
            assert names == op.argument_names, f"{backend}.{op.name} takes {names}, the list says {op.argument_names}"


def test_the_triton_custom_ops_have_the_lists_schemas():
    if "triton" not in available_backends():
        pytest.skip("the Triton backend is unavailable here")
    import lookahead_fused.backends.triton  # noqa: F401  (registers the triton_* ops)

    for op in OPS:
        schema = str(getattr(torch.ops.lookahead_fused, f"triton_{op.name}").default._schema)
        assert schema == f"lookahead_fused::triton_{op.name}{op.schema()}"
