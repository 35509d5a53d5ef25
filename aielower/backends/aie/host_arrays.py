"""Host-side arrays of the AIE launches: bf16 bit patterns, padding to a launch's padded sizes, and the DDR tensors
the designs read (the blocked KV tensor, query records with the step header). Shared by the host program and the kernel families' host
hooks."""

from __future__ import annotations

import numpy as np

from aielower.backends.aie.kernels import STEP_HEADER
from aielower.quant.bf16 import bf16_bits, from_bf16_bits


def to_bf16(x: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) of ``x``, rounded to nearest even."""
    return bf16_bits(np.asarray(x, dtype=np.float32))


def from_bf16(bits: np.ndarray) -> np.ndarray:
    """float32 values of bf16 bit patterns."""
    return from_bf16_bits(bits)


def pad2(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``x`` [r, c] zero-padded to [rows, cols]."""
    out = np.zeros((rows, cols), x.dtype)
    out[: x.shape[0], : x.shape[1]] = x
    return out


def step_header(position: int, kv_len: int) -> np.ndarray:
    """The step header of the cached attention designs' query records (what the host writes each step): the
    position of the step's first query token and the valid KV length as two little-endian int32, in
    :data:`STEP_HEADER` bf16 slots."""
    words = np.zeros(STEP_HEADER // 2, "<i4")
    words[:2] = (position, kv_len)
    return words.view(np.uint16).copy()


def tile_records(parts: list[np.ndarray], tr: int) -> np.ndarray:
    """Row-tile records of arrays ``parts`` (each [m_pad, d], ``m_pad`` a multiple of ``tr``): per tile of ``tr``
    rows, the tile of each part in turn, ``[m_pad / tr][len(parts)][tr][d]`` (flat). With one part, the array."""
    m_pad, d = parts[0].shape
    return np.stack([p.reshape(m_pad // tr, tr * d) for p in parts], axis=1).reshape(-1)


def from_tile_records(records: np.ndarray, n: int, m_pad: int, d: int, tr: int) -> list[np.ndarray]:
    """Inverse of :func:`tile_records`: the ``n`` arrays [m_pad, d]."""
    tiles = records.reshape(m_pad // tr, n, tr * d)
    return [tiles[:, i].reshape(m_pad, d) for i in range(n)]


def query_records(queries: np.ndarray, kv_heads: int, tq: int, header: np.ndarray,
                  rotary: np.ndarray | None = None,
                  step: tuple[np.ndarray, np.ndarray] | None = None,
                  blocks: tuple[int, int] | None = None) -> np.ndarray:
    """The cached attention designs' ``q`` DDR tensor: ``queries`` bf16 bits [heads, s_pad, d] (padded, heads of
    KV head ``h`` at ``h * gq ...``) as one record per (KV head, query tile of ``tq`` rows), ``[kv_heads][s_pad /
    tq][record]``: the tile's queries [gq][tq][d]; with ``step`` (decode), the step's keys and values, each
    [kv_heads, rows, d], of the tile's KV head: keys [rows][d] then values [rows][d]; with ``rotary`` (the
    position's rotary row [d], decode with the rotary embedding fused), that row; then ``header``
    (:func:`step_header`). With ``blocks`` (``s, t``: the mmul attention designs), a tile's queries are transposed
    in ``s x t`` blocks (:func:`mmul_query_tiles`)."""
    heads, s_pad, d = queries.shape
    gq, n_tiles = heads // kv_heads, s_pad // tq
    if blocks is not None:
        tiles = mmul_query_tiles(queries, kv_heads, tq, *blocks)
    else:
        tiles = queries.reshape(kv_heads, gq, n_tiles, tq, d).transpose(0, 2, 1, 3, 4)
    parts = [tiles.reshape(kv_heads, n_tiles, -1)]
    if step is not None:
        keys, values = (np.asarray(a, np.uint16) for a in step)
        if keys.shape != values.shape or keys.shape[0] != kv_heads or keys.shape[2] != d:
            raise ValueError(f"query_records: step keys {keys.shape} and values {values.shape} must both be "
                             f"[{kv_heads}, rows, {d}]")
        per_head = np.concatenate([keys.reshape(kv_heads, -1), values.reshape(kv_heads, -1)], axis=1)
        parts.append(np.broadcast_to(per_head[:, None], (kv_heads, n_tiles, per_head.shape[1])))
    tail = np.asarray(header, np.uint16) if rotary is None else np.concatenate([np.asarray(rotary, np.uint16),
                                                                                np.asarray(header, np.uint16)])
    parts.append(np.broadcast_to(tail, (kv_heads, n_tiles, len(tail))))
    return np.concatenate(parts, axis=2).reshape(-1)


def kv_blocks(keys: np.ndarray, values: np.ndarray, kv_heads: int, kv_rows: int, d: int, tkv: int) -> np.ndarray:
    """The attention designs' ``kv`` DDR tensor: ``keys`` and ``values`` [heads, rows, d'] padded to [kv_heads,
    kv_rows, d] and blocked by KV tile as [kv_heads][kv_rows / tkv][K|V][tkv][d] (flat), the layout of a
    :class:`~aielower.backends.aie.kv_cache.BlockedKvCache`."""
    k = pad3(keys, kv_heads, kv_rows, d).reshape(kv_heads, kv_rows // tkv, 1, tkv, d)
    v = pad3(values, kv_heads, kv_rows, d).reshape(kv_heads, kv_rows // tkv, 1, tkv, d)
    return np.concatenate([k, v], axis=2).reshape(-1)


def mmul_blocks(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """``x`` [..., A, B] as row-major blocks of ``a x b`` in row-major order, ``[..., A / a, B / b, a, b]``: the
    layout ``aie::mmul`` operands are loaded in."""
    *lead, rows, cols = x.shape
    blocks = x.reshape(*lead, rows // a, a, cols // b, b)
    return np.swapaxes(blocks, -3, -2).reshape(*lead, rows // a, cols // b, a, b)


def mmul_query_tiles(queries: np.ndarray, kv_heads: int, tq: int, s: int, t: int) -> np.ndarray:
    """The queries of the mmul attention designs: ``queries`` bf16 bits [heads, s_pad, d] (heads of KV head ``h``
    at ``h * gq ...``) as one tile per (KV head, query tile of ``tq`` rows), ``[kv_heads][s_pad / tq][d / s][R / t]
    [s][t]``: the tile's ``R = gq * tq`` rows (head-major) transposed, in the mmul's ``s x t`` B blocks."""
    heads, s_pad, d = queries.shape
    gq, n_tiles = heads // kv_heads, s_pad // tq
    tiles = queries.reshape(kv_heads, gq, n_tiles, tq, d).transpose(0, 2, 1, 3, 4).reshape(kv_heads, n_tiles, -1, d)
    return mmul_blocks(np.swapaxes(tiles, -1, -2), s, t).reshape(-1)


def pad3(x: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
    """``x`` [x0, x1, x2] zero-padded to [a, b, c], flat."""
    out = np.zeros((a, b, c), x.dtype)
    out[: x.shape[0], : x.shape[1], : x.shape[2]] = x
    return out.reshape(-1)


__all__ = ["from_bf16", "from_tile_records", "kv_blocks", "mmul_blocks", "mmul_query_tiles", "pad2", "pad3",
           "query_records", "step_header", "tile_records", "to_bf16"]
