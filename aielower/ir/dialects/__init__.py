"""Op classes grouped by dialect. Importing this package registers all ops."""

from aielower.ir.dialects import fused, nn, quant, tensor

__all__ = ["fused", "nn", "quant", "tensor"]
