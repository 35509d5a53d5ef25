"""An MLIR-AIE design as data: exactly what :mod:`.render` prints, :mod:`.parse` reads back from the text, the
checks of :mod:`.check` verify and the emulator runs.

The subset of MLIR-AIE it covers (the ops aielower generates):

- ``aie.device(<name>)`` holding ``aie.tile``, ``aie.objectfifo`` (producer, consumers, depth, element memref,
  ``dimensionsToStream`` on the producer, ``dimensionsFromStream`` on the consumers), ``aie.objectfifo.link``
  (1:1, distribute or join, with offsets), ``aie.buffer`` (accumulators, run-time parameters), private
  ``func.func`` declarations of the kernels;
- ``aie.core`` bodies: an endless loop around nested ``scf.for`` loops of ``aie.objectfifo.acquire`` /
  ``subview.access`` / ``release``, ``func.call`` of kernels, ``memref.load`` of run-time parameters, i32
  ``arith`` and ``index_cast`` of loop counters; ``stack_size`` and ``link_with`` attributes;
- one or more ``aie.runtime_sequence`` of ``aiex.npu.dma_memcpy_nd``, ``aiex.npu.dma_wait`` and ``aiex.npu.rtp_write``.

Everything is immutable, so a design can be compared, hashed and shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

from aielower.errors import CompileError

ELEMENT_BYTES = {"bf16": 2, "f32": 4, "i8": 1, "i32": 4}
HEADER_ARG = "hdr"  # the runtime-sequence argument holding a launch's header (a shared configuration's)
# Buffer arguments of the xclbin kernel aiecc makes for a design (bo0 .. bo4: python/compiler/aiecc/main.py
# emit_design_kernel_json at 5ff2ab97, every one connected to HOST memory): a runtime sequence takes at most these.
MAX_SEQUENCE_ARGS = 5
Dims = tuple[tuple[int, int], ...]  # (size, stride) pairs, outermost first, in elements


@dataclass(frozen=True)
class MemrefType:
    """A 1-D memref: ``size`` elements of ``element`` (bf16, f32, i8, i32)."""

    size: int
    element: str

    def __post_init__(self) -> None:
        if self.element not in ELEMENT_BYTES or self.size < 1:
            raise CompileError(f"internal: bad memref {self.size}x{self.element}")

    @property
    def bytes(self) -> int:
        return self.size * ELEMENT_BYTES[self.element]

    @property
    def element_bytes(self) -> int:
        return ELEMENT_BYTES[self.element]

    def __str__(self) -> str:
        return f"memref<{self.size}x{self.element}>"


@dataclass(frozen=True, order=True)
class Tile:
    column: int
    row: int

    @property
    def kind(self) -> str:
        """``shim`` (row 0), ``mem`` (row 1, the memory tile) or ``core``."""
        return "shim" if self.row == 0 else "mem" if self.row == 1 else "core"

    @property
    def name(self) -> str:
        return {"shim": f"shim_{self.column}", "mem": f"mem_{self.column}"}.get(self.kind, f"tile_{self.column}_{self.row}")


@dataclass(frozen=True)
class ObjectFifo:
    """``aie.objectfifo @name(producer dimensionsToStream [...], {consumers dimensionsFromStream [...]}, depth)``.
    ``from_stream`` applies to every consumer."""

    name: str
    producer: Tile
    consumers: tuple[Tile, ...]
    depth: int
    element: MemrefType
    to_stream: Dims = ()
    from_stream: Dims = ()


@dataclass(frozen=True)
class FifoLink:
    """``aie.objectfifo.link [sources] -> [destinations]([source offsets] [destination offsets])``: a distribute
    (one source, several destinations, destination offsets) or a join (several sources, one destination, source
    offsets) in a memory tile, or a 1:1 link."""

    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    source_offsets: tuple[int, ...] = ()
    destination_offsets: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        if len(self.destinations) > 1:
            return "distribute"
        if len(self.sources) > 1:
            return "join"
        return "1:1"

    def transfer_lengths(self, total: int) -> tuple[int, ...]:
        """The length (elements) of each part as mlir-aie's object-FIFO lowering sets it, from the offsets alone:
        ``off[i+1] - off[i]`` and ``total - off[last]`` (AIEObjectFifoStatefulTransform.cpp,
        ``getDistributeTransferLengths`` / ``getJoinTransferLengths``); ``total`` is the element size of the big
        FIFO (the distribute's source, the join's destination). The parts' own FIFO sizes are never consulted."""
        offsets = self.destination_offsets if self.kind == "distribute" else self.source_offsets
        if not offsets:
            return (total,)
        return tuple(b - a for a, b in zip(offsets, offsets[1:])) + (total - offsets[-1],)


