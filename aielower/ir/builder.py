"""Builds functions op by op: ``b.insert(op)`` appends at the insertion point."""

from __future__ import annotations

from aielower.ir.core import Op, Value
from aielower.ir.module import Function


class Builder:
    """Inserts ops into a function at a movable point (the end by default)."""

    def __init__(self, fn: Function, index: int | None = None):
        self.fn = fn
        self.index = len(fn.ops) if index is None else index

    def insert(self, op: Op) -> Op:
        self.fn.ops.insert(self.index, op)
        self.index += 1
        return op

    def add(self, op: Op) -> Value:
        """Insert a single-result op and return its result."""
        return self.insert(op).result

    def set_insertion_point_before(self, op: Op) -> None:
        self.index = self.fn.ops.index(op)

    def set_insertion_point_after(self, op: Op) -> None:
        self.index = self.fn.ops.index(op) + 1
