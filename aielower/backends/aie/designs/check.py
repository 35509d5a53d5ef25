"""The rules a design must keep that mlir-aie's verifiers do not check (or check only when the hardware is
programmed), run on every design at the end of every ``target="aie"`` compile. Pure Python, on the
:class:`~.model.Design` (the same data the text is rendered from and parsed back into).

Each rule cites where it comes from. A broken rule is a :class:`Violation` naming the design, the FIFO, core or
runtime-sequence op, and the rule; :func:`require_valid` turns them into one CompileError.

- ``link-lengths``: mlir-aie derives each memory-tile buffer descriptor's length from consecutive link offsets
  (``off[i+1] - off[i]``, the last ``total - off[last]``: AIEObjectFifoStatefulTransform.cpp,
  ``getDistributeTransferLengths``) and never compares it with the part's FIFO; a mismatch moves wrong data.
- ``bd-dims``: ``DMABDOp::verify`` rejects a dim size of 513 or more; aie-rt's register widths limit memory tiles
  to 4 dims and 17-bit steps, cores to 3 dims, 8-bit wraps and 13-bit steps; shim ends carry no dims
  (``ObjectFifoCreateOp::verify``); the dims must address exactly the part they describe.
- ``bd-length``: buffer-descriptor lengths are whole 4-byte words (``DMABDOp::verify``).
- ``shim-transfer``: ``aiex.npu.dma_memcpy_nd`` limits (AIEXDialect.cpp ``verifyStridesWraps``; sizes above the
  encodable range compile to wrong encodings, so they are checked here): d0 <= 1023 words unless linear,
  d1 <= 1023, d3 <= 64, strides <= 2^20 words, 4-byte offsets; transfers stay inside their argument.
- ``shim-queue``: a shim DMA channel holds 4 tasks (AMD AM020); a push onto a full queue is dropped.
- ``sequence-args``: a runtime sequence takes at most 5 arguments: the xclbin kernel aiecc makes has five buffer
  arguments, ``bo0`` .. ``bo4`` (python/compiler/aiecc/main.py ``emit_design_kernel_json`` at 5ff2ab97).
- ``shim-bd``: buffer-descriptor ids 0..15 (16 per shim tile), never reused while the transfer may still run.
- ``tokens``: a wait consumes its channel's oldest completion token: it needs a token-issuing transfer to wait for,
  and every S2MM transfer (always token-issuing) needs exactly one wait, or the channel's next wait is off by one.
- ``memory``: core data memory holds its FIFO buffers (mlir-aie's depth rule: acquire-1 cores get the declared
  depth, at most 2), its own buffers, the stack (``stack_size``, reserved at address 0) and the kernel's static
  arrays: at most 64 KiB; a memory tile holds 512 KiB (AIETargetModel). The core's stack_size must cover what the
  kernel declares it needs.
- ``dma-channels``, ``locks``, ``bds``: per tile (AIETargetModel): core 2+2 channels, 16 locks, 16 BDs; memory tile
  6+6 channels, 64 locks, 48 BDs; shim 2+2 channels. Two locks per FIFO end (times N on a link's big side).
- ``calls``: kernel calls pass what the declared function takes (count, element type and size).
- ``header``: a core that starts each run by reading a header (an acquire, then a kernel's ``_header`` on that
  element: a shared configuration, ``designs/shared.py``) takes the first element its FIFO delivers in every run; so
  every runtime sequence must send exactly that first element first on the shim channel behind that FIFO (one per core
  the channel's link feeds: one for a broadcast, one each for a split), each read plainly from the start of its header
  argument ``%hdr`` (read for nothing else there, and on no other channel), then the run's data (a chain's sequence,
  which runs several launches, sends each launch's header before its data, the k-th from element k of ``%hdr``);
  and every core that
  channel feeds must read its first element as the header (else the cores take activations for the header, or wait for
  one that never comes). A channel may carry the header alone only in a column the sequence moves nothing else
  through (a launch that leaves those cores idle).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from aielower.backends.aie.designs.model import (
    Acquire,
    CallKernel,
    Design,
    DmaMemcpy,
    HEADER_ARG,
    MAX_SEQUENCE_ARGS,
    DmaWait,
    MemrefType,
    ObjectFifo,
    Release,
    Tile,
    walk,
)
from aielower.backends.aie.dma import CORE_BD, MEMTILE_BD
from aielower.errors import CompileError

SHIM_QUEUE_DEPTH = 4
SHIM_BDS = 16
SHIM_LIMITS = dict(d0_words=1023, d1=1023, d3=64, stride_words=1 << 20)
CORE_MEMORY, MEMTILE_MEMORY = 64 * 1024, 512 * 1024
CHANNELS = {"core": (2, 2), "mem": (6, 6), "shim": (2, 2)}  # (S2MM, MM2S)
LOCKS = {"core": 16, "mem": 64}
BDS = {"core": 16, "mem": 48}


@dataclass(frozen=True)
class Violation:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def _dims_problems(dims, length: int, tile_kind: str, element: MemrefType) -> list[str]:
    if not dims:
        return []
    if tile_kind == "shim":
        return ["a shim end carries no dims (set the layout in the runtime sequence)"]
    limits = MEMTILE_BD if tile_kind == "mem" else CORE_BD
    out = []
    if len(dims) > limits.max_dims:
        out.append(f"{len(dims)} dims, a {limits.tile} descriptor has {limits.max_dims}")
    for size, stride in dims:
        if size > min(limits.max_size, 512):
            out.append(f"dim size {size} > {min(limits.max_size, 512)} ({limits.tile})")
        if size > 1 and stride * element.element_bytes > limits.max_stride_words * 4:
            out.append(f"stride {stride} elements exceeds {limits.max_stride_words} words ({limits.tile})")
    if _prod(s for s, _ in dims) != length:
        out.append(f"dims {list(dims)} address {_prod(s for s, _ in dims)} elements, the descriptor moves {length}")
    elif sum((s - 1) * t for s, t in dims) >= length:
        out.append(f"dims {list(dims)} reach element {sum((s - 1) * t for s, t in dims)} of a {length}-element part")
    return out


def check_links(design: Design) -> list[Violation]:
    out = []
    fifos = {f.name: f for f in design.fifos}
    for link in design.links:
        where = f"{design.name}: link {list(link.sources)} -> {list(link.destinations)}"
        if link.kind == "distribute":
            big, parts, offsets = fifos[link.sources[0]], [fifos[n] for n in link.destinations], link.destination_offsets
        elif link.kind == "join":
            big, parts, offsets = fifos[link.destinations[0]], [fifos[n] for n in link.sources], link.source_offsets
        else:
            a, b = fifos[link.sources[0]], fifos[link.destinations[0]]
            if a.element.size != b.element.size:
                out.append(Violation("link-lengths", where, f"1:1 link of {a.element} into {b.element}"))
            continue
        if len(offsets) != len(parts):
            out.append(Violation("link-lengths", where, f"{len(offsets)} offsets for {len(parts)} FIFOs"))
            continue
        lengths = link.transfer_lengths(big.element.size)
        if offsets[0] != 0 or any(b <= a for a, b in zip(offsets, offsets[1:])):
            out.append(Violation("link-lengths", where, f"offsets {list(offsets)} must rise strictly from 0"))
        for fifo, length in zip(parts, lengths):
            if length != fifo.element.size:
                out.append(Violation("link-lengths", where,
                                     f"mlir-aie gives @{fifo.name}'s part {length} elements (from the offsets), its "
                                     f"FIFO element holds {fifo.element.size}"))
    return out


def check_fifos(design: Design) -> list[Violation]:
    out = []
    for f in design.fifos:
        where = f"{design.name}: @{f.name}"
        if f.element.bytes % 4:
            out.append(Violation("bd-length", where, f"{f.element} is not a whole number of 4-byte words"))
        link = design.link_of(f.name)
        for problem in _dims_problems(f.to_stream, _part_length(design, f, link), f.producer.kind, f.element):
            out.append(Violation("bd-dims", where + " dimensionsToStream", problem))
        for consumer in f.consumers:
            for problem in _dims_problems(f.from_stream, _part_length(design, f, link), consumer.kind, f.element):
                out.append(Violation("bd-dims", where + f" dimensionsFromStream at {consumer.name}", problem))
    return out


def _part_length(design: Design, fifo: ObjectFifo, link) -> int:
    """Elements one buffer descriptor of ``fifo``'s memory-tile end moves: its share of a link's big element."""
    if link is None or link.kind == "1:1":
        return fifo.element.size
    names = link.destinations if link.kind == "distribute" else link.sources
    if fifo.name in names:
        big = design.fifo(link.sources[0] if link.kind == "distribute" else link.destinations[0])
        return link.transfer_lengths(big.element.size)[names.index(fifo.name)]
    return fifo.element.size


def check_sequence(design: Design) -> list[Violation]:
    """Every runtime sequence of ``design``, each on its own (the host submits one at a time)."""
    out = []
    for sequence in design.sequences:
        out += _check_one_sequence(design, sequence)
    return out


def _check_one_sequence(design: Design, sequence) -> list[Violation]:
    out = []
    label = f"{design.name}" + (f" @{sequence.name}" if sequence.name else "")
    if len(sequence.args) > MAX_SEQUENCE_ARGS:
        out.append(Violation("sequence-args", label, f"{len(sequence.args)} arguments; the xclbin kernel takes "
                             f"{MAX_SEQUENCE_ARGS} buffers"))
    fifos = {f.name: f for f in design.fifos}
    args = {a.name: a.type for a in sequence.args}
    queue: dict[str, list[tuple[int, DmaMemcpy]]] = defaultdict(list)  # issued, not known to be finished
    tokens: dict[str, list[int]] = defaultdict(list)  # token-issuing transfers not yet waited for
    in_flight: dict[tuple[int, int], tuple[str, int]] = {}  # (column, bd id) -> (fifo, op index)
    for i, op in enumerate(sequence.ops):
        where = f"{label}: runtime-sequence op #{i}"
        if isinstance(op, DmaMemcpy):
            fifo = fifos.get(op.fifo)
            if fifo is None:
                out.append(Violation("shim-transfer", where, f"metadata @{op.fifo} is not an object FIFO"))
                continue
            shim = fifo.producer if fifo.producer.kind == "shim" else next((c for c in fifo.consumers
                                                                             if c.kind == "shim"), None)
            if shim is None:
                out.append(Violation("shim-transfer", where, f"@{op.fifo} has no shim end"))
                continue
            out += [Violation("shim-transfer", where, p) for p in _transfer_problems(op, args.get(op.arg))]
            s2mm = shim in fifo.consumers
            if s2mm and not op.issue_token:
                out.append(Violation("tokens", where, "an S2MM transfer always issues a token; mark it"))
            if not 0 <= op.bd_id < SHIM_BDS:
                out.append(Violation("shim-bd", where, f"BD id {op.bd_id} outside 0..{SHIM_BDS - 1}"))
            key = (shim.column, op.bd_id)
            if key in in_flight:
                other, j = in_flight[key]
                out.append(Violation("shim-bd", where, f"BD {op.bd_id} of shim column {shim.column} is reused while "
                                     f"op #{j} on @{other} may still run (no wait has shown it finished)"))
            queue[op.fifo].append((i, op))
            in_flight[key] = (op.fifo, i)
            if len(queue[op.fifo]) > SHIM_QUEUE_DEPTH:
                out.append(Violation("shim-queue", where, f"{len(queue[op.fifo])} tasks queued on @{op.fifo}'s shim "
                                     f"channel, which holds {SHIM_QUEUE_DEPTH}; wait before pushing more"))
            if op.issue_token or s2mm:
                tokens[op.fifo].append(i)
        elif isinstance(op, DmaWait):
            if not tokens[op.fifo]:
                out.append(Violation("tokens", where, f"waits on @{op.fifo}, where no transfer issued a token: it "
                                     "would wait forever"))
                continue
            j = tokens[op.fifo].pop(0)
            # Everything on this channel up to transfer j has finished: its queue entries and BDs are free.
            done = [(k, t) for k, t in queue[op.fifo] if k <= j]
            queue[op.fifo] = [(k, t) for k, t in queue[op.fifo] if k > j]
            fifo = fifos[op.fifo]
            shim = fifo.producer if fifo.producer.kind == "shim" else next(c for c in fifo.consumers if c.kind == "shim")
            for k, t in done:
                in_flight.pop((shim.column, t.bd_id), None)
    for fifo, pending in tokens.items():
        s2mm = any(c.kind == "shim" for c in fifos[fifo].consumers)
        if pending and s2mm:
            out.append(Violation("tokens", f"{label}: @{fifo}", f"{len(pending)} S2MM transfer(s) never waited "
                                 "for: the host would read DDR before they land"))
    return out


def _transfer_problems(op: DmaMemcpy, arg: MemrefType | None) -> list[str]:
    if arg is None:
        return [f"%{op.arg} is not a runtime-sequence argument"]
    eb = arg.element_bytes
    problems = []
    linear = op.sizes[1] == op.sizes[2] == 1 and op.strides[3] == 1
    if (op.offset * eb) % 4:
        problems.append(f"offset {op.offset} is not 4-byte aligned")
    if (op.sizes[3] * eb) % 4:
        problems.append(f"d0 of {op.sizes[3]} elements is not whole 4-byte words")
    if not linear and op.sizes[3] * eb // 4 > SHIM_LIMITS["d0_words"]:
        problems.append(f"d0 of {op.sizes[3] * eb // 4} words > {SHIM_LIMITS['d0_words']}")
    if op.sizes[2] > SHIM_LIMITS["d1"]:
        problems.append(f"d1 size {op.sizes[2]} > {SHIM_LIMITS['d1']}")
    if op.sizes[0] > SHIM_LIMITS["d3"]:
        problems.append(f"d3 (repeat) size {op.sizes[0]} > {SHIM_LIMITS['d3']}")
    for size, stride in zip(op.sizes[:3], op.strides[:3]):
        if size > 1 and stride * eb > SHIM_LIMITS["stride_words"] * 4:
            problems.append(f"stride {stride} elements > {SHIM_LIMITS['stride_words']} words")
    last = op.offset + sum((s - 1) * t for s, t in zip(op.sizes, op.strides))
    if last >= arg.size:
        problems.append(f"reaches element {last} of %{op.arg}, which has {arg.size}")
    return problems


def _core_buffers(design: Design, tile: Tile) -> list[tuple[str, int]]:
    """(name, bytes) of every buffer in ``tile``'s data memory."""
    core = next((c for c in design.cores if c.tile == tile), None)
    acquires = defaultdict(int)
    if core is not None:
        for node in walk(core.body):
            if isinstance(node, Acquire):
                acquires[node.fifo] = 1  # the generators acquire one element at a time
    out = []
    for f in design.fifos:
        if f.producer == tile or tile in f.consumers:
            depth = min(f.depth, 2) if acquires.get(f.name) else f.depth  # findObjectFifoSize: maxAcquire + 1
            out.append((f.name, depth * f.element.bytes))
    out += [(b.name, b.type.bytes) for b in design.buffers if b.tile == tile]
    return out


