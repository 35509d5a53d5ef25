"""Read a design's MLIR-AIE text back into a :class:`~.model.Design`.

The emulator runs what this returns, so it runs the design files as written, not the plan or the schedule they
came from. The parser knows exactly the subset :mod:`.render` prints (one op per line) and refuses anything else
with the file and line; constants are resolved through their declarations, not their names.
"""

from __future__ import annotations

import re
from pathlib import Path

from aielower.backends.aie.designs.model import (
    Acquire,
    Arith,
    Buffer,
    CallKernel,
    Core,
    Design,
    DmaMemcpy,
    DmaWait,
    FifoLink,
    For,
    IndexCast,
    KernelFunction,
    LoadWord,
    MemrefType,
    ObjectFifo,
    Release,
    RtpWrite,
    RuntimeSequence,
    SequenceArg,
    Tile,
)
from aielower.errors import CompileError

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_MEMREF = re.compile(r"memref<([0-9]+)x(bf16|f32|i8|i32)>")
_DIMS = re.compile(r"<size = ([0-9]+), stride = ([0-9]+)>")

_DEVICE = re.compile(rf"aie\.device\(({_ID})\) \{{")
_FUNC = re.compile(rf"func\.func private @({_ID})\((.*)\)")
_TILE = re.compile(rf"%({_ID}) = aie\.tile\(([0-9]+), ([0-9]+)\)")
_FIFO = re.compile(rf"aie\.objectfifo @({_ID})\(%({_ID})(?: dimensionsToStream (\[[^\]]*\]))?, \{{(.*)\}}, "
                   rf"([0-9]+) : i32\) : !aie\.objectfifo<(memref<[^>]*>)>")
_CONSUMER = re.compile(rf"%({_ID})(?: dimensionsFromStream (\[[^\]]*\]))?")
_LINK = re.compile(r"aie\.objectfifo\.link \[(.*?)\] -> \[(.*?)\]\(\[(.*?)\] \[(.*?)\]\)")
_BUFFER = re.compile(rf"%({_ID}) = aie\.buffer\(%({_ID})\) \{{sym_name = \"({_ID})\"\}} : (memref<[^>]*>)")
_CORE = re.compile(rf"aie\.core\(%({_ID})\) \{{")
_CORE_END = re.compile(r"\} \{(dynamic_objfifo_lowering = true, )?link_with = \"([A-Za-z0-9_.+\-]+)\", "
                       r"stack_size = ([0-9]+) : i32\}")
_CONST = re.compile(rf"%({_ID}) = arith\.constant (-?[0-9]+) : (index|i32)")
_FOR = re.compile(rf"scf\.for %({_ID}) = %({_ID}) to %({_ID}) step %({_ID}) \{{")
_ACQUIRE = re.compile(rf"%({_ID})_sub = aie\.objectfifo\.acquire @({_ID})\((Consume|Produce), 1\)")
_ACCESS = re.compile(rf"%({_ID}) = aie\.objectfifo\.subview\.access %({_ID})_sub\[0\]")
_RELEASE = re.compile(rf"aie\.objectfifo\.release @({_ID})\((Consume|Produce), 1\)")
_LOAD = re.compile(rf"%({_ID}) = memref\.load %({_ID})\[%({_ID})\]")
_CAST = re.compile(rf"%({_ID}) = arith\.index_cast %({_ID}) : index to i32")
_COUNT = re.compile(rf"%({_ID})_count = arith\.index_cast %({_ID}) : i32 to index")
_ARITH = re.compile(rf"%({_ID}) = arith\.(addi|subi|muli) %({_ID}), %({_ID}) : i32")
_CALL = re.compile(rf"func\.call @({_ID})\((.*?)\) : \(.*\) -> \(\)")
_SEQUENCE = re.compile(rf"aie\.runtime_sequence(?: @({_ID}))?\((.*)\) \{{")
_SEQ_ARG = re.compile(rf"%({_ID}): (memref<[^>]*>)")
_DMA = re.compile(rf"aiex\.npu\.dma_memcpy_nd\(%({_ID})\[0, 0, 0, ([0-9]+)\]\[([0-9, ]+)\]\[([0-9, ]+)\]\) "
                  rf"\{{id = ([0-9]+) : i64, (issue_token = true, )?metadata = @({_ID})\}} : memref<[^>]*>")
_WAIT = re.compile(rf"aiex\.npu\.dma_wait \{{symbol = @({_ID})\}}")
_RTP = re.compile(rf"aiex\.npu\.rtp_write\(@({_ID}), ([0-9]+), (-?[0-9]+)\)")


