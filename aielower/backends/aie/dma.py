"""DMA access patterns: the algebra every design and the emulator share.

An :class:`~aielower.backends.aie.plan.AccessPattern` is an element offset plus up to four (size, stride) dims,
outermost first; reading it in row-major order of the index gives the elements in stream order. This module
canonicalizes patterns, expands them to offsets, fits them to what one shim buffer descriptor can walk
(:class:`DmaLimits`, :func:`hardware_dims`), folds sequences of patterns into as few transfers as the hardware allows
(:func:`compact`, :func:`compact_offsets`), and splits a tile's pattern into the box DDR holds and the reordering a
memory tile applies (:func:`box`). Memory-tile and core buffer descriptors have their own limits
(:data:`MEMTILE_DIMS`, :func:`split_dims`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from aielower.backends.aie.plan import AccessPattern
from aielower.errors import CompileError



@dataclass(frozen=True)
class DmaLimits:
    """What one shim-tile buffer descriptor can walk, for ``aiex.npu.dma_memcpy_nd`` on tensors of
    ``element_bytes``-byte elements. Source: Xilinx/mlir-aie lib/Dialect/AIEX/IR/AIEXDialect.cpp
    (``verifyStridesWraps``: shim NOC tile wraps 10 bits, steps 20 bits, iteration 6 bits; transfer sizes, strides
    and offsets in 4-byte words; a linear transfer may exceed the d0 wrap) and ``NpuWriteBdOp::verify``."""

    element_bytes: int
    word_bytes: int = 4  # address generation granularity
    max_d0_words: int = 1023
    max_d1: int = 1023
    max_repeat: int = 64  # d3, the iteration dimension
    max_stride_words: int = 1 << 20


def canonical(ap: AccessPattern) -> AccessPattern:
    """The same element sequence with size-1 dims dropped and contiguous neighbours merged."""
    sizes, strides = _canonical(ap.sizes, ap.strides)
    return AccessPattern(ap.offset, sizes, strides)


def _canonical(sizes: tuple[int, ...], strides: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    dims = [(s, t) for s, t in zip(sizes, strides) if s > 1] or [(1, 1)]
    merged = [dims[-1]]
    for size, stride in reversed(dims[:-1]):
        inner_size, inner_stride = merged[-1]
        if stride == inner_size * inner_stride:
            merged[-1] = (size * inner_size, inner_stride)
        else:
            merged.append((size, stride))
    merged.reverse()
    return tuple(s for s, _ in merged), tuple(t for _, t in merged)


def expand(ap: AccessPattern) -> np.ndarray:
    """Every element offset ``ap`` visits, in stream order."""
    offsets = np.array([ap.offset], dtype=np.int64)
    for size, stride in zip(ap.sizes, ap.strides):
        offsets = (offsets[:, None] + np.arange(size, dtype=np.int64)[None, :] * stride).reshape(-1)
    return offsets


def hardware_dims(ap: AccessPattern, limits: DmaLimits) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``ap`` as the four (size, stride) pairs of ``dma_memcpy_nd`` (d3 outermost), or None if one shim buffer
    descriptor cannot walk it. A pattern of fewer than four dims is right-aligned, or has its outermost dim moved to
    d3 (the repeat dimension, the only one that may have stride 0); an innermost run longer than the d0 wrap is
    cut into equal rows when a dim is free."""
    if (ap.offset * limits.element_bytes) % limits.word_bytes:
        return None
    return _hardware_dims(tuple(ap.sizes), tuple(ap.strides), limits)


@lru_cache(maxsize=65536)
def _hardware_dims(sizes: tuple[int, ...], strides: tuple[int, ...], limits: DmaLimits):
    if strides[-1] != 1:
        return None
    for sizes, strides in _cut_innermost(list(sizes), list(strides), limits):
        n = len(sizes)
        if n > 4:
            continue
        placements = [([1] * (4 - n) + sizes, [0] * (4 - n) + strides)]
        if 1 < n < 4:
            placements.append(([sizes[0]] + [1] * (4 - n) + sizes[1:], [strides[0]] + [0] * (4 - n) + strides[1:]))
        for s4, t4 in placements:
            t4 = [t if s > 1 else 0 for s, t in zip(s4, t4)]
            t4[3] = 1
            if _fits(s4, t4, limits):
                return tuple(s4), tuple(t4)
    return None


