"""Names that come from outside, and how every generator renders them.

aielower turns names it did not choose (a model's directory or file name, Hugging Face parameter names, IR text,
plan attributes, pipeline strings) into Python, C++, MLIR, Makefiles and file names, and then runs or compiles what
it generated. One rule applies everywhere:

1. **Where a name is created it must match its grammar** (:data:`GRAMMARS`, ASCII only, matched whole with
   ``re.fullmatch``); :func:`check` raises an :class:`~aielower.errors.IRError` that names the name and says what is
   allowed. Names aielower derives itself from outside text (a module named after a directory) are made to fit with
   :func:`derive_module_name` instead.
2. **Where a name is rendered it goes through the renderer of the target language** below, which checks it again (a
   name that reached a generator without passing the grammar is a bug, reported as such), quotes or mangles it.
3. **Free text is never rendered raw**: comments go through :func:`comment_text`, which keeps printable ASCII and
   replaces everything else (newlines, control characters, backslashes that would continue a comment line) by ``?``.

The grammars (all ASCII):

==========  ===================================================  =========================================
kind        pattern                                              examples
==========  ===================================================  =========================================
module      ``[A-Za-z0-9_][A-Za-z0-9_.+-]*``, at most 128        ``qwen1.5-7b-chat``, ``Qwen2.5-0.5B``
function    ``[A-Za-z_][A-Za-z0-9_]*``, at most 64               ``prefill``, ``decode``
value       ``[A-Za-z0-9_]+``, at most 128                       ``input_ids``, ``k_cache_0``, ``17``
weight      dot-separated ``[A-Za-z0-9_-]+`` segments, at most   ``model.layers.0.self_attn.q_proj.weight``
            256, not starting with ``-``
plan        ``[a-z][a-z0-9_]*``, at most 64                      ``gemv``, ``add_rms_norm``, ``kv``
==========  ===================================================  =========================================

This module is a leaf: it imports nothing of aielower but the error classes.
"""

from __future__ import annotations

import builtins
import keyword
import re

from aielower.errors import CompileError, IRError

GRAMMARS: dict[str, tuple[re.Pattern, int, str]] = {
    "module": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*", re.ASCII), 128,
               "letters, digits, '_', '.', '+' and '-', starting with a letter, digit or '_'"),
    "function": (re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII), 64,
                 "letters, digits and '_', starting with a letter or '_'"),
    "value": (re.compile(r"[A-Za-z0-9_]+", re.ASCII), 128, "letters, digits and '_'"),
    "weight": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*", re.ASCII), 256,
               "segments of letters, digits, '_' and '-' joined by single dots, starting with a letter, digit or '_'"),
    "plan": (re.compile(r"[a-z][a-z0-9_]*", re.ASCII), 64,
             "lowercase letters, digits and '_', starting with a letter"),
}


def is_valid(kind: str, name: object) -> bool:
    """True when ``name`` is a ``str`` that matches the grammar of ``kind``."""
    pattern, limit, _ = GRAMMARS[kind]
    return isinstance(name, str) and len(name) <= limit and pattern.fullmatch(name) is not None


def describe(kind: str) -> str:
    """What the grammar of ``kind`` allows, in words."""
    _, limit, words = GRAMMARS[kind]
    return f"{words}; at most {limit} characters"


def check(kind: str, name: object, what: str | None = None, error: type[Exception] = IRError) -> str:
    """``name`` if it matches the grammar of ``kind``, else ``error`` naming it and what is allowed."""
    if is_valid(kind, name):
        return name  # type: ignore[return-value]
    shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:77]) + "..."
    raise error(f"{what or kind + ' name'} {shown} is not allowed: use {describe(kind)}")


def derive_module_name(text: str, fallback: str = "model") -> str:
    """A module name made from outside text (a directory or file name): characters outside the module grammar
    become '_', the result is cut to 128 characters. Used for names the user did not spell out."""
    cleaned = re.sub(r"[^A-Za-z0-9_.+\-]", "_", text, flags=re.ASCII)
    cleaned = cleaned.lstrip(".+-")[:128]
    return cleaned if is_valid("module", cleaned) else fallback


# ---------------------------------------------------------------------------------------------- free text

_COMMENT_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # printable ASCII except backslash