def check_resources(design: Design, static_bytes=lambda link_with: 0, stack_needed=lambda link_with: 0) -> list[Violation]:
    """Memory, DMA channels, locks and BDs per tile; ``static_bytes`` / ``stack_needed`` give a kernel object's
    static arrays and stack need by its ``link_with`` name."""
    out = []
    for core in design.cores:
        where = f"{design.name}: core {core.tile.name}"
        used = sum(n for _, n in _core_buffers(design, core.tile)) + core.stack_size + static_bytes(core.link_with)
        if used > CORE_MEMORY:
            parts = ", ".join(f"{n} {b:,}" for n, b in _core_buffers(design, core.tile))
            out.append(Violation("memory", where, f"{used:,} bytes > {CORE_MEMORY:,} (stack {core.stack_size:,}, "
                                 f"kernel statics {static_bytes(core.link_with):,}, {parts})"))
        need = stack_needed(core.link_with)
        if core.stack_size < need:
            out.append(Violation("memory", where, f"stack_size {core.stack_size} < the {need} bytes "
                                 f"{core.link_with} needs"))
    channels = defaultdict(lambda: [0, 0])
    locks = defaultdict(int)
    bds = defaultdict(int)
    memtile_bytes = defaultdict(int)
    for f in design.fifos:
        link = design.link_of(f.name)
        channels[f.producer][1] += 1
        for c in f.consumers:
            channels[c][0] += 1
        for end in (f.producer, *f.consumers):
            locks[end] += 2
            if end.kind != "shim":
                bds[end] += f.depth
        mem_end = next((t for t in (f.producer, *f.consumers) if t.kind == "mem"), None)
        if mem_end is not None and link is not None and link.kind != "1:1":
            big = link.sources[0] if link.kind == "distribute" else link.destinations[0]
            n = len(link.destinations if link.kind == "distribute" else link.sources)
            if f.name == big:
                memtile_bytes[mem_end] += f.depth * f.element.bytes
                locks[mem_end] += 2 * (n - 1)
                bds[mem_end] += f.depth * (n - 1)
        elif mem_end is not None and (link is None or f.name in link.sources):
            memtile_bytes[mem_end] += f.depth * f.element.bytes
    for tile, (s2mm, mm2s) in channels.items():
        limit = CHANNELS[tile.kind]
        if s2mm > limit[0] or mm2s > limit[1]:
            out.append(Violation("dma-channels", f"{design.name}: {tile.name}", f"{s2mm} S2MM / {mm2s} MM2S channels, "
                                 f"the tile has {limit[0]} / {limit[1]}"))
    for tile, n in locks.items():
        if tile.kind in LOCKS and n > LOCKS[tile.kind]:
            out.append(Violation("locks", f"{design.name}: {tile.name}", f"{n} locks > {LOCKS[tile.kind]}"))
    for tile, n in bds.items():
        if n > BDS[tile.kind]:
            out.append(Violation("bds", f"{design.name}: {tile.name}", f"{n} buffer descriptors > {BDS[tile.kind]}"))
    for tile, n in memtile_bytes.items():
        if n > MEMTILE_MEMORY:
            out.append(Violation("memory", f"{design.name}: {tile.name}", f"{n:,} bytes of FIFO buffers > "
                                 f"{MEMTILE_MEMORY:,}"))
    return out


