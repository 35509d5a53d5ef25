"""IR text and pipeline strings from someone else: limits on numbers and nesting, ASCII digits only, every error a
ParseError / CompileError with a location or the offending option, never a bare ValueError or RecursionError."""

from __future__ import annotations

import pytest

import aielower
from aielower.errors import CompileError, ParseError
from aielower.passes import parse_pipeline

ARABIC_INDIC_THREE = "\u0663"


def _fn(arg_type: str, attrs: str = "") -> str:
    return (f"func @f(%x: {arg_type}) -> {arg_type} {{\n"
            f"  %y = nn.mul_scalar %x {{value = 2{attrs}}} : {arg_type}\n  return %y\n}}\n")


@pytest.mark.parametrize("text, message", [
    (_fn("tensor<" + "9" * 5000 + "xf32>"), r"<string>:1:20: error: a dim 9{24}\.\.\. is too large"),
    (_fn("tensor<99999999999999999999xf32>"), r"a dim 99999999999999999999 is too large"),
    (_fn(f"tensor<{ARABIC_INDIC_THREE}xf32>"), r"<string>:1:20: error: expected a dim or an element type"),
    (_fn("tensor<3xf32>", ", x.y = " + "[" * 5000 + "]" * 5000), r"nested deeper than 32 levels"),
    (_fn("tensor<3xf32>", ", x.y = " + "1" * 100), r"number 1{24}\.\.\. has too many digits"),
    (_fn("tensor<3xf32>", ", x.y = 1e999"), r"number 1e999 overflows a float"),
    (_fn("tensor<3xf32>", ', x.y = "' + "a" * 5000 + '"'), r"string of 5,002 characters"),
    (_fn("tensor<3xf32>", ', x.y = "\x1b[2J"'), r"bad string escape"),
    ("weight @w : qtensor<4x" + ARABIC_INDIC_THREE + "2xu4, group=16>\n", r"expected 'x' after a dim|expected a dim"),
    ("weight @w : qtensor<4x32xu4, group=" + "9" * 30 + ">\n", r"a group size 9{24}\.\.\. is too large"),
    ("weight @../w : tensor<3xf32>\n", r"weight name @\.\. is not allowed"),
    ("weight @a..b : tensor<3xf32>\n", r"weight name @a\.\.b is not allowed"),
])
def test_hostile_ir_text_is_a_parse_error_with_a_location(text, message):
    with pytest.raises(ParseError, match=message) as info:
        aielower.parse(text)
    assert info.value.line >= 1 and info.value.col >= 1


_ALIASED = ("#a = [1, 2]\n\nfunc @f(%x: tensor<3xf32>) -> tensor<3xf32> {\n"
            "  %y = nn.mul_scalar %x {value = 2, x.y = #a} : tensor<3xf32>\n  return %y\n}\n")


@pytest.mark.parametrize("text, message", [
    (_ALIASED.replace("x.y = #a", "x.y = #b"), r"<string>:4:43: error: attribute alias #b is not defined"),
    ("#b = 1\n" + _ALIASED.replace("#a = [1, 2]", "#a = [#b]"), r"an attribute alias definition cannot use another"),
    ("#a = 1\n" + _ALIASED, r"<string>:2:1: error: attribute alias #a is defined twice"),
    (_ALIASED.replace("\nfunc", "weight @w : tensor<3xf32>\n#c = 1\nfunc"), r"aliases \(#name = \.\.\.\) come before"),
    (_ALIASED.replace("#a = ", "# = "), r"expected an attribute alias name after '#'"),
])
def test_bad_attribute_aliases_are_parse_errors(text, message):
    with pytest.raises(ParseError, match=message):
        aielower.parse(text)
    assert str(aielower.parse(_ALIASED)).count("x.y = [1, 2]") == 1


def test_aliases_cannot_expand_a_small_text_into_a_huge_module(monkeypatch):
    import aielower.ir.parser as parser

    monkeypatch.setattr(parser, "MAX_ALIAS_EXPANSION", 100)
    monkeypatch.setattr(parser, "ALIAS_EXPANSION_PER_CHAR", 0)
    uses = "".join(f"  %y{i} = nn.mul_scalar %x {{value = 2, x.y = #a}} : tensor<3xf32>\n" for i in range(30))
    text = "#a = [1, 2]\n\nfunc @f(%x: tensor<3xf32>) -> tensor<3xf32> {\n" + uses + "  return %x\n}\n"
    with pytest.raises(ParseError, match="attribute aliases expand to more than 100 characters"):
        aielower.parse(text)


def test_parse_error_shows_a_window_of_a_huge_line_without_control_characters():
    text = _fn("tensor<3xf32>", ', x.y = "ok"') .replace("%y = ", "%y = \x1b[31m" + " " * 3000)
    with pytest.raises(ParseError) as info:
        aielower.parse(text)
    shown = str(info.value).splitlines()[1]
    assert len(shown) < 120 and "\x1b" not in str(info.value)


@pytest.mark.parametrize("pipeline, message", [
    (f"quantize-linear{{group={ARABIC_INDIC_THREE}2}}", r"option 'group' expects int, got '\u0663"),
    ("quantize-linear{group=1_000}", r"option 'group' expects int, got '1_000'"),
    ("quantize-linear{group=" + "9" * 5000 + "}", r"expects int, got '9{40}' \(ASCII digits, at most 18\)"),
    ("quantize-linear{group=32 group=64}", r"option 'group' is given twice"),
    ("fuse-norm{{}}", r"bad pipeline 'fuse-norm\{\{\}\}' at character 1"),
    ("fuse-norm," * 2000, r"pipeline of 20,000 characters: at most 10,000"),
    ("quantize-linear{bits= 4}", r"bad option 'bits=', expected key=value"),
    ("quantize-linear{method=awq calib=a\x07b}", r"option 'calib' has a control character"),
    ("quantize-linear{method=rtn{}}", r"bad pipeline"),
    ("os.system", r"bad pipeline|unknown pass"),
])
def test_hostile_pipeline_strings_are_compile_errors(pipeline, message):
    with pytest.raises(CompileError, match=message):
        parse_pipeline(pipeline)
