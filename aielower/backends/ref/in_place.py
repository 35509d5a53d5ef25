"""Where generated code may let an implementation write into an operand without copying it first.

Ops declare what may share memory with what through traits (aielower.ir.core): ``ViewOf`` (every result may be a
view of an operand: reshapes, slices, broadcasts) and ``WritesInPlace`` (a result is an operand written in place:
KV-cache updates). Copying a whole KV cache per layer and step would dominate decode, so code generation passes
the cache itself whenever nothing reads its old contents afterwards.
"""

from __future__ import annotations

from aielower.ir import Function, Value, Weight
from aielower.ir.core import ViewOf, WritesInPlace


def written_operands(op) -> tuple[str, ...]:
    """Names of the operands ``op`` writes into (its results alias them)."""
    trait = op.get_trait(WritesInPlace)
    return trait.written_operands(op) if trait else ()


class InPlacePlanner:
    """Decides where a kernel may write into an operand without a copy.

    Values that may share memory (views, and results of in-place writes) have one root
    buffer. Writing into ``v`` at op ``i`` is safe when ``v`` is no view (a function
    argument, or the result of a kernel that returns fresh or written-in-place memory)
    and no other value of the same buffer is read after op ``i`` or returned. Function
    arguments may be written: ``decode`` updates the caches it is given (the runtime
    passes caches it owns). Views may also be read-only (broadcasts), so they are never
    written into.
    """

    def __init__(self, fn: Function):
        self.root: dict[int, int] = {id(a): id(a) for a in fn.args}
        self.views: set[int] = set()
        for op in fn.ops:
            aliased = op.aliased_results()
            is_view = op.has_trait(ViewOf)
            for i, r in enumerate(op.results):
                source = aliased.get(i)
                base = op.operand_group(source)[0] if source else r
                self.root[id(r)] = self.root.get(id(base), id(base))
                if is_view:
                    self.views.add(id(r))
        self.members: dict[int, list[Value]] = {}
        for v in list(fn.args) + [r for op in fn.ops for r in op.results]:
            self.members.setdefault(self.root[id(v)], []).append(v)
        self.last_read: dict[int, float] = {}
        for i, op in enumerate(fn.ops):
            for v in op.operands:
                self.last_read[id(v)] = i
        for v in fn.results:
            self.last_read[id(v)] = float("inf")

    def safe(self, op, index: int, v: Value) -> bool:
        if isinstance(v, Weight) or id(v) in self.views or op.operands.count(v) > 1:
            return False
        own = {id(r) for r in op.results}
        return all(id(w) in own or self.last_read.get(id(w), -1) <= index for w in self.members[self.root[id(v)]])


__all__ = ["InPlacePlanner", "written_operands"]
