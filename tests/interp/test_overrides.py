"""Per-op overrides: by op class (``overrides=``), or with the hooks a subclass replaces (as the AIE emulator does)."""

from __future__ import annotations

import numpy as np
import pytest

from aielower.interp import Interpreter
from aielower.interp import ops as builtin
from aielower.ir import parse
from aielower.ir.core import LinearLike
from aielower.ir.dialects import nn

TEXT = """\
weight @w : tensor<4x3xf32>
func @f(%x: tensor<?bx3xf32>) -> (tensor<?bx4xf32>, tensor<?bx4xf32>) {
  %y = nn.linear %x, @w : tensor<?bx4xf32>
  %s = nn.silu %y : tensor<?bx4xf32>
  %z = nn.add %s, %y : tensor<?bx4xf32>
  %r = tensor.reshape %z {shape = [?b, 2, 2]} : tensor<?bx2x2xf32>
  %t = tensor.reshape %r {shape = [?b, 4]} : tensor<?bx4xf32>
  return %t, %y
}
"""


@pytest.fixture
def module():
    module = parse(TEXT)
    module.weights["w"].data = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    return module


X = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=np.float32)


def test_an_override_replaces_every_op_of_its_class(module):
    seen = []

    def add(lhs, rhs):
        seen.append((lhs.shape, rhs.shape))
        return lhs - rhs

    plain_t, plain_y = Interpreter(module, "f")(X)
    t, y = Interpreter(module, "f", overrides={nn.Add: add})(X)
    np.testing.assert_array_equal(y, plain_y)
    np.testing.assert_allclose(t, builtin.nn_silu(y) - y)
    assert seen == [((2, 4), (2, 4))]
    assert not np.array_equal(t, plain_t)


def test_an_override_of_a_linear_like_class_gets_x_weight_and_bias(module):
    inputs = []

    def collect(x, weight, bias, **attributes):
        inputs.append(x)
        return builtin.linear(x, weight, bias)

    expected = Interpreter(module, "f")(X)
    got = Interpreter(module, "f", overrides={LinearLike: collect})(X)  # a base class matches every subclass
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert len(inputs) == 1 and inputs[0] is not None and np.array_equal(inputs[0], X)


def test_attributes_with_symbols_arrive_as_sizes(module):
    shapes = []

    class Recording(Interpreter):
        def evaluator(self, op):
            fn = super().evaluator(op)
            if op.name == "tensor.reshape":
                def record(*args, **attributes):
                    shapes.append(attributes["shape"])
                    return fn(*args, **attributes)
                return record
            return fn

    Recording(module, "f")(X)
    Recording(module, "f")(np.concatenate([X, X]))
    assert shapes == [(2, 2, 2), (2, 4), (4, 2, 2), (4, 4)]


def test_subclass_hooks_replace_the_linear_and_the_weights(module):
    class Doubled(Interpreter):
        def weight(self, w):
            return 2 * w.data

        def linear(self, op):
            return lambda x, weight, bias: builtin.linear(x, weight, bias) + 1

    _, y = Doubled(module, "f")(X)
    np.testing.assert_allclose(y, X @ (2 * module.weights["w"].data).T + 1, rtol=1e-6)


def test_a_device_resident_argument_reaches_its_op_as_it_is(module):
    """A value kept on a device (the AIE runtime's KV cache) is not turned into an array on the way in; any other
    argument is an array (a list is converted)."""

    class OnDevice:
        device_resident = True
        shape, ndim = (2, 3), 2

    seen = []

    def linear(x, weight, bias=None):
        seen.append(x)
        return np.zeros((2, 4), np.float32)

    handle = OnDevice()
    Interpreter(module, "f", overrides={nn.Linear: linear})(handle)
    assert seen[0] is handle
    Interpreter(module, "f", overrides={nn.Linear: linear})(X.tolist())
    assert isinstance(seen[1], np.ndarray)
