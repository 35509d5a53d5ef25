"""MLIR-AIE designs: one ``aie.device`` module per launch (one kernel at one shape), rendered from
``templates/design/design.mlir.j2``.

Everything in a design follows from the launch's plan and its schedule (:mod:`aielower.backends.aie.schedule`, the
source of truth for who reads which tile):

- tiles: per used column one shim tile (row 0), one memory tile (row 1) and ``rows`` cores (rows 2 ...);
- object FIFOs, one chain per plan :class:`~aielower.backends.aie.plan.Stream` and column (the topology of
  :mod:`aielower.backends.aie.budget`): shim -> memory tile -> cores for inputs, cores -> memory tile -> shim for
  outputs. A ``split`` stream has one memory-tile FIFO whose element holds one tile per core row, linked to one FIFO
  per row at offsets (outputs: joined the same way); a ``broadcast`` stream has one FIFO with every row as consumer.
  A joined stream (several tensors) carries, per row, the parts one after the other; in the memory tile the parts
  are grouped by tensor (``[part][row][tile]``) so that one DMA transfer covers a tensor's tiles for all rows.
  A tile whose access pattern is not a row-major box (the GEMM's mmul-blocked tiles) is read from DDR as its
  bounding box and blocked by the memory tile (``dimensionsToStream`` / ``dimensionsFromStream``);
- one ``aie.core`` per core: the kernel calls of the schedule as loops of acquire / call / release; scalar
  arguments of the attention step come from a run-time parameter buffer (position and valid KV length) so that
  one design serves every decode step;
- the runtime sequence: per column and stream, the DDR access patterns of the schedule's tiles in stream order,
  compacted into as few ``aiex.npu.dma_memcpy_nd`` transfers as the shim DMA can express (:func:`compact`), with
  buffer-descriptor ids and the waits that free them, then one ``aiex.npu.dma_wait`` per output transfer.

A column whose core rows get different numbers of work items (e.g. 11 items on 4 rows) is padded: a row short of
items repeats the item another row of the column runs at that step. The repeat recomputes and rewrites identical
values, and keeps the rows of a split stream in lockstep.

Before rendering, every core body is executed symbolically (:func:`_trace`) and must feed each kernel call exactly
the tiles, accumulator and scalars the schedule gives that call; a mismatch is a CompileError, not a silent design.
Linears (millions of calls for a big GEMM) do all of this on arrays: the schedule gives their work as
:class:`~aielower.backends.aie.schedule.LinearWork`, the body is traced loop by loop (:func:`_trace_arrays`), and
the DMA compaction runs on offset arrays (:func:`compact_offsets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import count
from math import prod

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.buildfile import render_build_file  # re-exported: designs and their build file
from aielower.backends.aie.device import Device
from aielower.backends.aie.plan import AccessPattern, LaunchPlan, OpPlan, Stream
from aielower.backends.aie.planner import roundup
from aielower.errors import CompileError
from aielower.backends.aie.templating import ENV


# mlir-aie device names (Xilinx/mlir-aie docs/Devices.md): npu1 is used through its 4-column partition, npu2 whole.
_AIE_DEVICE = {"npu1": "npu1_4col", "npu2": "npu2"}
_MEMREF_ELEMENT = {"bf16": "bf16", "f32": "f32", "u8": "i8"}
_ELEMENT_BYTES = {"bf16": 2, "f32": 4, "i8": 1}
_ACCUMULATING = ("linear_w4_gemv", "linear_w4_gemm", "attention")  # init / step / store kernels
_LINEAR = ("linear_w4_gemv", "linear_w4_gemm")  # scheduled as arrays (sched.LinearWork), checked on arrays
FOREVER = 4294967295  # the core loops over launches; one iteration per run of the runtime sequence


# ================================================================================== access patterns


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


# ================================================================================== the design as data


@dataclass(frozen=True)
class Fifo:
    name: str
    producer: str
    consumers: tuple[str, ...]
    depth: int
    type: str
    to_stream: tuple[tuple[int, int], ...] = ()  # producer dimensionsToStream
    from_stream: tuple[tuple[int, int], ...] = ()  # consumer dimensionsFromStream (one consumer)


@dataclass(frozen=True)
class Link:
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    source_offsets: tuple[int, ...]
    destination_offsets: tuple[int, ...]


@dataclass(frozen=True)
class Transfer:
    column: int
    stream: int
    fifo: str
    tensor: str
    ap: AccessPattern
    output: bool
    start: float  # share of the stream's elements before this transfer (issue order)
    end: float  # ... and up to its last element
    sizes: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()


@dataclass
class StreamInfo:
    """One plan stream with what the schedule says about it."""

    index: int
    plan: Stream
    output: bool
    kind: str  # kernel argument kind: bf16 / u8
    part: int = 0  # elements of one tensor part of one core's tile
    parts: int = 1
    order: AccessPattern | None = None  # box -> stream reordering of a part (memory-tile dims)
    tensors: tuple[str, ...] = ()  # the tensor of each part
    shape: tuple = ()  # (sizes, strides) of each part's tile

    @property
    def element(self) -> str:
        return _MEMREF_ELEMENT[self.kind]

    @property
    def tile(self) -> int:
        return self.part * self.parts


# --- core bodies: a small tree the template renders line by line and _trace executes ------------------------


@dataclass
class Loop:
    count: int
    body: list


@dataclass
class Acquire:
    stream: int
    var: str


@dataclass
class Release:
    stream: int


@dataclass
class Call:
    function: str
    args: list  # ("elem", FIFO element var) | ("acc", accumulator index) | ("i32", scalar var)


@dataclass
class Load:
    var: str
    index: int  # word of the core's run-time parameter buffer


@dataclass
class Arith:
    var: str
    op: str  # addi / subi / muli
    lhs: object  # var name (str) or int constant
    rhs: object


@dataclass
class Cast:
    """The innermost enclosing loop's induction variable as i32."""

    var: str


@dataclass
class CoreDesign:
    column: int
    row: int
    body: list
    accs: int = 0
    acc_size: int = 0
    rtp: tuple[int, ...] = ()  # run-time parameter defaults (attention: position, valid KV length)
    elements: dict = field(default_factory=dict)  # stream -> list of tile tuples this core's FIFO delivers


