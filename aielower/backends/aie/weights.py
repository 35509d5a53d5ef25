"""Pre-tiled 4-bit weights: the byte layout the DMA streams to a ``linear_w4`` kernel (docs/aie-kernels.md).

A linear's blob holds one tile per ``(nt, kt)``, in the order the decode (GEMV) launch's shim DMAs read them
(:func:`tile_positions`): the ``NT`` output tiles are cut into ``columns`` column blocks, each column block into
``rows`` row blocks of ``P`` consecutive tiles (one per core); a column block is stored as ``[i][kt][row]``, ``i`` the
tile's index within its row block. A column's whole weight stream is then one contiguous read, which the memory tile
splits one tile per row. With a ``1 x 1`` grid this is plain ``nt`` major, ``kt`` minor.

One tile is, in order: the bias as bf16 ``[TN]`` (only with a bias; the real bias in ``kt == 0`` tiles, zeros
elsewhere, since the kernel adds it at every step), the codes ``[TN][TK/2]`` (byte ``j`` of a row holds ``k = 2j`` in its low nibble and ``2j + 1`` in its high
nibble), the scales as bf16 ``[TN][TK/G]``, the zero points as u4 ``[TN*(TK/G)]`` two per byte (low nibble first),
and zero bytes up to a multiple of 4. Padded rows and columns have code, scale and zero 0, so they dequantize to 0.

``aielower.quant.packing`` packs 4-bit codes exactly the way a tile row wants them (low nibble = even ``k``), so the
packed codes are re-cut into tiles as bytes, never unpacked: pretiling a 151936 x 4096 lm_head stays a few large
NumPy copies.
"""

from __future__ import annotations

import numpy as np

from aielower.errors import CompileError
from aielower.quant.bf16 import bf16_bits, from_bf16_bits, round_to_bf16
from aielower.quant.groupwise import QuantizedWeight
from aielower.quant.packing import unpack

_BITS = 4


def linear_tile_bytes(tn: int, tk: int, group: int, bias: bool) -> int:
    """Bytes of one ``(nt, kt)`` weight tile, including the padding to a multiple of 4 (DMA words are 32-bit)."""
    _check_tile(tn, tk, group)
    return _parts(tn, tk, group, bias)[-1][1]


