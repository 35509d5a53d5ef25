"""Passes: classes with a registered name and typed options.

    @register_pass("quantize-linear")
    class QuantizeLinear(ModulePass):
        '''Lower nn.linear to quant.linear.'''
        options = (
            Option("bits", int, 4, "bits per weight", choices=(2, 4, 8)),
            Option("group", int, 128, "input channels per scale"),
        )

        def run(self, module):
            ... self.bits, self.group ...
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from aielower.errors import CompileError
from aielower.ir import Module

PASS_REGISTRY: dict[str, type["ModulePass"]] = {}


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple | None = None
    minimum: int | None = None
    detail: bool = False  # listed on its own line by `aielower passes`, not in the pass's header

    def convert(self, value: Any, pass_name: str) -> Any:
        """Check (and, from pipeline text, convert) a value for this option."""
        if isinstance(value, str) and self.type is not str:
            text = value
            # ASCII spellings only: Python's int() and float() also take other scripts' digits, '_' separators and
            # surrounding spaces, which a pipeline string must not smuggle in.
            pattern = {bool: r"true|false|1|0", int: r"[-+]?[0-9]{1,18}",
                       float: r"[-+]?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})(?:[eE][-+]?[0-9]{1,3})?"}
            if self.type not in pattern or not re.fullmatch(pattern[self.type], text, re.ASCII):
                raise CompileError(
                    f"pass '{pass_name}': option '{self.name}' expects {self.type.__name__}, got {text[:40]!r}"
                    + (" (ASCII digits, at most 18)" if self.type in (int, float) else "")
                )
            value = (text in ("true", "1")) if self.type is bool else self.type(text)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is float and isinstance(value, float) and not math.isfinite(value):
            raise CompileError(f"pass '{pass_name}': option '{self.name}' must be finite, got {value!r}")
        if self.type is str and isinstance(value, str) and not value.isprintable():
            raise CompileError(f"pass '{pass_name}': option '{self.name}' has a control character: {value[:40]!r}")
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise CompileError(f"pass '{pass_name}': option '{self.name}' expects {self.type.__name__}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise CompileError(f"pass '{pass_name}': option '{self.name}' must be >= {self.minimum}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise CompileError(
                f"pass '{pass_name}': option '{self.name}' must be one of {', '.join(map(str, self.choices))}, got {value!r}"
            )
        return value

    def describe(self) -> str:
        choices = f" ({'|'.join(map(str, self.choices))})" if self.choices else ""
        default = _fmt(self.default) if self.default != "" else "<unset>"
        return f"{self.name}={default}{choices}: {self.help}"


class ModulePass:
    """Base class: set ``name`` (via @register_pass) and ``options``; implement ``run``."""

    name: ClassVar[str] = "<unregistered>"
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, **values: Any):
        known = {o.name: o for o in self.options}
        unknown = sorted(set(values) - set(known))
        if unknown:
            valid = ", ".join(o.describe() for o in self.options) or "this pass takes no options"
            raise CompileError(f"pass '{self.name}' has no option {', '.join(map(repr, unknown))}; valid: {valid}")
        self.values = {o.name: o.convert(values.get(o.name, o.default), self.name) for o in self.options}

    def __getattr__(self, item: str) -> Any:
        values = self.__dict__.get("values", {})
        if item in values:
            return values[item]
        raise AttributeError(item)

    def run(self, module: Module) -> None:
        raise NotImplementedError

    def spec(self) -> str:
        """The pipeline text for this pass with its options."""
        changed = [f"{k}={_fmt(v)}" for k, v in self.values.items() if v != ""]  # "" is "unset" (no text form)
        return self.name + ("{" + " ".join(changed) + "}" if changed else "")

    def __repr__(self) -> str:
        return f"<pass {self.spec()}>"


def _fmt(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def register_pass(name: str):
    """Class decorator registering a pass under ``name`` for pipeline strings."""

    def register(cls: type[ModulePass]) -> type[ModulePass]:
        if name in PASS_REGISTRY and PASS_REGISTRY[name] is not cls:
            raise CompileError(f"pass {name!r} is registered twice")
        cls.name = name
        PASS_REGISTRY[name] = cls
        return cls

    return register
