"""Names that reach generated Python (the ref backend's NumPy module, also loaded by the AIE emulator): module names
from directories, files and ``name=``, function and argument names from IR text. Each case either compiles and runs
without running the payload, or is refused with an error that names the name."""

from __future__ import annotations

import numpy as np
import pytest

import aielower
from aielower.backends.ref.codegen import generate
from aielower.errors import CompileError, IRError, ParseError
from tests.conftest import tiny_qwen2
from tests.security.conftest import PY_INJECTION, PY_PAYLOAD, save_tiny_model_dir

IDS = np.array([[1, 2, 3]])


def _elementwise_ir(function: str = "f", arg: str = "x") -> str:
    return (f"func @{function}(%{arg}: tensor<2x3xf32>) -> tensor<2x3xf32> {{\n"
            f"  %y = nn.add %{arg}, %{arg} : tensor<2x3xf32>\n"
            f"  %z = nn.mul_scalar %y {{value = 0.5}} : tensor<2x3xf32>\n"
            "  return %z\n}\n")


def _run_ref(text: str, function: str, numerics: str = "fp32"):
    module = aielower.parse(text)
    compiled = aielower.compile(module, pipeline="", numerics=numerics)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    return compiled.run(function, x)


# --- module names -------------------------------------------------------------------------------------------------


def test_model_directory_named_with_python_is_compiled_without_running_it(sandbox):
    directory = save_tiny_model_dir(sandbox.root / PY_INJECTION)
    cm = aielower.compile(str(directory), functions=("prefill",))
    assert cm(IDS).shape == (1, 3, 128)
    assert "\n" not in cm.ir.name and aielower.names.is_valid("module", cm.ir.name)
    assert all(line.strip() != PY_PAYLOAD for line in cm.source.splitlines())  # never a line of its own
    sandbox.check()


def test_load_model_then_compile_names_the_module_safely(sandbox):
    directory = save_tiny_model_dir(sandbox.root / PY_INJECTION)
    model = aielower.load_model(directory)  # config.name_or_path is the hostile path
    cm = aielower.compile(model, functions=("prefill",))
    assert aielower.names.is_valid("module", cm.ir.name)
    cm(IDS)
    sandbox.check()


def test_explicit_module_name_with_python_is_refused(sandbox):
    with pytest.raises(CompileError, match=r"module name .q\\n__import__.*is not allowed: use letters"):
        aielower.compile(tiny_qwen2(num_hidden_layers=1), name=PY_INJECTION, functions=("prefill",))
    sandbox.check()


def test_a_module_name_that_bypassed_the_grammar_is_still_rendered_as_a_comment(sandbox):
    module = aielower.parse(_elementwise_ir())
    module.name = PY_INJECTION  # as if a bug skipped the check: the renderer still keeps it in one comment line
    source = generate(module)
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    sandbox.check()


# --- function names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", ["lambda", "np", "W", "nn_add", "FUNCTIONS", "float", "print", "bf16", "v0"])
def test_function_names_python_uses_are_mangled_and_still_callable(function):
    out = _run_ref(_elementwise_ir(function=function), function)
    assert np.allclose(out, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_dotted_function_name_is_a_parse_error_with_location():
    with pytest.raises(ParseError, match=r"<string>:1:7: error: function name @os.system is not allowed"):
        aielower.parse(_elementwise_ir(function="os.system"))


def test_function_name_with_python_is_refused_by_the_ir():
    from aielower.ir import Function

    with pytest.raises(IRError, match=r"function name .q\\n__import__"):
        Function(PY_INJECTION)


# --- argument names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arg", ["bf16", "float", "np", "W", "lambda", "v0", "sym_s", "FUNCTIONS", "nn_add"])
@pytest.mark.parametrize("numerics", ["fp32", "aie"])
def test_argument_names_python_uses_are_mangled(arg, numerics):
    out = _run_ref(_elementwise_ir(arg=arg), "f", numerics)
    assert np.allclose(out, np.arange(6, dtype=np.float32).reshape(2, 3), atol=1e-2)


def test_value_name_with_a_dot_is_a_parse_error():
    with pytest.raises(ParseError, match=r"value name %a\.b is not allowed"):
        aielower.parse(_elementwise_ir(arg="a.b"))


def test_string_attribute_with_python_stays_a_string(sandbox):
    """A str attribute holding code reaches generated Python only as a string literal."""
    from aielower.backends.ref.codegen import py_literal

    literal = py_literal(PY_INJECTION)
    assert eval(literal) == PY_INJECTION and "\n" not in literal
    sandbox.check()
