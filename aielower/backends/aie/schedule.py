"""What every core of a launch does, tile by tile: the kernel calls in order, with the DMA access pattern of every
tile they read or write. The host emulator runs exactly this; the design generator writes the same access patterns
into the runtime sequences; the plan's ``first`` patterns are the first entries of these lists.

A launch works on named tensors (``x``, ``w``, ``y``, ``a``, ``c``, ``q``, ``k``, ``v``, ...; see each function) laid
out row-major at their padded sizes. A kernel argument is an input tile (one or more :class:`TileRef`, concatenated:
a joined tile), an output tile, a per-core accumulator at an element offset, or an int.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aielower.backends.aie.kernels import STEP_HEADER
from aielower.backends.aie.plan import AccessPattern, LaunchPlan
from aielower.backends.aie.weights import tile_positions
from aielower.errors import CompileError


@dataclass(frozen=True)
class TileRef:
    tensor: str
    ap: AccessPattern


@dataclass(frozen=True)
class In:
    tiles: tuple[TileRef, ...]


@dataclass(frozen=True)
class Out:
    tiles: tuple[TileRef, ...]


@dataclass(frozen=True)
class Acc:
    """The core's fp32 accumulator / state buffer, from element ``offset``."""

    offset: int = 0


@dataclass(frozen=True)
class Call:
    function: str  # the extern "C" suffix: "init", "step", "store", or "" for single-function kernels
    args: tuple


@dataclass
class CoreProgram:
    column: int
    row: int
    calls: list[Call] = field(default_factory=list)


def _contiguous(tensor: str, offset: int, n: int) -> TileRef:
    return TileRef(tensor, AccessPattern(offset, (n,), (1,)))


class _Tiles(dict):
    """:func:`_contiguous` tiles made once per schedule and shared (a KV tile is referenced by every query tile
    that reads it: hundreds of thousands of references to a few thousand tiles at 7B prompt buckets)."""

    def __missing__(self, key: tuple[str, int, int]) -> TileRef:
        tile = self[key] = _contiguous(*key)
        return tile

    def read(self, key: tuple[str, int, int]) -> "In":
        """The kernel argument reading the one tile ``key`` (made once, like the tile)."""
        found = self.get(("In",) + key)
        if found is None:
            found = self[("In",) + key] = In((self[key],))
        return found


def _cores(launch: LaunchPlan) -> list[CoreProgram]:
    return [CoreProgram(c, r) for c in range(launch.columns) for r in range(launch.rows)]


