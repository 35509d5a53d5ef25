"""Module verifier: SSA order, use lists, weights, types, and each op's own ``verify()``."""

from __future__ import annotations

from aielower.errors import IRError, VerifyError
from aielower.ir.core import Argument, OpResult, Weight
from aielower.ir.module import Module


def verify(module: Module) -> None:
    """Raise VerifyError naming the function, the op (index and name) and the problem."""
    for wname, w in module.weights.items():
        if w.name != wname:
            raise VerifyError(f"weight store key @{wname} holds weight @{w.name}")
    for fn in module.functions.values():
        defined: set[int] = {id(a) for a in fn.args}
        for i, op in enumerate(fn.ops):
            where = f"@{fn.name}, op #{i} ({op.name})"
            for v in op.operands:
                if isinstance(v, Weight):
                    if module.weights.get(v.name) is not v:
                        raise VerifyError(f"{where}: uses weight @{v.name}, which is not in the module's weight store")
                elif isinstance(v, (Argument, OpResult)):
                    if id(v) not in defined:
                        raise VerifyError(f"{where}: uses a value that is not defined before it ({v.type})")
                else:
                    raise VerifyError(f"{where}: operand of unknown kind {type(v).__name__}")
                if op not in v.users:
                    raise VerifyError(f"{where}: missing from the use list of one of its operands")
            try:
                computed = op.result_types()
                op.verify()
            except IRError as e:
                raise VerifyError(f"{where}: {e}") from None
            got = [r.type for r in op.results]
            if computed != got:
                raise VerifyError(
                    f"{where}: result types {', '.join(map(str, got))} differ from what the op computes "
                    f"({', '.join(map(str, computed))}); an operand changed without a rewrite"
                )
            for r in op.results:
                if r.op is not op:
                    raise VerifyError(f"{where}: result {r.index} points at another op")
                defined.add(id(r))
        if not fn.results:
            raise VerifyError(f"@{fn.name}: returns nothing")
        for v in fn.results:
            if not isinstance(v, Weight) and id(v) not in defined:
                raise VerifyError(f"@{fn.name}: returns a value that is not defined in it ({v.type})")
