"""Run a :class:`~.model.Design` on the host, with the data movement mlir-aie's lowering would set up.

What each core receives is derived from the design alone, as the object-FIFO lowering
(AIEObjectFifoStatefulTransform.cpp) builds its buffer descriptors:

- a DMA connection is a stream of values: the producer's MM2S reads its buffer (with the producer's
  ``dimensionsToStream``) into the stream, each consumer's S2MM writes the stream into its buffer (with its
  ``dimensionsFromStream``), one consumer element at a time. A producer and a consumer that disagree on sizes
  shift the data exactly as the hardware would;
- a distribute link splits every element of its source into parts at the link's offsets, part ``i`` being
  ``off[i+1] - off[i]`` long (the last ``total - off[last]``) whatever the destination FIFO's size; a join
  assembles its destination's element the same way; the parts carry the small FIFO's dims relative to ``off[i]``;
- the runtime sequence walks its DDR arguments with each transfer's four-dimensional pattern, in order; a wait or
  the end of the sequence runs the array until the transfers it waits for are complete;
- cores run their bodies (loops, acquires, kernel calls through the host-built kernel library, run-time parameter
  loads, i32 arithmetic) over and over, as the rendered ``scf.for`` around every body does, blocking on acquires of
  data not yet delivered. A run of the runtime sequence ends when its transfers are done and every core waits at
  the start of an iteration, having run at least one: one iteration per launch, or one per launch of a chain that
  runs several members of a shared configuration in one sequence (:mod:`.shared`).

A run that cannot finish (a core waiting for data that never comes or stopped inside an iteration, values left over
in a stream, a transfer that waits forever) is an :class:`~aielower.errors.AielowerError` naming the core, FIFO or
transfer. Produced elements start filled with a poison pattern (bf16 NaN), so a kernel that leaves part of its
output unwritten shows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from aielower.backends.aie.designs.model import (
    Acquire,
    Arith,
    CallKernel,
    Design,
    DmaMemcpy,
    DmaWait,
    For,
    IndexCast,
    LoadWord,
    ObjectFifo,
    Release,
    RtpWrite,
    Tile,
)
from aielower.errors import AielowerError

NUMPY_DTYPES = {"bf16": np.dtype(np.uint16), "f32": np.dtype(np.float32), "i8": np.dtype(np.uint8),
                "i32": np.dtype(np.int32)}
POISON = {"bf16": 0x7FC1, "f32": np.float32("nan"), "i8": 0xA5, "i32": -0x5A5A5A5B}


def pattern_offsets(offset: int, dims) -> np.ndarray:
    """Element offsets of ``(size, stride)`` dims (outermost first) from ``offset``, in stream order."""
    offsets = np.array([offset], np.int64)
    for size, stride in dims:
        offsets = (offsets[:, None] + np.arange(size, dtype=np.int64)[None, :] * stride).reshape(-1)
    return offsets


class Stream:
    """Values in flight from one DMA channel to one consumer."""

    def __init__(self, label: str):
        self.label = label
        self.chunks: deque[np.ndarray] = deque()
        self.count = 0
        self.moved = 0

    def push(self, values: np.ndarray) -> None:
        if len(values):
            self.chunks.append(values)
            self.count += len(values)
            self.moved += len(values)

    def take(self, n: int) -> np.ndarray:
        parts, need = [], n
        while need:
            chunk = self.chunks[0]
            if len(chunk) <= need:
                parts.append(self.chunks.popleft())
                need -= len(chunk)
            else:
                parts.append(chunk[:need])
                self.chunks[0] = chunk[need:]
                need = 0
        self.count -= n
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


@lru_cache(maxsize=4096)
def _pattern(base: int, dims: tuple) -> tuple[np.ndarray, int, int]:
    """(offsets, lowest, highest) of a buffer descriptor's ``(size, stride)`` dims from ``base``; descriptors repeat
    with the same pattern on every element, so they are computed once (read-only arrays)."""
    offsets = pattern_offsets(base, dims)
    offsets.flags.writeable = False
    lowest = base + sum(min(0, (n - 1) * t) for n, t in dims)
    highest = base + sum(max(0, (n - 1) * t) for n, t in dims)
    return offsets, lowest, highest


def _addressed(buffer: np.ndarray, base: int, length: int, dims, where: str, verb: str):
    """The elements of ``buffer`` a descriptor of ``length`` values addresses: a slice without dims, else the
    pattern's offsets; checked against the descriptor's length and the buffer's size."""
    if not dims:
        if base < 0 or base + length > buffer.size:
            raise AielowerError(f"{where}: {verb} element {base + length - 1} of a {buffer.size}-element buffer")
        return slice(base, base + length)
    offsets, lowest, highest = _pattern(base, tuple(dims))
    if len(offsets) != length:
        raise AielowerError(f"{where}: dims {list(dims)} address {len(offsets)} elements, the descriptor moves {length}")
    if length and (lowest < 0 or highest >= buffer.size):
        raise AielowerError(f"{where}: {verb} element {highest} of a {buffer.size}-element buffer")
    return offsets


