"""Shared device configurations: one design (one xclbin, one array configuration) that runs several launches.

Switching the array between designs reconfigures it (``Device.reconfiguration_s``), and every design is a device
configuration the model needs. Launches of one kernel family whose cores take the same tiles through the same
object FIFOs (:meth:`KernelFamily.configuration_key
<aielower.backends.aie.families.base.KernelFamily.configuration_key>`) can share one design:

- decode's linears with one tile format (core grid, activation tile, weight tile, store size): a decode token
  runs seven launches per decoder layer, and consecutive launches of one design need no switch; decode's norms and
  decode attention, planned in the same format (:mod:`~aielower.backends.aie.families.gemv_norm`,
  :mod:`~aielower.backends.aie.families.gemv_attention`), run on it too;
- the prompt buckets' GEMMs with one tile format, and their norms with one row tile: one configuration serves every
  bucket, as a member's body and runtime sequence carry its rows.

How:

- the object FIFOs and links are those every member's own design would have (checked equal); a core's accumulator
  buffer is the largest any member needs, and it gets a parameter buffer for the header's words;
- every core runs one body: it takes the launch's **header** (the first element of the stream broadcast to every
  core of a column: a GEMV's activations, a GEMM's weights, a norm's weight; or, where no stream is broadcast, of
  the first split over them: rope's rows), copies its words into the core's
  parameter buffer (the kernel's ``_header``), then runs member ``i``'s own body (exactly its design's, checked
  against its schedule) ``word[i]`` times: once for the member the header selects, never for the others;
- one runtime sequence per member, named as the member's own design (:func:`~aielower.backends.aie.catalog.
  design_name`), with that member's arguments: the member's own tensors, moved exactly as its own design moves
  them, then ``%hdr`` (the header, :func:`header_words`, read once per column before the member's data; on a stream
  split over the column's cores, once per core, a repeat of stride 0). A member that reads a KV cache has one
  sequence per count of cache tiles (``<member>_kv_tiles_<n>``, :func:`~aielower.backends.aie.designs.build.
  kv_sequences`), and its header carries the count after the members' words (the kernel's ``_header`` copies it
  into the cores' parameter word 2, the trip count of their KV loop).

The host submits the member's sequence with its header (a constant of the launch, resident in DDR). The members'
kernel is one (:meth:`KernelFamily.shared_spec`): for linears the most accumulators any member needs, and both
stores when some members compute an epilogue and others do not. Members whose cores have parameter words of their
own (prompt attention: the position and the valid length; decode attention: those and the cache tiles) keep them
first, in one layout for all (members without words of their own leave them alone), and the header's words follow
(the kernel writes them from its constant ``WORDS_AT``); each member's sequence writes its own words before it sends
the header, as its own design does (decode attention's come from its query records and the header).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields, is_dataclass, replace

import numpy as np

from aielower.backends.aie.chains import CHAIN_PREFIX, Chain, ChainLink, is_chain_sequence
from aielower.backends.aie.designs import model as m
from aielower.backends.aie.designs.simulate import NUMPY_DTYPES
from aielower.backends.aie.designs.build import (AIE_DEVICE, Acquire, Arith, Call, CoreDesign, DesignBuilder, Load,
                                                  KV_SEQUENCE_PREFIX, Loop, Release, Transfer, checked_core, core_model,
                                                  design_tiles, kernel_functions, kv_sequences, require_fits,
                                                  sequence_ops, walk_nodes)
from aielower.backends.aie.device import Device
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.dma import DmaLimits, hardware_dims
from aielower.backends.aie.plan import AccessPattern, LaunchPlan, OpPlan
from aielower.errors import CompileError

HEADER_ARG = m.HEADER_ARG  # the runtime-sequence argument holding a launch's header


def member_names(design: m.Design) -> list[str]:
    """The members of shared ``design`` in header order: its runtime sequences, a member with one sequence per KV
    tile count (``<member>_kv_tiles_<n>``, :func:`~aielower.backends.aie.designs.build.kv_sequence_name`) once, its
    chains' sequences (:func:`chain_sequence`) not."""
    return list(dict.fromkeys(_member_of(s.name) for s in design.sequences if not is_chain_sequence(s.name)))


