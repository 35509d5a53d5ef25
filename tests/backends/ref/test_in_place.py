"""In-place writes (KV caches) never change memory that is still read."""

from __future__ import annotations

import numpy as np

from aielower.backends.ref import RefCompiledModel, generate
from aielower.ir import parse

VIEW_THEN_WRITE = """\
func @f(%c: tensor<2x3xf32>, %i: tensor<1xi64>, %s: tensor<3x1xf32>) -> (tensor<3x2xf32>, tensor<2x3xf32>) {
  %t = tensor.transpose %c {dim0 = 0, dim1 = 1} : tensor<3x2xf32>
  %n = tensor.index_copy %t, %i, %s {dim = 1} : tensor<3x2xf32>
  %u = nn.add %c, %c : tensor<2x3xf32>
  return %n, %u
}
"""

BROADCAST_THEN_WRITE = """\
func @f(%c: tensor<1x3xf32>, %i: tensor<1xi64>, %s: tensor<3x1xf32>) -> tensor<3x3xf32> {
  %e = tensor.expand %c {shape = [3, 3]} : tensor<3x3xf32>
  %n = tensor.index_copy %e, %i, %s {dim = 1} : tensor<3x3xf32>
  return %n
}
"""

ARGUMENT_WRITE = """\
func @f(%c: tensor<2x3xf32>, %i: tensor<1xi64>, %s: tensor<2x1xf32>) -> tensor<2x3xf32> {
  %n = tensor.index_copy %c, %i, %s {dim = 1} : tensor<2x3xf32>
  return %n
}
"""


def compiled(text):
    module = parse(text)
    return RefCompiledModel(module, generate(module))


def test_write_into_a_view_copies_when_the_base_is_still_read():
    cm = compiled(VIEW_THEN_WRITE)
    c = np.zeros((2, 3), np.float32)
    n, u = cm.run("f", c, np.array([0]), np.ones((3, 1), np.float32))
    np.testing.assert_array_equal(u, np.zeros((2, 3)))
    np.testing.assert_array_equal(c, np.zeros((2, 3)))  # the caller's array is untouched
    np.testing.assert_array_equal(n[:, 0], np.ones(3))


def test_write_into_a_broadcast_copies():
    cm = compiled(BROADCAST_THEN_WRITE)
    n = cm.run("f", np.zeros((1, 3), np.float32), np.array([2]), np.ones((3, 1), np.float32))
    np.testing.assert_array_equal(n, [[0, 0, 1]] * 3)


def test_an_argument_whose_old_value_is_dead_is_written_in_place():
    cm = compiled(ARGUMENT_WRITE)
    assert "tensor_index_copy(c, i, s, dim=1)" in cm.source  # no copy: decode's cache update
    c = np.zeros((2, 3), np.float32)
    n = cm.run("f", c, np.array([1]), np.ones((2, 1), np.float32))
    assert n is c or np.shares_memory(n, c)
