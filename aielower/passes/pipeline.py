"""Pipeline strings: ``fuse-norm,quantize-linear{bits=4 group=128},dce``.

Parsing builds every pass (checking names and options) before anything runs.
"""

from __future__ import annotations

import re

from aielower.errors import CompileError
from aielower.passes.base import ModulePass, all_passes, lookup_pass

_ITEM = re.compile(r"[ \t]*([A-Za-z0-9_-]+)[ \t]*(?:\{([^{}]*)\})?[ \t]*(?:,|$)", re.ASCII)
_OPTION = re.compile(r"([A-Za-z0-9_-]+)=(\S+)", re.ASCII)
MAX_PIPELINE_CHARS = 10_000


def available_passes() -> str:
    lines = []
    registry = all_passes()
    for name in sorted(registry):
        cls = registry[name]
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        opts = " ".join(f"{o.name}={o.default}" for o in cls.options if not o.detail)
        lines.append(f"  {name}{'{' + opts + '}' if opts else ''}  {doc}")
        lines += [f"      {o.describe()}" for o in cls.options if o.detail]
    return "\n".join(lines)


def parse_pipeline(text: str) -> list[ModulePass]:
    """Build the passes of a pipeline string, or raise CompileError saying what is valid."""
    passes: list[ModulePass] = []
    pos = 0
    if len(text) > MAX_PIPELINE_CHARS:
        raise CompileError(f"pipeline of {len(text):,} characters: at most {MAX_PIPELINE_CHARS:,}")
    text = text.strip()
    if not text:
        return passes
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise CompileError(
                f"bad pipeline {text[:200]!r} at character {pos + 1}: expected 'pass-name' or 'pass-name{{key=value ...}}' "
                "separated by commas"
            )
        name, body = m.group(1), m.group(2)
        cls = lookup_pass(name)
        if cls is None:
            raise CompileError(f"unknown pass {name[:80]!r} in pipeline; available passes:\n{available_passes()}")
        values = {}
        for token in (body or "").split():
            om = _OPTION.fullmatch(token)
            if not om:
                raise CompileError(f"pass '{name}': bad option {token[:80]!r}, expected key=value")
            if om.group(1) in values:
                raise CompileError(f"pass '{name}': option '{om.group(1)}' is given twice")
            values[om.group(1)] = om.group(2)
        passes.append(cls.from_options(**values))
        pos = m.end()
    return passes
