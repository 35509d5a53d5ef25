"""A :class:`~.model.Design` as MLIR-AIE text, through ``templates/design/design.mlir.j2``.

The text is what :mod:`.parse` reads back: one op per line, SSA names from the model, constants declared at the
top of each core (``%c<N>`` index constants, ``%c<N>_i32`` / ``%cm<N>_i32`` i32 constants).
"""

from __future__ import annotations

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
    Release,
    RtpWrite,
    walk,
)
from aielower.backends.aie.templating import ENV
from aielower.errors import CompileError

FOREVER = 4294967295  # the core loops over runs of the runtime sequence


def _core_context(design: Design, core) -> dict:
    fifo_types = {f.name: f.element for f in design.fifos}
    buffer_types = {b.name: b.type for b in design.buffers}
    var_types: dict[str, object] = {}
    index_consts, i32_consts = {0, 1, FOREVER}, set()
    lines: list[dict] = []

    def arg_type(function: str, i: int):
        return str(design.function(function).args[i])

    def flatten(nodes, depth):
        for n in nodes:
            if isinstance(n, For):
                if isinstance(n.count, int):
                    index_consts.add(n.count)
                lines.append(dict(kind="for", depth=depth, iv=n.iv, count=n.count))
                flatten(n.body, depth + 1)
                lines.append(dict(kind="end", depth=depth))
            elif isinstance(n, Acquire):
                if n.fifo not in fifo_types:
                    raise CompileError(f"internal: design {design.name} acquires unknown FIFO @{n.fifo}")
                var_types[n.var] = fifo_types[n.fifo]
                lines.append(dict(kind="acquire", depth=depth, var=n.var, fifo=n.fifo, port=n.port,
                                  type=str(fifo_types[n.fifo])))
            elif isinstance(n, Release):
                lines.append(dict(kind="release", depth=depth, fifo=n.fifo, port=n.port))
            elif isinstance(n, LoadWord):
                index_consts.add(n.index)
                lines.append(dict(kind="load", depth=depth, var=n.var, buffer=n.buffer, index=n.index,
                                  type=str(buffer_types[n.buffer])))
            elif isinstance(n, IndexCast):
                lines.append(dict(kind="cast", depth=depth, var=n.var, iv=n.iv))
            elif isinstance(n, Arith):
                i32_consts.update(x for x in (n.lhs, n.rhs) if isinstance(x, int))
                lines.append(dict(kind="arith", depth=depth, var=n.var, op=n.op, lhs=n.lhs, rhs=n.rhs))
            elif isinstance(n, CallKernel):
                function = design.function(n.function)
                if len(function.args) != len(n.args):
                    raise CompileError(f"internal: design {design.name} calls @{n.function} with {len(n.args)} "
                                       f"arguments, it takes {len(function.args)}")
                i32_consts.update(x for x in n.args if isinstance(x, int))
                lines.append(dict(kind="call", depth=depth, function=n.function, args=list(n.args),
                                  types=[str(t) for t in function.args]))
            else:
                raise CompileError(f"internal: cannot render core node {n!r}")

    flatten(core.body, 4)
    return dict(tile=core.tile.name, comment=core.comment, link_with=core.link_with, stack_size=core.stack_size,
                dynamic=core.dynamic_objfifo_lowering,
                lines=lines, index_consts=sorted(index_consts), i32_consts=sorted(i32_consts))


def _sequences_context(design: Design) -> list[dict]:
    return [dict(name=s.name, args=s.args, ops=_sequence_context(s)) for s in design.sequences]


def _sequence_context(sequence) -> list[dict]:
    types = {a.name: a.type for a in sequence.args}
    ops = []
    for op in sequence.ops:
        if isinstance(op, DmaMemcpy):
            ops.append(dict(kind="dma", arg=op.arg, offset=op.offset, sizes=list(op.sizes), strides=list(op.strides),
                            bd_id=op.bd_id, fifo=op.fifo, issue_token=op.issue_token, type=str(types[op.arg])))
        elif isinstance(op, DmaWait):
            ops.append(dict(kind="wait", fifo=op.fifo))
        elif isinstance(op, RtpWrite):
            ops.append(dict(kind="rtp", buffer=op.buffer, index=op.index, value=op.value))
        else:
            raise CompileError(f"internal: cannot render runtime-sequence op {op!r}")
    return ops


def render(design: Design) -> str:
    """The design's MLIR-AIE text."""
    return ENV.get_template("design/design.mlir.j2").render(
        design=design, cores=[_core_context(design, c) for c in design.cores], sequences=_sequences_context(design),
        forever=FOREVER)


__all__ = ["FOREVER", "render", "walk"]