def _write(buffer: np.ndarray, base: int, dims, values: np.ndarray, where: str) -> None:
    """An S2MM buffer descriptor: ``values`` written at ``base`` (+ dims) of ``buffer``."""
    buffer[_addressed(buffer, base, len(values), dims, where, "writes")] = values


def _read(buffer: np.ndarray, base: int, length: int, dims, where: str) -> np.ndarray:
    """An MM2S buffer descriptor: ``length`` values from ``base`` (+ dims) of ``buffer`` (a copy: the buffer is
    written again while the values are in flight)."""
    where_ = _addressed(buffer, base, length, dims, where, "reads")
    return buffer[where_].copy() if isinstance(where_, slice) else buffer[where_]


@dataclass
class _Pending:
    """A runtime-sequence transfer into DDR waiting for its values."""

    op: DmaMemcpy
    done: bool = False


@dataclass
class _CoreState:
    tile: Tile
    generator: object = None
    blocked_on: str = ""
    iterations: int = 0  # iterations of the body completed in this run
    moved: int = 0  # elements taken or given in the current iteration (0: waiting at its start)
    calls: int = 0  # kernel calls made in the current iteration
    buffers: dict = field(default_factory=dict)


class DesignRun:
    """Runs ``design`` (see the module docs); ``functions(name)`` returns a callable kernel function taking NumPy
    arrays and ints (:meth:`aielower.backends.aie.kernels.KernelLibrary.function`)."""

    def __init__(self, design: Design, functions):
        self.design = design
        self.functions = functions
        self._kernels: dict[str, object] = {}
        self.calls = 0
        self.ticks = 0  # grows with every value moved and every kernel call: progress
        self.core_state = {c.tile: _CoreState(c.tile) for c in design.cores}
        for b in design.buffers:
            if b.tile in self.core_state:
                self.core_state[b.tile].buffers[b.name] = np.zeros(b.type.size, NUMPY_DTYPES[b.type.element])

    # -- streams ------------------------------------------------------------------------------------------------

    def _reset_streams(self) -> None:
        d = self.design
        self.streams: dict[tuple[str, Tile], Stream] = {
            (f.name, c): Stream(f"@{f.name} -> {c.name}") for f in d.fifos for c in f.consumers}
        self.memtile_parts: dict[str, list] = {}  # join destination -> parts received of its current element

    def _deliver(self, fifo: ObjectFifo, values: np.ndarray) -> None:
        """Values leave ``fifo``'s producer: every consumer's stream gets them, memory tiles pass them on."""
        for consumer in fifo.consumers:
            self.streams[(fifo.name, consumer)].push(values)
            if consumer.kind == "mem":
                self._pump_memtile(fifo, consumer)

    def _pump_memtile(self, fifo: ObjectFifo, tile: Tile) -> None:
        """Move every complete part that reached a memory tile through its link."""
        d = self.design
        link = d.link_of(fifo.name)
        if link is None:
            raise AielowerError(f"design {d.name}: @{fifo.name} ends in memory tile {tile.name} but is in no link")
        stream = self.streams[(fifo.name, tile)]
        if link.kind == "join":
            out = d.fifo(link.destinations[0])
            lengths = link.transfer_lengths(out.element.size)
            index = link.sources.index(fifo.name)
            state = self.memtile_parts.setdefault(out.name, [[deque() for _ in link.sources], 0])
            parts = state[0]
            while stream.count >= lengths[index]:
                buf = np.full(out.element.size, POISON[out.element.element], NUMPY_DTYPES[out.element.element])
                _write(buf, link.source_offsets[index], fifo.from_stream, stream.take(lengths[index]),
                       f"join S2MM of @{fifo.name}")
                parts[index].append(buf)
            # The MM2S side sends the element's parts in order, each as soon as it has arrived (one buffer
            # descriptor and lock pair per part).
            while parts[state[1]]:
                i = state[1]
                self._deliver(out, _read(parts[i].popleft(), link.source_offsets[i], lengths[i], out.to_stream,
                                         f"join MM2S of @{out.name}"))
                state[1] = (i + 1) % len(parts)
            return
        outs = [d.fifo(name) for name in link.destinations]
        lengths = link.transfer_lengths(fifo.element.size)
        offsets = link.destination_offsets or (0,)
        # The S2MM side runs one buffer descriptor per part (each with its own lock pair), so part r moves on to
        # output r as soon as it has arrived, before the rest of the element.
        state = self.memtile_parts.setdefault(fifo.name, [0, None])  # [next part, element buffer]
        while True:
            r = state[0]
            if lengths[r] <= 0:
                raise AielowerError(f"design {d.name}: link of @{fifo.name} gives a part of {lengths[r]} elements "
                                    f"(offsets {list(offsets)})")
            if stream.count < lengths[r]:
                return
            if r == 0:
                state[1] = np.full(fifo.element.size, POISON[fifo.element.element], NUMPY_DTYPES[fifo.element.element])
            buf = state[1]
            _write(buf, offsets[r], fifo.from_stream, stream.take(lengths[r]), f"memory-tile S2MM of @{fifo.name}")
            self._deliver(outs[r], _read(buf, offsets[r], lengths[r], outs[r].to_stream,
                                         f"memory-tile MM2S of @{outs[r].name}"))
            state[0] = (r + 1) % len(lengths)

    # -- cores --------------------------------------------------------------------------------------------------

    def _kernel(self, name: str):
        if name not in self._kernels:
            self._kernels[name] = self.functions(name)
        return self._kernels[name]

    def _core_program(self, core):
        state = self.core_state[core.tile]
        fifos = {f.name: f for f in self.design.fifos}

        def run(nodes, env: dict, ivs: dict):
            for node in nodes:
                if isinstance(node, For):
                    for i in range(node.count if isinstance(node.count, int) else int(env[node.count])):
                        ivs[node.iv] = i
                        yield from run(node.body, env, ivs)
                elif isinstance(node, Acquire):
                    fifo = fifos[node.fifo]
                    et = fifo.element
                    if node.port == "Consume":
                        stream = self.streams.get((node.fifo, core.tile))
                        if stream is None:
                            raise AielowerError(f"core {core.tile.name} consumes @{node.fifo}, which does not feed it")
                        while stream.count < et.size:
                            state.blocked_on = f"acquire @{node.fifo} (Consume): {stream.count} of {et.size} values"
                            yield
                        state.blocked_on = ""
                        buf = np.full(et.size, POISON[et.element], NUMPY_DTYPES[et.element])
                        _write(buf, 0, fifo.from_stream, stream.take(et.size), f"S2MM of {core.tile.name}")
                        self.ticks += 1
                        state.moved += 1
                    else:
                        if fifo.producer != core.tile:
                            raise AielowerError(f"core {core.tile.name} produces into @{node.fifo}, which it does "
                                                "not own")
                        buf = np.full(et.size, POISON[et.element], NUMPY_DTYPES[et.element])
                    env.setdefault(("held", node.fifo, node.port), deque()).append(buf)
                    env[node.var] = buf
                elif isinstance(node, Release):
                    held = env.get(("held", node.fifo, node.port))
                    if not held:
                        raise AielowerError(f"core {core.tile.name} releases @{node.fifo} ({node.port}) without "
                                            "holding an element")
                    buf = held.popleft()
                    if node.port == "Produce":
                        fifo = fifos[node.fifo]
                        self._deliver(fifo, _read(buf, 0, fifo.element.size, fifo.to_stream,
                                                  f"MM2S of {core.tile.name}"))
                        self.ticks += 1
                        state.moved += 1
                elif isinstance(node, LoadWord):
                    env[node.var] = int(state.buffers[node.buffer][node.index])
                elif isinstance(node, IndexCast):
                    env[node.var] = ivs[node.iv]
                elif isinstance(node, Arith):
                    a, b = (x if isinstance(x, int) else env[x] for x in (node.lhs, node.rhs))
                    env[node.var] = {"addi": a + b, "subi": a - b, "muli": a * b}[node.op]
                elif isinstance(node, CallKernel):
                    args = []
                    for a in node.args:
                        if isinstance(a, int):
                            args.append(a)
                        elif a in state.buffers:
                            args.append(state.buffers[a])
                        else:
                            args.append(env[a])
                    self._kernel(node.function)(*args)
                    state.calls += 1
                    self.ticks += 1
                else:
                    raise AielowerError(f"core {core.tile.name}: cannot run {node!r}")

        while True:  # the rendered scf.for around the body: one iteration per launch
            yield from run(core.body, {}, {})
            state.iterations += 1
            if not state.moved:  # a body that moves no data (a core the design leaves idle) never waits for any
                if state.calls:
                    raise AielowerError(f"core {core.tile.name}: its body calls kernels without taking or giving "
                                        "data, so the core would loop without waiting")
                while True:  # idle: nothing it does is observable
                    yield
            self.calls += state.calls  # (the calls an iteration makes before it blocks count once it is done)
            state.moved = state.calls = 0

    def _step_cores(self) -> bool:
        """Run every core until it blocks without progress; True if any moved data or called a kernel. A core's
        program yields only when an acquire finds too few values."""
        start = self.ticks
        for core in self.design.cores:
            state = self.core_state[core.tile]
            while True:
                before = self.ticks
                next(state.generator)
                if self.ticks == before:
                    break
        return self.ticks != start

    def _idle(self) -> bool:
        """Every core waits at the start of an iteration, having completed one at least in this run."""
        return all(s.iterations and not s.moved for s in self.core_state.values())

    # -- the runtime sequence ----------------------------------------------------------------------------------

    def run(self, args: dict[str, np.ndarray], sequence: str | None = None) -> None:
        """One run of the runtime sequence ``sequence`` (default: the design's only or largest one) over ``args``
        (flat arrays by argument name, typed as the arguments; outputs are written in place). Its ``rtp_write``
        values are the sequence's own: nothing is patched per step (per-step values come in ``args``)."""
        d = self.design
        for a in d.runtime_sequence(sequence).args:
            if a.name not in args:
                raise AielowerError(f"design {d.name}: no array for runtime-sequence argument %{a.name}")
            arr = args[a.name]
            if arr.dtype != NUMPY_DTYPES[a.type.element] or arr.ndim != 1 or arr.size < a.type.size:
                raise AielowerError(f"design {d.name}: argument %{a.name} must be a flat {a.type.element} array of at "
                                    f"least {a.type.size} elements, got {arr.dtype} {arr.shape}")
        self._reset_streams()
        for state in self.core_state.values():
            state.blocked_on, state.iterations, state.moved, state.calls = "", 0, 0, 0
        self.ticks = 0
        for core in d.cores:
            self.core_state[core.tile].generator = self._core_program(core)
        pending: dict[str, deque[_Pending]] = {}
        shim_out = d.fifos_into_ddr()
        for op in d.runtime_sequence(sequence).ops:
            if isinstance(op, RtpWrite):
                value = op.value
                owner = d.buffer(op.buffer).tile
                self.core_state[owner].buffers[op.buffer][op.index] = value
            elif isinstance(op, DmaMemcpy):
                dims = list(zip(op.sizes, op.strides))
                offsets = pattern_offsets(op.offset, dims)
                arr = args[op.arg]
                if offsets.max() >= arr.size:
                    raise AielowerError(f"design {d.name}: a transfer on @{op.fifo} reaches element "
                                        f"{int(offsets.max())} of %{op.arg}, which has {arr.size}")
                if op.fifo in shim_out:
                    pending.setdefault(op.fifo, deque()).append(_Pending(op))
                else:
                    self._deliver(d.fifo(op.fifo), arr[offsets].copy())
                self._progress(args, pending)
            elif isinstance(op, DmaWait):
                queue = pending.get(op.fifo)
                if queue:
                    first = queue[0]
                    while not first.done:
                        if not self._progress(args, pending):
                            raise self._stuck(f"waiting for a transfer on @{op.fifo}")
        while any(q for q in pending.values()) or not self._idle():
            if not self._progress(args, pending):
                if any(q for q in pending.values()):
                    raise self._stuck("at the end of the runtime sequence, transfers into DDR are incomplete")
                raise self._stuck("at the end of the runtime sequence, cores did not finish their iteration")
        left = {s.label: s.count for s in self.streams.values() if s.count}
        if left:
            raise AielowerError(f"design {d.name}: values left undelivered after the run: {left}")

    def _progress(self, args, pending) -> bool:
        """Run cores and complete transfers into DDR as far as possible; True if anything moved."""
        moved = False
        while True:
            step = self._step_cores()
            for fifo, queue in pending.items():
                while queue:
                    head = queue[0]
                    stream = self.streams[(fifo, next(c for c in self.design.fifo(fifo).consumers if c.kind == "shim"))]
                    if stream.count < head.op.elements:
                        break
                    offsets = pattern_offsets(head.op.offset, list(zip(head.op.sizes, head.op.strides)))
                    args[head.op.arg][offsets] = stream.take(head.op.elements)
                    head.done = True
                    self.ticks += 1
                    queue.popleft()
                    step = True
            if not step:
                return moved
            moved = True

    def _stuck(self, what: str) -> AielowerError:
        blocked = [f"{t.name}: {s.blocked_on}" + ("" if s.moved else " (at the start of an iteration, none done)")
                   for t, s in self.core_state.items() if s.blocked_on and (s.moved or not s.iterations)]
        streams = {s.label: s.count for s in self.streams.values() if s.count}
        return AielowerError(f"design {self.design.name} cannot finish {what}; blocked cores: "
                             f"{'; '.join(blocked) or 'none'}; values waiting in streams: {streams or 'none'}")


__all__ = ["DesignRun", "NUMPY_DTYPES", "pattern_offsets"]
