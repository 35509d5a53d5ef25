"""``quant`` dialect: weight-only group-quantized ops."""

from __future__ import annotations

from aielower.ir.core import attr, op, require
from aielower.ir.dialects.nn import LinearBase
from aielower.ir.types import QTensorType


@op("quant.linear")
class QLinear(LinearBase):
    """y = x @ dequant(weight)^T + bias, weight a packed ``qtensor<out x in>``.

    dequant: w = (q - zero) * scale per group of ``group`` input channels (asymmetric,
    AWQ convention). ``bits`` and ``group`` repeat the weight type's for readability.
    """

    bits = attr("int")
    group = attr("int")

    def check_weight(self, x) -> None:
        w = self.weight.type
        require(isinstance(w, QTensorType), f"{self.name}: weight must be a qtensor, got {w}")
        require((w.bits, w.group) == (self.bits, self.group),
                f"{self.name}: attributes bits={self.bits} group={self.group} differ from the weight type {w}")

    def with_linear_weight(self, weight):
        from aielower.ir.dialects.nn import Linear

        if isinstance(weight.type, QTensorType):
            return QLinear(self.x, weight, self.bias, bits=weight.type.bits, group=weight.type.group)
        return Linear(self.x, weight, self.bias)