def _cut_innermost(sizes: list[int], strides: list[int], limits: DmaLimits):
    """The dims as they are, then with the innermost run cut into rows of the longest length the d0 wrap allows."""
    yield sizes, strides
    inner = sizes[-1]
    longest = limits.max_d0_words * limits.word_bytes // limits.element_bytes
    for row in range(min(inner, longest), 0, -1):
        if inner % row == 0 and (row * limits.element_bytes) % limits.word_bytes == 0:
            if row < inner:
                yield sizes[:-1] + [inner // row, row], strides[:-1] + [row, 1]
            return


def _fits(s4: list[int], t4: list[int], limits: DmaLimits) -> bool:
    eb, word = limits.element_bytes, limits.word_bytes
    if (s4[3] * eb) % word:
        return False
    linear = s4[1] == 1 and s4[2] == 1
    if not linear and s4[3] * eb // word > limits.max_d0_words:
        return False
    if s4[2] > limits.max_d1 or s4[0] > limits.max_repeat:
        return False
    for i in range(3):
        if s4[i] == 1:
            continue
        if t4[i] < (0 if i == 0 else 1) or (t4[i] * eb) % word or t4[i] * eb // word > limits.max_stride_words:
            return False
    return True


def compact(aps: list[AccessPattern], limits: DmaLimits) -> list[AccessPattern]:
    """Fewer access patterns covering exactly the element sequence of ``aps`` (in order), each one a single shim
    transfer under ``limits``: runs of equal-shaped patterns at a constant offset step become one pattern with an
    extra outer dim, repeatedly, so that nested regular structure (tiles of rows of blocks) folds up to four dims."""
    out: list[AccessPattern] = []
    i = 0
    current = [canonical(ap) for ap in aps]
    while i < len(current):
        j = i
        while j < len(current) and current[j].sizes == current[i].sizes and current[j].strides == current[i].strides:
            j += 1
        offsets = np.array([ap.offset for ap in current[i:j]], np.int64)
        out.extend(compact_offsets(offsets, current[i].sizes, current[i].strides, limits))
        i = j
    return out


def compact_offsets(offsets: np.ndarray, sizes: tuple[int, ...], strides: tuple[int, ...],
                    limits: DmaLimits) -> list[AccessPattern]:
    """:func:`compact` of the patterns ``(offset, sizes, strides)`` for every offset in ``offsets``, in order, on
    arrays: a stream of a million tiles costs NumPy passes, not a million pattern objects."""
    sizes, strides = _canonical(tuple(sizes), tuple(strides))
    for offset in {int(offsets[0]), int(offsets[-1])} if len(offsets) else ():
        _check_walkable(offset, sizes, strides, limits)
    if len(offsets) and ((offsets * limits.element_bytes) % limits.word_bytes).any():
        bad = int(offsets[(offsets * limits.element_bytes) % limits.word_bytes != 0][0])
        _check_walkable(bad, sizes, strides, limits)
    groups = [(np.asarray(offsets, np.int64), sizes, strides)]
    while True:
        folded = []
        for group in groups:
            for item in _fold_group(*group, limits):
                if folded and folded[-1][1] == item[1] and folded[-1][2] == item[2]:
                    folded[-1] = (np.concatenate([folded[-1][0], item[0]]), item[1], item[2])
                else:
                    folded.append(item)
        if sum(len(g[0]) for g in folded) == sum(len(g[0]) for g in groups):
            break
        groups = folded
    return [AccessPattern(int(o), sz, st) for offs, sz, st in groups for o in offs.tolist()]


def _check_walkable(offset: int, sizes, strides, limits: DmaLimits) -> None:
    if hardware_dims(AccessPattern(offset, sizes, strides), limits) is None:
        raise CompileError(f"access pattern offset={offset} sizes={list(sizes)} strides={list(strides)} "
                           "cannot be walked by one shim DMA buffer descriptor (at most 4 dims, innermost stride "
                           "1, 4-byte words, wraps < 1024, repeat <= 64, strides < 4 MiB)")


@lru_cache(maxsize=65536)
def _run(sizes: tuple[int, ...], strides: tuple[int, ...], step: int, n: int, limits: DmaLimits):
    """The shape ``(sizes, strides)`` of ``n`` patterns ``(sizes, strides)`` at offset step ``step`` as one
    pattern, or None if one transfer cannot walk it."""
    if step < 0:
        return None
    sz, st = _canonical((n,) + sizes, (step,) + strides)
    if len(sz) > 4 or hardware_dims(AccessPattern(0, sz, st), limits) is None:
        return None
    return sz, st


@lru_cache(maxsize=65536)
def _longest_run(sizes: tuple[int, ...], strides: tuple[int, ...], step: int, limits: DmaLimits) -> int:
    """About the most patterns at offset step ``step`` one transfer can walk (0: not even two); the walkable
    lengths are nearly always a prefix, and the caller checks the length it takes with :func:`_run`."""
    if _run(sizes, strides, step, 2, limits) is None:
        return 0
    lo = 2
    while lo < (1 << 40) and _run(sizes, strides, step, lo * 2, limits) is not None:
        lo *= 2
    hi = lo * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _run(sizes, strides, step, mid, limits) is not None else (lo, mid)
    return lo


def _fold_group(offsets: np.ndarray, sizes, strides, limits: DmaLimits) -> list[tuple]:
    """One folding pass over equal-shaped patterns: greedy runs at a constant offset step (as long as one transfer
    can walk them) become one pattern each. Returns groups ``(offsets, sizes, strides)`` in order."""
    n = len(offsets)
    if n < 2:
        return [(offsets, sizes, strides)]
    d = np.diff(offsets)
    # Runs of the first run's length k at its step d0 are preferred over longer greedy runs: a run that reaches
    # into the next block (contiguous by accident) would break the regular structure the next passes fold.
    d0 = int(d[0])
    longest = _longest_run(sizes, strides, d0, limits)
    k = min(int(np.argmax(d != d0)) + 1 if (d != d0).any() else n, longest)
    k = k if k > 1 and _run(sizes, strides, d0, k, limits) is not None else 0
    if k and n % k == 0 and (offsets.reshape(-1, k)[:, 1:] - offsets.reshape(-1, k)[:, :-1] == d0).all():
        return [(offsets[::k].copy(), *_run(sizes, strides, d0, k, limits))]  # fast path: all rows of k
    good = np.zeros(n, bool)  # good[i]: items i .. i+k-1 are a run at step d0
    if k:
        same = np.concatenate([[0], np.cumsum(d == d0)])
        good[: n - k + 1] = same[k - 1 :] - same[: n - k + 1] == k - 1
    # General case: a scan over the runs, on plain ints.
    out: list[tuple] = []
    offs, diffs, good = offsets.tolist(), d.tolist(), good.tolist()
    i = 0

    def emit(group_offsets, sz, st):
        if out and out[-1][1] == sz and out[-1][2] == st:
            out[-1][0].extend(group_offsets)
        else:
            out.append((list(group_offsets), sz, st))

    while i < n:
        if good[i]:
            emit([offs[i]], *_run(sizes, strides, d0, k, limits))
            i += k
            continue
        if i == n - 1:
            emit([offs[i]], sizes, strides)
            break
        step = diffs[i]
        longest = _longest_run(sizes, strides, step, limits)
        e = i
        while e < n - 1 and diffs[e] == step and e - i + 1 < longest and not (k and good[e + 1]):
            e += 1
        while e > i and _run(sizes, strides, step, e - i + 1, limits) is None:
            e -= 1
        if e == i:
            emit([offs[i]], sizes, strides)
        else:
            emit([offs[i]], *_run(sizes, strides, step, e - i + 1, limits))
        i = e + 1
    return [(np.array(o, np.int64), sz, st) for o, sz, st in out]


def box(ap: AccessPattern) -> tuple[AccessPattern, AccessPattern | None]:
    """Split a tile's pattern into the row-major box of elements it covers (what DDR reads or writes) and the
    reordering of that box into the pattern's stream order (None when the pattern already is the box), in elements
    of the box's row-major layout."""
    sizes, strides, order = _box(ap.sizes, ap.strides)
    return AccessPattern(ap.offset, sizes, strides), order


@lru_cache(maxsize=4096)
def _box(sizes: tuple[int, ...], strides: tuple[int, ...]):
    dims = sorted(zip(sizes, strides, range(len(sizes))), key=lambda d: (-d[1], d[2]))
    for (size, stride, _), (inner_size, inner_stride, _) in zip(dims, dims[1:]):
        if stride < inner_size * inner_stride or (size > 1 and stride == 0):
            raise CompileError(f"tile pattern sizes={list(sizes)} strides={list(strides)} overlaps itself: it is "
                               "not a permutation of a box, which the DMA designs need")
    local = {}
    run = 1
    for size, _, i in reversed(dims):
        local[i] = run
        run *= size
    outer = _canonical(tuple(d[0] for d in dims), tuple(d[1] for d in dims))
    order = canonical(AccessPattern(0, sizes, tuple(local[i] for i in range(len(sizes)))))
    return outer[0], outer[1], (None if len(order.sizes) == 1 else order)




# ================================================================================== tile buffer descriptors


@dataclass(frozen=True)
class BdLimits:
    """What one memory-tile or core buffer descriptor (an object FIFO's ``dimensionsToStream`` /
    ``dimensionsFromStream``) can walk. Sources: ``DMABDOp::verify`` (Xilinx/mlir-aie lib/Dialect/AIE/IR/
    AIEDialect.cpp, 5ff2ab97) rejects any dim size of 513 or more, on every tile; the register widths aie-rt enforces
    when the transaction is built (lib/regdb/aie_registers_aie2.json beside our aie-opt; measured with
    convert-aie-to-transaction): memory tile 4 dims, wraps 10 bits, steps 17 bits (words); core 3 dims, wraps 8 bits,
    steps 13 bits (words)."""

    tile: str
    max_dims: int
    max_size: int  # elements per dim
    max_stride_words: int


MEMTILE_BD = BdLimits("memory tile", 4, 512, 1 << 17)
CORE_BD = BdLimits("core", 3, 255, 1 << 13)


def split_dims(dims: tuple[tuple[int, int], ...], limits: BdLimits, element_bytes: int) -> tuple[tuple[int, int], ...]:
    """``dims`` (outermost first, elements) rewritten to fit ``limits``: size-1 dims dropped, contiguous neighbours
    merged, then every dim larger than ``limits.max_size`` cut into an outer and an inner dim (``(a*b, s)`` ->
    ``(a, b*s), (b, s)`` with the largest ``b`` that fits). A linear walk needs no dims at all and gives ``()``.
    A CompileError when no cut fits the limits."""
    sizes, strides = _canonical(tuple(s for s, _ in dims), tuple(t for _, t in dims))
    if len(sizes) == 1 and strides[0] == 1:
        return ()
    out: list[tuple[int, int]] = []
    for size, stride in zip(sizes, strides):
        pieces = []
        while size > limits.max_size:
            inner = next((b for b in range(limits.max_size, 1, -1) if size % b == 0), None)
            if inner is None:
                raise CompileError(f"a {limits.tile} buffer descriptor cannot walk a dim of {size} elements: it is "
                                   f"larger than {limits.max_size} and has no factor up to {limits.max_size}")
            pieces.insert(0, (inner, stride))
            size, stride = size // inner, stride * inner
        out.extend([(size, stride)] + pieces)
    for size, stride in out:
        if size > 1 and (stride * element_bytes > limits.max_stride_words * 4):
            raise CompileError(f"a {limits.tile} buffer descriptor cannot step {stride} elements ({stride * element_bytes:,} "
                               f"bytes; at most {limits.max_stride_words:,} words)")
    if len(out) > limits.max_dims:
        raise CompileError(f"a {limits.tile} buffer descriptor has at most {limits.max_dims} dims, this walk needs "
                           f"{len(out)}: {out}")
    return tuple(out)
