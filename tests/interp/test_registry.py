"""Every op's semantics is one registered function; an op without one is refused with a message that says how."""

from __future__ import annotations

import numpy as np
import pytest

import aielower
from aielower.backends.ref import generate
from aielower.errors import IRError
from aielower.interp import Interpreter, impl, implementation_of
from aielower.interp import ops as builtin
from aielower.ir import OP_REGISTRY, parse
from aielower.ir.core import Op, op, operand, tensor_type


@op("interp_test.no_impl")
class NoImpl(Op):
    """An op nobody registered an implementation for."""

    x = operand()

    def result_types(self):
        return [tensor_type(self.x, self.name, "x")]


NO_IMPL = """\
func @f(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %y = interp_test.no_impl %x : tensor<2x3xf32>
  return %y
}
"""


def builtin_ops():
    return sorted((name, cls) for name, cls in OP_REGISTRY.items() if cls.__module__.startswith("aielower."))


def test_every_builtin_op_has_an_implementation_in_interp_ops():
    ops = builtin_ops()
    assert len(ops) >= 36
    for name, cls in ops:
        fn = implementation_of(cls)
        assert fn.__module__ == "aielower.interp.ops", name


def test_plain_linears_have_no_epilogue():
    from aielower.ir.dialects import nn, quant

    assert implementation_of(nn.Linear) is builtin.no_epilogue
    assert implementation_of(quant.QLinear) is builtin.no_epilogue


def test_a_missing_implementation_names_the_op_and_how_to_register_one():
    module = parse(NO_IMPL)
    message = r"no implementation of interp_test.no_impl .*register one with @aielower.interp.impl\(NoImpl\)"
    with pytest.raises(IRError, match=message):
        Interpreter(module, "f")
    with pytest.raises(IRError, match=message):
        generate(module)
    with pytest.raises(IRError, match=message):
        aielower.compile(module, pipeline="")


def test_registering_twice_or_a_non_op_is_refused():
    from aielower.ir.dialects import nn

    with pytest.raises(IRError, match="nn.add already has an implementation"):
        impl(nn.Add)(np.add)
    with pytest.raises(IRError, match="@impl takes an op class registered with @op"):
        impl(int)
