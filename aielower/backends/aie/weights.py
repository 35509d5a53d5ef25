"""Pre-tiled 4-bit weights: the byte layout the DMA streams to a ``linear_w4`` kernel (docs/aie-kernels.md).

A linear's blob holds one tile per ``(nt, kt)``, in the order the linear launches' shim DMAs read them
(:func:`tile_positions`): the ``NT`` output tiles are cut into ``columns`` column blocks, each column block into
``rows`` row blocks of ``P`` consecutive tiles (one per core), and a row block into blocks of ``B`` tiles (the last
may be shorter); a column block is stored as ``[ib][kt][ii][row]``, ``i = ib * B + ii`` the tile's index within its
row block. The GEMM broadcasts a column's weight stream to its rows, a core taking N blocks of ``B x rows`` tiles
(one accumulator per tile, K outer): the stream is one contiguous read. The GEMV's memory tile splits the stream one
tile per row, each core taking its tiles in items of whole blocks (K outer): one read per item. With ``B = 1`` a column block is
``[i][kt][row]``; with a ``1 x 1`` grid and ``B = 1`` the blob is plain ``nt`` major, ``kt`` minor.

Inside a tile the codes, scales and zero points are stored in the order the kernels consume them, so that neither
the GEMM nor the GEMV gathers or transposes anything: the codes are cut into *units* of ``8`` output rows by ``S``
inputs (``S x T`` is the B operand of the device's bf16 ``aie::mmul<R, S, T>``; a unit is ``8 / T`` such blocks),
each unit 32 bytes that one vector load brings in. One tile is, in order:

- bias: bf16 ``[TN]`` (only with a bias in the weight tiles; the real bias in ``kt == 0`` tiles, zeros elsewhere;
  a linear with bias tiles has none here, its bias tiles follow the weight tiles: :func:`pretile_linear`);
- codes: units ``[TN/8][TK/S]``, unit ``(n8, kb)`` holding elements ``e = (jb*S + k)*T + c`` (``jb < 8/T``,
  ``k < S``, ``c < T``) = the code of row ``n = 8*n8 + jb*T + c``, input ``kb*S + k``: the ``8/T`` mmul B blocks
  ``[S][T]`` of those 8 rows, one after the other. Byte ``j`` of a unit (``j < 4*S``) holds element ``j`` in its
  low nibble and element ``j + 4*S`` in its high nibble, so the two nibble halves are the two halves of the unit;
- scales: bf16 ``[TN/8][TK/G][8]`` (the 8 rows of a unit, per group);
- zero points: u4 ``[TN/8][TK/G][8]`` flattened, element ``e`` in byte ``e/2``, low nibble for even ``e`` (4 bytes
  per unit column and group);
- zero bytes up to a multiple of 4.

The tile's size and the tiles' order do not depend on the mmul shape (designs and plans rely on both); the order
inside a tile does, so :func:`pretile_linear` takes the device's bf16 mmul shape. Padded rows and columns have code,
scale and zero 0, so they dequantize to 0.

Re-cutting the codes unpacks them; it runs over blocks of at most ``_CHUNK_CODES`` codes, so pretiling a 151936 x
4096 lm_head never holds more than a few such blocks at once.
"""

from __future__ import annotations

import numpy as np

from aielower.backends.aie.device import MMulShape
from aielower.errors import CompileError
from aielower.quant.bf16 import bf16_bits, from_bf16_bits, round_to_bf16
from aielower.quant.groupwise import QuantizedWeight
from aielower.quant.packing import unpack

_BITS = 4
UNIT_ROWS = 8  # output rows of a code unit (and of a scale / zero-point row): 8 / T mmul B blocks side by side
_CHUNK_CODES = 1 << 24  # codes unpacked at a time while pretiling


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


def tile_positions(nt, kt, n_tiles: int, k_tiles: int, columns: int, rows: int, block: int = 1):
    """Position (in tiles) of tile ``(nt, kt)`` in a blob of ``n_tiles x k_tiles`` tiles ordered for a ``columns x
    rows`` grid in blocks of ``block`` tiles per core (module docstring); works elementwise on NumPy integer
    arrays."""
    per_column = n_tiles // columns
    per_core = per_column // rows
    c, local = np.divmod(nt, per_column)
    r, i = np.divmod(local, per_core)
    ib, ii = np.divmod(i, block)
    size = np.minimum(block, per_core - ib * block)  # the last block of a row block may be shorter
    return c * per_column * k_tiles + ib * block * rows * k_tiles + (kt * size + ii) * rows + r