# ================================================================================== schedule at the bucket


def _programs(launch: LaunchPlan, op_plan: OpPlan) -> tuple[list[sched.CoreProgram], tuple[int, ...]]:
    """The schedule of ``launch`` at its bucket, and the run-time parameter defaults it was made with."""
    s, b, p = op_plan.shape, launch.bucket, launch.params
    if launch.kernel in _LINEAR:
        return sched.programs(launch, _linear_work(launch, op_plan)), ()
    if launch.kernel == "rms_norm":
        return sched.rms_norm(launch, roundup(b, p["tr"])), ()
    if launch.kernel == "silu_mul":
        return sched.silu_mul(launch, b, s["i_pad"]), ()
    cache = s.get("cache_len", 0)
    if launch.kernel == "rope":
        heads = s["heads"] if launch.role == "rope_q" else s["kv_heads"]
        if launch.role == "rope_k" and cache:  # rotated keys go into the cache at the step's position (patched)
            return sched.rope(launch, heads, b, roundup(b, p["tr"]), out_rows=cache, out_start=cache - b), ()
        return sched.rope(launch, heads, b, roundup(b, p["tr"])), ()
    if launch.kernel == "attention":
        kv_rows, kv_valid, position = (cache, cache, cache - b) if cache else (roundup(b, p["tkv"]), b, 0)
        programs = sched.attention(launch, s["kv_heads"], b, roundup(b, p["tq"]), kv_rows, kv_valid, position,
                                   p["causal"])
        return programs, (position, kv_valid)
    raise CompileError(f"no design for kernel family {launch.kernel!r}")


def _linear_work(launch: LaunchPlan, op_plan: OpPlan) -> sched.LinearWork:
    s = op_plan.shape
    grid = (s["w_columns"], s["w_rows"])
    if launch.kernel == "linear_w4_gemv":
        return sched.gemv_work(launch, s["n_pad"], s["k_pad"], s["tile_bytes"], grid)
    return sched.gemm_work(launch, launch.bucket, s["n_pad"], s["k_pad"], s["tile_bytes"], grid)


def _units(calls: list[sched.Call]) -> list[list[sched.Call]]:
    """A core's calls cut into work items: init ... store for accumulating kernels, one call otherwise."""
    units: list[list[sched.Call]] = []
    previous = None
    for call in calls:
        if call.function in ("", "init") and previous not in ("init",):
            units.append([])
        units[-1].append(call)
        previous = call.function
    return units


def _stream_args(call: sched.Call, output: bool) -> list:
    return [a for a in call.args if isinstance(a, sched.Out if output else sched.In)]


# ================================================================================== building a design