def _blocks(items: int, parts: int) -> list[range]:
    """``items`` split into ``parts`` contiguous blocks, the first ones one longer when it does not divide."""
    base, extra = divmod(items, parts)
    out, start = [], 0
    for p in range(parts):
        n = base + (1 if p < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


# --------------------------------------------------------------------------- linear


@dataclass
class LinearWork:
    """The work of every core of a linear launch as arrays (big linears make millions of calls, too many for
    per-call objects; :func:`programs` turns this into :class:`CoreProgram` calls for the emulator, the design
    generator reads the arrays).

    A core's work items run in order; item ``i`` holds ``nb[i]`` accumulators (``Acc(j * acc_stride)``): ``init``
    each, then per K tile ``kt`` the activation tile ``x[i, kt]`` and one ``step`` per accumulator ``j`` with weight
    tile ``w[i, kt, j]``, then ``store`` each into output tile ``y[i, j]``. Offsets are elements of the tensors
    ``x_name`` / ``w`` (bytes) / ``y_name``; ``w`` and ``y`` hold -1 past ``nb[i]``. Every tile of a tensor has the
    same shape (``x_ap`` / ``y_ap`` at offset 0; weight tiles are ``w_bytes`` contiguous bytes)."""

    x_name: str
    y_name: str
    x_ap: AccessPattern
    y_ap: AccessPattern
    w_bytes: int
    acc_stride: int
    cores: dict  # (column, row) -> (nb [items], x [items, kt], w [items, kt, nb_max], y [items, nb_max])


def gemv_work(launch: LaunchPlan, n_pad: int, k_pad: int, tile_bytes: int,
              grid: tuple[int, int]) -> LinearWork:
    """Tensors: ``x`` [k_pad] bf16, ``w`` the pre-tiled weights (bytes, in the DMA order of the ``grid`` it was cut
    for, which must be this launch's), ``y`` [n_pad] bf16. Core ``(c, r)`` computes the ``c * rows + r``-th block of
    output tiles in items of up to ``nb`` tiles (one accumulator each): per K tile, one activation tile serves the
    item's ``nb`` weight tiles, so the activation streams once per item, not once per output tile."""
    p = launch.params
    tn, tk, nb = p["tn"], p["tk"], p.get("nb", 1)
    n_tiles, k_tiles = n_pad // tn, k_pad // tk
    if grid != (launch.columns, launch.rows):
        raise CompileError(f"the GEMV runs on {launch.columns}x{launch.rows} cores but its weights are ordered for "
                           f"{grid[0]}x{grid[1]}")
    cores = {}
    kts = np.arange(k_tiles, dtype=np.int64)
    for index, tiles in enumerate(_blocks(n_tiles, launch.columns * launch.rows)):
        nt = np.arange(tiles.start, tiles.stop, dtype=np.int64)
        items = -(-len(nt) // nb)
        padded = np.full(items * nb, -1, np.int64)
        padded[: len(nt)] = nt
        blocks = padded.reshape(items, nb)  # [item, j]: output tile, -1 past the last
        w = np.where(blocks[:, None, :] >= 0,
                     tile_positions(np.maximum(blocks, 0)[:, None, :], kts[None, :, None], n_tiles, k_tiles, *grid)
                     * tile_bytes, -1)  # [item, kt, j]
        nbs = (blocks >= 0).sum(axis=1).astype(np.int64)
        cores[divmod(index, launch.rows)] = (nbs, np.broadcast_to(kts * tk, (items, k_tiles)), w,
                                             np.where(blocks >= 0, blocks * tn, -1))
    return LinearWork("x", "y", AccessPattern(0, (tk,), (1,)), AccessPattern(0, (tn,), (1,)), tile_bytes, tn, cores)


def gemm_work(launch: LaunchPlan, m_pad: int, n_pad: int, k_pad: int, tile_bytes: int,
              grid: tuple[int, int]) -> LinearWork:
    """Tensors: ``a`` [m_pad, k_pad] bf16, ``w`` the pre-tiled weights (in the DMA order of the GEMV ``grid``),
    ``c`` [m_pad, n_pad] bf16. Columns split N as the GEMV grid does and take their N tiles in the blob's order
    (so a column's weight reads stay regular); core rows take the M tiles round-robin (row ``r`` the tiles ``r, r +
    rows, ...``: a memory-tile element of the split activation stream is ``rows x tm`` consecutive rows). Each
    core keeps ``nb`` accumulators, so one activation tile serves ``nb`` weight tiles; items are (M tile, block of
    ``nb`` N tiles), M tile major."""
    p = launch.params
    tm, tn, tk, nb, r, s, t = p["tm"], p["tn"], p["tk"], p["nb"], p["r"], p["s"], p["t"]
    n_tiles, k_tiles, m_tiles = n_pad // tn, k_pad // tk, m_pad // tm
    if grid[0] != launch.columns:
        raise CompileError(f"the GEMM runs on {launch.columns} columns but its weights are ordered for {grid[0]}")
    per_column = n_tiles // launch.columns
    per_core = per_column // grid[1]
    kts = np.arange(k_tiles, dtype=np.int64)
    blocks = [(b0, min(nb, per_column - b0)) for b0 in range(0, per_column, nb)]
    cores = {}
    for c in range(launch.columns):
        i, lane = np.divmod(np.arange(per_column, dtype=np.int64), grid[1])  # the column's tiles in blob order
        nt = c * per_column + lane * per_core + i
        w_all = tile_positions(nt[None, :], kts[:, None], n_tiles, k_tiles, *grid) * tile_bytes  # [kt, tile]
        nbs = np.array([n for _, n in blocks], np.int64)
        w_blk = np.full((len(blocks), k_tiles, nb), -1, np.int64)
        n_blk = np.full((len(blocks), nb), -1, np.int64)
        for b, (b0, n) in enumerate(blocks):
            w_blk[b, :, :n] = w_all[:, b0 : b0 + n]
            n_blk[b, :n] = nt[b0 : b0 + n]
        for row in range(launch.rows):
            mts = np.arange(row, m_tiles, launch.rows, dtype=np.int64)
            m0 = np.repeat(mts * tm, len(blocks))  # items: M tile major, N block minor
            x = m0[:, None] * k_pad + kts[None, :] * tk
            y = np.where(np.tile(n_blk, (len(mts), 1)) >= 0, m0[:, None] * n_pad + np.tile(n_blk, (len(mts), 1)) * tn,
                         -1)
            cores[(c, row)] = (np.tile(nbs, len(mts)), x, np.tile(w_blk, (len(mts), 1, 1)), y)
    x_ap = AccessPattern(0, (tm // r, tk // s, r, s), (r * k_pad, s, k_pad, 1))
    y_ap = AccessPattern(0, (tm // r, tn // t, r, t), (r * n_pad, t, n_pad, 1))
    return LinearWork("a", "c", x_ap, y_ap, tile_bytes, tm * tn, cores)


def programs(launch: LaunchPlan, work: LinearWork) -> list[CoreProgram]:
    """The kernel calls of a linear launch, one :class:`CoreProgram` per core."""
    cores = _cores(launch)
    for core in cores:
        nbs, xs, ws, ys = work.cores[(core.column, core.row)]
        for nb, x_row, w_item, y_row in zip(nbs.tolist(), xs.tolist(), ws.tolist(), ys.tolist()):
            accs = [Acc(j * work.acc_stride) for j in range(nb)]
            core.calls.extend(Call("init", (acc,)) for acc in accs)
            for x_off, w_row in zip(x_row, w_item):
                x = In((TileRef(work.x_name, _at(work.x_ap, x_off)),))
                for j in range(nb):
                    core.calls.append(Call("step", (x, In((_contiguous("w", w_row[j], work.w_bytes),)), accs[j])))
            for j in range(nb):
                core.calls.append(Call("store", (accs[j], Out((TileRef(work.y_name, _at(work.y_ap, y_row[j])),)))))
    return cores


def _at(ap: AccessPattern, offset: int) -> AccessPattern:
    return AccessPattern(offset, ap.sizes, ap.strides)


def gemv(launch: LaunchPlan, n_pad: int, k_pad: int, tile_bytes: int, grid: tuple[int, int]) -> list[CoreProgram]:
    """:func:`gemv_work` as kernel calls."""
    return programs(launch, gemv_work(launch, n_pad, k_pad, tile_bytes, grid))


def gemm(launch: LaunchPlan, m_pad: int, n_pad: int, k_pad: int, tile_bytes: int,
         grid: tuple[int, int]) -> list[CoreProgram]:
    """:func:`gemm_work` as kernel calls."""
    return programs(launch, gemm_work(launch, m_pad, n_pad, k_pad, tile_bytes, grid))


# --------------------------------------------------------------------------- norms, silu_mul, rope


def rms_norm(launch: LaunchPlan, m_pad: int) -> list[CoreProgram]:
    """Tensors: ``x`` (or ``a`` and ``b``) [m_pad, d] bf16, ``w`` [d], ``y`` (and ``sum``) [m_pad, d]."""
    p = launch.params
    d, tr, add = p["d"], p["tr"], p["add"]
    cores = _cores(launch)
    ins, outs = (("a", "b"), ("sum", "y")) if add else (("x",), ("y",))
    for core, tiles in zip(cores, _blocks(m_pad // tr, len(cores))):
        for i in tiles:
            x = In(tuple(_contiguous(name, i * tr * d, tr * d) for name in ins))
            y = Out(tuple(_contiguous(name, i * tr * d, tr * d) for name in outs))
            core.calls.append(Call("", (x, In((_contiguous("w", 0, d),)), y)))
    return cores


def silu_mul(launch: LaunchPlan, m: int, i_pad: int) -> list[CoreProgram]:
    """Tensors: ``gu`` [m, 2*i_pad] bf16 (gate columns, then up columns), ``y`` [m, i_pad]."""
    t = launch.params["t"]
    per_row = i_pad // t
    cores = _cores(launch)
    for core, items in zip(cores, _blocks(m * per_row, len(cores))):
        for item in items:
            row, ct = divmod(item, per_row)
            gate = _contiguous("gu", row * 2 * i_pad + ct * t, t)
            up = _contiguous("gu", row * 2 * i_pad + i_pad + ct * t, t)
            core.calls.append(Call("", (In((gate, up)), Out((_contiguous("y", row * i_pad + ct * t, t),)))))
    return cores


def rope(launch: LaunchPlan, heads: int, s: int, s_pad: int, out_rows: int = 0, out_start: int = 0) -> list[CoreProgram]:
    """Tensors: ``x`` [heads, s_pad, d] bf16, ``cs`` [s_pad, d] (cos | sin halves per position), ``y``. By default
    ``y`` is laid out like ``x``; with ``out_rows`` it is a KV cache [heads, out_rows, d] and the ``s`` valid rows of
    each head land at rows ``out_start ...`` (the rotated keys go straight into the cache)."""
    d, tr = launch.params["d"], launch.params["tr"]
    per_head = s_pad // tr
    cores = _cores(launch)
    for core, items in zip(cores, _blocks(heads * per_head, len(cores))):
        for item in items:
            h, i = divmod(item, per_head)
            t0 = i * tr
            x = _contiguous("x", (h * s_pad + t0) * d, tr * d)
            cs = _contiguous("cs", t0 * d, tr * d)
            if out_rows:
                valid = min(tr, s - t0)
                if valid <= 0:
                    continue
                y = _contiguous("y", (h * out_rows + out_start + t0) * d, valid * d)
            else:
                y = _contiguous("y", (h * s_pad + t0) * d, tr * d)
            core.calls.append(Call("", (In((x,)), In((cs,)), Out((y,)))))
    return cores


# --------------------------------------------------------------------------- attention


def attention(launch: LaunchPlan, kv_heads: int, s: int, s_pad: int, kv_rows: int, kv_valid: int, position: int,
              causal: bool) -> list[CoreProgram]:
    """Tensors: ``q`` and ``out`` [kv_heads * gq, s_pad, d] bf16; ``kv`` [kv_heads, kv_rows / tkv, 2, tkv, d]: the
    keys and values blocked by KV tile (block ``j`` of head ``h`` holds rows ``j * tkv ...`` of K, then of V).
    Query token ``i`` is at position ``position + i``; KV rows ``0 .. kv_valid - 1`` are valid. With a step header
    (attention over a cache), every query tile is followed by the ``step`` tensor's header slots."""
    p = launch.params
    d, gq, tq, tkv = p["d"], p["gq"], p["tq"], p["tkv"]
    header = STEP_HEADER if p.get("header") else 0
    tiles = _Tiles()
    q_tiles = -(-s // tq)
    cores = _cores(launch)
    kv_stream = next(st for st in launch.streams if st.name == "kv")
    if kv_stream.to_cores == "broadcast":
        # The rows of a column share one KV stream, so they take consecutive query tiles of the same KV head:
        # a column item is (head, group of `rows` query tiles); row r takes tile `group * rows + r`.
        groups = -(-q_tiles // launch.rows)
        per_column = _blocks(kv_heads * groups, launch.columns)
        for core in cores:
            for item in per_column[core.column]:
                h, g = divmod(item, groups)
                qt = g * launch.rows + core.row
                if qt < q_tiles:
                    _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal,
                                    header, tiles)
    else:
        for core, items in zip(cores, _blocks(kv_heads * q_tiles, len(cores))):
            for item in items:
                h, qt = divmod(item, q_tiles)
                _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal, header,
                                tiles)
    return cores


def _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal, header=0,
                    tiles=None) -> None:
    """Query tile ``qt`` of KV head ``h``: init, one step per KV tile it can see, store. ``tiles`` shares the KV
    and header tiles between items."""
    tiles = _Tiles() if tiles is None else tiles
    q_pos0 = position + qt * tq
    q_ap = AccessPattern((h * gq * s_pad + qt * tq) * d, (gq, tq, d), (s_pad * d, d, 1))
    last = min(kv_valid, q_pos0 + tq) if causal else kv_valid  # KV rows any query of the tile can see
    q = In((TileRef("q", q_ap),) + ((tiles["step", 0, header],) if header else ()))
    acc = Acc()
    calls = core.calls
    calls.append(Call("init", (acc,)))
    base, size = h * kv_rows * 2 * d, 2 * tkv * d
    for j in range(-(-last // tkv)):
        row = j * tkv
        calls.append(Call("step", (q, tiles.read(("kv", base + row * 2 * d, size)), acc, q_pos0, row,
                                   min(tkv, kv_valid - row))))
    calls.append(Call("store", (acc, Out((TileRef("out", q_ap),)))))


__all__ = ["Acc", "Call", "CoreProgram", "In", "LinearWork", "Out", "TileRef", "attention", "gemm", "gemm_work", "gemv",
           "gemv_work", "programs", "rms_norm", "rope", "silu_mul"]