def _memref(text: str) -> MemrefType:
    m = _MEMREF.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a 1-D memref: {text!r}")
    return MemrefType(int(m.group(1)), m.group(2))


def _dims(text: str | None) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in _DIMS.findall(text or ""))


def _symbols(text: str) -> tuple[str, ...]:
    return tuple(s.strip().lstrip("@") for s in text.split(",") if s.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


class _Reader:
    def __init__(self, text: str, filename: str):
        self.lines = text.splitlines()
        self.filename = filename
        self.i = 0

    def error(self, message: str) -> CompileError:
        line = self.lines[self.i - 1] if 0 < self.i <= len(self.lines) else ""
        return CompileError(f"{self.filename}:{self.i}: {message}: {line.strip()[:160]!r}")

    def next(self) -> str | None:
        """The next line that is not blank or a comment, stripped; None at the end."""
        while self.i < len(self.lines):
            line = self.lines[self.i].strip()
            self.i += 1
            if line and not line.startswith("//"):
                return line
        return None

    def expect(self, pattern: re.Pattern, what: str) -> re.Match:
        line = self.next()
        m = pattern.fullmatch(line) if line is not None else None
        if not m:
            raise self.error(f"expected {what}")
        return m


def parse_design(text: str, filename: str = "<design>") -> Design:
    """The :class:`Design` a design file holds (as :func:`~.render.render` writes them)."""
    r = _Reader(text, filename)
    comments = tuple(line[2:].strip() for line in text.splitlines() if line.startswith("//"))
    if r.next() != "module {":
        raise r.error("expected 'module {'")
    device = r.expect(_DEVICE, "aie.device(<name>) {").group(1)
    name = Path(filename).stem
    functions, tiles, fifos, links, buffers, cores = [], {}, [], [], [], []
    sequences: list[RuntimeSequence] = []
    while True:
        line = r.next()
        if line is None:
            raise r.error("unexpected end of file inside aie.device")
        if m := _FUNC.fullmatch(line):
            types = tuple("i32" if t.strip() == "i32" else _memref(t) for t in m.group(2).split(", ") if t.strip())
            functions.append(KernelFunction(m.group(1), types))
        elif m := _TILE.fullmatch(line):
            tile = Tile(int(m.group(2)), int(m.group(3)))
            if tile.name != m.group(1):
                raise r.error(f"tile %{m.group(1)} is not named {tile.name}")
            tiles[m.group(1)] = tile
        elif m := _FIFO.fullmatch(line):
            consumers, from_stream = [], ()
            for cm in _CONSUMER.finditer(m.group(4)):
                consumers.append(_tile(r, tiles, cm.group(1)))
                from_stream = _dims(cm.group(2)) or from_stream
            fifos.append(ObjectFifo(m.group(1), _tile(r, tiles, m.group(2)), tuple(consumers), int(m.group(5)),
                                    _memref(m.group(6)), _dims(m.group(3)), from_stream))
        elif m := _LINK.fullmatch(line):
            links.append(FifoLink(_symbols(m.group(1)), _symbols(m.group(2)), _ints(m.group(3)), _ints(m.group(4))))
        elif m := _BUFFER.fullmatch(line):
            if m.group(1) != m.group(3):
                raise r.error("a buffer's SSA name and sym_name differ")
            buffers.append(Buffer(m.group(1), _tile(r, tiles, m.group(2)), _memref(m.group(4))))
        elif m := _CORE.fullmatch(line):
            cores.append(_core(r, _tile(r, tiles, m.group(1))))
        elif m := _SEQUENCE.fullmatch(line):
            args = tuple(SequenceArg(a.group(1), _memref(a.group(2))) for a in _SEQ_ARG.finditer(m.group(2)))
            if len({a.name for a in args}) != len(args):
                raise r.error("a runtime sequence names an argument twice")
            if (m.group(1) or "") in {s.name for s in sequences} or (sequences and not m.group(1)):
                raise r.error("several runtime sequences need distinct names")
            sequences.append(RuntimeSequence(m.group(1) or "", tuple(_sequence(r)), args))
        elif line == "}":
            break
        else:
            raise r.error("unknown line in aie.device")
    if r.next() != "}":
        raise r.error("expected '}' closing the module")
    return Design(name, device, tuple(functions), tuple(tiles.values()), tuple(fifos), tuple(links), tuple(buffers),
                  tuple(cores), tuple(sequences), comments)


def _tile(r: _Reader, tiles: dict, name: str) -> Tile:
    if name not in tiles:
        raise r.error(f"%{name} is not a tile declared before")
    return tiles[name]


def _core(r: _Reader, tile: Tile) -> Core:
    consts: dict[str, int] = {}
    line = r.next()
    while line is not None and (m := _CONST.fullmatch(line)):
        consts[m.group(1)] = int(m.group(2))
        line = r.next()
    m = _FOR.fullmatch(line or "")
    if not m:
        raise r.error("expected the core's endless scf.for")

    def value(name: str) -> int:
        if name not in consts:
            raise r.error(f"%{name} is not a constant of this core")
        return consts[name]

    def operand(text: str):
        text = text.strip().lstrip("%")
        return value(text) if text in consts else text

    def block() -> tuple:
        nodes = []
        while True:
            line = r.next()
            if line is None:
                raise r.error("unexpected end of file in a core")
            if line == "}":
                return tuple(nodes)
            if m := _COUNT.fullmatch(line):
                loop = _FOR.fullmatch(r.next() or "")
                if not loop or loop.group(1) != m.group(1) or loop.group(3) != f"{m.group(1)}_count":
                    raise r.error("a trip count cast to index is followed by the loop that uses it")
                if value(loop.group(2)) != 0 or value(loop.group(4)) != 1:
                    raise r.error("loops run from 0 in steps of 1")
                nodes.append(For(loop.group(1), m.group(2), block()))
            elif m := _FOR.fullmatch(line):
                if value(m.group(2)) != 0 or value(m.group(4)) != 1:
                    raise r.error("loops run from 0 in steps of 1")
                nodes.append(For(m.group(1), value(m.group(3)), block()))
            elif m := _ACQUIRE.fullmatch(line.split(" : ")[0]):
                access = _ACCESS.fullmatch(r.next().split(" : ")[0])
                if not access or access.group(2) != m.group(1):
                    raise r.error("an acquire is followed by its subview.access")
                nodes.append(Acquire(access.group(1), m.group(2), m.group(3)))
            elif m := _RELEASE.fullmatch(line):
                nodes.append(Release(m.group(1), m.group(2)))
            elif m := _LOAD.fullmatch(line.split(" : ")[0]):
                nodes.append(LoadWord(m.group(1), m.group(2), value(m.group(3))))
            elif m := _CAST.fullmatch(line):
                nodes.append(IndexCast(m.group(1), m.group(2)))
            elif m := _ARITH.fullmatch(line):
                nodes.append(Arith(m.group(1), m.group(2), operand(m.group(3)), operand(m.group(4))))
            elif m := _CALL.fullmatch(line):
                nodes.append(CallKernel(m.group(1), tuple(operand(a) for a in m.group(2).split(",") if a.strip())))
            else:
                raise r.error("unknown line in a core body")

    body = block()
    if r.next() != "aie.end":
        raise r.error("expected aie.end")
    end = r.expect(_CORE_END, "'} {[dynamic_objfifo_lowering = true, ]link_with = ..., stack_size = ...}'")
    core = Core(tile, body, end.group(2), int(end.group(3)))
    if bool(end.group(1)) != core.dynamic_objfifo_lowering:
        raise r.error("dynamic_objfifo_lowering is set exactly on cores with a loop bound read at run time")
    return core


def _sequence(r: _Reader) -> list:
    ops = []
    while True:
        line = r.next()
        if line is None:
            raise r.error("unexpected end of file in the runtime sequence")
        if line == "}":
            return ops
        if m := _DMA.fullmatch(line):
            sizes, strides = _ints(m.group(3)), _ints(m.group(4))
            if len(sizes) != 4 or len(strides) != 4:
                raise r.error("a transfer has four sizes and four strides")
            ops.append(DmaMemcpy(m.group(1), int(m.group(2)), sizes, strides, int(m.group(5)), m.group(7),
                                 bool(m.group(6))))
        elif m := _WAIT.fullmatch(line):
            ops.append(DmaWait(m.group(1)))
        elif m := _RTP.fullmatch(line):
            ops.append(RtpWrite(m.group(1), int(m.group(2)), int(m.group(3))))
        else:
            raise r.error("unknown line in the runtime sequence")


def read_design(path: str | Path) -> Design:
    """Parse the design file at ``path``."""
    path = Path(path)
    return parse_design(path.read_text(encoding="utf-8"), str(path))


__all__ = ["parse_design", "read_design"]
