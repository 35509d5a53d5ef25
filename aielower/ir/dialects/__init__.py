"""Op classes grouped by dialect. Importing this package registers all ops."""

from aielower.ir.dialects import nn, tensor

__all__ = ["nn", "tensor"]
