"""An implementation's module and name reach generated Python as an import line: names from outside (issue 11).

A function's ``__module__`` and ``__qualname__`` can be set to anything, and an op class can carry any name. Each
case is refused with a CompileError that names the op, before any code is generated or run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import aielower
from aielower.backends.ref import generate
from aielower.errors import CompileError
from aielower.interp import impl
from aielower.ir import parse
from aielower.ir.core import Op, op, operand, tensor_type
from tests.security.conftest import MARKER, PY_INJECTION, PY_PAYLOAD


@op("interp_test.twice")
class Twice(Op):
    x = operand()

    def result_types(self):
        return [tensor_type(self.x, self.name, "x")]


@impl(Twice)
def twice(x):
    return x + x


TEXT = """\
func @f(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %y = interp_test.twice %x : tensor<2x3xf32>
  return %y
}
"""


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / MARKER).exists() and not Path(MARKER).exists(), "the payload ran"


def test_an_out_of_tree_implementation_is_imported_by_name(here):
    cm = aielower.compile(parse(TEXT), pipeline="")
    assert "from tests.interp.test_hostile_impl_names import twice as impl_interp_test_twice\n" in cm.source
    np.testing.assert_array_equal(cm.run("f", np.ones((2, 3), np.float32)), np.full((2, 3), 2.0))


@pytest.mark.parametrize("attribute, value, why", [
    ("__qualname__", PY_INJECTION, "define it at module level"),
    ("__qualname__", "outer.<locals>.twice", "define it at module level"),
    ("__qualname__", "system", "is not the registered function"),
    ("__module__", PY_INJECTION, "dotted path of identifiers"),
    ("__module__", f"os; {PY_PAYLOAD}", "dotted path of identifiers"),
    ("__module__", "os", "is not the registered function"),
    ("__module__", "no.such.module", "is not the registered function"),
])
def test_a_hostile_implementation_name_is_refused(here, monkeypatch, attribute, value, why):
    monkeypatch.setattr(twice, attribute, value)
    with pytest.raises(CompileError, match=rf"implementation of interp_test.twice .*{why}"):
        generate(parse(TEXT))


@pytest.mark.parametrize("name", [PY_INJECTION, "x.y(); import os", "nodot", "a.b\u00e9"])
def test_a_hostile_op_name_is_refused(here, monkeypatch, name):
    module = parse(TEXT)
    monkeypatch.setattr(Twice, "name", name)  # as if registered under that name
    with pytest.raises(CompileError, match="cannot be called from generated Python"):
        generate(module)
