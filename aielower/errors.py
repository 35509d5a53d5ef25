"""Every error aielower raises on purpose derives from :class:`AielowerError`.

Messages follow one shape: what went wrong, where, and what to do about it.
"""

from __future__ import annotations


class AielowerError(Exception):
    """Base class of aielower's own errors; the CLI prints these without a traceback."""


class IRError(AielowerError):
    """An IR object was built or used wrongly (bad type, bad operand, unknown op)."""


class VerifyError(IRError):
    """The verifier found an inconsistent module."""


class ParseError(IRError):
    """IR text could not be read; the message names ``file:line:col``, shows the line and a caret."""

    WINDOW = 100  # characters of the source line shown around the column

    def __init__(self, message: str, *, filename: str, line: int, col: int, source_line: str):
        self.filename, self.line, self.col, self.reason = filename, line, col, message
        start = max(0, col - 1 - self.WINDOW // 2)
        shown = source_line[start : start + self.WINDOW]
        # IR text may come from anyone: no control characters (terminal escapes) reach the message.
        shown = "".join(c if c.isprintable() else "?" for c in shown)
        prefix, suffix = ("..." if start else ""), ("..." if start + self.WINDOW < len(source_line) else "")
        caret = " " * (len(prefix) + col - 1 - start) + "^"
        super().__init__(f"{filename}:{line}:{col}: error: {message}\n  {prefix}{shown}{suffix}\n  {caret}")


class ConversionError(AielowerError):
    """The frontend met a torch graph node it cannot turn into IR."""


class ModelError(AielowerError):
    """The model cannot be loaded or is not a supported Qwen2-family model."""


class CompileError(AielowerError):
    """A compile option or target is not valid."""
