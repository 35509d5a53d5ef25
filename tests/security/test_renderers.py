"""The last line of defence: each language's renderer refuses a name that slipped past its grammar, and no
template renders a value that would start a new line of generated code."""

from __future__ import annotations

import pytest

from aielower import names
from aielower.backends.aie.buildfile import render_build_file
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families.attention import rope_spec
from aielower.backends.aie.kernels import KernelSpec
from aielower.errors import CompileError
from aielower.output import safe_path
from aielower.templating import environment


@pytest.mark.parametrize("bad", ["a b", "x\n}", "@x", "x.y", "", "1x", "ä"])
def test_mlir_identifiers_are_checked(bad):
    with pytest.raises(CompileError, match="cannot be an MLIR symbol"):
        names.mlir_identifier(bad)


@pytest.mark.parametrize("bad", ["k(); system(\"id\")", "k\n#include <x>", "k-1", ""])
def test_cpp_identifiers_are_checked(bad):
    with pytest.raises(CompileError, match="cannot be a C\\+\\+ identifier"):
        names.c_identifier(bad)


def test_kernel_constants_must_be_numbers():
    with pytest.raises(CompileError, match="D must be a positive integer, got '64; system'"):
        KernelSpec("rope", (("d", "64; system"), ("tr", 16)))
    assert rope_spec(64, 16).symbol == "rope_d64_tr16"


@pytest.mark.parametrize("design", ["$(shell id)", "a:b", "x y", "%.o", "a#b", "../d"])
def test_makefile_targets_are_checked(design):
    with pytest.raises(CompileError, match="refusing to write a file named"):
        render_build_file([rope_spec(64, 16)], [(design, "rope_d64_tr16")], NPU2)


@pytest.mark.parametrize("parts", [("..",), ("a", "..", "b"), ("/etc/passwd",), (".hidden",), ("a\\b",), ("",)])
def test_safe_path_refuses_escapes(tmp_path, parts):
    with pytest.raises(CompileError):
        safe_path(tmp_path, *parts)


def test_safe_path_refuses_a_symlink_out_of_the_root(tmp_path):
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(CompileError, match="outside"):
        safe_path(tmp_path, "link", "x")


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\u2028b", "a\x00b", "a\x1b[2Jb"])
def test_templates_refuse_multi_line_values(text):
    template = environment("aielower.backends.aie").from_string("// {{ value }}\n")
    with pytest.raises(CompileError, match="refusing to render"):
        template.render(value=text)


@pytest.mark.parametrize("text", ["a\nb", "x\\", "*/ y", "\u00e9\u2028"])
def test_comments_keep_one_printable_line(text):
    out = names.comment_text(text)
    assert out.isprintable() and out.isascii() and "\\" not in out and "\n" not in out


def test_python_strings_are_ascii_literals():
    literal = names.python_string("a'\n\"\u2028\\")
    assert literal.isascii() and "\n" not in literal and eval(literal) == "a'\n\"\u2028\\"
