"""Group-wise asymmetric weight quantization (AWQ / Ryzen AI "w4abf16" convention).

A float32 weight ``W [out, in]`` is cut into groups of ``group`` consecutive input channels
of one output row (``n_groups = in // group``). Each group ``g`` of row ``r`` has a scale
``s`` (bf16) and a zero point ``z`` (an unsigned ``bits``-bit integer). With
``maxq = 2**bits - 1`` and round-to-nearest (RTN)::

    s = bf16(max(max(w) - min(w), 1e-5) / maxq)         # computed in float32, then rounded
    z = clip(round(-min(w) / s), 0, maxq)
    q = clip(round(w / s) + z, 0, maxq)
    w ≈ (q - z) * s                                     # the dequantized weight, float32

``round`` is ``np.round``, i.e. round half to even, everywhere (and in float32); ``bf16`` is
round-to-nearest-even on the float32 bit pattern (:func:`aielower.quant.bf16.round_to_bf16`).

Error bound. Round-then-clip puts every ``w`` on the nearest point of the grid
``{(k - z) * s : k = 0..maxq}``, so ``|w - deq| <= max(s / 2, w - (maxq - z) * s, -z * s - w)``
for any scale and zero. For RTN on a group with ``min(w) <= 0 <= max(w)`` (in practice every
group of a trained weight), the bottom of the grid ``-z * s`` is within half a step of
``min(w)`` (plus the bf16 shortfall below, at 8 bits) and the bound becomes
``|w - deq| <= s / 2 + max(0, (max(w) - min(w)) - maxq * s)``: half a step, plus what rounding
the scale down to bf16 cost the top of the grid. bf16 keeps 8 significant bits, so that extra
is at most ``maxq * s / 256``: 0.06 steps at 4 bits (bound 0.559 s), 1 step at 8 bits (1.5 s).
A group entirely above or below zero gets a clipped ``z`` and the grid cannot reach all its
values (a constant group ``c != 0`` dequantizes to about ``±1e-5``); that is the AWQ
convention. ``include_zero=True`` widens the range to contain 0 first (the GPTQ convention),
which changes nothing for groups that already straddle zero.

Storage: codes are packed along ``in`` (see :mod:`aielower.quant.packing`); scales are kept
as bf16-exact float32 ``[out, n_groups]``; zeros are kept unpacked, one per byte, as uint8
``[out, n_groups]`` although their values fit in ``bits`` bits (the IR type says ``zero=u4``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aielower.errors import IRError
from aielower.quant.bf16 import round_to_bf16
from aielower.quant.packing import check_bits, pack, unpack

MIN_RANGE = np.float32(1e-5)  # floor of max(w) - min(w), so constant groups get a nonzero scale


def _maxq(bits: int) -> np.float32:
    return np.float32(2**bits - 1)


def _check_weight(w: np.ndarray, group: int) -> np.ndarray:
    """``w`` as a float32 [out, in] array whose input dimension is a multiple of ``group``."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise IRError(f"cannot quantize a weight of shape {list(w.shape)}: expected a 2-D [out, in] matrix")
    if not np.issubdtype(w.dtype, np.floating):
        raise IRError(f"cannot quantize a {w.dtype} weight: expected floating point")
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)) or group <= 0:
        raise IRError(f"group size must be a positive integer, got {group!r}")
    if w.shape[1] % group:
        raise IRError(
            f"cannot quantize a {list(w.shape)} weight with group {group}: the input dimension "
            f"{w.shape[1]} is not a multiple of the group size"
        )
    w = w.astype(np.float32, copy=False)
    if not np.isfinite(w).all():
        raise IRError(f"cannot quantize a {list(w.shape)} weight containing NaN or infinity")
    return w


