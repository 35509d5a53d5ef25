"""``quant`` dialect: weight-only group-quantized ops."""

from __future__ import annotations

from aielower.ir.core import Op, attr, op, operand, require, tensor_type
from aielower.ir.types import QTensorType


@op("quant.linear")
class QLinear(Op):
    """y = x @ dequant(weight)^T + bias, weight a packed ``qtensor<out x in>``.

    dequant: w = (q - zero) * scale per group of ``group`` input channels (asymmetric,
    AWQ convention). ``bits`` and ``group`` repeat the weight type's for readability.
    """

    x = operand()
    weight = operand()
    bias = operand(optional=True)
    bits = attr("int")
    group = attr("int")

    def result_types(self):
        x = tensor_type(self.x, self.name, "x")
        w = self.weight.type
        require(isinstance(w, QTensorType), f"{self.name}: weight must be a qtensor, got {w}")
        require((w.bits, w.group) == (self.bits, self.group),
                f"{self.name}: attributes bits={self.bits} group={self.group} differ from the weight type {w}")
        require(x.shape[-1] == w.shape[1], f"{self.name}: x {x} does not match weight {w} (in features {w.shape[1]})")
        if self.bias is not None:
            b = tensor_type(self.bias, self.name, "bias")
            require(b.shape == (w.shape[0],), f"{self.name}: bias {b} must be [{w.shape[0]}]")
        return [x.with_shape(x.shape[:-1] + (w.shape[0],))]

    @property
    def in_features(self) -> int:
        return self.weight.type.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.type.shape[0]
