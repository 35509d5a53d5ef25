"""cse: ops of the same kind, operands and attributes compute the same values; keep the first."""

from __future__ import annotations

from aielower.ir import Module
from aielower.ir.core import Commutative, WritesInPlace
from aielower.passes.base import ModulePass, register_pass


def _key(op):
    attrs = tuple(sorted((k, repr(v)) for k, v in op.attributes.items()))
    operands = tuple(id(v) for v in op.operands)
    if op.has_trait(Commutative):  # a + b and b + a compute the same
        operands = tuple(sorted(operands))
    return (op.name, operands, attrs)


@register_pass("cse")
class CommonSubexpressionElimination(ModulePass):
    """Merge identical ops (commutative operands in either order; in-place writes are kept)."""

    def run(self, module: Module) -> int:
        merged = 0
        for fn in module.functions.values():
            seen = {}
            for op in fn.ops:
                if op.aliased_results() and op.has_trait(WritesInPlace):
                    continue  # writes into its operand: two of them are two writes
                key = _key(op)
                first = seen.get(key)
                if first is None:
                    seen[key] = op
                    continue
                for old, new in zip(op.results, first.results):
                    old.replace_all_uses_with(new)
                op.drop_operands()
                fn.ops.remove(op)
                merged += 1
        return merged