@dataclass(frozen=True)
class Buffer:
    """``aie.buffer(tile) {sym_name = name}``: a core's accumulator or run-time parameter words."""

    name: str
    tile: Tile
    type: MemrefType


@dataclass(frozen=True)
class KernelFunction:
    """``func.func private @name(args)``: a kernel function; an arg is a :class:`MemrefType` or ``"i32"``."""

    name: str
    args: tuple[Union[MemrefType, str], ...]


# --- core bodies ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class For:
    """``scf.for %iv = 0 to count``: ``count`` is a constant or the name of an i32 variable (a trip count read at
    run time, e.g. the KV tiles the runtime sequence sends; rendered through an ``index_cast``)."""

    iv: str
    count: Union[int, str]
    body: tuple["Node", ...]


@dataclass(frozen=True)
class Acquire:
    """``%var = (acquire @fifo(port, 1); subview.access [0])``: the next element of ``fifo``."""

    var: str
    fifo: str
    port: str  # "Consume" or "Produce"


@dataclass(frozen=True)
class Release:
    fifo: str
    port: str


@dataclass(frozen=True)
class CallKernel:
    """``func.call @function(args)``: args name element variables, buffers, i32 variables or i32 constants."""

    function: str
    args: tuple[Union[str, int], ...]


@dataclass(frozen=True)
class LoadWord:
    """``%var = memref.load %buffer[index]`` (an i32 run-time parameter)."""

    var: str
    buffer: str
    index: int


@dataclass(frozen=True)
class Arith:
    """``%var = arith.<op> lhs, rhs : i32`` with ``op`` in addi / subi / muli; operands are variables or constants."""

    var: str
    op: str
    lhs: Union[str, int]
    rhs: Union[str, int]


@dataclass(frozen=True)
class IndexCast:
    """``%var = arith.index_cast %iv : index to i32``."""

    var: str
    iv: str


Node = Union[For, Acquire, Release, CallKernel, LoadWord, Arith, IndexCast]


@dataclass(frozen=True)
class Core:
    """``aie.core(tile) { scf.for forever { body } } {dynamic_objfifo_lowering, link_with, stack_size}``. A body
    with a loop whose trip count is read at run time needs mlir-aie's dynamic object-FIFO lowering (run-time buffer
    indices): the static lowering unrolls every loop that acquires by its FIFOs' depth and needs constant bounds
    (AIEObjectFifoStatefulTransform.cpp, ``unrollForLoops``; the core attribute ``dynamic_objfifo_lowering``)."""

    tile: Tile
    body: tuple[Node, ...]
    link_with: str
    stack_size: int
    comment: str = field(default="", compare=False)

    @property
    def dynamic_objfifo_lowering(self) -> bool:
        return any(isinstance(n, For) and not isinstance(n.count, int) for n in walk(self.body))


# --- runtime sequence -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceArg:
    name: str
    type: MemrefType


@dataclass(frozen=True)
class DmaMemcpy:
    """``aiex.npu.dma_memcpy_nd(%arg[0, 0, 0, offset][sizes][strides]) {id, metadata = @fifo, issue_token}``:
    four sizes and strides, d3 (the repeat dimension) first, in elements of the argument."""

    arg: str
    offset: int
    sizes: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]
    bd_id: int
    fifo: str
    issue_token: bool = False

    @property
    def elements(self) -> int:
        n = 1
        for s in self.sizes:
            n *= s
        return n


@dataclass(frozen=True)
class DmaWait:
    fifo: str


@dataclass(frozen=True)
class RtpWrite:
    buffer: str
    index: int
    value: int


SequenceOp = Union[DmaMemcpy, DmaWait, RtpWrite]


@dataclass(frozen=True)
class RuntimeSequence:
    """``aie.runtime_sequence @name(args) { ops }``; a design's only sequence has no name. A design with several
    (decode attention: one per count of KV tiles read; a shared configuration: one per op it runs) compiles to one
    xclbin and one instruction stream per sequence; the host submits the stream that matches the launch. Each
    sequence has its own arguments (a shared configuration's ops move tensors of different sizes)."""

    name: str
    ops: tuple[SequenceOp, ...]
    args: tuple[SequenceArg, ...] = ()

    def arg(self, name: str) -> SequenceArg | None:
        return next((a for a in self.args if a.name == name), None)


