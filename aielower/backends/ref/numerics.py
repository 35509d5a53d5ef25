"""The reference backend's numerics: plain float32, or the AIE backend's bf16 storage.

``numerics="aie"`` mirrors docs/aie-kernels.md ("Numerics") so that the AIE host emulator
can be compared with the reference tightly:

- weights are what the NPU stores: float weights are rounded to bf16 once at load, and a
  4-bit weight dequantizes to ``bf16((q - z) * s)``;
- the ops the AIE backend runs as NPU kernels (``AIE_KERNEL_OPS``, and the linear part of every
  :class:`~aielower.ir.core.LinearLike` op, whose epilogue runs on the host unless the kernel computes it too:
  ``DEVICE_EPILOGUE_OPS``) read bf16 operands and
  write bf16 results; they still compute in float32 inside. Inside ``fused.attention`` the
  rotary embedding is a kernel of its own, so rope(q) and rope(k) are rounded too
  (``AIE_KERNEL_KEYWORDS``), and the KV caches only ever receive bf16 values;
- ops the host runs (embedding lookup, rotary tables, reshapes, ...) stay float32; their
  results are rounded when they enter a kernel.
"""

from __future__ import annotations

from aielower.errors import CompileError
from aielower.ir import Module, QTensorType
from aielower.ir.core import LinearLike
from aielower.ir.types import FLOAT_DTYPES

NUMERICS = {
    "fp32": "float32 throughout, the default",
    "aie": "bf16 weights and bf16 at the boundaries of the ops the NPU runs as kernels, as the AIE backend computes",
}

AIE_KERNEL_OPS = frozenset(
    {"quant.linear", "nn.linear", "fused.rms_norm", "fused.add_rms_norm", "fused.silu_mul", "fused.attention"}
)

# LinearLike ops whose epilogue the AIE linear kernels compute too, in their store: it reads the linear's output
# rounded to bf16 (as the plain kernel would store it) and its result is stored in bf16.
DEVICE_EPILOGUE_OPS = frozenset({"fused.linear_silu_mul"})

# Keyword arguments the AIE numerics pass to implementations that round inside (generated-module expressions).
AIE_KERNEL_KEYWORDS = {"fused.attention": {"rope_rounding": "bf16"}}

# Host ops whose weight operand the NPU build stores in bf16 too (the embedding table).
_BF16_TABLE_OPS = frozenset({"nn.embedding"})

# Host ops that only move values: their results are bf16 when their float operands are,
# so a kernel reading them needs no rounding call.
VALUE_PRESERVING_OPS = frozenset(
    {"tensor.reshape", "tensor.transpose", "tensor.permute", "tensor.expand", "tensor.slice", "tensor.split",
     "tensor.concat", "nn.embedding"}
)


def check_numerics(numerics: str) -> str:
    if numerics not in NUMERICS:
        valid = "; ".join(f"{name!r} ({what})" for name, what in NUMERICS.items())
        raise CompileError(f"unknown numerics {numerics!r}; valid numerics: {valid}")
    return numerics


def runs_as_kernel(op) -> bool:
    """The NPU runs ``op`` as a kernel (for a LinearLike op: its linear part; the epilogue stays on the host)."""
    return op.name in AIE_KERNEL_OPS or isinstance(op, LinearLike)


def is_float(value) -> bool:
    return getattr(value.type, "dtype", None) in FLOAT_DTYPES


def bf16_weight_names(module: Module) -> set[str]:
    """Weights the NPU stores as bf16: every quantized weight, and every float weight that a
    kernel or the embedding lookup reads (of a LinearLike op with an epilogue: the linear's
    weight and bias; the epilogue's operands stay on the host). A weight only host-side table
    code reads (the rotary ``inv_freq``, from which the host computes the cos/sin tables in
    float32) stays float32: rounding it would move the rotary angles by up to
    ``position * 2**-9`` radians.
    """
    names = set()
    for name, w in module.weights.items():
        if isinstance(w.type, QTensorType):
            names.add(name)
        elif is_float(w) and any(_reads_as_kernel(u, w) for u in w.users):
            names.add(name)
    return names


def _reads_as_kernel(op, w) -> bool:
    if isinstance(op, LinearLike) and op.name not in AIE_KERNEL_OPS:
        return w is op.linear_weight or w is op.linear_bias
    return op.name in AIE_KERNEL_OPS | _BF16_TABLE_OPS