def comment_text(text: object, limit: int = 200) -> str:
    """Free text made safe for a one-line comment in Python, C++, MLIR or a Makefile: printable ASCII only (no
    newline, no backslash, which would continue a C++ or Makefile comment onto the next line), at most ``limit``
    characters."""
    out = _COMMENT_UNSAFE.sub("?", str(text))
    return out if len(out) <= limit else out[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- Python

# Names the generated Python modules define or use at module level; a generated identifier never equals one.
PYTHON_RESERVED = frozenset({"np", "W", "DTYPES", "NUMERICS", "FUNCTIONS", "bf16", "aielower"})
_PYTHON_RESERVED_PREFIXES = re.compile(r"(v\d+|(nn|tensor|quant|fused|sym|arg|fn|impl|op|x)_.*)", re.ASCII)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def python_identifier_is_free(name: str, reserved: frozenset[str] | set[str] = frozenset()) -> bool:
    """True when ``name`` can be a Python identifier of generated code as it is: ASCII, not a keyword, not a
    builtin, not a name the generated module defines, not of the forms generated code uses for its own names."""
    return (_IDENTIFIER.fullmatch(name) is not None and not keyword.iskeyword(name)
            and not keyword.issoftkeyword(name) and not hasattr(builtins, name)
            and name not in PYTHON_RESERVED and name not in reserved
            and _PYTHON_RESERVED_PREFIXES.fullmatch(name) is None)


def python_identifier(name: str, prefix: str, taken: set[str] | None = None) -> str:
    """A Python identifier for a function or argument named ``name`` (already grammar-checked): ``name`` itself
    when :func:`python_identifier_is_free`, else ``prefix`` + ``_`` + name (``fn_lambda``, ``arg_bf16``), made
    unique against ``taken`` (which is updated)."""
    taken = set() if taken is None else taken
    if not _IDENTIFIER.fullmatch(name) and not re.fullmatch(r"[A-Za-z0-9_]+", name, re.ASCII):
        raise CompileError(f"internal: {name!r} reached the Python generator without passing the name grammar")
    ident = name if python_identifier_is_free(name, taken) else f"{prefix}_{name}"
    base, n = ident, 1
    while ident in taken:
        n += 1
        ident = f"{base}_{n}"
    taken.add(ident)
    return ident


def python_string(text: str) -> str:
    """A Python string literal of ``text`` in ASCII (every other character escaped): safe anywhere an expression is."""
    return ascii(str(text))


# ---------------------------------------------------------------------------------------------- C++, MLIR, make

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}", re.ASCII)
_MLIR_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}", re.ASCII)
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]{0,249}", re.ASCII)


def c_identifier(name: str) -> str:
    """``name`` as a C/C++ identifier (a kernel symbol): checked, never altered."""
    if not isinstance(name, str) or not _C_IDENTIFIER.fullmatch(name):
        raise CompileError(f"internal: {name!r} cannot be a C++ identifier (letters, digits, '_')")
    return name


def mlir_identifier(name: str) -> str:
    """``name`` as the body of an MLIR symbol (``@name``) or SSA name (``%name``): checked, never altered."""
    if not isinstance(name, str) or not _MLIR_IDENTIFIER.fullmatch(name):
        raise CompileError(f"internal: {name!r} cannot be an MLIR symbol or value name (letters, digits, '_')")
    return name


def file_name(name: str) -> str:
    """``name`` as one path component aielower writes: letters, digits, '_', '.', '+', '-', not starting with a
    dot (so never ``..`` or a hidden file), no separator; checked, never altered."""
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or ".." in name:
        raise CompileError(f"refusing to write a file named {name!r}: file names are letters, digits, '_', '.', "
                           "'+' and '-', not starting with '.', without '..'")
    return name


def make_target(name: str) -> str:
    """``name`` as part of a Makefile target or variable value: the file-name alphabet (no '$', '%', ':', '#',
    '=', space or backslash, which make would interpret)."""
    return file_name(name)


__all__ = [
    "GRAMMARS",
    "PYTHON_RESERVED",
    "c_identifier",
    "check",
    "comment_text",
    "derive_module_name",
    "describe",
    "file_name",
    "is_valid",
    "make_target",
    "mlir_identifier",
    "python_identifier",
    "python_identifier_is_free",
    "python_string",
]
