"""Build the :class:`~.model.Design` of one launch (one kernel at one shape and bucket) from its plan and schedule.

Everything in a design follows from the launch's plan and its schedule (:mod:`aielower.backends.aie.schedule`, which
says who reads which tile):

- tiles: per used column one shim tile (row 0), one memory tile (row 1) and ``rows`` cores (rows 2 ...);
- object FIFOs, one chain per plan :class:`~aielower.backends.aie.plan.Stream` and column: shim -> memory tile ->
  cores for inputs, cores -> memory tile -> shim for outputs. A ``split`` stream has one memory-tile FIFO whose
  element holds one tile per core row, linked to one FIFO per row; a ``broadcast`` stream has one FIFO with every
  row as consumer. A joined stream (several tensor parts per core tile, e.g. gate and up) is laid out in the memory
  tile as ``[row][part][tile]``: row ``r``'s tile is contiguous at offset ``r * tile``, which is what mlir-aie
  derives each part's length from (``off[r+1] - off[r]``). The shim stream delivers it in that order.
  A tile whose access pattern is not a row-major box (the GEMM's mmul-blocked tiles) is read from DDR as its
  bounding box and reordered by the memory tile (``dimensionsToStream`` / ``dimensionsFromStream``, every dim
  within the buffer-descriptor limits of :mod:`aielower.backends.aie.dma`);
- one core per tile: the kernel calls of the schedule as loops of acquire / call / release, ``link_with`` the
  kernel's object and a ``stack_size`` from the kernel spec; scalar arguments of the attention step come from the
  core's parameter words (position and valid KV length: constants of a prefill sequence, or, over a KV cache, the
  step header every query tile's record in the ``q`` tensor carries); attention work items that progress
  arithmetically run as loops, and decode attention loops over the KV tile count its sequence writes;
- the runtime sequence (decode attention: one per count of KV tiles it reads, ``@kv_tiles_n``): per column and
  stream, the DDR access patterns of the schedule's tiles in stream order,
  compacted into as few ``aiex.npu.dma_memcpy_nd`` transfers as the shim DMA can express, issued so that no shim
  channel has more than four tasks queued and no shim tile more than its buffer descriptors in flight
  (:func:`issue_order`).

A column whose core rows get different numbers of work items is padded: a short row repeats the item another row of
the column runs at that step (identical output, rewritten), keeping the rows of a split stream in lockstep.

Before a design is returned, every core body is executed symbolically and must feed each kernel call exactly the
tiles, accumulator and scalars the schedule gives that call; a mismatch is a CompileError, not a silent design.
"""

from __future__ import annotations

import operator

from copy import copy
from dataclasses import dataclass, field
from itertools import count
from math import lcm, prod

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.device import Device
from aielower.backends.aie.dma import MEMTILE_BD, DmaLimits, box, compact, compact_offsets, hardware_dims, split_dims
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.kernels import ceil_div
from aielower.backends.aie.plan import AccessPattern, LaunchPlan, OpPlan, Stream
from aielower.errors import CompileError
from aielower.backends.aie.designs import model as m

# mlir-aie device names (include/aie/Dialect/AIE/IR/AIEAttrs.td at 5ff2ab97): the whole 4-column Phoenix array is
# ``npu1`` (``npu1_4col`` was removed in mlir-aie #2397), Strix is ``npu2``.
AIE_DEVICE = {"npu1": "npu1", "npu2": "npu2"}
_MEMREF_ELEMENT = {"bf16": "bf16", "f32": "f32", "u8": "i8", "words": "i32"}
_ELEMENT_BYTES = {"bf16": 2, "f32": 4, "i8": 1}
_ACCUMULATING = ("linear_w4_gemv", "linear_w4_gemm", "attention")  # init / step / store kernels
SHIM_QUEUE_DEPTH = 4  # tasks one shim DMA channel holds (AMD AM020, DMA task queue); more are dropped

# ================================================================================== the design as data


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
    part_sizes: tuple[int, ...] = ()  # elements of each tensor part of one core's tile
    parts: int = 1
    order: AccessPattern | None = None  # box -> stream reordering of a part (memory-tile dims)
    tensors: tuple[str, ...] = ()  # the tensor of each part
    shape: tuple = ()  # (sizes, strides) of each part's tile

    @property
    def element(self) -> str:
        return _MEMREF_ELEMENT[self.kind]

    @property
    def tile(self) -> int:
        return sum(self.part_sizes)


# --- core bodies: a small tree the template renders line by line and _trace executes ------------------------


@dataclass
class Loop:
    count: int | str  # a constant, or the i32 variable holding the trip count
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
    args: list  # ("elem", FIFO element var) | ("acc", accumulator index) | ("i32", scalar var) | ("rtp", 0): the
    # core's parameter words


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


# ================================================================================== work items of a schedule


def _progressions(items: list[tuple[int, int, int]]) -> list[tuple[tuple[int, int, int], int, tuple[int, int]]]:
    """``items`` (query offset, KV tiles, drain) cut into maximal runs in which offset and tiles grow by constant
    steps and the drain is constant: ``(first item, length, (offset step, tiles step))`` per run."""
    runs: list[list] = []
    for item in items:
        if runs:
            first, n, delta = runs[-1]
            step = (item[0] - first[0] - (n - 1) * delta[0], item[1] - first[1] - (n - 1) * delta[1])
            if item[2] == first[2] and (n == 1 or step == delta):
                runs[-1] = [first, n + 1, (item[0] - first[0], item[1] - first[1]) if n == 1 else delta]
                continue
        runs.append([item, 1, (0, 0)])
    return [(first, n, delta) for first, n, delta in runs]


def _units(calls: list[sched.Call]) -> list[list[sched.Call]]:
    """A core's calls cut into work items: init ... store for accumulating kernels (an item starts at a function
    named ``init`` or ``<x>_init``), one call otherwise."""
    units: list[list[sched.Call]] = []
    previous = ""
    for call in calls:
        starts = call.function == "" or call.function == "init" or call.function.endswith("_init")
        if starts and not (previous == "init" or previous.endswith("_init")):
            units.append([])
        units[-1].append(call)
        previous = call.function
    return units


# ================================================================================== building a design

# mlir-aie's static object-FIFO lowering unrolls every loop that acquires by the LCM of the depths of the FIFOs it
# acquires (2), peeling the remainder into a loop of its own, and erases a loop left with one iteration; when it does
# that to a loop whose siblings it is still walking, the pass reads the erased loop and crashes
# (AIEObjectFifoStatefulTransform.cpp at 5ff2ab97, ``unrollForLoops`` walks the loop's parent region; found with
# aie-opt on GEMM cores whose accumulator-slot loops ran twice, and three times). A loop that acquires runs a
# multiple of that factor times, at least twice the factor and at least this often; the iterations left over are
# written out after it (all of them for a shorter loop): the same calls, which the lowering would have produced.
MIN_ACQUIRING_LOOP = 3


