"""What every core of a launch does, tile by tile: the kernel calls in order, with the DMA access pattern of every
tile they read or write. The host emulator runs exactly this; the design generator writes the same access patterns
into the runtime sequences; the plan's ``first`` patterns are the first entries of these lists.

This module holds what the schedules of every kernel family share; each family schedules its launches
(``schedule`` in :mod:`aielower.backends.aie.families`). A launch works on named tensors (``x``, ``w``, ``y``,
``a``, ``c``, ``q``, ``kv``, ...; see each family) laid out row-major at their padded sizes. A kernel argument is an input tile (one or more :class:`TileRef`, concatenated:
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


def contiguous(tensor: str, offset: int, n: int) -> TileRef:
    return TileRef(tensor, AccessPattern(offset, (n,), (1,)))


class Tiles(dict):
    """:func:`_contiguous` tiles made once per schedule and shared (a KV tile is referenced by every query tile
    that reads it: hundreds of thousands of references to a few thousand tiles at 7B prompt buckets)."""

    def __missing__(self, key: tuple[str, int, int]) -> TileRef:
        tile = self[key] = contiguous(*key)
        return tile

    def read(self, key: tuple[str, int, int]) -> "In":
        """The kernel argument reading the one tile ``key`` (made once, like the tile)."""
        found = self.get(("In",) + key)
        if found is None:
            found = self[("In",) + key] = In((self[key],))
        return found

    def reads(self, tensor: str, base: int, size: int, n: int) -> list["In"]:
        """:meth:`read` of the ``n`` consecutive tiles of ``size`` elements from ``base`` (a list made once per
        ``base``, grown as needed)."""
        run = self.get(("run", tensor, base, size))
        if run is None:
            run = self[("run", tensor, base, size)] = []
        for j in range(len(run), n):
            run.append(self.read((tensor, base + j * size, size)))
        return run


def cores_of(launch: LaunchPlan) -> list[CoreProgram]:
    return [CoreProgram(c, r) for c in range(launch.columns) for r in range(launch.rows)]


def blocks(items: int, parts: int) -> list[range]:
    """``items`` split into ``parts`` contiguous blocks, the first ones one longer when it does not divide."""
    base, extra = divmod(items, parts)
    out, start = [], 0
    for p in range(parts):
        n = base + (1 if p < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


def column_interleaved(items: int, columns: int, rows: int) -> list[range]:
    """``items`` split into contiguous blocks per column, each block dealt round-robin to the column's rows: row
    ``r`` of a column takes its block's items ``r, r + rows, ...``. Per core, in :func:`cores_of` order. A split
    stream's memory-tile element (one tile per row) then holds consecutive items, so a column's tiles of a
    row-major tensor are one run."""
    out = []
    for block in blocks(items, columns):
        out.extend(range(block.start + r, block.stop, rows) for r in range(rows))
    return out


# --------------------------------------------------------------------------- linear


@dataclass
class LinearWork:
    """The work of every core of a linear launch as arrays (big linears make millions of calls, too many for
    per-call objects; :func:`programs` turns this into :class:`CoreProgram` calls for the emulator, the design
    generator reads the arrays).

    A core's work items run in order; item ``i`` holds ``nb[i]`` accumulators (``Acc(j * acc_stride)``): ``init``
    each, then per K tile ``kt`` the activation tile ``x[i, kt]`` and one ``step`` per accumulator ``j`` with weight
    tile ``w[i, kt, j]``, then ``store`` each in ``parts`` calls, part ``p`` into output tile ``y[i, j * parts +
    p]`` (the store's slot is ``j * parts + p``). Offsets are elements of the tensors ``x_name`` / ``w`` (bytes) /
    ``y_name``; ``w`` holds -1 past ``nb[i]``, ``y`` past ``nb[i] * parts``. Every tile of a tensor has the same
    shape (``x_ap`` / ``y_ap`` at offset 0; weight tiles are ``w_bytes`` contiguous bytes)."""

    x_name: str
    y_name: str
    x_ap: AccessPattern
    y_ap: AccessPattern
    w_bytes: int
    acc_stride: int
    cores: dict  # (column, row) -> (nb [items], x [items, kt], w [items, kt, nb_max], y [items, nb_max * parts])
    parts: int = 1  # store calls per accumulator
    # (column, row) -> [items]: offset in ``w`` of each item's bias tile, whose values start its accumulators
    # (``bias_init`` each, from the tile, instead of ``init``); None: every item starts at zero
    bias: dict | None = None


def programs(launch: LaunchPlan, work: LinearWork) -> list[CoreProgram]:
    """The kernel calls of a linear launch, one :class:`CoreProgram` per core."""
    cores = cores_of(launch)
    for core in cores:
        nbs, xs, ws, ys = work.cores[(core.column, core.row)]
        bias = work.bias[(core.column, core.row)].tolist() if work.bias is not None else [None] * len(nbs)
        for nb, x_row, w_item, y_row, b in zip(nbs.tolist(), xs.tolist(), ws.tolist(), ys.tolist(), bias):
            accs = [Acc(j * work.acc_stride) for j in range(nb)]
            if b is None:
                core.calls.extend(Call("init", (acc,)) for acc in accs)
            else:
                tile = In((contiguous("w", b, work.w_bytes),))
                core.calls.extend(Call("bias_init", (tile, acc)) for acc in accs)
            for x_off, w_row in zip(x_row, w_item):
                x = In((TileRef(work.x_name, _at(work.x_ap, x_off)),))
                for j in range(nb):
                    core.calls.append(Call("step", (x, In((contiguous("w", w_row[j], work.w_bytes),)), accs[j])))
            for j in range(nb * work.parts):
                core.calls.append(Call("store", (accs[j // work.parts],
                                                 Out((TileRef(work.y_name, _at(work.y_ap, y_row[j])),)))))
    return cores


def _at(ap: AccessPattern, offset: int) -> AccessPattern:
    return AccessPattern(offset, ap.sizes, ap.strides)


__all__ = ["Acc", "Call", "CoreProgram", "In", "LinearWork", "Out", "TileRef", "Tiles", "blocks", "column_interleaved", "contiguous", "cores_of",
           "programs"]