def _parts(tn: int, tk: int, group: int, bias: bool) -> list[tuple[str, int]]:
    """``(part, end offset)`` of each part of a tile, in order; the last entry is the padded tile size."""
    ng = tk // group
    sizes = [("bias", 2 * tn if bias else 0), ("codes", tn * tk // 2), ("scales", 2 * tn * ng),
             ("zeros", (tn * ng + 1) // 2)]
    parts, end = [], 0
    for name, size in sizes:
        end += size
        parts.append((name, end))
    parts.append(("padding", (end + 3) // 4 * 4))
    return parts


def _offsets(tn: int, tk: int, group: int, bias: bool) -> dict[str, tuple[int, int]]:
    """Part name -> ``(start, end)`` byte offsets within a tile."""
    out, start = {}, 0
    for name, end in _parts(tn, tk, group, bias):
        out[name] = (start, end)
        start = end
    return out


def _check_tile(tn: int, tk: int, group: int) -> None:
    for name, v in (("TN", tn), ("TK", tk), ("G", group)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise CompileError(f"linear_w4 weight tile: {name} must be a positive integer, got {v!r}")
    if tk % group:
        raise CompileError(f"linear_w4 weight tile: TK={tk} is not a multiple of the group size G={group}")
    if tk % 2:
        raise CompileError(f"linear_w4 weight tile: TK={tk} must be even (two 4-bit codes per byte)")


def tile_positions(nt, kt, n_tiles: int, k_tiles: int, columns: int, rows: int):
    """Position (in tiles) of tile ``(nt, kt)`` in a blob of ``n_tiles x k_tiles`` tiles ordered for a ``columns x
    rows`` grid; works elementwise on NumPy integer arrays."""
    per_column = n_tiles // columns
    per_core = per_column // rows
    c, local = np.divmod(nt, per_column)
    r, i = np.divmod(local, per_core)
    return c * per_column * k_tiles + (i * k_tiles + kt) * rows + r


def _check_order(n_tiles: int, columns: int, rows: int) -> None:
    for name, v in (("columns", columns), ("rows", rows)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise CompileError(f"linear_w4 weight order: {name} must be a positive integer, got {v!r}")
    if n_tiles % (columns * rows):
        raise CompileError(f"linear_w4 weight order: {n_tiles} output tiles do not split evenly over a {columns} x "
                           f"{rows} core grid: pad N to a multiple of columns x rows x TN")


def _to_dma_order(tiles: np.ndarray, columns: int, rows: int) -> np.ndarray:
    """Tiles ``[NT, KT, bytes]`` (plain order) -> the blob, 1-D."""
    nt, kt, size = tiles.shape
    grid = tiles.reshape(columns, rows, nt // (columns * rows), kt, size)
    return np.ascontiguousarray(grid.transpose(0, 2, 3, 1, 4)).reshape(-1)


def _from_dma_order(blob: np.ndarray, nt: int, kt: int, columns: int, rows: int) -> np.ndarray:
    """Inverse of :func:`_to_dma_order`: the blob -> tiles ``[NT, KT, bytes]``."""
    grid = blob.reshape(columns, nt // (columns * rows), kt, rows, -1)
    return np.ascontiguousarray(grid.transpose(0, 3, 1, 2, 4)).reshape(nt, kt, -1)


def _check_grid(n: int, k: int, n_pad: int, k_pad: int, tn: int, tk: int, group: int) -> None:
    _check_tile(tn, tk, group)
    if not (0 < n <= n_pad and 0 < k <= k_pad):
        raise CompileError(f"cannot tile a [{n}, {k}] weight into a padded [{n_pad}, {k_pad}] grid: the padded "
                           "shape must be at least the real one")
    if n_pad % tn or k_pad % tk:
        raise CompileError(f"padded weight [{n_pad}, {k_pad}] is not a whole number of [{tn}, {tk}] tiles: pad N "
                           f"to a multiple of TN={tn} and K to a multiple of TK={tk}")
    if k % group:
        raise CompileError(f"weight input dimension {k} is not a multiple of the group size {group}")


def _tiles(a: np.ndarray, tn: int, tcols: int) -> np.ndarray:
    """View of ``a [n_pad, cols]`` as ``[NT, KT, tn, tcols]`` (tile rows of ``tn``, tile columns of ``tcols``)."""
    n_pad, cols = a.shape
    return a.reshape(n_pad // tn, tn, cols // tcols, tcols).transpose(0, 2, 1, 3)


def _padded(a: np.ndarray, rows: int, cols: int, dtype) -> np.ndarray:
    out = np.zeros((rows, cols), dtype=dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _nibbles_to_bytes(values: np.ndarray) -> np.ndarray:
    """u4 values ``[..., m]`` -> bytes ``[..., ceil(m/2)]``, element ``e`` in byte ``e/2``, low nibble if even."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << np.uint8(4))).astype(np.uint8)


def pretile_linear(weight: QuantizedWeight, bias: np.ndarray | None, n_pad: int, k_pad: int, tn: int,
                   tk: int, columns: int = 1, rows: int = 1) -> np.ndarray:
    """The weight blob (``uint8``, 1-D) of a 4-bit linear: the tiles of the weight padded to ``[n_pad, k_pad]``,
    in the DMA order of a ``columns x rows`` GEMV grid (:func:`tile_positions`)."""
    if weight.bits != _BITS:
        raise CompileError(f"linear_w4 tiles hold 4-bit codes, got a {weight.bits}-bit weight: quantize with bits=4")
    n, k = weight.shape
    group = weight.group
    _check_grid(n, k, n_pad, k_pad, tn, tk, group)
    nt, kt = n_pad // tn, k_pad // tk
    _check_order(nt, columns, rows)
    ng = tk // group
    offsets = _offsets(tn, tk, group, bias is not None)
    blob = np.zeros((nt, kt, offsets["padding"][1]), dtype=np.uint8)

    def put(part: str, tiles: np.ndarray) -> None:
        start, end = offsets[part]
        blob[:, :, start:end] = tiles.reshape(nt, kt, end - start)

    put("codes", _tiles(_padded(weight.packed, n_pad, k_pad // 2, np.uint8), tn, tk // 2))
    scale_bits = _padded(bf16_bits(weight.scales), n_pad, k_pad // group, "<u2")
    put("scales", np.ascontiguousarray(_tiles(scale_bits, tn, ng)).view(np.uint8))
    zeros = _tiles(_padded(weight.zeros, n_pad, k_pad // group, np.uint8), tn, ng).reshape(nt, kt, tn * ng)
    put("zeros", _nibbles_to_bytes(zeros))
    if bias is not None:
        put("bias", _bias_tiles(bias, n, n_pad, tn, kt))
    return blob.reshape(-1) if columns * rows == 1 else _to_dma_order(blob, columns, rows)


def _bias_tiles(bias: np.ndarray, n: int, n_pad: int, tn: int, kt: int) -> np.ndarray:
    """Bias bytes ``[NT, KT, 2*tn]``: bf16 of the bias in ``kt == 0``, zeros in the other tiles."""
    bias = np.asarray(bias)
    if bias.shape != (n,):
        raise CompileError(f"bias of shape {list(bias.shape)} does not match a weight with {n} output rows")
    bits = np.zeros(n_pad, dtype="<u2")
    bits[:n] = bf16_bits(bias)
    out = np.zeros((n_pad // tn, kt, 2 * tn), dtype=np.uint8)
    out[:, 0] = bits.reshape(n_pad // tn, tn).view(np.uint8)
    return out


def untile_linear(blob: np.ndarray, n: int, k: int, n_pad: int, k_pad: int, tn: int, tk: int, group: int,
                  bias: bool, columns: int = 1, rows: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of :func:`pretile_linear`, for tests: ``bf16((q - z) * s)`` as float32 ``[n, k]``, and the bias as
    float32 ``[n]`` (None without one).

    With ``n = n_pad`` and ``k = k_pad`` the padding comes back too, so a test can check that it dequantizes to 0.
    The bias is read from the ``kt == 0`` tiles.
    """
    _check_grid(n, k, n_pad, k_pad, tn, tk, group)
    nt, kt, ng = n_pad // tn, k_pad // tk, tk // group
    _check_order(nt, columns, rows)
    offsets = _offsets(tn, tk, group, bias)
    tiles = _from_dma_order(np.asarray(blob, dtype=np.uint8), nt, kt, columns, rows)

    def part(name: str) -> np.ndarray:
        start, end = offsets[name]
        return tiles[:, :, start:end]

    codes = unpack(part("codes").reshape(nt, kt, tn, tk // 2), _BITS, tk)
    scale_bits = np.ascontiguousarray(part("scales")).view("<u2").astype(np.uint16)
    scales = from_bf16_bits(scale_bits).reshape(nt, kt, tn, ng)
    z = part("zeros")
    zeros = np.stack([z & 0x0F, z >> 4], axis=-1).reshape(nt, kt, -1)[:, :, : tn * ng].reshape(nt, kt, tn, ng)
    q = codes.reshape(nt, kt, tn, ng, group).astype(np.float32)
    deq = round_to_bf16((q - zeros[..., None]) * scales[..., None]).reshape(nt, kt, tn, tk)
    full = deq.transpose(0, 2, 1, 3).reshape(n_pad, k_pad)
    b = None
    if bias:
        bits = np.ascontiguousarray(part("bias")[:, 0]).view("<u2").astype(np.uint16).reshape(n_pad)
        b = from_bf16_bits(bits)[:n]
    return full[:n, :k], b
