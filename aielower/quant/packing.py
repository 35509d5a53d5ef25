"""Pack ``bits``-bit integer codes into bytes along the last (input) axis, little-endian.

With ``k = 8 // bits`` codes per byte, byte ``j`` of a row holds codes ``k*j .. k*j + k - 1``,
the first of them in the lowest bits. For 4 bits, byte ``j`` is ``code[2j] | code[2j+1] << 4``
(codes ``[1, 2, 3, 4]`` pack to bytes ``[0x21, 0x43]``); for 2 bits, four codes per byte,
lowest bits first; for 8 bits, the bytes are the codes. A row of ``n`` codes packs into
``n * bits // 8`` bytes, so ``n`` must be a multiple of ``k``.
"""

from __future__ import annotations

import numpy as np

from aielower.errors import IRError

PACK_BITS = (2, 4, 8)


def check_bits(bits: int) -> int:
    """Return ``bits`` if codes of that width can be packed into bytes, else raise IRError."""
    if bits not in PACK_BITS:
        raise IRError(f"bits must be one of {', '.join(map(str, PACK_BITS))} for packing, got {bits!r}")
    return int(bits)


def _codes_per_byte(bits: int) -> int:
    return 8 // check_bits(bits)


def _shifts(bits: int) -> np.ndarray:
    """Bit offset of each code within its byte, lowest first."""
    return (np.arange(_codes_per_byte(bits), dtype=np.uint8) * np.uint8(bits)).astype(np.uint8)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit codes (``uint8 [..., n]``) into ``uint8 [..., n * bits // 8]``."""
    per = _codes_per_byte(bits)
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise IRError(f"codes to pack must be uint8, got {codes.dtype}")
    if codes.ndim == 0 or codes.shape[-1] % per:
        raise IRError(
            f"cannot pack {bits}-bit codes of shape {list(codes.shape)}: the last dimension must be "
            f"a multiple of {per} (codes per byte)"
        )
    if codes.size and int(codes.max()) >> bits:
        raise IRError(f"cannot pack code {int(codes.max())} into {bits} bits (max {2**bits - 1})")
    if per == 1:
        return codes.copy()
    grouped = codes.reshape(*codes.shape[:-1], codes.shape[-1] // per, per)
    return np.bitwise_or.reduce(grouped << _shifts(bits), axis=-1).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int, in_features: int) -> np.ndarray:
    """Inverse of :func:`pack`: ``uint8 [..., in_features * bits // 8]`` -> codes ``uint8 [..., in_features]``."""
    per = _codes_per_byte(bits)
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise IRError(f"packed codes must be uint8, got {packed.dtype}")
    if in_features % per or packed.ndim == 0 or packed.shape[-1] * per != in_features:
        raise IRError(
            f"packed shape {list(packed.shape)} does not hold {in_features} {bits}-bit codes per row "
            f"(expected a last dimension of {in_features * bits / 8:g})"
        )
    if per == 1:
        return packed.copy()
    mask = np.uint8(2**bits - 1)
    codes = (packed[..., None] >> _shifts(bits)) & mask
    return codes.reshape(*packed.shape[:-1], in_features)
