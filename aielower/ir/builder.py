"""Builds functions op by op: ``b.insert(op)`` appends at the insertion point."""

from __future__ import annotations

from aielower.errors import IRError
from aielower.ir.core import Op, Value
from aielower.ir.module import Function


class Builder:
    """Inserts ops into a function at a movable point (the end by default), in constant time per op."""

    def __init__(self, fn: Function, index: int | None = None):
        self.fn = fn
        self.before: Op | None = None if index is None or index >= len(fn.ops) else fn.ops[index]

    def insert(self, op: Op) -> Op:
        self.fn.ops.insert_before(self.before, op)
        return op

    def add(self, op: Op) -> Value:
        """Insert a single-result op and return its result."""
        return self.insert(op).result

    def set_insertion_point_before(self, op: Op) -> None:
        self.before = op

    def set_insertion_point_after(self, op: Op) -> None:
        if op not in self.fn.ops:
            raise IRError(f"cannot insert after {op.name}: it is not in @{self.fn.name}")
        self.before = op._next  # None after the last op: the end

    def set_insertion_point_to_end(self) -> None:
        self.before = None
