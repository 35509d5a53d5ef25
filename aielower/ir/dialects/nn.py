"""``nn`` dialect: the arithmetic a captured model is made of, one op per torch primitive."""

from __future__ import annotations

from aielower.ir.core import (
    Commutative,
    LinearLike,
    Op,
    attr,
    broadcast_shapes,
    normalize_axis,
    op,
    operand,
    require,
    same_dtype,
    tensor_type,
)
from aielower.ir.types import FLOAT_DTYPES

@op("nn.embedding")
class Embedding(Op):
    """Rows of ``table`` picked by integer ``ids``: result shape ids.shape + [dim]."""

    ids = operand()
    table = operand()

    def result_types(self):
        ids = tensor_type(self.ids, self.name, "ids")
        table = tensor_type(self.table, self.name, "table")
        require(ids.dtype in ("i64", "i32"), f"{self.name}: ids must be integers, got {ids.dtype}")
        require(table.rank == 2, f"{self.name}: table must be 2-D, got {table}")
        return [table.with_shape(ids.shape + table.shape[1:])]


class LinearBase(LinearLike, Op):
    """Shared by ``nn.linear`` and ``quant.linear``: ``y = x @ W^T + bias``, W [out, in] (the plain
    :class:`~aielower.ir.core.LinearLike`: no epilogue)."""

    has_epilogue = False
    x = operand()
    weight = operand()
    bias = operand(optional=True)

    def check_weight(self, x) -> None:
        raise NotImplementedError

    def result_types(self):
        self.check_weight(tensor_type(self.x, self.name, "x"))
        return [self.linear_result_type()]


@op("nn.linear")
class Linear(LinearBase):
    """``y = x @ weight^T + bias`` with ``weight`` of shape [out, in]."""

    def check_weight(self, x) -> None:
        same_dtype(self, x, tensor_type(self.weight, self.name, "weight"))

    def with_linear_weight(self, weight):
        from aielower.ir.dialects.quant import QLinear
        from aielower.ir.types import QTensorType

        if isinstance(weight.type, QTensorType):
            return QLinear(self.x, weight, self.bias, bits=weight.type.bits, group=weight.type.group)
        return super().with_linear_weight(weight)


class _Binary(Op):
    """Elementwise with broadcasting; both operands have the same dtype."""

    lhs = operand()
    rhs = operand()

    def result_types(self):
        a = tensor_type(self.lhs, self.name, "lhs")
        b = tensor_type(self.rhs, self.name, "rhs")
        same_dtype(self, a, b)
        return [a.with_shape(broadcast_shapes(a.shape, b.shape, self.name))]


@op("nn.add")
class Add(_Binary):
    """lhs + rhs"""

    traits = (Commutative(),)


@op("nn.sub")
class Sub(_Binary):
    """lhs - rhs"""


@op("nn.mul")
class Mul(_Binary):
    """lhs * rhs"""

    traits = (Commutative(),)


@op("nn.div")
class Div(_Binary):
    """lhs / rhs"""


@op("nn.le")
class Le(_Binary):
    """lhs <= rhs, elementwise with broadcasting; result i1."""

    def result_types(self):
        return [super().result_types()[0].with_dtype("i1")]


class _Scalar(Op):
    """Elementwise with a constant; the result keeps the dtype of ``x``."""

    x = operand()
    value = attr("number")

    def result_types(self):
        return [tensor_type(self.x, self.name, "x")]


@op("nn.add_scalar")
class AddScalar(_Scalar):
    """x + value"""


@op("nn.mul_scalar")
class MulScalar(_Scalar):
    """x * value"""


@op("nn.div_scalar")
class DivScalar(_Scalar):
    """x / value"""


@op("nn.pow_scalar")
class PowScalar(_Scalar):
    """x ** value"""


class _Unary(Op):
    x = operand()

    def result_types(self):
        return [tensor_type(self.x, self.name, "x")]


class _FloatUnary(_Unary):
    def verify(self):
        require(self.x.type.dtype in FLOAT_DTYPES, f"{self.name}: needs a float tensor, got {self.x.type}")


@op("nn.neg")
class Neg(_Unary):
    """-x"""


@op("nn.rsqrt")
class Rsqrt(_FloatUnary):
    """1 / sqrt(x)"""


@op("nn.sqrt")
class Sqrt(_FloatUnary):
    """sqrt(x)"""


@op("nn.exp")
class Exp(_FloatUnary):
    """exp(x)"""


@op("nn.cos")
class Cos(_FloatUnary):
    """cos(x)"""


@op("nn.sin")
class Sin(_FloatUnary):
    """sin(x)"""


@op("nn.silu")
class Silu(_FloatUnary):
    """x * sigmoid(x)"""


@op("nn.mean")
class Mean(Op):
    """Mean over ``dims``; reduced dims are kept with size 1 when ``keepdim``."""

    x = operand()
    dims = attr("ints")
    keepdim = attr("bool", False)

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        axes = {normalize_axis(d, t.rank, self.name) for d in self.dims}
        if self.keepdim:
            shape = [1 if i in axes else d for i, d in enumerate(t.shape)]
        else:
            shape = [d for i, d in enumerate(t.shape) if i not in axes]
        return [t.with_shape(shape)]


@op("nn.softmax")
class Softmax(Op):
    """softmax(x) along ``dim``"""

    x = operand()
    dim = attr("int")

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        normalize_axis(self.dim, t.rank, self.name)
        return [t]


@op("nn.sdpa")
class ScaledDotProductAttention(Op):
    """softmax(q @ k^T * scale [+ mask]) @ v on [batch, heads, seq, head_dim].

    ``q``, ``k`` and ``v`` have the same number of heads (key/value heads repeated before).
    With ``causal``, query i attends to keys j <= i (top-left aligned, as torch's is_causal).
    A boolean ``mask`` (broadcastable to [batch, heads, q_len, k_len]) keeps the entries
    where it is true; ``causal`` and ``mask`` are exclusive.
    """

    q = operand()
    k = operand()
    v = operand()
    mask = operand(optional=True)
    scale = attr("float")
    causal = attr("bool", True)

    def result_types(self):
        q = tensor_type(self.q, self.name, "q")
        k = tensor_type(self.k, self.name, "k")
        v = tensor_type(self.v, self.name, "v")
        same_dtype(self, q, k, v)
        require(q.rank == 4 and k.rank == 4 and v.rank == 4, f"{self.name}: q, k, v must be 4-D [batch, heads, seq, dim]")
        require(q.shape[:2] == k.shape[:2] == v.shape[:2], f"{self.name}: batch/heads of q {q}, k {k}, v {v} differ")
        require(q.shape[3] == k.shape[3], f"{self.name}: head dims of q and k differ")
        require(k.shape[2] == v.shape[2], f"{self.name}: key and value lengths differ")
        if self.mask is not None:
            m = tensor_type(self.mask, self.name, "mask")
            require(m.dtype == "i1", f"{self.name}: mask must be boolean (i1), got {m}")
            require(not self.causal, f"{self.name}: give either a mask or causal = true")
            scores = q.shape[:3] + (k.shape[2],)
            require(broadcast_shapes(m.shape, scores, self.name) == scores,
                    f"{self.name}: mask {m} must broadcast to the scores [{', '.join(map(str, scores))}]")
        return [q.with_shape(q.shape[:3] + v.shape[3:])]
