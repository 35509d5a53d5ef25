"""The designs a planned module needs: one per distinct launch (kernel, shape, bucket), named so that equal launches
share one design (one xclbin), and one per group of launches that share a device configuration
(:mod:`.designs.shared`: their kernel family gives them one :meth:`configuration_key
<aielower.backends.aie.families.base.KernelFamily.configuration_key>`), each launch then one runtime sequence of
it, and each chain of its launches that runs as one submission (:mod:`.chains`) one more. The artifact writes them;
:mod:`.counted` counts what they move and issue."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.chains import Chain, ChainedOps, chain_sequence_name, find_chains
from aielower.backends.aie.device import Device
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.kernels import KernelSpec
from aielower.backends.aie.plan import LaunchPlan, OpPlan, plan_of
from aielower.errors import CompileError
from aielower.ir import Function, Module


@dataclass(frozen=True)
class Member:
    """A launch a design runs: ``name`` is the launch's own :func:`design_name`, its runtime sequence's name in a
    shared design."""

    name: str
    launch: LaunchPlan
    plan: OpPlan


@dataclass(frozen=True)
class Design:
    """A design to build: the launches it runs (one, or the members of a shared configuration, in header order)
    and its kernel."""

    name: str
    members: tuple[Member, ...]
    spec: KernelSpec
    chains: tuple[tuple[str, Chain], ...] = ()  # (runtime sequence, chain) of its chains, a shared design's

    @property
    def launch(self) -> LaunchPlan:
        return self.members[0].launch

    @property
    def plan(self) -> OpPlan:
        return self.members[0].plan

    @property
    def shared(self) -> bool:
        return len(self.members) > 1

    @property
    def buckets(self) -> tuple[int, ...]:
        """The row buckets of its launches, ascending (a shared configuration may serve several)."""
        return tuple(sorted({x.launch.bucket for x in self.members}))

    @property
    def file(self) -> str:
        return f"design/{self.name}.mlir"

    def sequence_of(self, member: str) -> str | None:
        """The runtime sequence that runs launch ``member`` (None: the design's own, for a design of one launch)."""
        if member not in {x.name for x in self.members}:
            raise CompileError(f"design {self.name} does not run launch {member}")
        return member if self.shared else None


def design_name(launch: LaunchPlan, plan: OpPlan) -> str:
    """Readable and unique: the role, the bucket and a digest of everything the design depends on (the launch and
    the part of the op's shape its kernel family says it reads, :meth:`KernelFamily.design_shape
    <aielower.backends.aie.families.base.KernelFamily.design_shape>`)."""
    shape = KERNEL_FAMILIES.for_kernel(launch.kernel).design_shape(launch, plan)
    key = json.dumps([plan.kind, shape, launch.to_attr()], sort_keys=True)
    return f"{launch.role}_b{launch.bucket}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def shared_name(members: list[Member]) -> str:
    """A shared configuration's name: the role most of its launches have (the first of those tied), their buckets
    (``b128`` for one, ``b128to2048`` for several), how many, a digest of their names."""
    digest = hashlib.sha256(" ".join(x.name for x in members).encode()).hexdigest()[:8]
    buckets = sorted({x.launch.bucket for x in members})
    span = f"{buckets[0]}to{buckets[-1]}" if len(buckets) > 1 else f"{buckets[0]}"
    role = Counter(x.launch.role for x in members).most_common(1)[0][0]
    return f"{role}_b{span}_x{len(members)}_{digest}"


def collect(module: Module, device: Device) -> tuple[dict[str, KernelSpec], dict[str, Design]]:
    """Every kernel and every design the module's plans need, each once, in a deterministic order."""
    launches: dict[str, Member] = {}
    for fn in module.functions.values():
        for op in fn.ops:
            plan = plan_of(op)
            if plan is None:
                continue
            for launch in plan.launches:
                name = design_name(launch, plan)
                launches.setdefault(name, Member(name, launch, plan))
    designs = with_chains(designs_of(launches, device), module)
    kernels: dict[str, KernelSpec] = {}
    for d in designs.values():
        kernels.setdefault(d.spec.symbol, d.spec)
    return dict(sorted(kernels.items())), designs


def designs_of(launches: dict[str, Member], device: Device) -> dict[str, Design]:
    """The designs of ``launches`` (by :func:`design_name`): one each, or one per group of launches with one
    :meth:`configuration_key <aielower.backends.aie.families.base.KernelFamily.configuration_key>`, cut in order of
    bucket, then name, into pieces of at most the family's ``max_shared`` launches and ``max_shared_buckets``
    buckets, and further (:func:`_fitting`) until their cores hold the header's words."""
    groups: dict[object, list[Member]] = {}
    designs: dict[str, Design] = {}
    for name, member in sorted(launches.items()):
        key = KERNEL_FAMILIES.for_kernel(member.launch.kernel).configuration_key(member.launch, member.plan)
        if key is None:
            designs[name] = Design(name, (member,), kernel_spec(member.launch, device))
        else:
            groups.setdefault(key, []).append(member)
    for group in groups.values():
        for piece in _cut(group):
            for members, spec in _fitting(piece, device):
                if len(members) == 1:
                    (member,) = members
                    designs[member.name] = Design(member.name, (member,), kernel_spec(member.launch, device))
                    continue
                name = shared_name(members)
                designs[name] = Design(name, tuple(members), spec)
    return dict(sorted(designs.items()))


def named_chains(fn: Function, designs: dict[str, Design], place) -> list[tuple[str, ChainedOps]]:
    """The chains of ``fn`` (:func:`~.chains.find_chains`; ``place`` gives a launch's design and sequence), each
    with the runtime sequence its design runs it with, named by its members' header indices
    (:func:`~.chains.chain_sequence_name`)."""
    out = []
    for chained in find_chains(fn, place):
        members = [x.name for x in designs[chained.chain.design].members]
        out.append((chain_sequence_name([members.index(m) for m in chained.chain.members]), chained))
    return out


def with_chains(designs: dict[str, Design], module: Module) -> dict[str, Design]:
    """``designs`` with the chains of the module's functions (:func:`named_chains`) on their shared
    configurations, each distinct chain once, in order of name."""
    where = placements(designs)
    found: dict[str, dict[str, Chain]] = {}
    for fn in module.functions.values():
        for name, chained in named_chains(fn, designs, lambda launch, plan: where[design_name(launch, plan)]):
            chain = chained.chain
            known = found.setdefault(chain.design, {}).setdefault(name, chain)
            if known != chain:
                raise CompileError(f"design {chain.design}: two chains of launches {', '.join(chain.members)} link "
                                   "them at other places; one runtime sequence cannot run both")
    return {name: dataclasses.replace(d, chains=tuple(sorted(found[name].items()))) if name in found else d
            for name, d in designs.items()}


# 32-bit words of a core's parameter buffer
WORD_BYTES = 4


def shared_core_bytes(members: list[Member], spec: KernelSpec) -> int:
    """A core's data memory in the shared design of ``members`` with kernel ``spec``, as their plans count it: the
    largest member's L1 buffers (their object FIFOs are the same; their accumulators differ) with the shared
    kernel's stack and static arrays instead of the member's own, and the parameter words (the members' own, then
    one header word per member) instead of the room a plan may keep for them (a ``header`` buffer)."""
    own = ("stack", "kernel_static", "header")  # the member's own kernel's, and the room a plan keeps for the header
    buffers = max(sum(b.total for b in x.launch.buffers if b.tier == "L1" and b.name not in own) for x in members)
    words = spec.p.get("words_at", 0) + len(members)
    return buffers + spec.stack_bytes + spec.static_bytes + WORD_BYTES * words


def _fitting(piece: list[Member], device: Device) -> list[tuple[list[Member], KernelSpec | None]]:
    """``piece`` (in bucket order) as shared designs whose cores hold their buffers, stack and parameter words (the
    header grows a word per member): cut in two, in order, until each fits, at the bucket boundary nearest the
    middle (a bucket's launches stay on one configuration while they can); a launch that shares with none keeps
    its own design (spec None)."""
    if len(piece) == 1:
        return [(piece, None)]
    family = KERNEL_FAMILIES.for_kernel(piece[0].launch.kernel)
    spec = family.shared_spec([(x.launch, x.plan) for x in piece], device)
    if shared_core_bytes(piece, spec) <= device.core_data_memory:
        return [(piece, spec)]
    boundaries = [i for i in range(1, len(piece)) if piece[i].launch.bucket != piece[i - 1].launch.bucket]
    cut = min(boundaries, key=lambda i: (abs(2 * i - len(piece)), i)) if boundaries else (len(piece) + 1) // 2
    return _fitting(piece[:cut], device) + _fitting(piece[cut:], device)


def _cut(group: list[Member]) -> list[list[Member]]:
    """A group of launches with one configuration key in pieces of at most its family's ``max_shared`` launches (the
    header's capacity) and ``max_shared_buckets`` buckets, in order of bucket, then name."""
    family = KERNEL_FAMILIES.for_kernel(group[0].launch.kernel)
    most = max(1, family.max_shared(group[0].launch))
    buckets = family.max_shared_buckets(group[0].launch)
    pieces: list[list[Member]] = []
    for member in sorted(group, key=lambda x: (x.launch.bucket, x.name)):
        piece = pieces[-1] if pieces else None
        if (piece is None or len(piece) == most
                or buckets is not None and len({x.launch.bucket for x in piece} | {member.launch.bucket}) > buckets):
            pieces.append([member])
        else:
            piece.append(member)
    return pieces


def placements(designs: dict[str, Design]) -> dict[str, tuple[str, str | None]]:
    """Launch (its :func:`design_name`) -> (the design that runs it, the runtime sequence: None for a design's own)."""
    return {x.name: (d.name, d.sequence_of(x.name)) for d in designs.values() for x in d.members}


class Placement:
    """Where each launch of a module runs: ``place(launch, plan)`` -> (design name, runtime sequence or None)."""

    def __init__(self, module: Module, device: Device):
        self.kernels, self.designs = collect(module, device)
        self._where = placements(self.designs)
        self._placed: dict[tuple[int, int], tuple] = {}  # (launch id, plan id) -> (launch, plan, where)
        self._chains: dict[int, tuple[Function, list[tuple[str, ChainedOps]]]] = {}

    def chains(self, fn: Function) -> list[tuple[str, ChainedOps]]:
        """The chains of ``fn``'s one-row step, each with the runtime sequence that runs it (:mod:`.chains`)."""
        found = self._chains.get(id(fn))
        if found is None:  # the entry holds fn, so its id is not reused
            found = self._chains[id(fn)] = (fn, named_chains(fn, self.designs, self.place))
        return found[1]

    def place(self, launch: LaunchPlan, plan: OpPlan) -> tuple[str, str | None]:
        found = self._placed.get((id(launch), id(plan)))  # the entry holds both, so neither id is reused
        if found is not None:
            return found[2]
        name = design_name(launch, plan)
        where = self._where.get(name)
        if where is None:
            raise CompileError(f"launch {name} ({launch.role} at bucket {launch.bucket}) is not in the module's plans")
        self._placed[(id(launch), id(plan))] = (launch, plan, where)
        return where


__all__ = ["Design", "Member", "Placement", "collect", "design_name", "designs_of", "placements", "shared_name",
           "named_chains", "with_chains"]