def _check_order(n_tiles: int, columns: int, rows: int, block: int = 1) -> None:
    for name, v in (("columns", columns), ("rows", rows), ("block", block)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise CompileError(f"linear_w4 weight order: {name} must be a positive integer, got {v!r}")
    if n_tiles % (columns * rows):
        raise CompileError(f"linear_w4 weight order: {n_tiles} output tiles do not split evenly over a {columns} x "
                           f"{rows} core grid: pad N to a multiple of columns x rows x TN")


def _positions(nt: int, kt: int, columns: int, rows: int, block: int) -> np.ndarray:
    """Blob position of every tile, ``[NT, KT]``."""
    return tile_positions(np.arange(nt, dtype=np.int64)[:, None], np.arange(kt, dtype=np.int64)[None, :], nt, kt,
                          columns, rows, block)


def _to_dma_order(tiles: np.ndarray, columns: int, rows: int, block: int = 1) -> np.ndarray:
    """Tiles ``[NT, KT, bytes]`` (plain order) -> the blob, 1-D."""
    nt, kt, size = tiles.shape
    out = np.empty_like(tiles).reshape(nt * kt, size)
    out[_positions(nt, kt, columns, rows, block).reshape(-1)] = tiles.reshape(nt * kt, size)
    return out.reshape(-1)


def _from_dma_order(blob: np.ndarray, nt: int, kt: int, columns: int, rows: int, block: int = 1) -> np.ndarray:
    """Inverse of :func:`_to_dma_order`: the blob -> tiles ``[NT, KT, bytes]``."""
    tiles = blob.reshape(nt * kt, -1)
    return tiles[_positions(nt, kt, columns, rows, block).reshape(-1)].reshape(nt, kt, -1)


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


def _check_blocks(tn: int, tk: int, group: int, mmul: MMulShape) -> tuple[int, int]:
    """``(S, T)`` of the device's bf16 mmul, checked against the tile: units of 8 rows by S inputs."""
    if not isinstance(mmul, MMulShape):
        raise CompileError(f"linear_w4 weight tile: mmul must be the device's bf16 MMulShape "
                           f"(device.mmul['bf16']), got {mmul!r}")
    s, t = mmul.k, mmul.n
    if UNIT_ROWS % t:
        raise CompileError(f"linear_w4 weight tile: the mmul's T={t} does not divide the unit width {UNIT_ROWS}")
    if tn % UNIT_ROWS:
        raise CompileError(f"linear_w4 weight tile: TN={tn} is not a multiple of {UNIT_ROWS} (code units are "
                           f"{UNIT_ROWS} rows wide): choose TN as a multiple of {UNIT_ROWS}")
    if tk % s or group % s:
        raise CompileError(f"linear_w4 weight tile: TK={tk} and the group size G={group} must be multiples of the "
                           f"mmul's S={s} (a code unit spans S inputs of one group)")
    return s, t


def _padded(a: np.ndarray, rows: int, cols: int, dtype) -> np.ndarray:
    out = np.zeros((rows, cols), dtype=dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _nibbles_to_bytes(values: np.ndarray) -> np.ndarray:
    """u4 values ``[..., m]`` -> bytes ``[..., ceil(m/2)]``, element ``e`` in byte ``e/2``, low nibble if even."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << np.uint8(4))).astype(np.uint8)


def _bytes_to_nibbles(b: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_nibbles_to_bytes` (an even count): bytes ``[..., m]`` -> u4 values ``[..., 2m]``."""
    return np.stack([b & 0x0F, b >> 4], axis=-1).reshape(*b.shape[:-1], 2 * b.shape[-1])


def _code_units(codes: np.ndarray, tn: int, tk: int, s: int, t: int) -> np.ndarray:
    """Codes ``[rows, k_pad]`` (``rows`` a multiple of TN) -> the codes part of each tile, ``[rows/TN, KT, TN*TK/2]``
    bytes: units ``[TN/8][TK/S]`` of ``[8/T][S][T]`` codes, byte j = element j | element j + 4S << 4."""
    rows, k_pad = codes.shape
    nt, kt = rows // tn, k_pad // tk
    # n = ((nt*TN/8 + n8)*8/T + jb)*T + c,  k = (kt*TK/S + kb)*S + kk
    grid = codes.reshape(nt, tn // UNIT_ROWS, UNIT_ROWS // t, t, kt, tk // s, s)
    units = grid.transpose(0, 4, 1, 5, 2, 6, 3).reshape(nt, kt, -1, UNIT_ROWS * s)  # [nt, kt, unit, e]
    half = UNIT_ROWS * s // 2
    return (units[..., :half] | (units[..., half:] << np.uint8(4))).reshape(nt, kt, -1)


def _codes_from_units(part: np.ndarray, tn: int, tk: int, s: int, t: int) -> np.ndarray:
    """Inverse of :func:`_code_units`: ``[NT, KT, TN*TK/2]`` bytes -> codes ``[NT*TN, KT*TK]``."""
    nt, kt = part.shape[:2]
    units = part.reshape(nt, kt, -1, UNIT_ROWS * s // 2)
    codes = np.concatenate([units & 0x0F, units >> 4], axis=-1)  # [nt, kt, unit, e]
    grid = codes.reshape(nt, kt, tn // UNIT_ROWS, tk // s, UNIT_ROWS // t, s, t)
    return grid.transpose(0, 2, 4, 6, 1, 3, 5).reshape(nt * tn, kt * tk)


def _per_unit_column(a: np.ndarray, tn: int, ng: int) -> np.ndarray:
    """Per-row, per-group values ``[n_pad, KT*NG]`` -> ``[NT, KT, TN/8, NG, 8]`` (the scale / zero-point order)."""
    n_pad, groups = a.shape
    grid = a.reshape(n_pad // tn, tn // UNIT_ROWS, UNIT_ROWS, groups // ng, ng)
    return grid.transpose(0, 3, 1, 4, 2)


def _from_unit_columns(a: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_per_unit_column`: ``[NT, KT, TN/8, NG, 8]`` -> ``[NT*TN, KT*NG]``."""
    nt, kt, n8, ng, c = a.shape
    return a.transpose(0, 2, 4, 1, 3).reshape(nt * n8 * c, kt * ng)


def pretile_linear(weight: QuantizedWeight, bias: np.ndarray | None, n_pad: int, k_pad: int, tn: int,
                   tk: int, columns: int = 1, rows: int = 1, block: int = 1, *, mmul: MMulShape,
                   bias_tiles: list[np.ndarray] | None = None) -> np.ndarray:
    """The weight blob (``uint8``, 1-D) of a 4-bit linear: the tiles of the weight padded to ``[n_pad, k_pad]``,
    in the DMA order of a ``columns x rows`` grid in blocks of ``block`` tiles (:func:`tile_positions`), each laid
    out for the device's bf16 mmul ``mmul`` (``device.mmul["bf16"]``; module docstring). With ``bias_tiles`` (the
    output tiles each bias tile holds, :func:`~aielower.backends.aie.families.linear_w4.bias_tile_rows`) the bias
    is not in the weight tiles but in tiles of its own after them: per bias tile, ``TN`` bf16 of each of its output
    tiles in turn, then zeros."""
    if bias_tiles is not None:
        tiles = pretile_linear(weight, None, n_pad, k_pad, tn, tk, columns, rows, block, mmul=mmul)
        size = linear_tile_bytes(tn, tk, weight.group, False)
        padded = np.zeros(n_pad, np.float32)
        if bias is not None:
            bias = np.asarray(bias, np.float32)
            if bias.shape != (weight.shape[0],):
                raise CompileError(f"bias of shape {list(bias.shape)} does not match a weight with {weight.shape[0]} "
                                   "output rows")
            padded[: len(bias)] = bias
        tail = np.zeros((len(bias_tiles), size), np.uint8)
        for i, nts in enumerate(bias_tiles):
            values = padded.reshape(-1, tn)[np.asarray(nts, np.int64)].reshape(-1)
            tail[i, : 2 * len(values)] = bf16_bits(values).astype("<u2").view(np.uint8)
        return np.concatenate([tiles, tail.reshape(-1)])
    if weight.bits != _BITS:
        raise CompileError(f"linear_w4 tiles hold 4-bit codes, got a {weight.bits}-bit weight: quantize with bits=4")
    n, k = weight.shape
    group = weight.group
    _check_grid(n, k, n_pad, k_pad, tn, tk, group)
    s, t = _check_blocks(tn, tk, group, mmul)
    nt, kt = n_pad // tn, k_pad // tk
    _check_order(nt, columns, rows, block)
    ng = tk // group
    offsets = _offsets(tn, tk, group, bias is not None)
    blob = np.zeros((nt, kt, offsets["padding"][1]), dtype=np.uint8)

    def put(part: str, tiles: np.ndarray, at=slice(None)) -> None:
        start, end = offsets[part]
        blob[at, :, start:end] = tiles.reshape(-1, kt, end - start)

    step = max(1, _CHUNK_CODES // (tn * k_pad))  # N tiles unpacked at a time
    for first in range(0, nt, step):
        lo, hi = first * tn, min(nt, first + step) * tn
        codes = np.zeros((hi - lo, k_pad), np.uint8)
        real = weight.packed[lo:min(hi, n)]
        codes[: real.shape[0], :k] = unpack(real, _BITS, k)
        put("codes", _code_units(codes, tn, tk, s, t), slice(first, first + (hi - lo) // tn))
    scale_bits = _padded(bf16_bits(weight.scales), n_pad, k_pad // group, "<u2")
    put("scales", np.ascontiguousarray(_per_unit_column(scale_bits, tn, ng)).view(np.uint8))
    zeros = _per_unit_column(_padded(weight.zeros, n_pad, k_pad // group, np.uint8), tn, ng)
    put("zeros", _nibbles_to_bytes(np.ascontiguousarray(zeros).reshape(nt, kt, tn * ng)))
    if bias is not None:
        put("bias", _bias_tiles(bias, n, n_pad, tn, kt))
    return blob.reshape(-1) if columns * rows * block == 1 else _to_dma_order(blob, columns, rows, block)


def interleave_gate_up(weight: QuantizedWeight, bias: np.ndarray | None, n_pad: int,
                       tn: int) -> tuple[QuantizedWeight, np.ndarray | None]:
    """The rows of a fused gate/up weight ``[Wg; Wu]`` ([2n, k]) as the ``silu_mul`` epilogue of the linear kernels
    reads them: gate and up each padded to ``n_pad / 2`` rows (code, scale and zero 0), then cut into ``tn / 2``-row
    blocks, tile ``j`` of ``tn`` rows holding gate block ``j`` then up block ``j``. Returns the weight (and bias) of
    ``n_pad`` rows in that order, for :func:`pretile_linear` with ``n = n_pad``."""
    rows, k = weight.shape
    half, blocks = n_pad // 2, tn // 2
    if rows % 2 or n_pad % tn or half < rows // 2:
        raise CompileError(f"cannot interleave the gate and up rows of a [{rows}, {k}] weight into {n_pad} rows of "
                           f"{tn}-row tiles: the weight needs an even number of rows, at most {n_pad}, and {n_pad} "
                           f"must be a multiple of {tn}")
    n = rows // 2
    index = np.arange(n)
    at = (index // blocks) * tn + index % blocks  # where gate row i goes; up row i goes tn / 2 rows later
    order = np.concatenate([at, at + blocks])

    def moved(a: np.ndarray) -> np.ndarray:
        out = np.zeros((n_pad,) + a.shape[1:], a.dtype)
        out[order] = a
        return out

    spread = QuantizedWeight(moved(weight.packed), moved(weight.scales), moved(weight.zeros), weight.bits,
                             weight.group, (n_pad, k))
    return spread, (None if bias is None else moved(np.asarray(bias)))


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
                  bias: bool, columns: int = 1, rows: int = 1, block: int = 1, *,
                  mmul: MMulShape) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of :func:`pretile_linear`, for tests: ``bf16((q - z) * s)`` as float32 ``[n, k]``, and the bias as
    float32 ``[n]`` (None without one).

    With ``n = n_pad`` and ``k = k_pad`` the padding comes back too, so a test can check that it dequantizes to 0.
    The bias is read from the ``kt == 0`` tiles.
    """
    _check_grid(n, k, n_pad, k_pad, tn, tk, group)
    s, t = _check_blocks(tn, tk, group, mmul)
    nt, kt, ng = n_pad // tn, k_pad // tk, tk // group
    _check_order(nt, columns, rows, block)
    offsets = _offsets(tn, tk, group, bias)
    tiles = _from_dma_order(np.asarray(blob, dtype=np.uint8), nt, kt, columns, rows, block)

    def part(name: str) -> np.ndarray:
        start, end = offsets[name]
        return np.ascontiguousarray(tiles[:, :, start:end])

    codes = _codes_from_units(part("codes"), tn, tk, s, t).astype(np.float32)  # [n_pad, k_pad]
    scale_bits = part("scales").view("<u2").astype(np.uint16).reshape(nt, kt, tn // UNIT_ROWS, ng, UNIT_ROWS)
    scales = _from_unit_columns(from_bf16_bits(scale_bits))  # [n_pad, k_pad / G]
    zeros = _bytes_to_nibbles(part("zeros"))[:, :, : tn * ng].reshape(nt, kt, tn // UNIT_ROWS, ng, UNIT_ROWS)
    zeros = _from_unit_columns(zeros).astype(np.float32)
    per_k = lambda a: np.repeat(a, group, axis=1)  # noqa: E731  per group -> per input
    full = round_to_bf16((codes - per_k(zeros)) * per_k(scales))
    b = None
    if bias:
        bits = np.ascontiguousarray(part("bias")[:, 0]).view("<u2").astype(np.uint16).reshape(n_pad)
        b = from_bf16_bits(bits)[:n]
    return full[:n, :k], b