@dataclass(frozen=True)
class Design:
    """One ``aie.device`` module: ``device`` is mlir-aie's device name (``npu1``, ``npu2``)."""

    name: str
    device: str
    functions: tuple[KernelFunction, ...]
    tiles: tuple[Tile, ...]
    fifos: tuple[ObjectFifo, ...]
    links: tuple[FifoLink, ...]
    buffers: tuple[Buffer, ...]
    cores: tuple[Core, ...]
    sequences: tuple[RuntimeSequence, ...]
    comments: tuple[str, ...] = field(default=(), compare=False)

    def runtime_sequence(self, name: str | None = None) -> RuntimeSequence:
        """The sequence called ``name``; without a name, the design's only sequence, or of several its last (decode
        attention's: the one reading the most cache tiles; a shared configuration's: its last linear's)."""
        if name is None:
            return self.sequences[-1]
        for s in self.sequences:
            if s.name == name:
                return s
        raise CompileError(f"design {self.name}: no runtime sequence @{name} (it has "
                           f"{', '.join('@' + s.name for s in self.sequences) or 'one unnamed sequence'})")

    @property
    def sequence(self) -> tuple[SequenceOp, ...]:
        """The ops of :meth:`runtime_sequence` ``()``."""
        return self.runtime_sequence().ops

    @property
    def sequence_args(self) -> tuple[SequenceArg, ...]:
        """The arguments of :meth:`runtime_sequence` ``()``."""
        return self.runtime_sequence().args

    def with_sequence(self, ops) -> "Design":
        """This design with its only sequence's ops replaced (tests that break a design on purpose)."""
        if len(self.sequences) != 1:
            raise CompileError(f"design {self.name} has {len(self.sequences)} runtime sequences")
        return replace(self, sequences=(replace(self.sequences[0], ops=tuple(ops)),))

    def fifos_into_ddr(self) -> frozenset[str]:
        """The object FIFOs that end at a shim tile: their runtime-sequence transfers write DDR."""
        return frozenset(f.name for f in self.fifos if any(c.kind == "shim" for c in f.consumers))

    def output_args(self) -> frozenset[str]:
        """The runtime-sequence arguments the design writes (the targets of its transfers into DDR)."""
        into_ddr = self.fifos_into_ddr()
        return frozenset(op.arg for s in self.sequences for op in s.ops
                         if isinstance(op, DmaMemcpy) and op.fifo in into_ddr)

    def input_args(self) -> frozenset[str]:
        """The runtime-sequence arguments the design reads (the sources of its transfers from DDR); an argument may
        be both (a chain's, :mod:`..chains`: one launch's result is the next one's operand)."""
        into_ddr = self.fifos_into_ddr()
        return frozenset(op.arg for s in self.sequences for op in s.ops
                         if isinstance(op, DmaMemcpy) and op.fifo not in into_ddr)

    def fifo(self, name: str) -> ObjectFifo:
        for f in self.fifos:
            if f.name == name:
                return f
        raise CompileError(f"design {self.name}: no object FIFO @{name}")

    def link_of(self, fifo: str) -> FifoLink | None:
        for link in self.links:
            if fifo in link.sources or fifo in link.destinations:
                return link
        return None

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise CompileError(f"design {self.name}: no buffer %{name}")

    def function(self, name: str) -> KernelFunction:
        for f in self.functions:
            if f.name == name:
                return f
        raise CompileError(f"design {self.name}: no kernel function @{name}")


def walk(nodes) -> "iter[Node]":
    """Every node of a body, loops first then their bodies, in order."""
    for node in nodes:
        yield node
        if isinstance(node, For):
            yield from walk(node.body)


__all__ = ["Acquire", "Arith", "Buffer", "CallKernel", "Core", "Design", "Dims", "DmaMemcpy", "DmaWait",
           "ELEMENT_BYTES", "FifoLink", "For", "HEADER_ARG", "IndexCast", "KernelFunction", "LoadWord", "MemrefType",
           "Node", "ObjectFifo", "Release", "RtpWrite", "RuntimeSequence", "SequenceArg", "SequenceOp", "Tile", "walk"]