def check_calls(design: Design) -> list[Violation]:
    out = []
    fifo_types = {f.name: f.element for f in design.fifos}
    buffer_types = {b.name: b.type for b in design.buffers}
    for core in design.cores:
        held: dict[str, MemrefType] = {}
        for node in walk(core.body):
            if isinstance(node, Acquire):
                held[node.var] = fifo_types[node.fifo]
            elif isinstance(node, CallKernel):
                where = f"{design.name}: core {core.tile.name} call @{node.function}"
                try:
                    function = design.function(node.function)
                except CompileError as e:
                    out.append(Violation("calls", where, str(e)))
                    continue
                if len(function.args) != len(node.args):
                    out.append(Violation("calls", where, f"{len(node.args)} arguments, it takes {len(function.args)}"))
                    continue
                for k, (arg, declared) in enumerate(zip(node.args, function.args)):
                    given = held.get(arg) or buffer_types.get(arg) if isinstance(arg, str) else "i32"
                    if given is None:
                        given = "i32"  # an i32 variable
                    if str(given) != str(declared):
                        out.append(Violation("calls", where, f"argument {k} is {given}, the function takes {declared}"))
            elif isinstance(node, Release):
                pass
    return out


def _column(fifo) -> int:
    """The column of a FIFO's shim end (its producer for an input, its consumer for an output)."""
    return next(t.column for t in (fifo.producer, *fifo.consumers) if t.kind == "shim")


