"""The functions a generated module calls, and the import lines that bring them in.

Generated code does not define what ops compute: it imports each op's ``@impl`` (:mod:`aielower.interp`) from where
it is defined, ``aielower.interp.ops`` for the built-in ops and the user's own module for an op defined outside
aielower. An implementation's ``__module__`` and ``__qualname__`` are names from outside, so before they reach
generated Python they must be a dotted path of ASCII identifiers and a module-level name that really resolves, in the
already imported module, to the registered function; anything else is refused with a CompileError naming the op.
Nothing is imported here: only modules already in ``sys.modules`` are looked at.

Each op kind is called by its kernel name, the op name with ``_`` for ``.`` (``nn_add``, ``fused_attention``); an op
outside the built-in dialects gets ``impl_`` in front (``impl_my_linear_add``), so that it never meets a name the
generated module gives its functions or arguments (see :mod:`aielower.names`). The linear part of a ``LinearLike``
op is :func:`aielower.interp.ops.linear`, called ``nn_linear`` (as ``quant_linear`` for ``quant.linear``).
"""

from __future__ import annotations

import keyword
import re
import sys
from dataclasses import dataclass, field
from typing import Callable

from aielower.errors import CompileError
from aielower.interp import implementation_of
from aielower.interp import ops as builtin
from aielower.ir.core import LinearLike

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_OP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+", re.ASCII)
_BUILTIN_KERNEL = re.compile(r"(nn|tensor|quant|fused)_[A-Za-z0-9_]+", re.ASCII)  # reserved by aielower.names


def kernel_name(op_name: str) -> str:
    """``nn.add`` -> ``nn_add``: the name generated code calls an op kind by."""
    return op_name.replace(".", "_")


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and _IDENTIFIER.fullmatch(name) is not None and not keyword.iskeyword(name)


def _shown(name: object) -> str:
    text = ascii(name)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Import:
    module: str  # dotted module path, checked
    name: str  # the function's name in it, checked
    alias: str  # what the generated module calls it

    @property
    def module_parts(self) -> list[str]:
        return self.module.split(".")


@dataclass
class Kernels:
    """Op -> the name generated code calls, collecting the imports on the way."""

    imports: dict[str, Import] = field(default_factory=dict)  # alias -> import

    def call(self, op) -> str:
        """The name to call for ``op``: its ``@impl`` (for a LinearLike op, its epilogue; see :meth:`linear`)."""
        return self._bind(op, implementation_of(op), _alias(op))

    def linear(self, op: LinearLike) -> str:
        """The name to call for the linear part of ``op``."""
        if self.plain_linear(op):
            return self._bind(op, builtin.linear, _alias(op))
        return self._bind(op, builtin.linear, "nn_linear")

    @staticmethod
    def plain_linear(op) -> bool:
        """``op`` is a LinearLike op without epilogue: one call of the linear is all of it."""
        return isinstance(op, LinearLike) and implementation_of(op) is builtin.no_epilogue

    @property
    def names(self) -> set[str]:
        return set(self.imports)

    def grouped(self) -> list[tuple[Import, ...]]:
        """The imports by module (aielower's first), each sorted by alias: one ``from`` statement each."""
        by_module: dict[str, list[Import]] = {}
        for imp in self.imports.values():
            by_module.setdefault(imp.module, []).append(imp)
        order = sorted(by_module, key=lambda m: (not m.startswith("aielower."), m))
        return [tuple(sorted(by_module[m], key=lambda i: i.alias)) for m in order]

    def _bind(self, op, fn: Callable, alias: str) -> str:
        module, name = _importable(op, fn)
        base, n = alias, 1
        while alias in self.imports and (self.imports[alias].module, self.imports[alias].name) != (module, name):
            n += 1
            alias = f"{base}_{n}"
        self.imports[alias] = Import(module, name, alias)
        return alias


def _alias(op) -> str:
    """``nn_add`` for nn.add; ``impl_my_linear_add`` for my.linear_add (outside the names aielower.names reserves
    for generated code, a kernel name could equal an argument or function name)."""
    alias = kernel_name(_check_op_name(op.name))
    return alias if _BUILTIN_KERNEL.fullmatch(alias) else f"impl_{alias}"


def _check_op_name(name: object) -> str:
    if not isinstance(name, str) or not _OP_NAME.fullmatch(name):
        raise CompileError(f"op name {_shown(name)} cannot be called from generated Python: op names are "
                           "dot-separated identifiers (letters, digits and '_'), e.g. 'my.linear_add'")
    return name


def _importable(op, fn: Callable) -> tuple[str, str]:
    """(module, name) from which generated code imports ``fn``, checked; a CompileError otherwise."""
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    where = f"the implementation of {_check_op_name(op.name)} ({_shown(module_name)}, {_shown(qualname)})"
    if not isinstance(module_name, str) or not all(is_identifier(p) for p in module_name.split(".")):
        raise CompileError(f"{where} cannot be imported by generated code: its module must be a dotted path of "
                           "identifiers (letters, digits and '_')")
    if not is_identifier(qualname):
        raise CompileError(f"{where} cannot be imported by generated code: define it at module level (the "
                           "generated module imports it by its module and name)")
    module = sys.modules.get(module_name)
    if module is None or getattr(module, qualname, None) is not fn:
        raise CompileError(f"{where} cannot be imported by generated code: {module_name}.{qualname} is not the "
                           "registered function (define it at module level under its own name)")
    return module_name, qualname


__all__ = ["Import", "Kernels", "is_identifier", "kernel_name"]
