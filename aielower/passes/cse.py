"""cse: ops of the same kind, operands and attributes compute the same values; keep the first."""

from __future__ import annotations

from aielower.ir import Module
from aielower.passes.base import ModulePass, register_pass


def _key(op):
    attrs = tuple(sorted((k, repr(v)) for k, v in op.attributes.items()))
    return (op.name, tuple(id(v) for v in op.operands), attrs)


@register_pass("cse")
class CommonSubexpressionElimination(ModulePass):
    """Merge identical ops (all ops here are pure)."""

    def run(self, module: Module) -> None:
        for fn in module.functions.values():
            seen = {}
            kept = []
            for op in fn.ops:
                key = _key(op)
                first = seen.get(key)
                if first is None:
                    seen[key] = op
                    kept.append(op)
                    continue
                for old, new in zip(op.results, first.results):
                    old.replace_all_uses_with(new)
                op.drop_operands()
            fn.ops[:] = kept
