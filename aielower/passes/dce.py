"""dce: erase ops whose results nobody reads, then weights nobody reads."""

from __future__ import annotations

from aielower.ir import Module
from aielower.passes.base import ModulePass, register_pass


@register_pass("dce")
class DeadCodeElimination(ModulePass):
    """Erase unused ops and weights."""

    def run(self, module: Module) -> int:
        erased = 0
        for fn in module.functions.values():
            for op in reversed(fn.ops):  # users come after producers: one backward sweep suffices
                if not any(r.users for r in op.results):
                    op.drop_operands()
                    fn.ops.remove(op)
                    erased += 1
        module.remove_unused_weights()
        return erased
