"""The ops of a function: a doubly linked list with order keys, so that rewriting costs O(1) per change.

Inserting before or after an op, erasing an op, asking whether an op is still in the function and which of two ops
comes first are all constant time (the list keeps each op's neighbours and an order key; keys are renumbered, in
linear time, only when two neighbours leave no room between them). Iteration tolerates erasing the op just yielded.
Indexing (``ops[i]``, ``ops.index(op)``) builds a snapshot list once per change and is meant for tests and
occasional use, not for loops over a whole function. Iterating while removing the op just yielded is fine; removing
its neighbours too is an IRError (iterate over ``list(fn.ops)`` for that).
"""

from __future__ import annotations

from typing import Iterable, Iterator

from aielower.errors import IRError

_GAP = 1 << 20  # room between the order keys of consecutive ops after a renumbering


class OpList:
    """Sequence-like container of a function's ops (see the module docs). Each op in it has ``parent`` set to
    the owning list, ``_prev`` / ``_next`` and ``_order``."""

    def __init__(self, ops: Iterable = ()):
        self._head = None
        self._tail = None
        self._len = 0
        self._snapshot: list | None = None
        self.extend(ops)

    # -- reading --------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator:
        op = self._head
        while op is not None:
            nxt = op._next
            yield op
            if op.parent is self:
                op = op._next
            else:  # the op just yielded was removed: go on from its old neighbour, if that is still here
                self._check_still_here(nxt)
                op = nxt

    def __reversed__(self) -> Iterator:
        op = self._tail
        while op is not None:
            prev = op._prev
            yield op
            if op.parent is not self:
                self._check_still_here(prev)
            op = prev if op.parent is not self else op._prev

    def _check_still_here(self, op) -> None:
        if op is not None and op.parent is not self:
            raise IRError("ops next to the one being visited were removed while iterating over the function's ops; "
                          "iterate over list(fn.ops) to change more than the current op")

    def __contains__(self, op) -> bool:
        return getattr(op, "parent", None) is self

    def _list(self) -> list:
        if self._snapshot is None:
            self._snapshot = list(self)
        return self._snapshot

    def __getitem__(self, index):
        return self._list()[index]

    def index(self, op) -> int:
        if op not in self:
            raise ValueError(f"{op!r} is not in this function")
        return self._list().index(op)

    def first(self):
        return self._head

    def last(self):
        return self._tail

    def before(self, a, b) -> bool:
        """True when op ``a`` comes before op ``b`` (both in this list)."""
        return a._order < b._order

    def order_of(self, op) -> int:
        """A key that sorts ops of this list in program order (``min(ops, key=fn.ops.order_of)``)."""
        if op not in self:
            raise IRError(f"{op.name} is not in this function")
        return op._order

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, OpList)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"OpList({list(self)!r})"

    # -- changing -------------------------------------------------------------------------------------------

    def _adopt(self, op) -> None:
        if getattr(op, "parent", None) is not None:
            raise IRError(f"{op.name} is already in a function; erase it there first")
        op.parent = self
        self._len += 1
        self._snapshot = None

    def append(self, op) -> None:
        self._adopt(op)
        op._prev, op._next = self._tail, None
        op._order = (self._tail._order + _GAP) if self._tail is not None else 0
        if self._tail is not None:
            self._tail._next = op
        else:
            self._head = op
        self._tail = op

    def extend(self, ops: Iterable) -> None:
        for op in ops:
            self.append(op)

    def insert_before(self, anchor, op) -> None:
        """Insert ``op`` right before ``anchor`` (None: at the end)."""
        if anchor is None:
            self.append(op)
            return
        if anchor not in self:
            raise IRError(f"cannot insert before {anchor.name}: it is not in this function")
        prev = anchor._prev
        if prev is not None and anchor._order - prev._order < 2:
            self._renumber()
        self._adopt(op)
        prev = anchor._prev
        op._prev, op._next = prev, anchor
        op._order = (prev._order + anchor._order) // 2 if prev is not None else anchor._order - _GAP
        anchor._prev = op
        if prev is not None:
            prev._next = op
        else:
            self._head = op

    def insert_after(self, anchor, op) -> None:
        """Insert ``op`` right after ``anchor``."""
        if anchor not in self:
            raise IRError(f"cannot insert after {anchor.name}: it is not in this function")
        if anchor._next is None:
            self.append(op)
        else:
            self.insert_before(anchor._next, op)

    def remove(self, op) -> None:
        """Take ``op`` out of the list (its ``parent`` becomes None)."""
        if op not in self:
            raise IRError(f"{op.name} is not in this function")
        prev, nxt = op._prev, op._next
        if prev is not None:
            prev._next = nxt
        else:
            self._head = nxt
        if nxt is not None:
            nxt._prev = prev
        else:
            self._tail = prev
        op.parent = None
        op._prev = op._next = None
        self._len -= 1
        self._snapshot = None

    def insert(self, index: int, op) -> None:
        """``list.insert`` semantics (position-based: for occasional use)."""
        items = self._list()
        self.insert_before(items[index] if index < len(items) else None, op)

    def replace_all(self, ops: Iterable) -> None:
        """Make the list exactly ``ops`` (in that order); ops left out are no longer in the function."""
        ops = list(ops)
        for op in list(self):
            op.parent = None
            op._prev = op._next = None
        self._head = self._tail = None
        self._len = 0
        self._snapshot = None
        self.extend(ops)

    def reverse(self) -> None:
        self.replace_all(list(reversed(self)))

    def __setitem__(self, index, ops) -> None:
        if not (isinstance(index, slice) and index == slice(None)):
            raise IRError("assign a function's ops as a whole: fn.ops[:] = ops")
        self.replace_all(ops)

    def _renumber(self) -> None:
        order = 0
        for op in self:
            op._order = order
            order += _GAP


__all__ = ["OpList"]
