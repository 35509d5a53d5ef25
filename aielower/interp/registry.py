"""Registering what an op computes: ``@impl(nn.Add)`` on a NumPy function.

The implementation is stored on the op class itself (``cls.implementation``), so there is no table to keep in step
and an op class defined outside aielower gets its semantics the same way::

    @op("my.scaled_add")
    class ScaledAdd(Op):
        lhs = operand()
        rhs = operand()
        alpha = attr("float")
        ...

    @impl(ScaledAdd)
    def my_scaled_add(lhs, rhs, alpha):          # operands positional, attributes as keywords
        return lhs + alpha * rhs

For a :class:`~aielower.ir.core.LinearLike` op the function is the epilogue: it receives ``y = x @ W^T + bias``
first, then the other operands (``def linear_add(y, residual): return y + residual``); whoever runs the op
computes the linear (dense, dequantized or on the NPU).

The function must be importable by its module and name (defined at module level): the reference backend's
generated module imports it from there. :func:`implementation_of` finds it for an op (or a subclass of a
registered class).
"""

from __future__ import annotations

from typing import Callable

from aielower.errors import IRError
from aielower.ir.core import Op


def impl(op_class: type) -> Callable[[Callable], Callable]:
    """Decorator: ``fn`` computes ``op_class`` (operands positional, attributes as keywords)."""

    if not (isinstance(op_class, type) and issubclass(op_class, Op) and op_class.name != Op.name):
        raise IRError(f"@impl takes an op class registered with @op, got {op_class!r}")

    def register(fn: Callable) -> Callable:
        if "implementation" in vars(op_class):
            existing = vars(op_class)["implementation"]
            raise IRError(f"{op_class.name} already has an implementation ({existing.__module__}.{existing.__name__})")
        op_class.implementation = staticmethod(fn)
        return fn

    return register


def implementation_of(op) -> Callable:
    """The function computing ``op`` (an op or an op class); an IRError naming the op if none is registered."""
    cls = op if isinstance(op, type) else type(op)
    fn = getattr(cls, "implementation", None)
    if fn is None:
        raise IRError(f"no implementation of {cls.name} ({cls.__module__}.{cls.__qualname__}): register one with "
                      f"@aielower.interp.impl({cls.__name__}) on a NumPy function of its operands and attributes")
    return fn
