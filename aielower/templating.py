"""The jinja2 environments every generator renders through (NumPy code, AIE kernels, designs, build file, report).

Each environment is strict (an undefined value is an error, never empty text) and guarded: every ``{{ ... }}``
expression is finalized by :func:`_single_line`, which refuses a string holding a newline or any other
non-printable character. A name or note that slipped past its grammar therefore cannot start a new line of
generated Python, C++, MLIR or make and turn into code of its own; text that is meant to span lines comes only from
the templates themselves (or from macros, whose output the guard lets through). The filters give each language its
one renderer of names (:mod:`aielower.names`):

    {{ name | py_ident }}      (already mangled by the generator; checked)
    {{ text | py_str }}        a Python string literal
    {{ text | comment }}       free text for a one-line comment (any language)
    {{ name | c_ident }}       a C++ identifier (kernel symbols)
    {{ name | mlir_ident }}    the body of an MLIR @symbol or %value
    {{ name | file_name }}     a file name aielower writes (also make targets)
"""

from __future__ import annotations

import keyword
import re

import jinja2
import markupsafe

from aielower import names
from aielower.errors import CompileError


def _single_line(value):
    if isinstance(value, markupsafe.Markup):  # a macro's output: text of the template itself
        return value
    if isinstance(value, str) and not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise CompileError(f"internal: refusing to render {value[:60]!r} into generated code: it holds the "
                           f"non-printable character {bad!r} (names and notes are single-line)")
    return value


def _py_ident(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name, re.ASCII) or keyword.iskeyword(name):
        raise CompileError(f"internal: {name!r} reached a Python template without being mangled to an identifier")
    return name


def environment(package: str, folder: str = "templates") -> jinja2.Environment:
    """A guarded environment loading templates from ``package/folder``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_single_line,
        autoescape=False,
    )
    env.filters.update(
        py_ident=_py_ident,
        py_str=names.python_string,
        comment=names.comment_text,
        c_ident=names.c_identifier,
        mlir_ident=names.mlir_identifier,
        file_name=names.file_name,
    )
    return env


__all__ = ["environment"]
