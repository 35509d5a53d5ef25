"""bfloat16 as NumPy sees it: float32 arrays whose values are exactly bf16-representable.

NumPy has no bf16 dtype, so a bf16 value is kept either as its 16-bit pattern (``uint16``,
the top half of the float32 pattern) or as a float32 whose low 16 bits are zero. Rounding
from float32 is round-to-nearest, ties-to-even on the float32 bit pattern, the same as
``torch.Tensor.to(torch.bfloat16)``; NaN stays NaN (quiet) and never rounds to infinity.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_QUIET_NAN_BIT = np.uint32(0x0040)  # highest mantissa bit of a bf16 pattern


def bf16_bits(x: ArrayLike) -> np.ndarray:
    """The bf16 bit patterns (``uint16``) nearest to ``x``, rounding ties to even.

    ``x`` is converted to float32 first; a float64 input is therefore rounded twice.
    """
    u = np.asarray(x, dtype=np.float32).view(np.uint32)
    upper = u >> np.uint32(16)
    # Adding 0x7FFF (+1 when the kept part is odd) carries into the kept part exactly when
    # the dropped half is above one half, or exactly one half with an odd kept part.
    # Wrap-around in uint32 can only happen for NaN patterns, which are replaced below.
    rounded = (u + np.uint32(0x7FFF) + (upper & np.uint32(1))) >> np.uint32(16)
    nan = np.isnan(u.view(np.float32))
    return np.where(nan, upper | _QUIET_NAN_BIT, rounded).astype(np.uint16)


def from_bf16_bits(bits: ArrayLike) -> np.ndarray:
    """float32 values of bf16 bit patterns (``uint16``); exact, since bf16 is a prefix of float32."""
    b = np.asarray(bits)
    if b.dtype != np.uint16:
        raise TypeError(f"bf16 bit patterns must be uint16, got {b.dtype}")
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_to_bf16(x: ArrayLike) -> np.ndarray:
    """``x`` rounded to the nearest bf16 (ties to even), returned as float32."""
    return from_bf16_bits(bf16_bits(x))
