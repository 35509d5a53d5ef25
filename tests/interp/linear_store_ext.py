"""An out-of-tree LinearLike op whose epilogue writes into an operand (used by test_in_place_epilogue.py)."""

from aielower.interp import impl
from aielower.ir.core import LinearLike, Op, WritesInPlace, op, operand


@op("test.linear_store")
class LinearStore(LinearLike, Op):
    """y = x @ W^T; buf' = buf + y, written into buf."""

    x = operand()
    weight = operand()
    buf = operand()
    bias = operand(optional=True)
    traits = (WritesInPlace({1: "buf"}),)

    def result_types(self):
        return [self.linear_result_type(), self.buf.type]


@impl(LinearStore)
def linear_store(y, buf):
    buf += y
    return y, buf
