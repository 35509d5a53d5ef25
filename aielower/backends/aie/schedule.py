"""What every core of a launch does, tile by tile: the kernel calls in order, with the DMA access pattern of every
tile they read or write. The host emulator runs exactly this; the design generator writes the same access patterns
into the runtime sequences; the plan's ``first`` patterns are the first entries of these lists.

A launch works on named tensors (``x``, ``w``, ``y``, ``a``, ``c``, ``q``, ``k``, ``v``, ...; see each function) laid
out row-major at their padded sizes. A kernel argument is an input tile (one or more :class:`TileRef`, concatenated:
a joined tile), an output tile, a per-core accumulator at an element offset, or an int.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aielower.backends.aie.plan import AccessPattern, LaunchPlan


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


def gemv(launch: LaunchPlan, n_pad: int, k_pad: int, tile_bytes: int) -> list[CoreProgram]:
    """Tensors: ``x`` [k_pad] bf16, ``w`` the pre-tiled weights (bytes), ``y`` [n_pad] bf16."""
    p = launch.params
    tn, tk = p["tn"], p["tk"]
    kt_count = k_pad // tk
    cores = _cores(launch)
    for core, tiles in zip(cores, _blocks(n_pad // tn, len(cores))):
        for nt in tiles:
            core.calls.append(Call("init", (Acc(),)))
            for kt in range(kt_count):
                x = _contiguous("x", kt * tk, tk)
                w = _contiguous("w", (nt * kt_count + kt) * tile_bytes, tile_bytes)
                core.calls.append(Call("step", (In((x,)), In((w,)), Acc())))
            core.calls.append(Call("store", (Acc(), Out((_contiguous("y", nt * tn, tn),)))))
    return cores


def gemm(launch: LaunchPlan, m_pad: int, n_pad: int, k_pad: int, tile_bytes: int) -> list[CoreProgram]:
    """Tensors: ``a`` [m_pad, k_pad] bf16, ``w`` the pre-tiled weights, ``c`` [m_pad, n_pad] bf16. Columns split N,
    core rows split M; each core keeps ``nb`` accumulators so one activation tile serves ``nb`` weight tiles."""
    p = launch.params
    tm, tn, tk, nb, r, s, t = p["tm"], p["tn"], p["tk"], p["nb"], p["r"], p["s"], p["t"]
    kt_count = k_pad // tk
    column_tiles = _blocks(n_pad // tn, launch.columns)
    row_tiles = _blocks(m_pad // tm, launch.rows)
    cores = _cores(launch)
    for core in cores:
        n_tiles = list(column_tiles[core.column])
        for mt in row_tiles[core.row]:
            m0 = mt * tm
            for b0 in range(0, len(n_tiles), nb):
                block = n_tiles[b0 : b0 + nb]
                for j in range(len(block)):
                    core.calls.append(Call("init", (Acc(j * tm * tn),)))
                for kt in range(kt_count):
                    a = TileRef("a", AccessPattern(m0 * k_pad + kt * tk, (tm // r, tk // s, r, s), (r * k_pad, s, k_pad, 1)))
                    for j, nt in enumerate(block):
                        w = _contiguous("w", (nt * kt_count + kt) * tile_bytes, tile_bytes)
                        core.calls.append(Call("step", (In((a,)), In((w,)), Acc(j * tm * tn))))
                for j, nt in enumerate(block):
                    c = TileRef("c", AccessPattern(m0 * n_pad + nt * tn, (tm // r, tn // t, r, t), (r * n_pad, t, n_pad, 1)))
                    core.calls.append(Call("store", (Acc(j * tm * tn), Out((c,)))))
    return cores


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
    """Tensors: ``q`` and ``out`` [kv_heads * gq, s_pad, d] bf16, ``k`` and ``v`` [kv_heads, kv_rows, d].
    Query token ``i`` is at position ``position + i``; KV rows ``0 .. kv_valid - 1`` are valid."""
    p = launch.params
    d, gq, tq, tkv = p["d"], p["gq"], p["tq"], p["tkv"]
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
                    _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal)
    else:
        for core, items in zip(cores, _blocks(kv_heads * q_tiles, len(cores))):
            for item in items:
                h, qt = divmod(item, q_tiles)
                _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal)
    return cores


def _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal) -> None:
    """Query tile ``qt`` of KV head ``h``: init, one step per KV tile it can see, store."""
    q_pos0 = position + qt * tq
    q_ap = AccessPattern((h * gq * s_pad + qt * tq) * d, (gq, tq, d), (s_pad * d, d, 1))
    last = min(kv_valid, q_pos0 + tq) if causal else kv_valid  # KV rows any query of the tile can see
    core.calls.append(Call("init", (Acc(),)))
    for j in range(-(-last // tkv)):
        k = _contiguous("k", (h * kv_rows + j * tkv) * d, tkv * d)
        v = _contiguous("v", (h * kv_rows + j * tkv) * d, tkv * d)
        core.calls.append(Call("step", (In((TileRef("q", q_ap),)), In((k, v)), Acc(), q_pos0, j * tkv,
                                       min(tkv, kv_valid - j * tkv))))
    core.calls.append(Call("store", (Acc(), Out((TileRef("out", q_ap),)))))


__all__ = ["Acc", "Call", "CoreProgram", "In", "Out", "TileRef", "attention", "gemm", "gemv", "rms_norm", "rope",
           "silu_mul"]