class _Builder:
    def __init__(self, launch: LaunchPlan, op_plan: OpPlan, device: Device, spec, name: str):
        self.launch, self.op_plan, self.device, self.spec, self.name = launch, op_plan, device, spec, name
        self.family = launch.kernel
        ins = [s for s in launch.streams if s.direction == "in"]
        outs = [s for s in launch.streams if s.direction == "out"]
        self.streams = [StreamInfo(i, s, s.direction == "out", "") for i, s in enumerate(ins + outs)]
        self.ins, self.outs = self.streams[: len(ins)], self.streams[len(ins):]
        if any(s.plan.to_cores == "broadcast" for s in self.outs):
            raise CompileError(f"{name}: an output stream cannot be broadcast")
        self.work = None
        if self.family in _LINEAR:
            self.rtp = ()
            self.work = _linear_work(launch, op_plan)
            self._linear_init()
            return
        programs, self.rtp = _programs(launch, op_plan)
        self.cores = {(p.column, p.row): _units(p.calls) for p in programs}
        self.padded = self._equalize()
        self.items = {key: (len(units), len(units) - len(self.cores[key])) for key, units in self.padded.items()}
        self._kinds()
        self.elements, self.drains = self._elements()
        self._shapes()
        self.seq = {}
        for st in self.streams:
            self.seq[st.index] = {}
            for key, per_core in self.elements[st.index].items():
                for tiles in per_core:
                    if tuple(t.tensor for t in tiles) != st.tensors:
                        raise CompileError(f"{name}: the parts of stream '{st.plan.name}' change tensors")
                self.seq[st.index][key] = np.array([[t.ap.offset for t in tiles] for tiles in per_core],
                                                   np.int64).reshape(len(per_core), st.parts)

    # -- linears: the schedule as arrays -------------------------------------------------------------------------

    def _linear_init(self) -> None:
        """Streams, elements and shapes of a linear launch from its :class:`~schedule.LinearWork`: x and w tiles
        per step (one element per distinct consecutive tile within an item), y tiles per store."""
        L, work, name = self.launch, self.work, self.name
        x, w = self.ins
        (y,) = self.outs
        step = self.spec.signature(self.spec.symbol + "_step")
        store = self.spec.signature(self.spec.symbol + "_store")
        x.kind, w.kind, y.kind = step[0].kind, step[1].kind, store[1].kind
        x.tensors, w.tensors, y.tensors = (work.x_name,), ("w",), (work.y_name,)
        x.shape = ((work.x_ap.sizes, work.x_ap.strides),)
        w.shape = (((work.w_bytes,), (1,)),)
        y.shape = ((work.y_ap.sizes, work.y_ap.strides),)
        self.seq = {st.index: {} for st in self.streams}
        self.items = {}
        for key, (nbs, xs, ws, ys) in work.cores.items():
            self.items[key] = (len(nbs), 0)
            item = np.arange(len(nbs))
            steps = np.repeat(nbs, xs.shape[1])  # accumulators per (item, kt)
            valid = np.arange(ws.shape[2])[None, :] < steps[:, None]
            self.seq[x.index][key] = _distinct(xs.reshape(-1), np.repeat(item, xs.shape[1]))
            w_items = np.repeat(np.repeat(item, xs.shape[1]), ws.shape[2]).reshape(-1, ws.shape[2])
            self.seq[w.index][key] = _distinct(ws.reshape(-1, ws.shape[2])[valid], w_items[valid])
            y_valid = np.arange(ys.shape[1])[None, :] < nbs[:, None]
            self.seq[y.index][key] = ys[y_valid].reshape(-1, 1)
        for c in range(L.columns):
            if not any(self.items[(c, r)][0] for r in range(L.rows)):
                raise CompileError(f"{name}: column {c} of the {L.columns}x{L.rows} grid gets no work from the "
                                   "schedule; plan fewer columns")
            for st in self.streams:
                rows = [self.seq[st.index][(c, r)] for r in range(L.rows)]
                if st.plan.to_cores == "broadcast":
                    if any(not np.array_equal(rows[0], other) for other in rows[1:]):
                        raise CompileError(f"{name}: stream '{st.plan.name}' is broadcast to the rows of column {c}, "
                                           "but the schedule gives them different tiles; the plan's broadcast and "
                                           "the schedule's assignment of work to cores disagree")
                elif len({len(r_) for r_ in rows}) > 1:
                    raise CompileError(f"{name}: rows of column {c} read {sorted({len(r_) for r_ in rows})} tiles of "
                                       f"split stream '{st.plan.name}'; a split stream needs the same count per row")
        for st in self.streams:
            (sizes, strides), = st.shape
            st.parts, st.part = 1, prod(sizes)
            st.order = box(AccessPattern(0, sizes, strides))[1]
            if st.tile * _ELEMENT_BYTES[st.element] != st.plan.tile_bytes:
                raise CompileError(f"{name}: stream '{st.plan.name}' moves {st.tile * _ELEMENT_BYTES[st.element]} "
                                   f"bytes per tile by the schedule but {st.plan.tile_bytes} by the plan")

    # -- work items --------------------------------------------------------------------------------------------

    def _equalize(self) -> dict:
        """Per column, give every row as many work items as the busiest one: a short row repeats the item the
        first busier row runs at that step (identical output, rewritten)."""
        L = self.launch
        padded = {}
        for c in range(L.columns):
            rows = [self.cores[(c, r)] for r in range(L.rows)]
            most = max(len(u) for u in rows)
            if most == 0:
                raise CompileError(f"{self.name}: column {c} of the {L.columns}x{L.rows} grid gets no work from the "
                                   "schedule; plan fewer columns")
            for r, units in enumerate(rows):
                extra = [next(o[k] for o in rows if len(o) > k) for k in range(len(units), most)]
                padded[(c, r)] = units + extra
        return padded

    def _kinds(self) -> None:
        """The element kind of every stream, from the kernel's signature (the n-th In argument is the n-th input
        stream, as in the emulator); the first call of each function settles it."""
        done: set[str] = set()
        for units in self.padded.values():
            for call in (call for unit in units for call in unit):
                if call.function in done:
                    continue
                done.add(call.function)
                fn = self.spec.symbol + (f"_{call.function}" if call.function else "")
                n_in = n_out = 0
                for arg, declared in zip(call.args, self.spec.signature(fn)):
                    if isinstance(arg, sched.In):
                        self.ins[n_in].kind = declared.kind
                        n_in += 1
                    elif isinstance(arg, sched.Out):
                        self.outs[n_out].kind = declared.kind
                        n_out += 1
        for s in self.streams:
            if not s.kind:
                raise CompileError(f"{self.name}: the schedule never uses stream '{s.plan.name}'")

    def _elements(self) -> tuple[dict, dict]:
        """Per stream and core, the FIFO elements in order (a tuple of tile refs each): consecutive calls on the
        same tile share one element. Broadcast streams deliver one sequence to a whole column; a row whose item
        needs a prefix of it drains the rest (attention: KV tiles past a query tile's causal limit)."""
        L = self.launch
        elements: dict = {s.index: {} for s in self.streams}
        drains: dict = {}
        for s in self.streams:
            slot = (self.outs if s.output else self.ins).index(s)
            for key, units in self.padded.items():
                per_unit = []
                last = None
                for unit in units:
                    mine = []
                    if self.family in _ACCUMULATING:
                        last = None  # an item's first tile is a new element even if the last item ended on it
                    for call in unit:
                        args = _stream_args(call, s.output)
                        if not args:
                            continue
                        tiles = args[slot].tiles
                        if tiles != last:
                            mine.append(tiles)
                        last = tiles
                    per_unit.append(mine)
                elements[s.index][key] = per_unit
            if s.plan.to_cores != "broadcast":
                for key in elements[s.index]:
                    elements[s.index][key] = [t for unit in elements[s.index][key] for t in unit]
                for c in range(L.columns):
                    counts = {len(elements[s.index][(c, r)]) for r in range(L.rows)}
                    if len(counts) > 1:
                        raise CompileError(f"{self.name}: rows of column {c} read {sorted(counts)} tiles of split "
                                           f"stream '{s.plan.name}'; a split stream needs the same count per row")
                continue
            for c in range(L.columns):
                rows = [elements[s.index][(c, r)] for r in range(L.rows)]
                union = []
                for k in range(len(rows[0])):
                    longest = max((row[k] for row in rows), key=len)
                    for r, row in enumerate(rows):
                        if row[k] != longest[: len(row[k])]:
                            raise CompileError(
                                f"{self.name}: stream '{s.plan.name}' is broadcast to the rows of column {c}, but at "
                                f"work item {k} the schedule gives them different tiles (e.g. {row[k][0][0].tensor} "
                                f"at offset {row[k][0][0].ap.offset} vs {longest[0][0].tensor} at offset "
                                f"{longest[0][0].ap.offset}); the plan's broadcast and the schedule's assignment of "
                                "work to cores disagree")
                        drains[(s.index, c, r, k)] = len(longest) - len(row[k])
                    union.extend(longest)
                for r in range(L.rows):
                    elements[s.index][(c, r)] = union
        return elements, drains

    def _shapes(self) -> None:
        """Part size and memory-tile reordering of every stream, checked against the plan and the kernel."""
        for s in self.streams:
            shapes = {tuple((t.ap.sizes, t.ap.strides) for t in tiles)
                      for per_core in self.elements[s.index].values() for tiles in per_core}
            if len(shapes) != 1:
                raise CompileError(f"{self.name}: tiles of stream '{s.plan.name}' have {len(shapes)} different shapes; "
                                   "one FIFO element type needs one")
            (shape,) = shapes
            s.shape = shape
            first = next(tiles for per_core in self.elements[s.index].values() for tiles in per_core)
            s.tensors = tuple(t.tensor for t in first)
            s.parts = len(shape)
            sizes = {prod(sz) for sz, _ in shape}
            if len(sizes) != 1:
                raise CompileError(f"{self.name}: the parts of joined stream '{s.plan.name}' differ in size")
            s.part = sizes.pop()
            orders = {box(AccessPattern(0, sz, st))[1] for sz, st in shape}
            s.order = orders.pop() if len(orders) == 1 else None
            if s.order is not None and s.parts > 1:
                raise CompileError(f"{self.name}: joined stream '{s.plan.name}' needs a memory-tile reordering")
            eb = _ELEMENT_BYTES[s.element]
            if s.tile * eb != s.plan.tile_bytes:
                raise CompileError(f"{self.name}: stream '{s.plan.name}' moves {s.tile * eb} bytes per tile by the "
                                   f"schedule but {s.plan.tile_bytes} by the plan")

    # -- names ---------------------------------------------------------------------------------------------------

    def fifo(self, s: StreamInfo, column: int, row: int | None = None) -> str:
        """``None`` row: the shim <-> memory-tile FIFO; else the memory-tile <-> core FIFO of that row."""
        base = f"{s.plan.name}_c{column}"
        if row is None:
            return base
        return f"{base}_cores" if s.plan.to_cores == "broadcast" else f"{base}_r{row}"

    def memref(self, s: StreamInfo, n: int | None = None) -> str:
        return f"memref<{s.tile if n is None else n}x{s.element}>"

    # -- FIFOs and links -----------------------------------------------------------------------------------------

    def fifos(self) -> tuple[list[Fifo], list[Link]]:
        L = self.launch
        fifos, links = [], []
        for s in self.streams:
            split = s.plan.to_cores == "split"
            depth = s.plan.depth
            for c in range(L.columns):
                shim, mem = f"%shim_{c}", f"%mem_{c}"
                outer = self.fifo(s, c)
                l2 = s.tile * (L.rows if split else 1)
                cores = [f"%tile_{c}_{r + 2}" for r in range(L.rows)]
                # Within one row's element the parts are [part][tile]; in the memory tile [part][row][tile].
                if s.parts > 1 and split:
                    dims = ((s.parts, L.rows * s.part), (s.part, 1))
                else:
                    dims = tuple(zip(s.order.sizes, s.order.strides)) if s.order is not None else ()
                if not s.output:
                    fifos.append(Fifo(outer, shim, (mem,), depth, self.memref(s, l2)))
                    if split:
                        inner = [self.fifo(s, c, r) for r in range(L.rows)]
                        for r, name in enumerate(inner):
                            fifos.append(Fifo(name, mem, (cores[r],), depth, self.memref(s), to_stream=dims))
                        links.append(Link((outer,), tuple(inner), (), tuple(r * s.part for r in range(L.rows))))
                    else:
                        inner = self.fifo(s, c, 0)
                        fifos.append(Fifo(inner, mem, tuple(cores), depth, self.memref(s), to_stream=dims))
                        links.append(Link((outer,), (inner,), (), ()))
                else:
                    inner = [self.fifo(s, c, r) for r in range(L.rows)]
                    for r, name in enumerate(inner):
                        fifos.append(Fifo(name, cores[r], (mem,), depth, self.memref(s), from_stream=dims))
                    fifos.append(Fifo(outer, mem, (shim,), depth, self.memref(s, l2)))
                    links.append(Link(tuple(inner), (outer,), tuple(r * s.part for r in range(L.rows)), ()))
        return fifos, links

    # -- core bodies ---------------------------------------------------------------------------------------------

    def core(self, column: int, row: int) -> CoreDesign:
        if self.work is not None:
            core = CoreDesign(column, row, [])
            nbs = self.work.cores[(column, row)][0]
            core.acc_size = self.spec.signature(self.spec.functions[0])[0].size
            core.accs = int(nbs.max()) if len(nbs) else 0
            core.body = self._body_linear([(int(nb), self.work.cores[(column, row)][1].shape[1]) for nb in nbs],
                                          (f"v{i}" for i in count()))
            return core
        units = self.padded[(column, row)]
        names = (f"v{i}" for i in count())
        build = self._body_attention if self.family == "attention" else self._body_elementwise
        core = CoreDesign(column, row, [])
        core.body = build(core, units, names)
        core.elements = {s.index: self.elements[s.index][(column, row)] for s in self.streams}
        return core

    def _acc(self, core: CoreDesign, units) -> dict:
        offsets = sorted({a.offset for unit in units for call in unit for a in call.args if isinstance(a, sched.Acc)})
        fn = self.spec.functions[0]
        core.acc_size = self.spec.signature(fn)[0].size
        core.accs = len(offsets)
        return {off: i for i, off in enumerate(offsets)}

    def _body_elementwise(self, core: CoreDesign, units, names) -> list:
        """One call per item; a stream whose one element serves every item (a broadcast norm weight) is
        acquired once around the loop."""
        key = (core.column, core.row)
        held = [s for s in self.streams if len(self.elements[s.index][key]) == 1 and len(units) > 1]
        each = [s for s in self.streams if s not in held]
        pre = [Acquire(s.index, next(names)) for s in held]
        var = {a.stream: a.var for a in pre}
        step = [Acquire(s.index, next(names)) for s in each]
        var.update({a.stream: a.var for a in step})
        call = (units[0][0].function, [s.index for s in self.ins] + [s.index for s in self.outs])
        args = [("elem", var[i]) for i in call[1]]
        # The schedule passes In args then Out args in signature order for these kernels.
        body = step + [Call(call[0], args)] + [Release(s.index) for s in each]
        loop = [Loop(len(units), body)] if len(units) > 1 else body
        return pre + loop + [Release(s.index) for s in held]

    def _body_linear(self, shapes: list[tuple[int, int]], names) -> list:
        """Linear kernels, one work item per ``(nb, kt)`` in ``shapes``: ``init`` accumulators ``0 .. nb-1``, then
        per K tile the activation tile once and one ``step`` per weight tile, then ``store`` every accumulator.
        Consecutive items of one shape share a loop, and a repeating sequence of such loops (one per M tile pass
        of a GEMM) an outer loop."""
        x, w = self.ins
        (y,) = self.outs
        runs: list[list] = []  # [shape, count]
        for shape in shapes:
            if runs and runs[-1][0] == shape:
                runs[-1][1] += 1
            else:
                runs.append([shape, 1])
        period = next(p for p in range(1, len(runs) + 1)
                      if len(runs) % p == 0 and all(runs[i] == runs[i % p] for i in range(len(runs))))

        def item(nb: int, kt: int) -> list:
            accs = list(range(nb))
            xv, wv, yv = next(names), [next(names) for _ in accs], [next(names) for _ in accs]
            steps = [Acquire(x.index, xv)]
            for a, v in zip(accs, wv):
                steps += [Acquire(w.index, v), Call("step", [("elem", xv), ("elem", v), ("acc", a)]), Release(w.index)]
            steps.append(Release(x.index))
            body = [Call("init", [("acc", a)]) for a in accs] + ([Loop(kt, steps)] if kt > 1 else steps)
            for a, v in zip(accs, yv):
                body += [Acquire(y.index, v), Call("store", [("acc", a), ("elem", v)]), Release(y.index)]
            return body

        body = []
        for (nb, kt), n in runs[:period]:
            body += [Loop(n, item(nb, kt))] if n > 1 else item(nb, kt)
        repeat = len(runs) // period
        return [Loop(repeat, body)] if repeat > 1 else body

    def _body_attention(self, core: CoreDesign, units, names) -> list:
        """Per work item: hold the query tile, ``init``, one ``step`` per KV tile with the positions computed from
        the run-time parameters (P = position of the bucket's first query token, L = valid KV length), drain the
        broadcast KV tiles past this item's causal limit, ``store``."""
        self._acc(core, units)
        core.rtp = self.rtp
        q, kv = self.ins
        (out,) = self.outs
        tkv = self.launch.params["tkv"]
        body = []
        for k, unit in enumerate(units):
            steps = [c for c in unit if c.function == "step"]
            qv, pv, lv, q0 = next(names), next(names), next(names), next(names)
            kvv, jv, kv0, valid = next(names), next(names), next(names), next(names)
            body += [Acquire(q.index, qv), Load(pv, 0), Load(lv, 1),
                     Arith(q0, "addi", pv, steps[0].args[3] - self.rtp[0] if steps else 0),
                     Call("init", [("acc", 0)])]
            loop = [Acquire(kv.index, kvv), Cast(jv), Arith(kv0, "muli", jv, tkv), Arith(valid, "subi", lv, kv0),
                    Call("step", [("elem", qv), ("elem", kvv), ("acc", 0), ("i32", q0), ("i32", kv0),
                                  ("i32", valid)]),
                    Release(kv.index)]
            body.append(Loop(len(steps), loop))
            drain = self.drains.get((kv.index, core.column, core.row, k), 0)
            if drain:
                body.append(Loop(drain, [Acquire(kv.index, next(names)), Release(kv.index)]))
            ov = next(names)
            body += [Acquire(out.index, ov), Call("store", [("acc", 0), ("elem", ov)]), Release(out.index),
                     Release(q.index)]
        return body

    # -- runtime sequence ----------------------------------------------------------------------------------------

    def transfers(self) -> list[Transfer]:
        """Per column and stream, the DDR boxes of the stream's tiles in stream order (element, part, row),
        compacted per run of one tensor."""
        L = self.launch
        out = []
        for s in self.streams:
            limits = DmaLimits(_ELEMENT_BYTES[s.element])
            boxes = [box(AccessPattern(0, sizes, strides))[0] for sizes, strides in s.shape]
            for c in range(L.columns):
                rows = range(L.rows) if s.plan.to_cores == "split" else range(1)
                flat = np.stack([self.seq[s.index][(c, r)] for r in rows], axis=-1).reshape(-1)  # [e][part][row]
                part = np.tile(np.repeat(np.arange(s.parts), len(rows)), len(flat) // (s.parts * len(rows)) or 1)
                part = part[: len(flat)]
                tensor = np.array([s.tensors.index(t) for t in s.tensors])[part]  # parts of one tensor share runs
                same = np.flatnonzero(np.diff(tensor) != 0) + 1 if s.parts > 1 else np.zeros(0, np.int64)
                starts = np.concatenate([[0], same]).astype(np.int64)
                ends = np.concatenate([same, [len(flat)]]).astype(np.int64)
                total = sum(boxes[p].elements for p in part.tolist()) if s.parts > 1 else boxes[0].elements * len(flat)
                done = 0
                for i, j in zip(starts.tolist(), ends.tolist()):
                    p = int(part[i])
                    shapes = {(boxes[q].sizes, boxes[q].strides) for q in set(part[i:j].tolist())}
                    if len(shapes) == 1:
                        aps = compact_offsets(flat[i:j] + boxes[p].offset, boxes[p].sizes, boxes[p].strides, limits)
                    else:
                        aps = compact([AccessPattern(int(o) + boxes[q].offset, boxes[q].sizes, boxes[q].strides)
                                       for o, q in zip(flat[i:j].tolist(), part[i:j].tolist())], limits)
                    for ap in aps:
                        sizes, strides = hardware_dims(ap, limits)
                        out.append(Transfer(c, s.index, self.fifo(s, c), s.tensors[p], ap, s.output, done / total,
                                            (done + ap.elements) / total, sizes, strides))
                        done += ap.elements
        return out

    def tensors(self) -> list[tuple[str, str, int]]:
        """Runtime-sequence arguments: (tensor, memref element type, elements), in order of first use."""
        seen: dict[str, list] = {}
        for s in self.streams:
            for p, (name, (sizes, strides)) in enumerate(zip(s.tensors, s.shape)):
                extent = sum((n - 1) * t for n, t in zip(sizes, strides))
                for offsets in self.seq[s.index].values():
                    if not len(offsets):
                        continue
                    entry = seen.setdefault(name, [s.element, 0])
                    entry[1] = max(entry[1], int(offsets[:, p].max()) + extent + 1)
        return [(name, element, n) for name, (element, n) in seen.items()]


# ================================================================================== checking and ordering


def _trace(core: CoreDesign, streams: list[StreamInfo]) -> list[tuple]:
    """Run a core body symbolically: the kernel calls it makes, with the tiles each FIFO element holds."""
    taken = {s.index: 0 for s in streams}
    held: dict[str, tuple] = {}
    ints: dict[str, int] = {}
    calls = []

    def value(x):
        return x if isinstance(x, int) else ints[x]

    def run(nodes, iv):
        for node in nodes:
            if isinstance(node, Loop):
                for i in range(node.count):
                    run(node.body, i)
            elif isinstance(node, Acquire):
                held[node.var] = core.elements[node.stream][taken[node.stream]]
                taken[node.stream] += 1
            elif isinstance(node, Load):
                ints[node.var] = core.rtp[node.index]
            elif isinstance(node, Cast):
                ints[node.var] = iv
            elif isinstance(node, Arith):
                a, b = value(node.lhs), value(node.rhs)
                ints[node.var] = {"addi": a + b, "subi": a - b, "muli": a * b}[node.op]
            elif isinstance(node, Call):
                args = []
                for kind, x in node.args:
                    args.append(("tiles", held[x]) if kind == "elem" else (kind, ints[x] if kind == "i32" else x))
                calls.append((node.function, tuple(args)))

    run(core.body, 0)
    for s in streams:
        if taken[s.index] != len(core.elements[s.index]):
            raise CompileError(f"internal: core ({core.column}, {core.row}) takes {taken[s.index]} elements of stream "
                               f"'{s.plan.name}', which delivers {len(core.elements[s.index])}")
    return calls


def _distinct(offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """FIFO elements ``[n, 1]`` of a sequence of tiles: a tile repeated by the next call of the same item shares
    its element."""
    keep = np.ones(len(offsets), bool)
    keep[1:] = (offsets[1:] != offsets[:-1]) | (items[1:] != items[:-1])
    return offsets[keep].reshape(-1, 1)


def _trace_arrays(body: list, streams: list[StreamInfo]) -> tuple[list[Call], list, np.ndarray, np.ndarray]:
    """:func:`_trace` on arrays, for bodies of acquires, releases, calls and loops: the call nodes, the stream of
    each node's FIFO arguments (``len(streams)`` for the others), the calls as rows ``[call node, (value, depth)
    per argument]`` (an element index for FIFO arguments, the accumulator index otherwise), and the elements taken
    per stream. A loop is traced once and its rows repeated with the element indices of what it
    acquires shifted per iteration."""
    nodes: list[Call] = []
    node_ids: dict[int, int] = {}
    slot_stream: list[list[int]] = []
    width = 1 + 2 * max((len(n.args) for n in _walk(body) if isinstance(n, Call)), default=0)
    n_streams = len(streams)

    def run(items, counters: np.ndarray, env: dict, depth: int) -> np.ndarray:
        blocks = []
        for node in items:
            if isinstance(node, Acquire):
                env[node.var] = (node.stream, int(counters[node.stream]), depth)
                counters[node.stream] += 1
            elif isinstance(node, Call):
                if id(node) not in node_ids:
                    node_ids[id(node)] = len(nodes)
                    nodes.append(node)
                    slot_stream.append([env[x][0] if kind == "elem" else n_streams for kind, x in node.args])
                row = np.full((1, width), -1, np.int64)
                row[0, 0] = node_ids[id(node)]
                for k, (kind, x) in enumerate(node.args):
                    row[0, 1 + 2 * k : 3 + 2 * k] = env[x][1:] if kind == "elem" else (x, -1)
                blocks.append(row)
            elif isinstance(node, Loop):
                before = counters.copy()
                rows = run(node.body, counters, dict(env), depth + 1)
                taken = np.append(counters - before, 0)  # per stream, one iteration; 0 for accumulators
                counters += (node.count - 1) * taken[:-1]
                if len(rows) and node.count > 1:
                    table = np.array([s + [n_streams] * (width // 2 - len(s)) for s in slot_stream], np.int64)
                    it = np.repeat(np.arange(node.count, dtype=np.int64), len(rows))
                    rows = np.tile(rows, (node.count, 1))
                    for k in range(width // 2):
                        moving = rows[:, 2 + 2 * k] > depth
                        rows[:, 1 + 2 * k] += moving * it * taken[table[rows[:, 0], k]]
                blocks.append(rows)
            elif not isinstance(node, Release):
                raise CompileError(f"internal: {type(node).__name__} in a body traced on arrays")
        return np.concatenate(blocks) if blocks else np.zeros((0, width), np.int64)

    counters = np.zeros(n_streams, np.int64)
    rows = run(body, counters, {}, 0)
    return nodes, slot_stream, rows, counters


def _walk(body: list):
    for node in body:
        yield node
        if isinstance(node, Loop):
            yield from _walk(node.body)


_FUNCTIONS = ("init", "step", "store")


def _linear_calls(b: _Builder, core: CoreDesign) -> np.ndarray:
    """The calls a linear core body makes, traced on arrays: rows ``[function, x, w, acc, y]`` (function index in
    ``init / step / store``, tile offsets, -1 where the call has no such argument)."""
    key = (core.column, core.row)
    x, w = b.ins
    (y,) = b.outs
    nodes, slot_stream, rows, taken = _trace_arrays(core.body, b.streams)
    for st in b.streams:
        if taken[st.index] != len(b.seq[st.index][key]):
            raise CompileError(f"internal: core {key} takes {taken[st.index]} elements of stream '{st.plan.name}', "
                               f"which delivers {len(b.seq[st.index][key])}")
    width = (rows.shape[1] - 1) // 2
    fn = np.array([_FUNCTIONS.index(node.function) for node in nodes], np.int64)
    streams = np.array([ss + [-1] * (width - len(ss)) for ss in slot_stream], np.int64)  # len(streams): acc
    out = np.full((len(rows), 5), -1, np.int64)
    out[:, 0] = fn[rows[:, 0]] if len(nodes) else 0
    column = {x.index: 1, w.index: 2, y.index: 4, len(b.streams): 3}
    for k in range(width):
        stream_k = streams[rows[:, 0], k]
        for stream, col in column.items():
            mask = stream_k == stream
            if not mask.any():
                continue
            values = rows[mask, 1 + 2 * k]
            out[mask, col] = values if col == 3 else b.seq[stream][key][values, 0]
    return out


def _linear_expected(work: sched.LinearWork, key) -> np.ndarray:
    """The calls :class:`~schedule.LinearWork` gives core ``key``, as rows like :func:`_linear_calls`'s."""
    nbs, xs, ws, ys = work.cores[key]
    blocks = []
    start = 0
    kt = xs.shape[1]
    while start < len(nbs):
        nb = int(nbs[start])
        end = start
        while end < len(nbs) and nbs[end] == nb:
            end += 1
        n, j = end - start, np.arange(nb)
        init = np.full((n, nb, 5), -1, np.int64)
        init[..., 0], init[..., 3] = 0, j
        step = np.full((n, kt, nb, 5), -1, np.int64)
        step[..., 0], step[..., 3] = 1, j
        step[..., 1] = xs[start:end, :, None]
        step[..., 2] = ws[start:end, :, :nb]
        store = np.full((n, nb, 5), -1, np.int64)
        store[..., 0], store[..., 3] = 2, j
        store[..., 4] = ys[start:end, :nb]
        blocks.append(np.concatenate([init, step.reshape(n, kt * nb, 5), store], axis=1).reshape(-1, 5))
        start = end
    return np.concatenate(blocks) if blocks else np.zeros((0, 5), np.int64)


def _clamped(calls: list[tuple], tkv: int | None) -> list[tuple]:
    """Attention: the kernel clamps ``kv_valid`` to TKV; the schedule passes it clamped, the design does not."""
    if not tkv:
        return calls
    return [(f, a[:5] + (("i32", min(tkv, a[5][1])),)) if f == "step" else (f, a) for f, a in calls]


def _expected(units, acc_size: int) -> list[tuple]:
    out = []
    for call in (c for unit in units for c in unit):
        args = []
        for a in call.args:
            if isinstance(a, (sched.In, sched.Out)):
                args.append(("tiles", a.tiles))
            elif isinstance(a, sched.Acc):
                args.append(("acc", a.offset // acc_size))
            else:
                args.append(("i32", int(a)))
        out.append((call.function, tuple(args)))
    return out


def _issue(transfers: list[Transfer], bds: int) -> list[tuple]:
    """Runtime-sequence operations ``(kind, transfer or FIFO, issue_token, bd id)``: transfers in order of stream
    progress, buffer-descriptor ids per shim tile, and, when a column has all its descriptors in flight, a wait
    for the in-flight transfer that finishes first (the least stream progress) before its id is reused. That
    transfer can finish only if every other stream of the column is issued up to its end; otherwise the launch
    needs more descriptors than the shim tile has (a CompileError). Outputs are waited for at the end."""
    order = sorted(transfers, key=lambda t: (t.start, t.output, t.column, t.stream))
    ops: list[list] = []
    flight: dict[int, list[tuple[int, Transfer, int]]] = {}
    reached: dict[tuple[int, int], float] = {}  # (column, stream) -> progress issued so far
    streams = {(t.column, t.stream) for t in transfers}
    waited: set[int] = set()
    for t in order:
        busy = flight.setdefault(t.column, [])
        bd = len(busy)
        if len(busy) >= bds:
            i, oldest, bd = min(busy, key=lambda f: (f[1].end, f[0]))
            behind = [s for (c, s) in streams if c == t.column and s != oldest.stream
                      and reached.get((c, s), 0.0) < oldest.end - 1e-12]
            if behind:
                raise CompileError(f"column {t.column} needs more than {bds} DMA buffer descriptors in flight: stream "
                                   f"{oldest.stream}'s transfer up to {oldest.end:.0%} cannot finish before other "
                                   "streams are issued that far; split the launch")
            if not oldest.output:
                ops[i][2] = True  # the transfer issues a completion token ...
            ops.append(["wait", oldest.fifo, False, None])  # ... which this waits for
            waited.add(i)
            busy.remove((i, oldest, bd))
        busy.append((len(ops), t, bd))
        reached[(t.column, t.stream)] = t.end
        ops.append(["dma", t, False, bd])
    for i, op in enumerate(list(ops)):
        if op[0] == "dma" and op[1].output and i not in waited:
            ops.append(["wait", op[1].fifo, False, None])
    return [tuple(op) for op in ops]


# ================================================================================== entry point


def render_design(launch: LaunchPlan, op_plan: OpPlan, device: Device, spec, name: str) -> str:
    """The MLIR-AIE design (text) of one launch: tiles, object FIFOs, core bodies calling ``spec``'s functions and
    the runtime sequence with the schedule's DDR access patterns at the launch's bucket."""
    if launch.columns > device.columns or launch.rows > device.core_rows:
        raise CompileError(f"{name}: {launch.columns}x{launch.rows} cores do not fit {device.name}")
    if spec.family != launch.kernel:
        raise CompileError(f"{name}: the launch runs a {launch.kernel} kernel, not {spec.symbol}")
    b = _Builder(launch, op_plan, device, spec, name)
    fifos, links = b.fifos()
    _check_memory(b, fifos, device, name)
    tkv = launch.params["tkv"] if launch.kernel == "attention" else None
    cores = []
    for c in range(launch.columns):
        for r in range(launch.rows):
            core = b.core(c, r)
            if b.work is not None:
                got, want = _linear_calls(b, core), _linear_expected(b.work, (c, r))
                if got.shape != want.shape or not np.array_equal(got, want):
                    differ = np.flatnonzero((got[: len(want)] != want[: len(got)]).any(axis=1))
                    first = int(differ[0]) if len(differ) else min(len(got), len(want))
                    raise CompileError(f"internal: the design of core ({c}, {r}) does not reproduce the schedule "
                                       f"(call {first} of {len(want)})")
                cores.append(core)
                continue
            got = _clamped(_trace(core, b.streams), tkv)
            want = _clamped(_expected(b.padded[(c, r)], core.acc_size or 1), tkv)
            if got != want:
                first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
                raise CompileError(f"internal: the design of core ({c}, {r}) does not reproduce the schedule (call "
                                   f"{first} of {len(want)}: {got[first][0] if first < len(got) else 'missing'})")
            cores.append(core)
    transfers = b.transfers()
    tensors = b.tensors()
    types = {name: f"memref<{n}x{element}>" for name, element, n in tensors}
    ops = []
    for kind, what, token, bd in _issue(transfers, device.shim_buffer_descriptors):
        if kind == "wait":
            ops.append(dict(kind="wait", fifo=what))
        else:
            ops.append(dict(kind="dma", tensor=what.tensor, offset=what.ap.offset, sizes=what.sizes,
                            strides=what.strides, id=bd, fifo=what.fifo, token=token, type=types[what.tensor]))
    functions = []
    for fn in spec.functions:
        functions.append(dict(name=fn, types=[_arg_type(a) for a in spec.signature(fn)], object=f"{spec.symbol}.o"))
    cache_len = op_plan.shape.get("cache_len", 0)
    context = dict(
        name=name,
        launch=launch,
        op_plan=op_plan,
        device=device,
        aie_device=_AIE_DEVICE[device.name],
        symbol=spec.symbol,
        shape=", ".join(f"{k}={v}" for k, v in op_plan.shape.items()),
        functions=functions,
        columns=range(launch.columns),
        rows=range(launch.rows),
        fifos=fifos,
        links=links,
        cores=[_core_context(core, b, spec) for core in cores],
        tensors=[dict(name=name_, type=types[name_]) for name_, _, _ in tensors],
        rtp=b.rtp,
        cache_len=cache_len,
        cache_write=b.outs[0].plan.name if launch.role == "rope_k" and cache_len else "",
        ops=ops,
        forever=FOREVER,
    )
    return ENV.get_template("design/design.mlir.j2").render(**context)


def _memref_bytes(memref: str) -> int:
    n, element = memref[len("memref<"):-1].split("x")
    return int(n) * _ELEMENT_BYTES[element]


def _check_memory(b: _Builder, fifos: list[Fifo], device: Device, name: str) -> None:
    """The design's own buffers against the tiles' memories: per memory tile the linked FIFOs' elements (a link
    shares one set of buffers), per core its FIFO elements and accumulators. Kernel statics (the GEMM's
    dequantized weight tile) and the stack come on top of the core figure."""
    for c in range(b.launch.columns):
        l2 = sum(f.depth * _memref_bytes(f.type) for f in fifos if f.producer == f"%shim_{c}" or
                 f.consumers == (f"%shim_{c}",))
        if l2 > device.mem_tile_memory:
            raise CompileError(f"{name}: the memory tile of column {c} needs {l2:,} bytes of FIFO buffers, more than "
                               f"its {device.mem_tile_memory:,}")
    acc = sum(x.bytes * x.depth for x in b.launch.buffers if x.tier == "L1" and x.name in ("acc", "state"))
    for r in range(b.launch.rows):
        tile = f"%tile_0_{r + 2}"
        l1 = acc + sum(f.depth * _memref_bytes(f.type) for f in fifos if f.producer == tile or tile in f.consumers)
        if l1 > device.core_data_memory:
            raise CompileError(f"{name}: core row {r} needs {l1:,} bytes of buffers, more than its "
                               f"{device.core_data_memory:,}")


def _arg_type(arg) -> str:
    return "i32" if arg.kind == "i32" else f"memref<{arg.size}x{_MEMREF_ELEMENT[arg.kind]}>"


def _core_context(core: CoreDesign, b: _Builder, spec) -> dict:
    """The core as the template prints it: constants, buffers and a flat list of lines with their depth."""
    c, r = core.column, core.row
    streams = {s.index: s for s in b.streams}
    index_consts, i32_consts = {0, 1, FOREVER}, set()
    lines: list[dict] = []
    ivs = count()
    elem_types: dict[str, str] = {}

    def const(v: int, i32: bool = False) -> str:
        (i32_consts if i32 else index_consts).add(v)
        name = f"c{'m' if v < 0 else ''}{abs(v)}"
        return f"%{name}_i32" if i32 else f"%{name}"

    def operand(x) -> str:
        return const(x, True) if isinstance(x, int) else f"%{x}"

    def walk(nodes, depth, iv):
        for node in nodes:
            if isinstance(node, Loop):
                name = f"i{next(ivs)}"
                lines.append(dict(kind="loop", depth=depth, iv=name, upper=const(node.count)))
                walk(node.body, depth + 1, name)
                lines.append(dict(kind="end", depth=depth))
            elif isinstance(node, Acquire):
                s = streams[node.stream]
                fifo = b.fifo(s, c, r)
                elem_types[node.var] = b.memref(s)
                lines.append(dict(kind="acquire", depth=depth, var=node.var, fifo=fifo, type=b.memref(s),
                                  port="Produce" if s.output else "Consume"))
            elif isinstance(node, Release):
                s = streams[node.stream]
                lines.append(dict(kind="release", depth=depth, fifo=b.fifo(s, c, r),
                                  port="Produce" if s.output else "Consume"))
            elif isinstance(node, Load):
                lines.append(dict(kind="load", depth=depth, var=node.var, buffer=f"rtp_{c}_{r + 2}",
                                  index=const(node.index), size=len(core.rtp)))
            elif isinstance(node, Cast):
                lines.append(dict(kind="cast", depth=depth, var=node.var, iv=iv))
            elif isinstance(node, Arith):
                lines.append(dict(kind="arith", depth=depth, var=node.var, op=node.op, lhs=operand(node.lhs),
                                  rhs=operand(node.rhs)))
            elif isinstance(node, Call):
                fn = spec.symbol + (f"_{node.function}" if node.function else "")
                names = []
                for kind, x in node.args:
                    names.append(f"%{x}" if kind in ("elem", "i32") else f"%acc_{c}_{r + 2}_{x}")
                types = [_arg_type(a) for a in spec.signature(fn)]
                lines.append(dict(kind="call", depth=depth, function=fn, args=names, types=types))

    walk(core.body, 2, "")
    buffers = [dict(name=f"acc_{c}_{r + 2}_{i}", type=f"memref<{core.acc_size}xf32>") for i in range(core.accs)]
    if core.rtp:
        buffers.append(dict(name=f"rtp_{c}_{r + 2}", type=f"memref<{len(core.rtp)}xi32>"))
    return dict(column=c, row=r + 2, tile=f"%tile_{c}_{r + 2}", buffers=buffers, lines=lines,
                index_consts=sorted(index_consts), i32_consts=sorted(i32_consts), work=b.items[(c, r)][0],
                padded=b.items[(c, r)][1])


__all__ = ["DmaLimits", "box", "canonical", "compact", "compact_offsets", "expand", "hardware_dims",
           "render_build_file", "render_design"]