def check_headers(design: Design) -> list[Violation]:
    """The ``header`` rule of the module docs."""
    out = []
    fifos = {f.name: f for f in design.fifos}

    def header_fifo(core) -> str | None:
        """The FIFO a core reads its header from: its body starts with an acquire and ``_header`` on that element."""
        body = core.body
        if (len(body) >= 2 and isinstance(body[0], Acquire) and isinstance(body[1], CallKernel)
                and body[1].function.endswith("_header") and body[0].var in body[1].args):
            return body[0].fifo
        return None

    channels = set()  # shim FIFOs whose first element of a run is the cores' header
    for core in design.cores:
        fifo = header_fifo(core)
        if fifo is None:
            continue
        link = design.link_of(fifo)
        source = fifos.get(link.sources[0]) if link is not None and len(link.sources) == 1 else None
        if source is None or source.producer.kind != "shim":
            out.append(Violation("header", f"{design.name}: core {core.tile.name}",
                                 f"reads its header from @{fifo}, which no shim channel feeds through a link"))
            continue
        channels.add(source.name)
    for name in sorted(channels):  # every core the channel feeds takes its first element as the header
        link = design.link_of(name)
        fed = {f for f in link.destinations}
        for core in design.cores:
            consumed = {n.fifo for n in walk(core.body) if isinstance(n, Acquire)}
            if consumed & fed and header_fifo(core) not in fed:
                out.append(Violation("header", f"{design.name}: core {core.tile.name}",
                                     f"takes @{sorted(consumed & fed)[0]}, which carries a header first, without "
                                     "reading it as one (an acquire, then _header)"))
    for sequence in design.sequences:
        label = f"{design.name}" + (f" @{sequence.name}" if sequence.name else "")
        args = {a.name: a.type for a in sequence.args}
        transfers = [(i, op) for i, op in enumerate(sequence.ops) if isinstance(op, DmaMemcpy)]
        # columns this sequence moves data through (a shared configuration's member may leave a column idle: its
        # header channel then carries the header alone)
        busy = {_column(fifos[op.fifo]) for _, op in transfers if op.arg != HEADER_ARG and op.fifo in fifos}
        for fifo in sorted(channels):
            mine = [(i, op) for i, op in transfers if op.fifo == fifo]
            if not mine:
                out.append(Violation("header", f"{label}: @{fifo}", "sends nothing, so no header"))
                continue
            i, first = mine[0]
            where = f"{label}: runtime-sequence op #{i}"
            if first.arg != HEADER_ARG:
                out.append(Violation("header", where, f"the first transfer on @{fifo} reads %{first.arg}, not the "
                                     f"header %{HEADER_ARG} the cores read first"))
                continue
            # each run of the cores (one per launch: several in a chain's sequence) starts with its header: one
            # element per core the channel's link feeds (a split: one each; a broadcast: one for all), each read
            # plainly from %hdr (a repeat, d3 stride 0, of one run), the k-th header from element k of %hdr
            copies = len(design.link_of(fifo).destinations)
            run, uneven = divmod(fifos[fifo].element.bytes, copies)
            arg = args.get(HEADER_ARG)
            headers = [(j, op) for j, op in mine if op.arg == HEADER_ARG]
            for k, (j, op) in enumerate(headers):
                plain = (arg is not None and not uneven and op.sizes[:3] == (copies, 1, 1) and op.strides[3] == 1
                         and (copies == 1 or op.strides[0] == 0) and op.sizes[3] * arg.element_bytes == run
                         and op.offset * arg.element_bytes == k * run)
                if not plain:
                    out.append(Violation("header", f"{label}: runtime-sequence op #{j}", f"the transfer on @{fifo} "
                                         f"of header {k} is not one element per core it feeds, each read plainly from "
                                         f"element {k} of %{HEADER_ARG}, the header the cores read first"))
            if _column(fifos[fifo]) in busy:  # each launch's data after its header, before the next header
                k = 0
                for (_, previous), (j, op) in zip(mine, mine[1:]):
                    k += op.arg == HEADER_ARG
                    if op.arg == HEADER_ARG and previous.arg == HEADER_ARG:
                        out.append(Violation("header", f"{label}: runtime-sequence op #{j}", f"header {k} on "
                                             f"@{fifo} follows header {k - 1} with no data of launch {k - 1} "
                                             "between them: the cores would take it for that data"))
            if arg is not None and arg.bytes != len(headers) * run:
                out.append(Violation("header", where, f"%{HEADER_ARG} holds {arg.bytes} bytes, not the "
                                     f"{len(headers)} header(s) of {run} bytes sent on @{fifo}"))
            elif len(mine) == len(headers) and _column(fifos[fifo]) in busy:
                out.append(Violation("header", where, f"@{fifo} carries headers only: no activations, or "
                                     "activations and no header"))
        for j, op in transfers:
            if op.arg == HEADER_ARG and op.fifo not in channels:
                out.append(Violation("header", f"{label}: runtime-sequence op #{j}", f"%{HEADER_ARG} is sent on "
                                     f"@{op.fifo}, whose cores read no header"))
    return out


def check_design(design: Design, static_bytes=lambda link_with: 0, stack_needed=lambda link_with: 0) -> list[Violation]:
    """Every rule of the module docs on one design."""
    return (check_links(design) + check_fifos(design) + check_sequence(design)
            + check_resources(design, static_bytes, stack_needed) + check_calls(design) + check_headers(design))


def require_valid(designs, static_bytes=lambda link_with: 0, stack_needed=lambda link_with: 0) -> None:
    """CompileError listing every violation of ``designs`` (the first 20)."""
    violations = [v for d in designs for v in check_design(d, static_bytes, stack_needed)]
    if violations:
        shown = "\n  ".join(map(str, violations[:20]))
        more = f"\n  ... {len(violations) - 20} more" if len(violations) > 20 else ""
        raise CompileError(f"{len(violations)} design rule violation(s):\n  {shown}{more}")


__all__ = ["Violation", "check_calls", "check_design", "check_fifos", "check_headers", "check_links",
           "check_resources", "check_sequence", "require_valid"]
