"""The op list of a function: constant-time insert, erase, membership and order, and list-like reading."""

from __future__ import annotations

import random

import pytest

from aielower.errors import IRError
from aielower.ir.oplist import OpList


class FakeOp:
    def __init__(self, n):
        self.name = f"op{n}"
        self.n = n
        self.parent = None

    def __repr__(self):
        return self.name


def test_insert_erase_and_order_keep_a_plain_list_in_step():
    rng = random.Random(0)
    ops = OpList()
    mirror = []
    counter = 0
    for _ in range(3000):
        action = rng.random()
        if action < 0.5 or not mirror:
            op = FakeOp(counter)
            counter += 1
            if mirror and rng.random() < 0.7:
                anchor = rng.choice(mirror)
                ops.insert_before(anchor, op)
                mirror.insert(mirror.index(anchor), op)
            else:
                ops.append(op)
                mirror.append(op)
        else:
            op = rng.choice(mirror)
            ops.remove(op)
            mirror.remove(op)
            assert op not in ops and op.parent is None
    assert list(ops) == mirror and len(ops) == len(mirror)
    for a, b in zip(mirror, mirror[1:]):
        assert ops.before(a, b) and not ops.before(b, a)
    assert ops[5] is mirror[5] and ops.index(mirror[7]) == 7


def test_iteration_survives_erasing_the_current_op():
    ops = OpList(FakeOp(i) for i in range(6))
    seen = []
    for op in ops:
        seen.append(op.n)
        if op.n % 2 == 0:
            ops.remove(op)
    assert seen == list(range(6)) and [op.n for op in ops] == [1, 3, 5]


def test_an_op_lives_in_one_list():
    a, b = OpList(), OpList()
    op = FakeOp(0)
    a.append(op)
    with pytest.raises(IRError, match="already in a function"):
        b.append(op)
    with pytest.raises(IRError, match="not in this function"):
        b.remove(op)


def test_whole_assignment_replaces_the_ops():
    ops = OpList(FakeOp(i) for i in range(4))
    kept = [op for op in ops if op.n != 2]
    dropped = ops[2]
    ops[:] = reversed(kept)
    assert [op.n for op in ops] == [3, 1, 0] and dropped not in ops
    with pytest.raises(IRError, match="as a whole"):
        ops[0] = FakeOp(9)


def test_many_inserts_at_one_place_renumber():
    ops = OpList([FakeOp(0), FakeOp(1)])
    anchor = ops[1]
    for i in range(2, 200):
        ops.insert_before(anchor, FakeOp(i))  # halves the same gap again and again
    assert [op.n for op in ops] == [0] + list(range(2, 200)) + [1]
    assert all(ops.before(x, y) for x, y in zip(list(ops), list(ops)[1:]))


def test_removing_the_neighbours_of_the_visited_op_is_an_error_not_a_silent_stop():
    items = [FakeOp(i) for i in range(5)]
    ops = OpList(items)
    with pytest.raises(IRError, match="iterate over list\\(fn.ops\\)"):
        for op in ops:
            if op.n == 1:
                ops.remove(op)
                ops.remove(items[2])
    with pytest.raises(IRError, match="cannot insert after op4: it is not in this function"):
        ops.remove(items[4])
        ops.insert_after(items[4], FakeOp(9))
    visited = []
    for op in OpList(items[:0] + [FakeOp(7), FakeOp(8)]):
        visited.append(op.n)
    assert visited == [7, 8]
