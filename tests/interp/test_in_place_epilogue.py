"""A LinearLike op whose epilogue writes into an operand: generated code passes a copy while the old value is still
read, as the interpreter does (they used to disagree)."""

from __future__ import annotations

import numpy as np

from aielower.backends.ref import generate
from aielower.backends.ref.runtime import RefCompiledModel
from aielower.interp import Interpreter
from aielower.ir import parse
from tests.interp import linear_store_ext  # noqa: F401  (registers test.linear_store)

IR = """\
weight @w : tensor<3x2xf32>
func @f(%x: tensor<1x2xf32>, %buf: tensor<1x3xf32>) -> (tensor<1x3xf32>, tensor<1x3xf32>) {
  %y, %new = test.linear_store %x, @w, %buf : tensor<1x3xf32>, tensor<1x3xf32>
  %old = nn.add %buf, %buf : tensor<1x3xf32>
  return %new, %old
}
"""


def test_generated_code_copies_an_operand_the_epilogue_writes_while_it_is_still_read():
    module = parse(IR)
    module.weights["w"].data = np.ones((3, 2), np.float32)
    x, buf = np.ones((1, 2), np.float32), np.zeros((1, 3), np.float32)
    compiled = RefCompiledModel(module, generate(module))
    new, old = compiled.run("f", x, buf.copy())
    np.testing.assert_array_equal(new, [[2, 2, 2]])
    np.testing.assert_array_equal(old, [[0, 0, 0]])  # the old buf, not the written one
    interpreted = Interpreter(module, "f")(x, buf.copy())
    np.testing.assert_array_equal(interpreted[0], new)
    np.testing.assert_array_equal(interpreted[1], old)
