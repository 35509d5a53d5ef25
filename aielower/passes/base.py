"""Passes: frozen dataclasses whose fields are their options, registered by name.

    @register_pass("quantize-linear")
    class QuantizeLinear(ModulePass):
        '''Lower every linear-like op to quant.linear.'''

        bits: int = option(4, "bits per weight", choices=(2, 4, 8))
        group: int = option(128, "input channels per scale", minimum=1)

        def run(self, module):
            ... self.bits, self.group ...
            return rewrites

Options are declared once: the field's type and default are the option's, ``option()`` adds the help text and the
checks; pipeline text (``quantize-linear{bits=4 group=64}``) and keyword arguments go through the same conversion
and checks. ``run`` returns how many rewrites it made (or None), which ``PassManager`` reports.
"""
from __future__ import annotations

import math
import re
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aielower.errors import CompileError
from aielower.ir import Module

PASS_REGISTRY: dict[str, type["ModulePass"]] = {}
# Passes that live with a backend (target-specific, TVM style) and the module registering them: imported when a
# pipeline names one, so `passes` itself never imports a backend.
BACKEND_PASS_MODULES = {"plan-aie-tiling": "aielower.backends.aie.tiling",
                        "fuse-aie-epilogues": "aielower.backends.aie.epilogues"}


def lookup_pass(name: str) -> "type[ModulePass] | None":
    """The registered pass ``name``, importing the backend module that provides it if needed."""
    if name not in PASS_REGISTRY and name in BACKEND_PASS_MODULES:
        import importlib

        importlib.import_module(BACKEND_PASS_MODULES[name])
    return PASS_REGISTRY.get(name)


def all_passes() -> dict[str, type["ModulePass"]]:
    """Every pass, including the backends' (imported for the listing)."""
    for name in BACKEND_PASS_MODULES:
        lookup_pass(name)
    return dict(PASS_REGISTRY)


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


class PipelineWarning(UserWarning):
    """A pass left work undone at the end of the pipeline (see :meth:`ModulePass.leftovers`)."""


_OPTION_KEY = "aielower.option"


def option(default: Any, help: str = "", *, choices: tuple | None = None, minimum: int | None = None,
           detail: bool = False) -> Any:
    """A pass option: a dataclass field with its help text and checks (``detail``: listed on its own line by
    ``aielower passes``)."""
    return field(default=default, metadata={_OPTION_KEY: dict(help=help, choices=choices, minimum=minimum,
                                                               detail=detail)})


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _declared_options(cls) -> tuple[Option, ...]:
    hints = {}
    for klass in reversed(cls.__mro__):
        hints.update(getattr(klass, "__annotations__", {}))
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_OPTION_KEY)
        if meta is None:
            continue
        hint = hints.get(f.name, f.type)
        kind = _TYPES.get(hint, hint) if isinstance(hint, str) else hint
        if kind not in (int, float, bool, str):
            raise CompileError(f"pass {cls.__name__}: option '{f.name}' must be int, float, bool or str, got {hint!r}")
        found.append(Option(f.name, kind, f.default, **meta))
    return tuple(found)


@dataclass(frozen=True)
class ModulePass:
    """Base class: a frozen dataclass whose fields are the pass's options (see the module docs); implement ``run``."""

    name: ClassVar[str] = "<unregistered>"
    options: ClassVar[tuple[Option, ...]] = ()

    def __post_init__(self) -> None:
        for o in self.options:
            object.__setattr__(self, o.name, o.convert(getattr(self, o.name), self.name))
        self.validate()

    def validate(self) -> None:
        """Checks across options; raise CompileError."""

    @classmethod
    def from_options(cls, **values: Any) -> "ModulePass":
        """The pass with these options (values may be pipeline text), or a CompileError listing the valid ones."""
        known = {o.name for o in cls.options}
        unknown = sorted(set(values) - known)
        if unknown:
            valid = ", ".join(o.describe() for o in cls.options) or "this pass takes no options"
            raise CompileError(f"pass '{cls.name}' has no option {', '.join(map(repr, unknown))}; valid: {valid}")
        return cls(**values)

    @property
    def values(self) -> dict[str, Any]:
        return {o.name: getattr(self, o.name) for o in self.options}

    def run(self, module: Module) -> int | None:
        """Transform ``module`` in place; return the number of rewrites (ops replaced, erased or annotated)."""
        raise NotImplementedError

    def leftovers(self, module: Module) -> list[str]:
        """After the whole pipeline ran: what this pass was asked to do but is still undone (a linear-like op left
        dense after quantize-linear, e.g. because a later fusion made it), one message per op. The PassManager
        warns with them (:class:`PipelineWarning`)."""
        return []

    def spec(self) -> str:
        """The pipeline text for this pass with its options."""
        changed = [f"{k}={_fmt(v)}" for k, v in self.values.items() if v != ""]  # "" is "unset" (no text form)
        return self.name + ("{" + " ".join(changed) + "}" if changed else "")

    def __repr__(self) -> str:
        return f"<pass {self.spec()}>"


def _fmt(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def pass_class(cls: type) -> type:
    """Make ``cls`` a frozen dataclass pass (its option fields declared) without registering it: for base classes
    that share options (``register_pass`` does this itself)."""
    if "__dataclass_params__" not in cls.__dict__:
        cls = dataclass(frozen=True, repr=False)(cls)
    cls.options = _declared_options(cls)
    return cls


def register_pass(name: str):
    """Class decorator: make ``cls`` a frozen dataclass pass and register it under ``name`` for pipeline strings."""

    def register(cls: type[ModulePass]) -> type[ModulePass]:
        if not (isinstance(cls, type) and issubclass(cls, ModulePass)):
            raise CompileError(f"@register_pass({name!r}) needs a ModulePass subclass, got {cls!r}")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", name, re.ASCII):
            raise CompileError(f"pass name {name[:80]!r}: use lowercase letters, digits and '-' (at most 64)")
        known = PASS_REGISTRY.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise CompileError(f"pass {name!r} is registered twice ({known.__module__}.{known.__qualname__} and "
                               f"{cls.__module__}.{cls.__qualname__})")
        cls = pass_class(cls)
        cls.name = name
        PASS_REGISTRY[name] = cls
        return cls

    return register
