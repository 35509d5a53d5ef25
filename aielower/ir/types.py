"""Types of IR values: dense tensors with (possibly symbolic) dims, and packed quantized weights.

A dim is an ``int`` or a :class:`Sym` (a named size known only at run time, such as the
sequence length ``?s``). Types are immutable and hashable; ``str(t)`` is their IR text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from aielower.errors import IRError

SYM_NAME_RE = re.compile(r"[A-Za-wyz_][A-Za-wyz0-9_]{0,63}", re.ASCII)

# IR dtype name -> NumPy dtype name (None where NumPy has no native type).
DTYPES = {
    "f32": "float32",
    "f16": "float16",
    "bf16": None,
    "f64": "float64",
    "i64": "int64",
    "i32": "int32",
    "i8": "int8",
    "u8": "uint8",
    "u4": None,
    "i1": "bool_",
}
FLOAT_DTYPES = frozenset({"f32", "f16", "bf16", "f64"})
# Bits one element takes in memory (the one width table: booleans take a byte, u4 is packed two per byte).
DTYPE_BITS = {"f32": 32, "f16": 16, "bf16": 16, "f64": 64, "i64": 64, "i32": 32, "i8": 8, "u8": 8, "u4": 4, "i1": 8}


def dtype_bits(dtype: str) -> int:
    """Bits of one element of ``dtype`` in memory (``u2``/``u3`` qtensor storage too)."""
    if dtype in DTYPE_BITS:
        return DTYPE_BITS[dtype]
    m = re.fullmatch(r"u([2-8])", dtype, re.ASCII)
    if m:
        return int(m.group(1))
    raise IRError(f"no bit width known for dtype {dtype!r}")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise IRError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return dtype


@dataclass(frozen=True)
class Sym:
    """A symbolic dim, printed ``?name``; all uses of one name are the same size.

    Names may not contain a lowercase ``x``, which separates dims in ``tensor<?bx?sx64xf32>``.
    """

    name: str

    def __post_init__(self):
        if not SYM_NAME_RE.fullmatch(self.name):
            raise IRError(f"bad symbol name {self.name!r}: use letters, digits and '_', no lowercase 'x'")

    def __str__(self) -> str:
        return f"?{self.name}"


Dim = Union[int, Sym]

# The symbolic dims the frontend captures with: the batch and the sequence (tokens) of a call.
BATCH_SYMBOL, SEQ_SYMBOL = "b", "s"


def dim_str(d: Dim) -> str:
    return str(d)


def shape_str(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"


def is_static(shape: tuple[Dim, ...]) -> bool:
    return all(isinstance(d, int) for d in shape)


def same_numel(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> bool:
    """True when two shapes surely hold the same number of elements (symbols must pair up)."""

    def split(shape):
        n, syms = 1, []
        for d in shape:
            if isinstance(d, Sym):
                syms.append(d.name)
            else:
                n *= d
        return n, sorted(syms)

    return split(a) == split(b)


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))
        check_dtype(self.dtype)
        for d in self.shape:
            if isinstance(d, bool) or not isinstance(d, (int, Sym)) or (isinstance(d, int) and d < 0):
                raise IRError(f"bad dim {d!r} in tensor shape {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(self.shape, dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor in its dtype (a static shape only)."""
        if not is_static(self.shape):
            raise IRError(f"{self} has symbolic dims: its size depends on the run")
        n = 1
        for d in self.shape:
            n *= d
        return (n * dtype_bits(self.dtype) + 7) // 8

    def __str__(self) -> str:
        dims = "".join(f"{d}x" for d in self.shape)
        return f"tensor<{dims}{self.dtype}>"


@dataclass(frozen=True)
class QTensorType:
    """A weight matrix ``[out, in]`` stored as packed ``bits``-bit integers.

    Groups of ``group`` consecutive input channels share one scale (``scale`` dtype) and
    one zero point (``zero`` dtype): ``w = (q - zero) * scale`` (asymmetric, AWQ convention).
    """

    shape: tuple[int, int]
    bits: int
    group: int
    scale: str = "bf16"
    zero: str = "u4"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))
        if len(self.shape) != 2 or not is_static(self.shape):
            raise IRError(f"qtensor needs a static 2-D shape, got {self.shape}")
        if self.bits not in (2, 3, 4, 8):
            raise IRError(f"qtensor bits must be one of 2, 3, 4, 8, got {self.bits}")
        if self.group <= 0:
            raise IRError(f"qtensor group must be positive, got {self.group}")
        check_dtype(self.scale)
        check_dtype(self.zero)

    @property
    def rank(self) -> int:
        return 2

    @property
    def dtype(self) -> str:
        return f"u{self.bits}"

    @property
    def groups(self) -> int:
        """Scale / zero-point groups: ``group`` input channels of one row each."""
        return self.shape[0] * (self.shape[1] // self.group)

    @property
    def nbytes(self) -> int:
        """Bytes as stored: the packed codes, one ``scale`` and one ``zero`` per group, each array packed on its own
        (the one qtensor size every size count uses)."""
        n = self.shape[0] * self.shape[1]
        return ((n * self.bits + 7) // 8 + (self.groups * dtype_bits(self.scale) + 7) // 8
                + (self.groups * dtype_bits(self.zero) + 7) // 8)

    def __str__(self) -> str:
        return (
            f"qtensor<{self.shape[0]}x{self.shape[1]}xu{self.bits}, "
            f"group={self.group}, scale={self.scale}, zero={self.zero}>"
        )


Type = Union[TensorType, QTensorType]