def _grouped(w: np.ndarray, group: int) -> np.ndarray:
    """View of ``w [out, in]`` as ``[out, n_groups, group]``."""
    return w.reshape(w.shape[0], w.shape[1] // group, group)


@dataclass(frozen=True)
class QuantizedWeight:
    """A group-quantized weight ``[out, in]``: the data behind an IR ``qtensor`` type.

    Fields:
      packed: uint8 ``[out, in * bits // 8]``, codes packed along ``in`` (low bits first).
      scales: float32 ``[out, n_groups]``, every value exactly representable in bf16.
      zeros:  uint8 ``[out, n_groups]``, one zero point per byte, values in ``[0, 2**bits - 1]``.
      bits, group: code width and group size; shape: ``(out, in)``.

    Arrays are shared, not copied: do not mutate them.
    """

    packed: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    group: int
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        check_bits(self.bits)
        if len(self.shape) != 2:
            raise IRError(f"QuantizedWeight.shape must be (out, in), got {self.shape}")
        out, inp = self.shape
        if self.group <= 0 or inp % self.group:
            raise IRError(f"group {self.group} does not divide the input dimension of a {list(self.shape)} weight")
        grid = (out, inp // self.group)
        expected = {
            "packed": ((out, inp * self.bits // 8), np.uint8),
            "scales": (grid, np.float32),
            "zeros": (grid, np.uint8),
        }
        for name, (shape, dtype) in expected.items():
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                got = f"{getattr(a, 'dtype', type(a).__name__)} {list(getattr(a, 'shape', ()))}"
                raise IRError(f"QuantizedWeight.{name} must be {np.dtype(dtype)} {list(shape)}, got {got}")

    @property
    def n_groups(self) -> int:
        """Groups per output row, ``in // group``."""
        return self.shape[1] // self.group

    @property
    def codes(self) -> np.ndarray:
        """The unpacked codes, uint8 ``[out, in]``."""
        return unpack(self.packed, self.bits, self.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes the NPU streams for this weight: packed codes, 2 per bf16 scale, ``bits`` bits per zero.

        Zeros are counted packed (``ceil(n_zeros * bits / 8)`` bytes) even though this object
        stores them one per byte.
        """
        return self.packed.nbytes + 2 * self.scales.size + (self.zeros.size * self.bits + 7) // 8

    def dequantize(self) -> np.ndarray:
        """The float32 weight ``(q - z) * s``, ``[out, in]``; exact (no rounding) in float32."""
        q = _grouped(self.codes, self.group).astype(np.float32)
        deq = (q - self.zeros[..., None]) * self.scales[..., None]
        return deq.reshape(self.shape)


def quantize_with_scales(
    w: np.ndarray, scales: np.ndarray, zeros: np.ndarray, bits: int = 4, group: int = 128
) -> QuantizedWeight:
    """Quantize ``w [out, in]`` with given per-group ``scales`` and ``zeros`` (each ``[out, n_groups]``).

    ``q = clip(round(w / s) + z, 0, maxq)`` in float32, half to even. Scales are rounded to
    bf16 first (a no-op for bf16-exact scales) and must be positive and finite; zeros must be
    integers in ``[0, 2**bits - 1]``.
    """
    bits = check_bits(bits)
    w = _check_weight(w, group)
    grid = (w.shape[0], w.shape[1] // group)
    scales = round_to_bf16(np.asarray(scales, dtype=np.float32))
    zeros = np.asarray(zeros)
    if scales.shape != grid or zeros.shape != grid:
        raise IRError(
            f"scales {list(scales.shape)} and zeros {list(zeros.shape)} must both be {list(grid)} "
            f"for a {list(w.shape)} weight with group {group}"
        )
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        raise IRError("quantization scales must be positive and finite (after rounding to bf16)")
    maxq = _maxq(bits)
    if zeros.size and not (np.all(zeros == np.round(zeros)) and zeros.min() >= 0 and zeros.max() <= maxq):
        raise IRError(f"zero points must be integers in [0, {int(maxq)}] for {bits}-bit codes")
    zeros = zeros.astype(np.uint8)
    q = np.round(_grouped(w, group) / scales[..., None]) + zeros[..., None].astype(np.float32)
    codes = np.clip(q, 0, maxq).astype(np.uint8).reshape(w.shape)
    return QuantizedWeight(pack(codes, bits), scales, zeros, bits, group, w.shape)


def rtn_scales_zeros(
    w: np.ndarray, bits: int = 4, group: int = 128, *, include_zero: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The RTN scales (bf16-exact float32) and zeros (uint8), each ``[out, n_groups]``, of ``w``.

    With ``include_zero`` the group range is first widened to contain 0 (see module docs).
    """
    bits = check_bits(bits)
    g = _grouped(_check_weight(w, group), group)
    wmax, wmin = g.max(axis=-1), g.min(axis=-1)
    if include_zero:
        wmax, wmin = np.maximum(wmax, np.float32(0)), np.minimum(wmin, np.float32(0))
    maxq = _maxq(bits)
    scales = round_to_bf16(np.maximum(wmax - wmin, MIN_RANGE) / maxq)
    zeros = np.clip(np.round(-wmin / scales), 0, maxq).astype(np.uint8)
    return scales, zeros


def rtn_dequantized(w: np.ndarray, bits: int = 4, group: int = 128) -> np.ndarray:
    """``quantize_rtn(w, bits, group).dequantize()`` without packing: the same float32 values.

    For searches that quantize many candidate weights and only need the round trip.
    """
    scales, zeros = rtn_scales_zeros(w, bits, group)
    g = _grouped(np.asarray(w, dtype=np.float32), group)
    z = zeros[..., None].astype(np.float32)
    q = np.clip(np.round(g / scales[..., None]) + z, 0, _maxq(bits))
    q -= z
    q *= scales[..., None]
    return q.reshape(np.shape(w))


def quantize_rtn(w: np.ndarray, bits: int = 4, group: int = 128, *, include_zero: bool = False) -> QuantizedWeight:
    """Round-to-nearest group quantization of ``w [out, in]`` (the formula in the module docs)."""
    scales, zeros = rtn_scales_zeros(w, bits, group, include_zero=include_zero)
    return quantize_with_scales(w, scales, zeros, bits, group)