class DesignBuilder:
    """Builds the design of one launch. ``member``: the launch is a member of a shared configuration, whose cores
    mlir-aie lowers dynamically (their loop counts come from the header): its loops stay loops whatever their trip
    counts (none is written out for the static lowering, :data:`MIN_ACQUIRING_LOOP`, nor dropped for one trip or
    none), so that the same op at other buckets has the same body but for its constants (designs/shared.py merges
    those)."""

    def __init__(self, launch: LaunchPlan, op_plan: OpPlan, device: Device, spec, name: str,
                 kv_tiles: int | None = None, member: bool = False):
        self.launch, self.op_plan, self.device, self.spec, self.name = launch, op_plan, device, spec, name
        self.member = member
        self.family = launch.kernel
        ins = [s for s in launch.streams if s.direction == "in"]
        outs = [s for s in launch.streams if s.direction == "out"]
        self.streams = [StreamInfo(i, s, s.direction == "out", "") for i, s in enumerate(ins + outs)]
        self.ins, self.outs = self.streams[: len(ins)], self.streams[len(ins):]
        if any(s.plan.to_cores == "broadcast" for s in self.outs):
            raise CompileError(f"{name}: an output stream cannot be broadcast")
        kernel_family = KERNEL_FAMILIES.for_kernel(launch.kernel)
        self.dynamic_kv = kernel_family.reads_valid_tiles(launch, op_plan)
        # decode attention planned on another family's configuration (families/gemv_attention.py)
        self.joined = self.dynamic_kv and self.family != "attention"
        self.work = kernel_family.array_work(launch, op_plan)
        self.linear_traces: dict[str, tuple] = {}  # repr of a core body -> its array trace (_linear_calls)
        self.traces: dict[tuple, tuple] = {}  # (repr of a core body, parameter words, tkv) -> its trace (_trace)
        if self.work is not None:  # scheduled as arrays (sched.LinearWork), checked on arrays
            self.rtp = ()
            self._linear_init()
            return
        programs, self.rtp = kernel_family.schedule(launch, op_plan, kv_tiles)
        # Parameter words the runtime sequence writes (constants of the sequence): a step header supplies the
        # position and valid length, so only the KV tile count of a per-count sequence is written (a shared
        # configuration's member gets it in the launch's header: designs/shared.py).
        header = bool(launch.params.get("header"))
        self.rtp_writes = ((2,) if self.dynamic_kv and not member else ()) if header else tuple(range(len(self.rtp)))
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

    @property
    def kv_tile_rows(self) -> int | None:
        """KV rows per cache tile of an attention launch (its own kernel's, or decode attention's on another
        family's configuration); None for the others."""
        if self.family == "attention" or self.dynamic_kv:
            return KERNEL_FAMILIES.for_kernel(self.family).kv_tile_rows(self.launch)
        return None

    # -- linears: the schedule as arrays -------------------------------------------------------------------------

    def _linear_init(self) -> None:
        """Streams, elements and shapes of a linear launch from its :class:`~schedule.LinearWork`: x and w tiles
        per step (one element per distinct consecutive tile within an item), y tiles per store."""
        L, work, name = self.launch, self.work, self.name
        x, w = self.ins
        (y,) = self.outs
        step = self.spec.signature(self.spec.symbol + "_step")
        store = self.spec.signature(self.spec.symbol + "_store")
        x.kind, w.kind, y.kind = step[0].kind, step[1].kind, store[-1].kind  # store(accs, slot, y)
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
            w_offsets, w_items = ws.reshape(-1, ws.shape[2])[valid], w_items[valid]
            w_seq = _distinct(w_offsets, w_items)
            if work.bias is not None:  # each item's bias tile first, then its weight tiles
                kept = w_items[_new_elements(w_offsets, w_items)]
                order = np.argsort(np.concatenate([item * 2, kept * 2 + 1]), kind="stable")
                w_seq = np.concatenate([work.bias[key].reshape(-1, 1), w_seq])[order]
            self.seq[w.index][key] = w_seq
            y_valid = np.arange(ys.shape[1])[None, :] < nbs[:, None] * work.parts
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
            st.parts, st.part_sizes = 1, (prod(sizes),)
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
            if most == 0 and (self.member or self.joined):  # a shared configuration's grid: this launch leaves the
                # column idle (or another family's launch planned on it, built alone)
                padded.update({(c, r): [] for r in range(L.rows)})
                continue
            if most == 0:
                raise CompileError(f"{self.name}: column {c} of the {L.columns}x{L.rows} grid gets no work from the "
                                   "schedule; plan fewer columns")
            for r, units in enumerate(rows):
                extra = [next(o[k] for o in rows if len(o) > k) for k in range(len(units), most)]
                padded[(c, r)] = units + extra
        return padded

    def _streams_of(self, call) -> tuple[int | None, ...]:
        """The stream index of each argument of ``call`` (None: not a tile). When every In / Out argument's tensor
        names a stream of its side, that stream (a kernel function may then use some streams only: attention's
        ``rotate`` writes ``k_new``, its ``store`` writes ``out``); else the n-th In argument is the n-th input stream
        and the n-th Out argument the n-th output stream, as the kernels' signatures list them."""
        by_name = {(s.output, s.plan.name): s.index for s in self.streams}
        named = [by_name.get((type(a) is sched.Out, a.tiles[0].tensor)) if type(a) in (sched.In, sched.Out)
                 else None for a in call.args]
        if all(i is not None for i, a in zip(named, call.args) if type(a) in (sched.In, sched.Out)):
            return tuple(named)
        n = {sched.In: 0, sched.Out: 0}
        out = []
        for a in call.args:
            kind = type(a)
            if kind not in n:
                out.append(None)
                continue
            side = self.outs if kind is sched.Out else self.ins
            if n[kind] >= len(side):
                raise CompileError(f"{self.name}: call '{call.function}' has more {kind.__name__} arguments than the "
                                   f"launch has {'output' if kind is sched.Out else 'input'} streams")
            out.append(side[n[kind]].index)
            n[kind] += 1
        return tuple(out)

    def _empty(self, s: StreamInfo) -> bool:
        """Whether stream ``s`` may carry nothing: the KV stream of a decode attention design's sequence that reads
        no cache tile (the first step; its rows come with the queries)."""
        return self.dynamic_kv and self.rtp[2] == 0 and s is self.ins[1]

    def _kinds(self) -> None:
        """The element kind of every stream, from the kernel's signature (:meth:`_streams_of`); the first call of each
        function settles it."""
        done: set[str] = set()
        for units in self.padded.values():
            for call in (call for unit in units for call in unit):
                if call.function in done:
                    continue
                done.add(call.function)
                fn = self.spec.symbol + (f"_{call.function}" if call.function else "")
                for index, declared in zip(self._streams_of(call), self.spec.signature(fn)):
                    if index is not None:
                        self.streams[index].kind = declared.kind
        for s in self.streams:
            if not s.kind and self._empty(s):  # the kind of the kernel argument of its name
                s.kind = next((a.kind for fn in self.spec.functions for a in self.spec.signature(fn)
                               if a.name == s.plan.name), "")
            if not s.kind:
                raise CompileError(f"{self.name}: the schedule never uses stream '{s.plan.name}'")

    def _elements(self) -> tuple[dict, dict]:
        """Per stream and core, the FIFO elements in order (a tuple of tile refs each): consecutive calls on the
        same tile share one element. Broadcast streams deliver one sequence to a whole column; a row whose item
        needs a prefix of it drains the rest (attention: KV tiles past a query tile's causal limit)."""
        L = self.launch
        elements: dict = {s.index: {} for s in self.streams}
        drains: dict = {}
        # per kernel function, the stream of each argument (None: not a tile); a function's n-th argument is always
        # on the same stream
        streams_of: dict[str, tuple[int | None, ...]] = {}
        fresh_items = self.family in _ACCUMULATING  # an item's first tile is a new element even if the last item
        for key, units in self.padded.items():     # ended on it
            per_unit = {s.index: [] for s in self.streams}
            last = {s.index: None for s in self.streams}
            for unit in units:
                mine = {s.index: [] for s in self.streams}
                if fresh_items:
                    last = dict.fromkeys(last)
                for call in unit:
                    indices = streams_of.get(call.function)
                    if indices is None:
                        indices = streams_of[call.function] = self._streams_of(call)
                    for index, a in zip(indices, call.args):
                        if index is None:
                            continue
                        tiles = a.tiles
                        if tiles != last[index]:
                            mine[index].append(tiles)
                        last[index] = tiles
                for index in mine:
                    per_unit[index].append(mine[index])
            for index in per_unit:
                elements[index][key] = per_unit[index]
        for s in self.streams:
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
            if not shapes and self._empty(s) and s.plan.first:  # the plan's tile shape
                shapes = {tuple((ap.sizes, ap.strides) for ap in s.plan.first)}
                s.tensors = s.plan.tensors
            else:
                first = next((tiles for per_core in self.elements[s.index].values() for tiles in per_core), ())
                s.tensors = tuple(t.tensor for t in first)
            if len(shapes) != 1:
                raise CompileError(f"{self.name}: tiles of stream '{s.plan.name}' have {len(shapes)} different shapes; "
                                   "one FIFO element type needs one")
            (shape,) = shapes
            s.shape = shape
            s.parts = len(shape)
            s.part_sizes = tuple(prod(sz) for sz, _ in shape)
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

    def memref(self, s: StreamInfo, n: int | None = None) -> m.MemrefType:
        return m.MemrefType(s.tile if n is None else n, s.element)

    # -- FIFOs and links -----------------------------------------------------------------------------------------

    def fifos(self) -> tuple[list[m.ObjectFifo], list[m.FifoLink]]:
        """Per stream and column: shim -> memory tile -> cores (inputs) or back (outputs). A split stream's memory-tile
        element is ``[row][part][tile]`` (row r's whole tile at ``r * tile``, the offsets mlir-aie derives the part
        lengths from); a box-to-stream reordering goes on the memory-tile side, cut to the buffer-descriptor limits."""
        L = self.launch
        fifos, links = [], []
        for s in self.streams:
            split = s.plan.to_cores == "split"
            depth = s.plan.depth
            eb = _ELEMENT_BYTES[s.element]
            dims = ()
            if s.order is not None:
                dims = split_dims(tuple(zip(s.order.sizes, s.order.strides)), MEMTILE_BD, eb)
            for c in range(L.columns):
                shim, mem = m.Tile(c, 0), m.Tile(c, 1)
                outer = self.fifo(s, c)
                big = self.memref(s, s.tile * (L.rows if split else 1))
                cores = [m.Tile(c, r + 2) for r in range(L.rows)]
                offsets = tuple(r * s.tile for r in range(L.rows))
                if not s.output:
                    fifos.append(m.ObjectFifo(outer, shim, (mem,), depth, big))
                    if split:
                        inner = [self.fifo(s, c, r) for r in range(L.rows)]
                        for r, name in enumerate(inner):
                            fifos.append(m.ObjectFifo(name, mem, (cores[r],), depth, self.memref(s), to_stream=dims))
                        links.append(m.FifoLink((outer,), tuple(inner), (), offsets))
                    else:
                        inner = self.fifo(s, c, 0)
                        fifos.append(m.ObjectFifo(inner, mem, tuple(cores), depth, self.memref(s), to_stream=dims))
                        links.append(m.FifoLink((outer,), (inner,)))
                else:
                    inner = [self.fifo(s, c, r) for r in range(L.rows)]
                    for r, name in enumerate(inner):
                        fifos.append(m.ObjectFifo(name, cores[r], (mem,), depth, self.memref(s), from_stream=dims))
                    fifos.append(m.ObjectFifo(outer, mem, (shim,), depth, big))
                    links.append(m.FifoLink(tuple(inner), (outer,), offsets, ()))
        return fifos, links

    # -- core bodies ---------------------------------------------------------------------------------------------

    def core(self, column: int, row: int, prefix: str = "v") -> CoreDesign:
        """The body of core ``(column, row)``; its variables are ``prefix`` and a number."""
        if self.work is not None:
            core = CoreDesign(column, row, [])
            nbs = self.work.cores[(column, row)][0]
            core.acc_size = self.spec.signature(self.spec.functions[0])[0].size  # NB accumulators in one buffer
            core.accs = 1
            core.body = self._body_linear([(int(nb), self.work.cores[(column, row)][1].shape[1]) for nb in nbs],
                                          (f"{prefix}{i}" for i in count()))
            return core
        units = self.padded[(column, row)]
        names = (f"{prefix}{i}" for i in count())
        if self.family == "attention":
            build = self._body_attention
        elif self.joined:
            build = self._body_joined_attention
        elif any(len(unit) > 1 for unit in units):  # items of several calls: a norm on a GEMV configuration
            build = self._body_runs
        else:
            build = self._body_elementwise
        core = CoreDesign(column, row, [])
        body = build(core, units, names)
        if not self.member and all(isinstance(n.count, int) for n in walk_nodes(body) if isinstance(n, Loop)):
            # mlir-aie lowers this core's FIFOs statically (model.Core.dynamic_objfifo_lowering): it unrolls loops
            # (a shared configuration's member is lowered dynamically)
            body = self._guard_loops(body, (f"u{i}" for i in count()))
        core.body = body
        core.elements = {s.index: self.elements[s.index][(column, row)] for s in self.streams}
        return core

    def kv_prefix(self, tiles: int) -> "DesignBuilder":
        """A decode attention builder whose KV stream delivers only the first ``tiles`` cache tiles of every work
        item (the streams of its @kv_tiles_n sequence); parameter defaults for that count. Shares everything
        else."""
        if not self.dynamic_kv:
            raise CompileError(f"internal: {self.name} reads the whole KV cache")
        kv, full = self.ins[1], self.rtp[2]
        cut = copy(self)
        cut.seq = dict(self.seq)
        cut.seq[kv.index] = {}
        for key, offsets in self.seq[kv.index].items():
            items = len(self.padded[key])
            # elements per cache tile and item: one KV tile, or (decode attention on another family's
            # configuration) the tile's K rows and then its V rows in several elements; none on an idle core
            per, rest = divmod(len(offsets), items * full) if items else (0, len(offsets))
            if rest or items and not per:
                raise CompileError(f"internal: {self.name}: core {key} receives {len(offsets)} KV elements, not "
                                   f"whole tiles of {items} items x {full}")
            cut.seq[kv.index][key] = offsets.reshape(items, full * per, -1)[:, : tiles * per].reshape(
                -1, offsets.shape[1]) if items else offsets
        tkv = self.kv_tile_rows
        cut.rtp = (tiles * tkv, tiles * tkv + self.launch.bucket, tiles)
        return cut

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
        if not units:  # an idle core of a shared configuration's grid (DesignBuilder._equalize)
            return []
        many = len(units) > 1 or self.member  # a member keeps its loop (of one item too)
        held = [s for s in self.streams if len(self.elements[s.index][key]) == 1
                and (len(units) > 1 or self.member and s.plan.to_cores == "broadcast")]
        each = [s for s in self.streams if s not in held]
        pre = [Acquire(s.index, next(names)) for s in held]
        var = {a.stream: a.var for a in pre}
        step = [Acquire(s.index, next(names)) for s in each]
        var.update({a.stream: a.var for a in step})
        call = (units[0][0].function, [s.index for s in self.ins] + [s.index for s in self.outs])
        args = [("elem", var[i]) for i in call[1]]
        # The schedule passes In args then Out args in signature order for these kernels.
        body = step + [Call(call[0], args)] + [Release(s.index) for s in each]
        loop = [Loop(len(units), body)] if many else body
        return pre + loop + [Release(s.index) for s in held]

    def _body_runs(self, core: CoreDesign, units, names) -> list:
        """Work items of several calls: each run of consecutive calls of one function is a loop whose counter gives
        their i32 arguments (``base + step * counter``: a run ends where they stop growing by one step), each call
        taking a new element of the streams it reads or writes, or holding one element for the whole run (the
        same tile in every call of the run)."""
        acc_index = self._acc(core, units)
        body: list = []
        for unit in units:
            runs: list[list[sched.Call]] = []
            for call in unit:
                run = runs[-1] if runs else None
                if run and run[0].function == call.function and _continues(run, call):
                    run.append(call)
                    continue
                if run and _shares_a_tile(run[-1], call):
                    raise CompileError(f"internal: {self.name}: calls '{run[-1].function}' and '{call.function}' of "
                                       f"core ({core.column}, {core.row}) take one tile, which a body of runs of calls "
                                       "cannot hold across them")
                runs.append([call])
            for run in runs:
                body += self._run(run, acc_index, names)
        return body

    def _run(self, run: list, acc_index: dict, names) -> list:
        """The nodes of one run of calls (:meth:`_body_runs`)."""
        first = run[0]
        indices = self._streams_of(first)
        held = {i for k, i in enumerate(indices) if i is not None and all(c.args[k] == first.args[k] for c in run)}
        counter = next(names) if len(run) > 1 or self.member else None
        pre, step, args = [], [], []
        var: dict[int, str] = {}
        for index in indices:
            if index is not None and index not in var:
                var[index] = next(names)
                (pre if index in held else step).append(Acquire(index, var[index]))
        loop: list = [Cast(counter)] if counter is not None else []
        for k, (index, a) in enumerate(zip(indices, first.args)):
            if index is not None:
                args.append(("elem", var[index]))
            elif isinstance(a, sched.Acc):
                args.append(("acc", acc_index[a.offset]))
            elif counter is None:
                args.append(("i32", int(a)))
            else:
                delta = run[1].args[k] - a if len(run) > 1 else 0
                value = counter
                if delta != 1:
                    value = next(names)
                    loop.append(Arith(value, "muli", counter, delta))
                if a != 0:
                    total = next(names)
                    loop.append(Arith(total, "addi", value, a))
                    value = total
                args.append(("i32", value))
        loop += step + [Call(first.function, args)] + [Release(a.stream) for a in step]
        nodes = [Loop(len(run), loop)] if counter is not None else loop
        return pre + nodes + [Release(a.stream) for a in pre]

    def _looped(self, count: int, body: list) -> int:
        """Iterations of a ``count``-times loop with ``body`` that stay a loop, the rest being written out
        (:data:`MIN_ACQUIRING_LOOP`): all of them if the body acquires nothing, else a multiple of the unroll
        factor, at least twice it and the minimum, or none."""
        if not any(isinstance(n, Acquire) for n in walk_nodes(body)):
            return count
        factor = self._unroll_factor(body)
        looped = count // factor * factor
        return looped if looped >= max(MIN_ACQUIRING_LOOP, 2 * factor) else 0

    def _guard_loops(self, body: list, tags) -> list:
        """``body`` with every loop of a constant trip count that acquires itself cut as :data:`MIN_ACQUIRING_LOOP`
        says: a loop over a multiple of the unroll factor (at least twice it and the minimum), then the remaining
        iterations written out, each with its own variable names and the counter as a constant."""
        out = []
        for node in body:
            if not isinstance(node, Loop):
                out.append(node)
                continue
            inner = self._guard_loops(node.body, tags)
            if not isinstance(node.count, int):
                out.append(Loop(node.count, inner))
                continue
            looped = self._looped(node.count, inner)
            if looped:
                out.append(Loop(looped, inner))
            for i in range(looped, node.count):
                out += _iteration(inner, i, next(tags))
        return out

    def _unroll_factor(self, body: list) -> int:
        """The factor mlir-aie's object-FIFO lowering unrolls a loop with ``body`` by: the LCM of the depths of the
        FIFOs the loop acquires itself (1 if it acquires only in nested loops)."""
        return lcm(*(self.streams[n.stream].plan.depth for n in body if isinstance(n, Acquire)))

    def _body_linear(self, shapes: list[tuple[int, int]], names) -> list:
        """Linear kernels, one work item per ``(nb, kt)`` in ``shapes``: ``init`` accumulators ``0 .. nb-1``, then
        per K tile the activation tile once and one ``step`` per weight tile, then ``store`` every accumulator (in
        the work's ``parts`` calls each, the slot counting the calls). The
        accumulators are slots of one buffer: each of the three runs is a loop over the slot (its counter is the
        call's i32 slot argument). Consecutive items of one shape share a loop, and a repeating sequence of such
        loops (one per M tile pass of a GEMM) an outer loop. A loop that acquires runs a multiple of the FIFO
        depths' LCM times, at least twice that and :data:`MIN_ACQUIRING_LOOP`; the rest is written out (see
        there)."""
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

        def times(count: int, make, counted: bool = False) -> list:
            """``make(i)`` for ``i`` in ``0 .. count-1`` (with ``counted``, ``i`` is the i32 argument: the loop
            counter or a constant; else None): one loop, or the copies written out, each with names of its own."""
            if self.member:  # lowered dynamically: one loop, whatever the count
                counter = next(names) if counted else None
                body = make(("i32", counter) if counted else None)
                return [Loop(count, ([Cast(counter)] if counted else []) + body)]
            if count == 1:
                return make(("i32", 0) if counted else None)
            counter = next(names) if counted else None
            body = make(("i32", counter) if counted else None)
            looped = self._looped(count, body)
            loop = [Loop(looped, ([Cast(counter)] if counted else []) + body)] if looped else []
            return loop + [node for i in range(looped, count) for node in make(("i32", i) if counted else None)]

        def store(slot) -> list:
            yv = next(names)
            return [Acquire(y.index, yv), Call("store", [("acc", 0), slot, ("elem", yv)]), Release(y.index)]

        def k_tile(nb: int):
            def make(_) -> list:
                xv = next(names)

                def step(slot) -> list:
                    wv = next(names)
                    return [Acquire(w.index, wv), Call("step", [("elem", xv), ("elem", wv), ("acc", 0), slot]),
                            Release(w.index)]

                return [Acquire(x.index, xv)] + times(nb, step, counted=True) + [Release(x.index)]
            return make

        parts = self.work.parts  # store calls per accumulator; the slot counts them

        def start(nb: int) -> list:
            """The item's accumulators at zero, or at its bias tile's values."""
            if self.work.bias is None:
                return times(nb, lambda slot: [Call("init", [("acc", 0), slot])], counted=True)
            bv = next(names)
            return ([Acquire(w.index, bv)]
                    + times(nb, lambda slot: [Call("bias_init", [("elem", bv), ("acc", 0), slot])], counted=True)
                    + [Release(w.index)])

        def item(nb: int, kt: int):
            def make(_) -> list:
                return start(nb) + times(kt, k_tile(nb)) + times(nb * parts, store, counted=True)
            return make

        def items(_) -> list:
            return [node for (nb, kt), n in runs[:period] for node in times(n, item(nb, kt))]

        return times(len(runs) // period, items)

    def _body_attention(self, core: CoreDesign, units, names) -> list:
        """Per work item: hold the query tile, ``init``, one ``step`` per KV tile with the positions computed from
        the run-time parameters (P = position of the bucket's first query token, L = valid KV length), drain the
        broadcast KV tiles past this item's causal limit, ``store``. Consecutive items whose query offset and KV
        tile count grow by constant steps (and drain alike) run as one loop over the items, with both computed
        from the loop counter; decode items read the tile count the runtime sequence writes (word 2)."""
        self._acc(core, units)
        core.rtp = self.rtp
        kv = self.ins[1]
        items = []  # (query offset from P, KV tiles, drained tiles)
        for k, unit in enumerate(units):
            steps = [c for c in unit if c.function == "step"]
            if self.dynamic_kv and len(steps) != self.rtp[2]:
                raise CompileError(f"internal: {self.name}: a work item of core ({core.column}, {core.row}) reads "
                                   f"{len(steps)} KV tiles, the sequence sends {self.rtp[2]}")
            # a call's q_pos0: argument 3 of a step (q, kv, acc, q_pos0, ..), 2 of a step_new (q, acc, q_pos0, ..)
            q_pos0 = next((c.args[3 if c.function == "step" else 2] for c in unit
                           if c.function in ("step", "step_new")), None)
            items.append((q_pos0 - self.rtp[0] if q_pos0 is not None else 0, len(steps),
                          self.drains.get((kv.index, core.column, core.row, k), 0)))
        runs = _progressions(items)
        # runs that repeat (one per KV head of the core, each over its query tiles) run as an outer loop
        period = next(p for p in range(1, len(runs) + 1)
                      if len(runs) % p == 0 and all(runs[i] == runs[i % p] for i in range(len(runs))))
        body = []
        for first, count, delta in runs[:period]:
            if count == 1 and not self.member:
                body += self._attention_item(first[0], first[1], first[2], None, (0, 0), names)
            else:
                body.append(Loop(count, self._attention_item(first[0], first[1], first[2], next(names), delta,
                                                             names)))
        return [Loop(len(runs) // period, body)] if len(runs) > period or self.member else body

    def _body_joined_attention(self, core: CoreDesign, units, names) -> list:
        """Decode attention on another family's configuration (:mod:`~aielower.backends.aie.families.
        gemv_attention`): ``attn_init``; every query-record element of the column (``attn_q`` with slot ``e - row x
        E``, which keeps the core's own ``E``); the record's step header into the parameter words (``attn_params``),
        with the rotary embedding fused ``attn_rotate``; per cache tile (the count word 2 holds) its K rows then its
        V rows in ``2 C`` weight tiles (``attn_kv``); the step's own rows (``attn_new``); the stores."""
        if not units:  # an idle core (DesignBuilder._equalize)
            return []
        (unit,) = units
        self._acc(core, units)
        core.rtp = self.rtp
        x, w = self.ins
        (y,) = self.outs
        acc = ("acc", 0)
        calls: dict[str, list] = {}
        for call in unit:
            calls.setdefault(call.function, []).append(call)
        slots = [c.args[2] for c in calls["attn_q"]]
        if slots != list(range(slots[0], slots[0] + len(slots))):
            raise CompileError(f"internal: {self.name}: core ({core.column}, {core.row}) takes its column's records "
                               "out of order")
        tkv = self.kv_tile_rows
        per_tile = 2 * tkv // self.launch.params["attn_rows"]
        ev, e, slot = next(names), next(names), next(names)
        pv, lv, nv, jv, kv0, valid, rows = (next(names) for _ in range(7))
        wv, c = next(names), next(names)
        body = [Call("attn_init", [acc]),
                Loop(len(slots), [Cast(e), Arith(slot, "addi", e, slots[0]), Acquire(x.index, ev),
                                  Call("attn_q", [("elem", ev), acc, ("i32", slot)]), Release(x.index)]),
                Call("attn_params", [acc, ("rtp", 0)]), Load(pv, 0), Load(lv, 1)]
        if "attn_rotate" in calls:
            body.append(Call("attn_rotate", [acc]))
        body += [Load(nv, 2),
                 Loop(nv, [Cast(jv), Arith(kv0, "muli", jv, tkv), Arith(valid, "subi", pv, kv0),
                           Loop(per_tile, [Cast(c), Acquire(w.index, wv),
                                           Call("attn_kv", [("elem", wv), acc, ("i32", c), ("i32", pv), ("i32", kv0),
                                                            ("i32", valid)]), Release(w.index)])]),
                 Arith(rows, "subi", lv, pv), Call("attn_new", [acc, ("i32", pv), ("i32", pv), ("i32", rows)])]
        sv, s = next(names), next(names)
        body.append(Loop(len(calls["attn_store"]), [Cast(s), Acquire(y.index, sv),
                                                     Call("attn_store", [acc, ("i32", s), ("elem", sv)]),
                                                     Release(y.index)]))
        return body

    def _attention_item(self, offset: int, tiles: int, drain: int, counter, delta: tuple[int, int], names) -> list:
        """One work item (``counter`` None), or the body of a loop over items whose query offset and KV tile count
        are ``offset`` / ``tiles`` plus ``delta`` times the loop counter (an i32 variable named ``counter``)."""
        q, kv = self.ins
        out = next(s for s in self.outs if s.plan.name == "out")
        k_new = next((s for s in self.outs if s.plan.name == "k_new"), None)  # rotated keys (rope fused)
        tkv = self.launch.params["tkv"]
        body = [Cast(counter)] if counter is not None else []

        def affine(base: int, step: int):
            """``base + step * counter`` as a constant or a new variable (always a variable in a member's body,
            whose constants may differ from other members' only in value)."""
            if counter is None or step == 0 and not self.member:
                return base
            scaled = counter
            if step != 1 or self.member:
                scaled = next(names)
                body.append(Arith(scaled, "muli", counter, step))
            total = next(names)
            body.append(Arith(total, "addi", scaled, base))
            return total

        qv, pv, lv, q0 = next(names), next(names), next(names), next(names)
        kvv, jv, kv0, valid = next(names), next(names), next(names), next(names)
        body.append(Acquire(q.index, qv))
        if self.launch.params.get("header"):  # the step header of the query tile into the parameter words
            body.append(Call("params", [("elem", qv), ("rtp", 0)]))
        body += [Load(pv, 0), Load(lv, 1)]
        body += [Arith(q0, "addi", pv, affine(offset, delta[0])), Call("init", [("acc", 0)])]
        if k_new is not None:  # the step's key in the query record, rotated and written out
            kn = next(names)
            body += [Acquire(k_new.index, kn), Call("rotate", [("elem", qv), ("elem", kn)]), Release(k_new.index)]
        # a cache tile's valid rows: below L, or (the step's rows coming with the queries) below P
        loop = [Acquire(kv.index, kvv), Cast(jv), Arith(kv0, "muli", jv, tkv),
                Arith(valid, "subi", pv if self.dynamic_kv else lv, kv0),
                Call("step", [("elem", qv), ("elem", kvv), ("acc", 0), ("i32", q0), ("i32", kv0), ("i32", valid)]),
                Release(kv.index)]
        if self.dynamic_kv:
            count = next(names)
            body.append(Load(count, 2))
        else:
            count = affine(tiles, delta[1])
        body.append(Loop(count, loop))
        if self.dynamic_kv:  # the step's own L - P rows at position P, in the query record
            rows = next(names)
            body += [Arith(rows, "subi", lv, pv),
                     Call("step_new", [("elem", qv), ("acc", 0), ("i32", q0), ("i32", pv), ("i32", rows)])]
        if drain or self.member:  # a member's (lowered dynamically) drains in a loop, of 0 times if need be
            body.append(Loop(drain, [Acquire(kv.index, next(names)), Release(kv.index)]))
        ov = next(names)
        body += [Acquire(out.index, ov), Call("store", [("acc", 0), ("elem", ov)]), Release(out.index),
                 Release(q.index)]
        return body

    # -- runtime sequence ----------------------------------------------------------------------------------------

    def transfers(self) -> list[Transfer]:
        """Per column and stream, the DDR boxes of the stream's tiles in stream order (element, row, part: the
        memory tile's layout), compacted per run of one tensor."""
        L = self.launch
        out = []
        for s in self.streams:
            limits = DmaLimits(_ELEMENT_BYTES[s.element])
            boxes = [box(AccessPattern(0, sizes, strides))[0] for sizes, strides in s.shape]
            for c in range(L.columns):
                rows = range(L.rows) if s.plan.to_cores == "split" else range(1)
                flat = np.stack([self.seq[s.index][(c, r)] for r in rows], axis=1).reshape(-1)  # [e][row][part]
                if not len(flat):  # nothing on this stream (decode attention's KV before the first cache row)
                    continue
                part = np.tile(np.arange(s.parts), len(flat) // s.parts or 1)[: len(flat)]
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


def _trace(core: CoreDesign, streams: list[StreamInfo], tkv: int | None = None,
           traces: dict | None = None) -> list[tuple]:
    """Run a core body symbolically: the kernel calls it makes, with the tiles each FIFO element holds. With ``tkv``
    (attention), a ``step`` call's valid KV count is clamped to it, as the kernel clamps it (the schedule passes it
    clamped, the design's loop does not). The body is traced once per body, parameter words and ``tkv`` (cached in
    ``traces``: cores with the same body differ only in the tiles they take), with the element each call argument
    holds; the core's own elements are then put in."""
    key = (repr(core.body), core.rtp, tkv)
    traced = traces.get(key) if traces is not None else None
    if traced is None:
        traced = _trace_body(core, streams, tkv)
        if traces is not None:
            traces[key] = traced
    calls, taken = traced
    for s in streams:
        if taken[s.index] != len(core.elements[s.index]):
            raise CompileError(f"internal: core ({core.column}, {core.row}) takes {taken[s.index]} elements of stream "
                               f"'{s.plan.name}', which delivers {len(core.elements[s.index])}")
    elements = core.elements
    out = []
    append = out.append
    for function, args, slots in calls:
        if slots:
            args = list(args)
            for position, stream, n in slots:
                args[position] = elements[stream][n]
            args = tuple(args)
        append((function, args))
    return out


def _trace_body(core: CoreDesign, streams: list[StreamInfo], tkv: int | None) -> tuple[list, dict]:
    """:func:`_trace`'s trace of ``core``'s body: per call (function, arguments, and per FIFO-element argument
    (position, stream, element index)), and the elements taken per stream. The body is compiled once into closures
    (one per node), then run: a 7B prompt-attention core makes hundreds of thousands of calls."""
    taken = {s.index: 0 for s in streams}
    held: dict[str, tuple] = {}
    ints: dict[str, int] = {}
    calls: list[tuple] = []
    append = calls.append
    arith = {"addi": operator.add, "subi": operator.sub, "muli": operator.mul}

    def value(x):
        return x if isinstance(x, int) else ints[x]

    def compile_call(node: Call):
        if node.function in ("params", "attn_params"):
            return None  # copies the step header into the parameter words; the check reads their defaults
        # per argument (code, x): 0 a FIFO element, 1 an i32 variable, 2 a value as it is (an i32 constant, or the
        # ("acc", n) / ("rtp", n) form of the others); the last argument of an attention step is clamped
        args = tuple((0, x) if kind == "elem" else (1, x) if kind == "i32" and not isinstance(x, int)
                     else (2, x) if kind == "i32" else (2, (kind, x)) for kind, x in node.args)
        function = node.function
        elems = [(position, x) for position, (code, x) in enumerate(args) if code == 0]
        clamp = bool(tkv) and function in ("step", "attn_kv")

        def call(iv):
            values = [None if code == 0 else ints[x] if code == 1 else x for code, x in args]
            if clamp:
                values[5] = min(tkv, values[5])
            append((function, tuple(values), tuple((position, *held[x]) for position, x in elems)))
        return call

    def compile_node(node):
        kind = type(node)
        if kind is Call:
            return compile_call(node)
        if kind is Acquire:
            stream, var = node.stream, node.var

            def acquire(iv):
                n = taken[stream]
                held[var] = (stream, n)
                taken[stream] = n + 1
            return acquire
        if kind is Loop:
            body, count = compile_body(node.body), node.count
            if isinstance(count, int):
                def loop(iv):
                    for i in range(count):
                        body(i)
            else:
                def loop(iv):
                    for i in range(ints[count]):
                        body(i)
            return loop
        if kind is Load:
            var, word = node.var, core.rtp[node.index]

            def load(iv):
                ints[var] = word
            return load
        if kind is Cast:
            var = node.var

            def cast(iv):
                ints[var] = iv
            return cast
        if kind is Arith:
            var, op, lhs, rhs = node.var, arith[node.op], node.lhs, node.rhs

            def compute(iv):
                ints[var] = op(value(lhs), value(rhs))
            return compute
        return None  # a release: nothing to trace

    def compile_body(nodes):
        steps = [f for f in map(compile_node, nodes) if f is not None]
        if len(steps) == 1:
            return steps[0]

        def body(iv):
            for step in steps:
                step(iv)
        return body

    compile_body(core.body)(0)
    return calls, taken


def _distinct(offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """FIFO elements ``[n, 1]`` of a sequence of tiles: a tile repeated by the next call of the same item shares
    its element."""
    return offsets[_new_elements(offsets, items)].reshape(-1, 1)


def _new_elements(offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Which tiles of a sequence start a FIFO element (:func:`_distinct`): not the tile the call before of the
    same item took."""
    keep = np.ones(len(offsets), bool)
    keep[1:] = (offsets[1:] != offsets[:-1]) | (items[1:] != items[:-1])
    return keep


def _trace_arrays(body: list, streams: list[StreamInfo]) -> tuple[list[Call], list, np.ndarray, np.ndarray]:
    """:func:`_trace` on arrays, for bodies of acquires, releases, calls and loops: the call nodes, the stream of
    each node's FIFO arguments (``len(streams)`` for the others), the calls as rows ``[call node, (value, depth)
    per argument]`` (an element index for FIFO arguments, the accumulator index otherwise), and the elements taken
    per stream. A loop is traced once and its rows repeated with the element indices of what it
    acquires shifted per iteration."""
    nodes: list[Call] = []
    node_ids: dict[int, int] = {}
    slot_stream: list[list[int]] = []
    width = 1 + 2 * max((len(n.args) for n in walk_nodes(body) if isinstance(n, Call)), default=0)
    n_streams = len(streams)
    counter = n_streams + 1  # the pseudo-stream of i32 arguments (a loop counter, or a constant)

    def run(items, counters: np.ndarray, env: dict, depth: int) -> np.ndarray:
        blocks = []
        for node in items:
            if isinstance(node, Acquire):
                env[node.var] = (node.stream, int(counters[node.stream]), depth)
                counters[node.stream] += 1
            elif isinstance(node, Cast):  # the enclosing loop's counter, 0 in the iteration traced
                env[node.var] = (counter, 0, depth)
            elif isinstance(node, Call):
                if id(node) not in node_ids:
                    node_ids[id(node)] = len(nodes)
                    nodes.append(node)
                    slot_stream.append([env[x][0] if kind == "elem" else counter if kind == "i32" else n_streams
                                        for kind, x in node.args])
                row = np.full((1, width), -1, np.int64)
                row[0, 0] = node_ids[id(node)]
                for k, (kind, x) in enumerate(node.args):
                    variable = kind == "elem" or (kind == "i32" and isinstance(x, str))
                    row[0, 1 + 2 * k : 3 + 2 * k] = env[x][1:] if variable else (x, -1)
                blocks.append(row)
            elif isinstance(node, Loop):
                before = counters.copy()
                rows = run(node.body, counters, dict(env), depth + 1)
                # per iteration: elements taken per stream; 0 for accumulators; 1 for this loop's counter
                taken = np.append(counters - before, [0, 1])
                counters += (node.count - 1) * taken[:n_streams]
                if len(rows) and node.count > 1:
                    table = np.array([s + [n_streams] * (width // 2 - len(s)) for s in slot_stream], np.int64)
                    it = np.repeat(np.arange(node.count, dtype=np.int64), len(rows))
                    rows = np.tile(rows, (node.count, 1))
                    for k in range(width // 2):
                        stream = table[rows[:, 0], k]
                        # an element acquired in the loop moves with it; a counter only with its own loop
                        depths = rows[:, 2 + 2 * k]
                        moving = np.where(stream == counter, depths == depth + 1, depths > depth)
                        rows[:, 1 + 2 * k] += moving * it * taken[stream]
                blocks.append(rows)
            elif not isinstance(node, Release):
                raise CompileError(f"internal: {type(node).__name__} in a body traced on arrays")
        return np.concatenate(blocks) if blocks else np.zeros((0, width), np.int64)

    counters = np.zeros(n_streams, np.int64)
    rows = run(body, counters, {}, 0)
    return nodes, slot_stream, rows, counters


def _iteration(body: list, i: int, tag: str) -> list:
    """Iteration ``i`` of a loop with ``body``, written out: every variable the body defines gets the suffix
    ``_<tag>``, and the loop's own counter (a :class:`Cast` directly in the body) becomes the constant ``i``."""
    defined = {n.var for n in walk_nodes(body) if isinstance(n, (Acquire, Cast, Arith, Load))}
    rename = {v: f"{v}_{tag}" for v in defined}

    def value(x):
        return rename.get(x, x) if isinstance(x, str) else x

    def copy_nodes(nodes: list, top: bool) -> list:
        out = []
        for n in nodes:
            if isinstance(n, Acquire):
                out.append(Acquire(n.stream, value(n.var)))
            elif isinstance(n, Cast):
                out.append(Arith(value(n.var), "addi", i, 0) if top else Cast(value(n.var)))
            elif isinstance(n, Arith):
                out.append(Arith(value(n.var), n.op, value(n.lhs), value(n.rhs)))
            elif isinstance(n, Load):
                out.append(Load(value(n.var), n.index))
            elif isinstance(n, Call):
                out.append(Call(n.function, [(kind, value(x)) for kind, x in n.args]))
            elif isinstance(n, Loop):
                out.append(Loop(value(n.count), copy_nodes(n.body, False)))
            elif isinstance(n, Release):
                out.append(Release(n.stream))
            else:
                raise CompileError(f"internal: cannot write out a loop holding {type(n).__name__}")
        return out

    return copy_nodes(body, True)


def _continues(run: list, call) -> bool:
    """Whether ``call`` continues ``run`` (calls of one function, :meth:`DesignBuilder._body_runs`): its i32
    arguments grow by the run's steps, its accumulators are the run's, and each of its tiles is either the tile
    every call of the run takes (held for the run) or a new one (an element per call)."""
    first, last = run[0], run[-1]
    if len(call.args) != len(first.args):
        return False
    for k, (a, b) in enumerate(zip(first.args, call.args)):
        if isinstance(a, int) != isinstance(b, int):
            return False
        if isinstance(a, int):
            step = run[1].args[k] - a if len(run) > 1 else b - a
            if b != a + step * len(run):
                return False
        elif isinstance(a, sched.Acc):
            if a != b:
                return False
        elif isinstance(a, (sched.In, sched.Out)) and len(run) > 1:
            held = run[1].args[k] == a
            if (b != a) if held else (b == last.args[k]):
                return False
    return True


def _shares_a_tile(a, b) -> bool:
    """Whether calls ``a`` and ``b`` take one tile (an element :meth:`DesignBuilder._elements` would share)."""
    tiles = {x for x in a.args if isinstance(x, (sched.In, sched.Out))}
    return any(x in tiles for x in b.args if isinstance(x, (sched.In, sched.Out)))


def walk_nodes(body: list):
    """Every node of a core body, loops first then their bodies, in order."""
    for node in body:
        yield node
        if isinstance(node, Loop):
            yield from walk_nodes(node.body)


_FUNCTIONS = ("init", "step", "store", "bias_init")


def _linear_calls(b: DesignBuilder, core: CoreDesign) -> np.ndarray:
    """The calls a linear core body makes, traced on arrays: rows ``[function, x, w, acc, y]`` (function index in
    ``init / step / store``, tile offsets, -1 where the call has no such argument). Cores with the same body (the
    common case: the body names streams, not FIFOs) share the trace; only the tiles they take differ."""
    key = (core.column, core.row)
    body_key = repr(core.body)
    traced = b.linear_traces.get(body_key)
    if traced is None:
        traced = b.linear_traces[body_key] = _linear_trace(b, core.body)
    template, gathers, taken = traced
    for st in b.streams:
        if taken[st.index] != len(b.seq[st.index][key]):
            raise CompileError(f"internal: core {key} takes {taken[st.index]} elements of stream '{st.plan.name}', "
                               f"which delivers {len(b.seq[st.index][key])}")
    out = template.copy()
    for mask, col, stream, values in gathers:
        out[mask, col] = b.seq[stream][key][values, 0]
    return out


def _linear_trace(b: DesignBuilder, body: list) -> tuple[np.ndarray, list, np.ndarray]:
    """What :func:`_linear_calls` needs of a body, whatever core runs it: the rows with the function and the
    accumulator filled in, per (argument, stream) the rows and the element indices to fill with that core's tile
    offsets, and the elements taken per stream."""
    x, w = b.ins
    (y,) = b.outs
    nodes, slot_stream, rows, taken = _trace_arrays(body, b.streams)
    width = (rows.shape[1] - 1) // 2
    fn = np.array([_FUNCTIONS.index(node.function) for node in nodes], np.int64)
    streams = np.array([ss + [-1] * (width - len(ss)) for ss in slot_stream], np.int64)  # see _trace_arrays
    template = np.full((len(rows), 5), -1, np.int64)
    template[:, 0] = fn[rows[:, 0]] if len(nodes) else 0
    column = {x.index: 1, w.index: 2, y.index: 4, len(b.streams) + 1: 3}  # the i32 slot picks the accumulator
    gathers = []
    for k in range(width):
        stream_k = streams[rows[:, 0], k]
        for stream, col in column.items():
            mask = stream_k == stream
            if not mask.any():
                continue
            values = rows[mask, 1 + 2 * k]
            if col == 3:
                template[mask, col] = values
            else:
                gathers.append((mask, col, stream, values))
    return template, gathers, taken


def _linear_expected(work: sched.LinearWork, key) -> np.ndarray:
    """The calls :class:`~schedule.LinearWork` gives core ``key``, as rows like :func:`_linear_calls`'s."""
    nbs, xs, ws, ys = work.cores[key]
    bias = work.bias[key] if work.bias is not None else None
    blocks = []
    kt = xs.shape[1]
    bounds = np.flatnonzero(np.diff(nbs)) + 1  # runs of items with one accumulator count
    for start, end in zip([0, *bounds.tolist()], [*bounds.tolist(), len(nbs)]):
        if start == end:
            continue
        nb = int(nbs[start])
        n, j = end - start, np.arange(nb)
        init = np.full((n, nb, 5), -1, np.int64)
        init[..., 0], init[..., 3] = 0, j
        if bias is not None:  # bias_init(w: the item's bias tile, acc, slot)
            init[..., 0], init[..., 2] = _FUNCTIONS.index("bias_init"), bias[start:end, None]
        step = np.full((n, kt, nb, 5), -1, np.int64)
        step[..., 0], step[..., 3] = 1, j
        step[..., 1] = xs[start:end, :, None]
        step[..., 2] = ws[start:end, :, :nb]
        store = np.full((n, nb * work.parts, 5), -1, np.int64)
        store[..., 0], store[..., 3] = 2, np.arange(nb * work.parts)
        store[..., 4] = ys[start:end, : nb * work.parts]
        blocks.append(np.concatenate([init, step.reshape(n, kt * nb, 5), store], axis=1).reshape(-1, 5))
    return np.concatenate(blocks) if blocks else np.zeros((0, 5), np.int64)


def _expected(units, acc_size: int) -> list[tuple]:
    """The calls of a core's schedule, in :func:`_trace`'s form: per argument the tiles of a FIFO element (a tuple
    of tile refs), an int, or ``("acc", accumulator index)``; the forms cannot be equal to one another. (Written out
    inline: the big attention designs check millions of arguments.)"""
    seen: dict[int, tuple] = {}  # id(argument) -> its form; the arguments are shared objects, alive in ``units``

    def form(a):
        kind = type(a)
        if kind is sched.In or kind is sched.Out:
            found = a.tiles
        elif kind is sched.Acc:
            found = ("acc", a.offset // acc_size)
        else:
            return int(a)  # ints are small and may share ids with other values: not kept
        seen[id(a)] = found
        return found

    get = seen.get
    return [(call.function, tuple([a if type(a) is int else get(id(a)) or form(a) for a in call.args]))
            for unit in units for call in unit]


def issue_order(transfers: list[Transfer], bds: int, queue_depth: int = SHIM_QUEUE_DEPTH) -> list[m.SequenceOp]:
    """The runtime sequence of ``transfers``: in order of stream progress, each with a buffer-descriptor id of its
    shim tile, and the waits that keep the hardware's limits:

    - a shim DMA channel holds ``queue_depth`` tasks: before a fifth is pushed, the sequence waits for the oldest;
    - a shim tile has ``bds`` buffer descriptors: when all are in flight, it waits for the channel head that
      finishes first and reuses its id.

    A wait consumes the oldest outstanding completion token of its channel, so only the transfers waited for issue
    one (S2MM transfers always do, and each is waited for, at the latest at the end). A wait for a transfer that can
    finish only after streams not yet issued is a CompileError (the launch needs more queue or descriptors)."""
    order = sorted(transfers, key=lambda t: (t.start, t.output, t.column, t.stream))
    ops: list[list] = []  # ["dma", transfer, issue_token, bd] | ["wait", fifo]
    queues: dict[str, list[tuple[int, Transfer, int]]] = {}  # fifo -> in flight, oldest first (op index, t, bd)
    free: dict[int, list[int]] = {}
    reached: dict[tuple[int, int], float] = {}  # (column, stream) -> progress issued so far
    streams = {(t.column, t.stream) for t in transfers}

    def wait_for_head(fifo: str) -> None:
        i, head, bd = queues[fifo].pop(0)
        behind = [st for (c, st) in streams if c == head.column and st != head.stream
                  and reached.get((c, st), 0.0) < head.end - 1e-12]
        if behind and not head.output:
            raise CompileError(f"column {head.column}: stream {head.stream}'s transfer up to {head.end:.0%} must "
                               f"finish before a shim queue or descriptor frees up, which needs streams {behind} "
                               "issued first; split the launch")
        ops[i][2] = True  # the transfer issues a completion token (S2MM ones always do)
        ops.append(["wait", fifo])
        free[head.column].append(bd)

    for t in order:
        free.setdefault(t.column, list(range(bds)))
        queue = queues.setdefault(t.fifo, [])
        if len(queue) >= queue_depth:
            wait_for_head(t.fifo)
        if not free[t.column]:
            heads = [q[0] for f, q in queues.items() if q and q[0][1].column == t.column]
            _, first, _ = min(heads, key=lambda h: (h[1].end, h[0]))
            wait_for_head(first.fifo)
        bd = free[t.column].pop(0)
        queue.append((len(ops), t, bd))
        reached[(t.column, t.stream)] = t.end
        ops.append(["dma", t, t.output, bd])
    for fifo, queue in queues.items():
        for i, t, bd in list(queue):
            if t.output:
                ops.append(["wait", fifo])
    out: list[m.SequenceOp] = []
    for op in ops:
        if op[0] == "wait":
            out.append(m.DmaWait(op[1]))
        else:
            t = op[1]
            out.append(m.DmaMemcpy(t.tensor, t.ap.offset, tuple(t.sizes), tuple(t.strides), op[3], t.fifo, op[2]))
    return out


# ================================================================================== entry point


def build_design(launch: LaunchPlan, op_plan: OpPlan, device: Device, spec, name: str) -> m.Design:
    """The design of one launch: tiles, object FIFOs, cores calling ``spec``'s functions and the runtime sequence
    with the schedule's DDR access patterns at the launch's bucket."""
    require_fits(launch, device, name)
    if spec.family != launch.kernel:
        raise CompileError(f"{name}: the launch runs a {launch.kernel} kernel, not {spec.symbol}")
    b = DesignBuilder(launch, op_plan, device, spec, name)
    fifos, links = b.fifos()
    cores = [checked_core(b, c, r) for c in range(launch.columns) for r in range(launch.rows)]
    buffers: list[m.Buffer] = []
    core_models = []
    for core in cores:
        model, core_buffers = core_model(core, b, spec)
        core_models.append(model)
        buffers.extend(core_buffers)
    args = tuple(m.SequenceArg(t, m.MemrefType(n, element)) for t, element, n in b.tensors())
    if b.dynamic_kv:
        sequences = kv_sequences(b, cores, device, args)
    else:
        sequences = (m.RuntimeSequence("", sequence_ops(b, cores, device), args),)
    functions, tiles = kernel_functions(spec), design_tiles(launch)
    shape = ", ".join(f"{k}={v}" for k, v in KERNEL_FAMILIES.for_kernel(launch.kernel).design_shape(
        launch, op_plan).items())
    comments = (f"aielower design {name}: {op_plan.kind} ({launch.role}) at bucket {launch.bucket}, kernel "
                f"{spec.symbol} on {launch.columns}x{launch.rows} cores of {device.name}; op shape {shape}",)
    if b.rtp and launch.params.get("header"):
        comments += ("Parameter words of every core: word 0 = P, position of the bucket's first query token; word 1 "
                     "= L, valid KV length; both come with every query tile from the step header (the host writes "
                     "it after the tile's queries in the q tensor each step), copied by the kernel's _params.",)
    elif b.rtp:
        comments += ("Parameter words of every core: word 0 = P = 0, position of the bucket's first query token; "
                     "word 1 = L = the bucket, valid KV length (constants of the sequence).",)
    if b.dynamic_kv:
        comments += (f"One runtime sequence per count n of cache tiles ({b.kv_tile_rows} rows each) it reads: "
                     "@kv_tiles_n reads tiles 0 .. n-1 of every KV head (the step's L - P keys and values come in "
                     "the query records; the host appends them to the cache after the launch), and writes n to word "
                     "2, the trip count of the cores' KV loop. The host submits the first n >= ceil(P / tile); the "
                     "kernel leaves a row with no valid KV row unchanged.",)
    return m.Design(name, AIE_DEVICE[device.name], functions, tiles, tuple(fifos), tuple(links), tuple(buffers),
                    tuple(core_models), sequences, comments)


def require_fits(launch: LaunchPlan, device: Device, name: str) -> None:
    """CompileError unless ``launch``'s cores fit ``device``'s array."""
    if launch.columns > device.columns or launch.rows > device.core_rows:
        raise CompileError(f"{name}: {launch.columns}x{launch.rows} cores do not fit {device.name}")


def kernel_functions(spec) -> tuple[m.KernelFunction, ...]:
    """The declarations of ``spec``'s functions."""
    return tuple(m.KernelFunction(fn, tuple(arg_type(a) for a in spec.signature(fn))) for fn in spec.functions)


def design_tiles(launch: LaunchPlan) -> tuple[m.Tile, ...]:
    """The shim, memory and core tiles of ``launch``'s columns, column by column."""
    return tuple(sorted({m.Tile(c, row) for c in range(launch.columns) for row in range(launch.rows + 2)},
                        key=lambda t: (t.column, t.row)))


def checked_core(b: DesignBuilder, column: int, row: int, prefix: str = "v") -> CoreDesign:
    """The body of core ``(column, row)`` of builder ``b`` (variables ``prefix`` and a number), checked: traced,
    it makes exactly the calls of the launch's schedule (on arrays for a linear, :func:`linear_core`)."""
    if b.work is not None:
        return linear_core(b, column, row, prefix)
    core = b.core(column, row, prefix)
    got = _trace(core, b.streams, b.kv_tile_rows, b.traces)
    want = _expected(b.padded[(column, row)], core.acc_size or 1)
    if got != want:
        first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        raise CompileError(f"internal: the design of core ({column}, {row}) does not reproduce the schedule (call "
                           f"{first} of {len(want)}: {got[first][0] if first < len(got) else 'missing'})")
    return core


def linear_core(b: DesignBuilder, column: int, row: int, prefix: str = "v") -> CoreDesign:
    """The body of a linear core of builder ``b`` (variables ``prefix`` and a number), checked: traced on arrays,
    it makes exactly the calls of the launch's schedule."""
    core = b.core(column, row, prefix)
    got, want = _linear_calls(b, core), _linear_expected(b.work, (column, row))
    if got.shape != want.shape or not np.array_equal(got, want):
        differ = np.flatnonzero((got[: len(want)] != want[: len(got)]).any(axis=1))
        first = int(differ[0]) if len(differ) else min(len(got), len(want))
        raise CompileError(f"internal: the design of core ({column}, {row}) does not reproduce the schedule "
                           f"(call {first} of {len(want)})")
    return core


KV_SEQUENCE_PREFIX = "kv_tiles_"


def kv_sequence_name(tiles: int, member: str | None = None) -> str:
    """The runtime sequence of a decode-attention design that reads ``tiles`` cache tiles per head; of a shared
    configuration's ``member`` (its sequence name), ``<member>_kv_tiles_<n>``."""
    return f"{member}_{KV_SEQUENCE_PREFIX}{tiles}" if member else f"{KV_SEQUENCE_PREFIX}{tiles}"


def kv_sequence_for(design: m.Design, cache_rows: int, tkv: int, member: str | None = None) -> str | None:
    """The sequence of ``design`` the host submits for a step after ``cache_rows`` rows of the cache: of its
    per-count sequences (those of ``member``, for a shared configuration's), the one reading the fewest tiles that
    cover ceil(cache_rows / tkv); None when the design has one sequence only."""
    if member is None and len(design.sequences) == 1 and not design.sequences[0].name:
        return None
    if cache_rows < 0:
        raise CompileError(f"design {design.name}: a step cannot follow {cache_rows} cache rows")
    needed = ceil_div(cache_rows, tkv)
    prefix = kv_sequence_name(0, member)[:-1]
    counts = sorted(int(s.name.removeprefix(prefix)) for s in design.sequences
                    if s.name.startswith(prefix) and s.name.removeprefix(prefix).isdigit())
    covering = [n for n in counts if n >= needed]
    if not covering:
        raise CompileError(f"design {design.name}: no runtime sequence reads the {needed} KV tiles of {tkv} rows that "
                           f"{cache_rows} cache rows need (its sequences read at most {counts[-1] if counts else 0})")
    return kv_sequence_name(covering[0], member)


def sequence_ops(b: DesignBuilder, cores: list[CoreDesign], device: Device,
                 first: list[Transfer] = ()) -> tuple[m.SequenceOp, ...]:
    """The runtime sequence of builder ``b``: the parameter words it writes on every core that has them, then its
    transfers (after ``first``: a shared configuration's header)."""
    ops: list[m.SequenceOp] = []
    for core in cores:
        if core.rtp:
            ops += [m.RtpWrite(f"rtp_{core.column}_{core.row + 2}", i, b.rtp[i]) for i in b.rtp_writes]
    return tuple(ops + issue_order(list(first) + b.transfers(), device.shim_buffer_descriptors))


def kv_sequences(b: DesignBuilder, cores: list[CoreDesign], device: Device, args: tuple[m.SequenceArg, ...],
                 first: list[Transfer] = (), member: str | None = None,
                 prefix: str = "v") -> tuple[m.RuntimeSequence, ...]:
    """One sequence per cache tile count of a decode attention design: the full builder's streams with every work
    item cut to its first n cache tiles (:meth:`DesignBuilder.kv_prefix`). The first three counts (0 and the next
    two; all is the full builder) are also built from the schedule at that count, with the cores checked against it,
    and must give the same sequence: the cut takes the same prefix of every item's elements at every count, so the
    counts where scheduling is cheap check it (a 7B decode layer's cache holds 128 tiles; rebuilding one more count
    near the top cost as much as the design). The cut is linear in the count where rebuilding every count is
    quadratic. For a shared configuration's ``member`` (its sequence name; its cores' variables
    named from ``prefix``), each sequence sends ``first`` (the header) first and is named for the member
    (:func:`kv_sequence_name`)."""
    full = b.rtp[2]
    counts = KERNEL_FAMILIES.for_kernel(b.launch.kernel).kv_tile_counts(b.launch, full)
    if not counts or counts[-1] != full or list(counts) != sorted(set(counts)) or counts[0] < 0:
        raise CompileError(f"internal: {b.name}: KV tile counts {counts} do not rise to the cache's {full} tiles")
    checked = set(counts[:3]) - {full}  # the full count is the builder itself, checked already
    out = []
    for n in counts:
        ops = sequence_ops(b.kv_prefix(n), cores, device, first)
        if n in checked and sequence_ops(*_variant(b, cores, n, prefix), device, first) != ops:
            raise CompileError(f"internal: {b.name}: the sequence cut to {n} KV tiles differs from the one "
                               "scheduled at that count")
        out.append(m.RuntimeSequence(kv_sequence_name(n, member), ops, args))
    return tuple(out)


def _variant(full: DesignBuilder, cores: list[CoreDesign], tiles: int,
             prefix: str = "v") -> tuple[DesignBuilder, list[CoreDesign]]:
    """The builder of ``full``'s launch reading ``tiles`` KV tiles, after checking that the cores of ``full``
    (their bodies are the same for every tile count: the KV loop runs the count read at run time), fed what this
    variant's sequence sends and its run-time parameters, make exactly the calls of its schedule."""
    b = DesignBuilder(full.launch, full.op_plan, full.device, full.spec, full.name, kv_tiles=tiles,
                      member=full.member)
    tkv = full.kv_tile_rows
    mine = []
    for core in cores:
        own = b.core(core.column, core.row, prefix)
        if own.body != core.body:
            raise CompileError(f"internal: {full.name}: core ({core.column}, {core.row})'s body depends on the KV "
                               f"tile count ({tiles})")
        got = _trace(own, b.streams, tkv)
        want = _expected(b.padded[(core.column, core.row)], own.acc_size or 1)
        if got != want:
            raise CompileError(f"internal: {full.name}: core ({core.column}, {core.row}) fed {tiles} KV tiles does "
                               "not reproduce the schedule")
        mine.append(own)
    return b, mine


def render_design(launch: LaunchPlan, op_plan: OpPlan, device: Device, spec, name: str) -> str:
    """The MLIR-AIE text of :func:`build_design`."""
    from aielower.backends.aie.designs.render import render

    return render(build_design(launch, op_plan, device, spec, name))


def arg_type(arg):
    return "i32" if arg.kind == "i32" else m.MemrefType(arg.size, _MEMREF_ELEMENT[arg.kind])


def core_model(core: CoreDesign, b: DesignBuilder, spec) -> tuple[m.Core, list[m.Buffer]]:
    """The core as design data: its body with FIFO names, buffers and the kernel's object and stack."""
    c, r = core.column, core.row
    tile = m.Tile(c, r + 2)
    streams = {s.index: s for s in b.streams}
    ivs = count()
    acc = [f"acc_{c}_{r + 2}_{i}" for i in range(core.accs)]
    rtp = f"rtp_{c}_{r + 2}"

    def convert(nodes, iv):
        out = []
        for node in nodes:
            if isinstance(node, Loop):
                name = f"i{next(ivs)}"
                out.append(m.For(name, node.count, tuple(convert(node.body, name))))
            elif isinstance(node, Acquire):
                s = streams[node.stream]
                out.append(m.Acquire(node.var, b.fifo(s, c, r), "Produce" if s.output else "Consume"))
            elif isinstance(node, Release):
                s = streams[node.stream]
                out.append(m.Release(b.fifo(s, c, r), "Produce" if s.output else "Consume"))
            elif isinstance(node, Load):
                out.append(m.LoadWord(node.var, rtp, node.index))
            elif isinstance(node, Cast):
                out.append(m.IndexCast(node.var, iv))
            elif isinstance(node, Arith):
                out.append(m.Arith(node.var, node.op, node.lhs, node.rhs))
            elif isinstance(node, Call):
                fn = spec.symbol + (f"_{node.function}" if node.function else "")
                args = tuple(x if kind in ("elem", "i32") else rtp if kind == "rtp" else acc[x]
                             for kind, x in node.args)
                out.append(m.CallKernel(fn, args))
        return out

    body = tuple(convert(core.body, ""))
    buffers = [m.Buffer(name, tile, m.MemrefType(core.acc_size, "f32")) for name in acc]
    if core.rtp:
        buffers.append(m.Buffer(rtp, tile, m.MemrefType(len(core.rtp), "i32")))
    work, padded = b.items[(c, r)]
    comment = f"core ({c}, {r + 2}): {work} work item{'s' if work != 1 else ''}" + (
        f", of which {padded} repeat{'s' if padded == 1 else ''} another row's item to keep the column in lockstep" if padded else "")
    return m.Core(tile, body, f"{spec.symbol}.o", spec.stack_bytes, comment), buffers


__all__ = ["AIE_DEVICE", "build_design", "issue_order", "kv_sequence_for", "kv_sequence_name", "kv_sequences",
           "render_design"]