def _member_of(sequence: str) -> str:
    head, _, count = sequence.rpartition("_" + KV_SEQUENCE_PREFIX)
    return head if head and count.isdigit() else sequence


def header_words(design: m.Design, sequence: str) -> np.ndarray:
    """The header of the launch that runs ``sequence`` of shared ``design``, as the array of its ``%hdr`` argument
    (a GEMV's activation tile of bf16 bits, a GEMM's weight tile of bytes, a norm's weight of bf16 bits): int32
    word ``i`` is 1 for the design's ``i``-th member (:func:`member_names`), 0 for the others; for a sequence of a
    member with one per KV cache tile count (``<member>_kv_tiles_<n>``), the word after the members' is ``n``, the
    trip count of the cores' KV loop."""
    names = [s.name for s in design.sequences]
    if sequence not in names:
        raise CompileError(f"design {design.name}: no runtime sequence @{sequence} (it has "
                           f"{', '.join('@' + n for n in names)})")
    members = member_names(design)
    if is_chain_sequence(sequence):  # the headers of its members, one after the other
        return np.concatenate([header_words(design, members[int(i)])
                               for i in sequence[len(CHAIN_PREFIX):].split("_")])
    member = _member_of(sequence)
    need = len(members) + (member != sequence)  # and the KV tile count
    arg = design.runtime_sequence(sequence).arg(HEADER_ARG)
    if arg is None or arg.type.bytes < 4 * need:
        raise CompileError(f"design {design.name}: @{sequence} takes no header of {need} words")
    words = np.zeros(arg.type.bytes // 4, np.int32)
    words[members.index(member)] = 1
    if member != sequence:
        words[len(members)] = int(sequence.rpartition("_" + KV_SEQUENCE_PREFIX)[2])
    return words.view(NUMPY_DTYPES[arg.type.element])


def build_shared_design(members: list[tuple[str, LaunchPlan, OpPlan]], device: Device, spec, name: str,
                        chains: tuple[tuple[str, Chain], ...] = ()) -> m.Design:
    """The design of a shared configuration: ``members`` are (sequence name, launch, op plan), in header order;
    ``spec`` the members' kernel (see the module docs); ``chains`` (sequence name, chain) its chains of members
    that run as one submission (:func:`chain_sequence`)."""
    if len(members) < 2:
        raise CompileError(f"{name}: a shared configuration runs two or more launches, not {len(members)}")
    if len({seq for seq, _, _ in members}) != len(members):
        raise CompileError(f"{name}: two members share a runtime-sequence name")
    builders = []
    for seq, launch, plan in members:
        if launch.kernel != spec.family:
            raise CompileError(f"{name}: @{seq} runs a {launch.kernel} launch; this shared configuration runs "
                               f"{spec.family} launches ({spec.symbol})")
        require_fits(launch, device, name)
        builders.append(DesignBuilder(launch, plan, device, spec, name, member=True))
    first = builders[0]
    fifos, links = first.fifos()
    for (seq, _, _), b in zip(members[1:], builders[1:]):
        if b.fifos() != (fifos, links):
            raise CompileError(f"{name}: @{seq} moves other tiles than @{members[0][0]} (its object FIFOs differ); "
                               "it cannot share their configuration")
    launch = first.launch
    # the header comes first on an input every core of a column receives: one broadcast to them (a GEMV's
    # activations, a GEMM's weights, a norm's weight), else the first split among them (rope's rows), which then
    # carries one copy of the header per core
    x = next((st for st in first.ins if st.plan.to_cores == "broadcast"), None) or next(
        (st for st in first.ins if st.plan.to_cores == "split"), None)
    if x is None:
        raise CompileError(f"{name}: no input reaches every core of a column, so no header can reach them")
    mixed = bool(spec.p.get("mixed"))
    store_with = "store_" + spec.p["epilogue"] if mixed else "store"
    # the cores' parameter words: the members' own (attention's position and valid length, one layout for all),
    # then the header's, which the kernel's _header writes from word ``spec.p["words_at"]``
    own_words = {len(b.rtp) for b in builders} - {0}  # members without words of their own leave them alone
    if len(own_words) > 1:
        raise CompileError(f"{name}: its members have parameter words of other layouts; they cannot share one "
                           "configuration")
    words_at = own_words.pop() if own_words else 0
    own_rtp = next((b.rtp for b in builders if len(b.rtp) == words_at), ())
    if spec.p.get("words_at", 0) != words_at:
        raise CompileError(f"{name}: the kernel {spec.symbol} writes the header at word {spec.p.get('words_at', 0)}, "
                           f"after the members' {words_at} own words")
    cores, own_cores = [], []
    core_models, buffers = [], []
    for c in range(launch.columns):
        for r in range(launch.rows):
            body: list = [Acquire(x.index, "hdr"), Call("header", [("elem", "hdr"), ("rtp", 0)]), Release(x.index)]
            accs = acc_size = 0
            bodies = []
            for i, ((seq, member, _), b) in enumerate(zip(members, builders)):
                own = checked_core(b, c, r, prefix=f"m{i}v")
                own_cores.append((i, own))
                accs, acc_size = max(accs, own.accs), max(acc_size, own.acc_size)
                if mixed and member.params.get("epilogue"):
                    _rename_calls(own.body, "store", store_with)
                body.append(Load(f"run{i}", words_at + i))
                bodies.append(own.body)
            runs = [f"run{i}" for i in range(len(members))]
            body += merged_bodies(bodies, [f"m{i}v" for i in range(len(members))], runs)
            core = CoreDesign(c, r, body, accs=accs, acc_size=acc_size, rtp=own_rtp + (0,) * len(members))
            cores.append(core)
            model, core_buffers = core_model(core, first, spec)
            runs = ", ".join(f"{b.items[(c, r)][0]} for @{seq}" for (seq, _, _), b in zip(members, builders))
            core_models.append(replace(model, comment=f"core ({c}, {r + 2}): work items {runs}"))
            buffers.extend(core_buffers)
    sequences = []
    for (seq, member, _), b in zip(members, builders):
        element = b.memref(x)  # one element of the header stream, as a core takes it
        limits = DmaLimits(element.element_bytes)
        copies = member.rows if x.plan.to_cores == "split" else 1  # a split stream: one per core of the column
        header = AccessPattern(0, (copies, element.size), (0, 1)) if copies > 1 else AccessPattern(
            0, (element.size,), (1,))
        sizes, strides = hardware_dims(header, limits)
        heads = [Transfer(c, x.index, b.fifo(x, c), HEADER_ARG, header, False, -1.0, 0.0, sizes, strides)
                 for c in range(member.columns)]
        # the member's own arguments first, at their positions in its own design (a resident weight keeps its
        # buffer group), the header last
        args = tuple(m.SequenceArg(t, m.MemrefType(n, kind)) for t, kind, n in b.tensors()) + (
            m.SequenceArg(HEADER_ARG, element),)
        if HEADER_ARG in {a.name for a in args[:-1]}:
            raise CompileError(f"{name}: @{seq} has a tensor named %{HEADER_ARG}, the header's name")
        mine = [own for i, own in own_cores if builders[i] is b]
        if b.dynamic_kv:  # one sequence per cache tile count, each sending the header first
            index = builders.index(b)
            sequences.extend(kv_sequences(b, mine, device, args, heads, seq, prefix=f"m{index}v"))
            continue
        # the member's own parameter words (constants of its sequence), then the header, then its transfers
        ops = sequence_ops(b, mine, device, heads)
        sequences.append(m.RuntimeSequence(seq, tuple(ops), args))
    by_name = {sequence.name: sequence for sequence in sequences}
    from_ddr = {f.name for f in fifos if f.producer.kind == "shim"}
    for seq, chain in chains:
        missing = [x for x in chain.members if x not in by_name]
        if missing or chain.design != name:
            raise CompileError(f"{name}: chain @{seq} runs {', '.join(missing) or chain.design}, not a member of it")
        sequences.append(chain_sequence(seq, [by_name[x] for x in chain.members], chain.links, from_ddr))
    functions, tiles = kernel_functions(spec), design_tiles(launch)
    buckets = sorted({member.bucket for _, member, _ in members})
    kinds = Counter(plan.kind for _, _, plan in members)
    roles = Counter(member.role for _, member, _ in members)
    what = (f"{len(members)} {members[0][2].kind} launches ({launch.role})" if len(kinds) == 1 else
            f"{len(members)} launches ({', '.join(f'{n} {role}' for role, n in roles.items())})")
    comments = (f"aielower design {name}: a shared configuration of {what} "
                f"at bucket{'s' if len(buckets) > 1 else ''} {', '.join(map(str, buckets))}, "
                f"kernel {spec.symbol} on {launch.columns}x{launch.rows} cores of {device.name}",)
    for i, (seq, member, plan) in enumerate(members):
        shape = ", ".join(f"{k}={v}" for k, v in KERNEL_FAMILIES.for_kernel(member.kernel).design_shape(
            member, plan).items() if k in _SHAPE_KEYS)
        comments += (f"@{seq} (header word {i}): bucket {member.bucket}, {shape}"
                     + (f", epilogue {member.params['epilogue']}" if member.params.get("epilogue") else ""),)
    comments += (f"Every launch starts with its header, the first element of the {x.plan.name} stream of every "
                 "column: int32 word i = 1 runs launch i (runtime sequence i, which sends the header from %hdr), 0 "
                 "skips it. The cores copy it into their parameter words (_header) and run each launch that many "
                 "times.",)
    for seq, chain in chains:
        comments += (f"@{seq}: {' then '.join('@' + x for x in chain.members)} in one submission, each reading the "
                     "one before's result where it wrote it (" + ", ".join(
                         f"%{k.result_arg}{i} from element {k.result_offset} as %{k.operand_arg}"
                         for i, k in enumerate(chain.links)) + ")",)
    return m.Design(name, AIE_DEVICE[device.name], functions, tiles, tuple(fifos), tuple(links), tuple(buffers),
                    tuple(core_models), tuple(sequences), comments)


# ---------------------------------------------------------------------------------------- chains of members


IO_ARG = "io"  # a chain's activations and results, one after the other (chain_layout)


def chain_layout(parts: list[m.RuntimeSequence],
                 links: tuple[ChainLink, ...]) -> dict[tuple[int, str], tuple[str, int]]:
    """Where the arguments of a chain's member sequences ``parts`` are in the chain's sequence: ``(part, argument)
    -> (the chain's argument, first element there)``. A chain's sequence must fit the kernel's five buffer
    arguments (:data:`~.model.MAX_SEQUENCE_ARGS`), so the members' arguments of the header's element type (their
    activations and results, bf16) are one argument, ``%io``, one after the other, in order; the argument of a
    member that reads the member before's result (``links[i - 1].operand_arg``) is that result, where the member
    before wrote it. Every other argument (a member's weight tiles, bytes) is its own, ``<name><part>``. The header
    (``%hdr``) is not in it (see :func:`chain_sequence`)."""
    if len(parts) < 2 or len(links) != len(parts) - 1:
        raise CompileError(f"internal: a chain of {len(parts)} sequences with {len(links)} links")
    header = parts[0].arg(HEADER_ARG)
    if header is None or any(p.arg(HEADER_ARG) != header for p in parts):
        raise CompileError("a chain's members take headers of other types")
    where: dict[tuple[int, str], tuple[str, int]] = {}
    size = 0
    for i, part in enumerate(parts):
        link = links[i - 1] if i else None
        for a in part.args:
            if a.name == HEADER_ARG:
                continue
            if link is not None and a.name == link.operand_arg:
                produced = parts[i - 1].arg(link.result_arg)
                arg, start = where.get((i - 1, link.result_arg), (None, 0))
                if produced is None or produced.type.element != a.type.element or (
                        link.result_offset + a.type.size > produced.type.size):
                    raise CompileError(f"@{part.name}'s %{a.name} cannot read %{link.result_arg} of "
                                       f"@{parts[i - 1].name} from element {link.result_offset}")
                where[(i, a.name)] = (arg, start + link.result_offset)
            elif a.type.element == header.type.element:
                where[(i, a.name)] = (IO_ARG, size)
                size += a.type.size
            else:
                where[(i, a.name)] = (f"{a.name}{i}", 0)
    return where


def chain_args(parts: list[m.RuntimeSequence],
               where: dict[tuple[int, str], tuple[str, int]]) -> tuple[m.SequenceArg, ...]:
    """The arguments of a chain's sequence with layout ``where`` (:func:`chain_layout`): its members' own (an
    argument a member reads the member before's result from is that result's), ``%io`` as long as its contents
    reach, then ``%hdr``, one header per member."""
    header = parts[0].arg(HEADER_ARG).type
    own: dict[str, m.SequenceArg] = {}
    io = 0
    for (i, name), (arg, start) in where.items():
        given = parts[i].arg(name).type
        if arg == IO_ARG:
            io = max(io, start + given.size)
        else:
            own.setdefault(arg, m.SequenceArg(arg, given))
    packed = (m.SequenceArg(IO_ARG, m.MemrefType(io, header.element)),) if io else ()
    return tuple(own.values()) + packed + (
        m.SequenceArg(HEADER_ARG, m.MemrefType(len(parts) * header.size, header.element)),)


def chain_sequence(name: str, parts: list[m.RuntimeSequence], links: tuple[ChainLink, ...],
                   from_ddr: set[str]) -> m.RuntimeSequence:
    """One runtime sequence running the member sequences ``parts`` one after the other (a chain, :mod:`..chains`):

    - the members' arguments are where :func:`chain_layout` puts them (a member that reads the member before's
      result reads it where that member wrote it); ``%hdr`` holds one header per member, one after the other
      (member ``i``'s header transfers read from element ``i`` times a header's);
    - after every member but the last, the sequence waits until the member's transfers from DDR are done too (its
      last transfer per object FIFO issues a token), as it already waits for the member's results: the next member
      then reuses the shim's buffer descriptors and task queues as if the sequence started there, and reads the
      results the member before wrote."""
    try:
        where = chain_layout(parts, links)
        args = chain_args(parts, where)
    except CompileError as e:
        raise CompileError(f"chain @{name}: {e}") from None
    header = parts[0].arg(HEADER_ARG).type
    ops: list[m.SequenceOp] = []
    for i, part in enumerate(parts):
        mine = []
        for op in part.ops:
            if isinstance(op, m.DmaMemcpy):
                arg, start = (HEADER_ARG, i * header.size) if op.arg == HEADER_ARG else where[(i, op.arg)]
                op = replace(op, arg=arg, offset=op.offset + start)
            elif isinstance(op, m.RtpWrite):
                raise CompileError(f"chain @{name}: @{part.name} writes parameter words; a chain's members take "
                                   "their values from the header")
            mine.append(op)
        if i < len(parts) - 1:
            last = {op.fifo: j for j, op in enumerate(mine) if isinstance(op, m.DmaMemcpy) and op.fifo in from_ddr}
            for fifo, j in last.items():
                if not mine[j].issue_token:  # (one that does is waited for in the member already)
                    mine[j] = replace(mine[j], issue_token=True)
                    mine.append(m.DmaWait(fifo))
        ops += mine
    return m.RuntimeSequence(name, tuple(ops), args)


# ---------------------------------------------------------------------------------------- one body for alike members


def _renamed(node, old: str, new: str):
    """``node`` (a body node, or a list / tuple of them) with every variable name starting with ``old`` starting
    with ``new`` instead."""
    if isinstance(node, str):
        return new + node[len(old):] if node.startswith(old) else node
    if isinstance(node, list):
        return [_renamed(x, old, new) for x in node]
    if isinstance(node, tuple):
        return tuple(_renamed(x, old, new) for x in node)
    if is_dataclass(node):
        return replace(node, **{f.name: _renamed(getattr(node, f.name), old, new) for f in fields(node)})
    return node


class _Slot:
    """Where a body had a constant that may differ between members (see :func:`_split`)."""

    def __repr__(self) -> str:
        return "#"


_SLOT = _Slot()


def _split(body: list, values: list) -> list:
    """``body`` with its constants that may differ between members replaced by :data:`_SLOT` (the trip count of a
    loop, an operand of an arithmetic op, an i32 argument of a call), appending the constants to ``values`` in
    walk order."""
    out = []
    for node in body:
        if isinstance(node, Loop):
            count = node.count
            if isinstance(count, int):
                values.append(count)
                count = _SLOT
            out.append(Loop(count, _split(node.body, values)))
        elif isinstance(node, Arith):
            operands = []
            for x in (node.lhs, node.rhs):
                if isinstance(x, int):
                    values.append(x)
                    x = _SLOT
                operands.append(x)
            out.append(Arith(node.var, node.op, *operands))
        elif isinstance(node, Call):
            args = []
            for arg in node.args:
                if isinstance(arg, tuple) and arg[0] == "i32" and isinstance(arg[1], int):
                    values.append(arg[1])
                    arg = ("i32", _SLOT)
                args.append(arg)
            out.append(Call(node.function, args))
        else:
            out.append(node)
    return out


def _filled(body: list, values) -> list:
    """:func:`_split`'s ``body`` with each :data:`_SLOT` replaced by the next of ``values`` (a constant or a
    variable), in walk order."""
    out = []
    for node in body:
        if isinstance(node, Loop):
            count = next(values) if node.count is _SLOT else node.count
            out.append(Loop(count, _filled(node.body, values)))
        elif isinstance(node, Arith):
            lhs, rhs = (next(values) if x is _SLOT else x for x in (node.lhs, node.rhs))
            out.append(Arith(node.var, node.op, lhs, rhs))
        elif isinstance(node, Call):
            out.append(Call(node.function, [("i32", next(values)) if isinstance(arg, tuple) and arg[1] is _SLOT
                                            else arg for arg in node.args]))
        else:
            out.append(node)
    return out


def merged_bodies(bodies: list[list], prefixes: list[str], runs: list[str]) -> list:
    """The member bodies of one core as few bodies as they allow: bodies equal but for constants (loop trip counts,
    operands of arithmetic, i32 call arguments: the same linear or attention at other buckets, a linear of other
    K) become one, in which the core computes each constant that differs from the header's words (``sum_i run_i *
    value_i``: one word is 1, the others 0) and which runs ``sum_i run_i`` times; the others run ``run_i`` times
    each, as they are. ``prefixes``: each body's variable prefix; ``runs``: the variables holding its header
    word."""
    shapes = []
    for body, prefix in zip(bodies, prefixes):
        values: list[int] = []
        shapes.append((_split(_renamed(body, prefix, "@"), values), values))
    classes: list[list[int]] = []
    for i, (skeleton, _) in enumerate(shapes):
        for members in classes:
            if shapes[members[0]][0] == skeleton:
                members.append(i)
                break
        else:
            classes.append([i])
    out: list = []
    for k, members in enumerate(classes):
        first = members[0]
        if len(members) == 1:
            out.append(Loop(runs[first], bodies[first]))
            continue
        per_member = [shapes[i][1] for i in members]
        filled = []
        for j, value in enumerate(per_member[0]):
            if all(v[j] == value for v in per_member):
                filled.append(value)
                continue
            terms = []
            for i, values in zip(members, per_member):  # value_j = sum_i run_i * value_ij
                terms.append(f"c{k}n{j}_t{i}")
                out.append(Arith(terms[-1], "muli", runs[i], values[j]))
            total = terms[0]
            for n, term in enumerate(terms[1:]):
                out.append(Arith(f"c{k}n{j}_s{n}", "addi", total, term))
                total = f"c{k}n{j}_s{n}"
            filled.append(total)
        selected = runs[first]
        for n, i in enumerate(members[1:]):
            out.append(Arith(f"c{k}run{n}", "addi", selected, runs[i]))
            selected = f"c{k}run{n}"
        body = _filled(_renamed(shapes[first][0], "@", f"c{k}v"), iter(filled))
        out.append(Loop(selected, body))
    return out


# the entries of a member's op shape its comment line names (a linear's sizes; a norm's width)
_SHAPE_KEYS = ("n", "k", "group", "bias", "d", "eps")


def _rename_calls(body: list, old: str, new: str) -> None:
    for node in walk_nodes(body):
        if isinstance(node, Call) and node.function == old:
            node.function = new


__all__ = ["HEADER_ARG", "IO_ARG", "build_shared_design", "chain_args", "chain_layout", "chain_sequence",
           "header_words", "member_names", "merged_bodies"]
