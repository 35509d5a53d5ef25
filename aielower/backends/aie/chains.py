"""Chains: consecutive launches of one shared device configuration run as one submission (issue 14: fewer
submissions per decode token).

A launch is one submission of a runtime sequence; between two launches the host reads the first one's result and
writes the next one's operand. Where the first launch writes the result into DDR exactly as the result is (one run of
its elements in order at a known place of one of its arguments), and the next one reads its op's first operand from
DDR exactly as the operand is (:meth:`KernelFamily.ddr_results
<aielower.backends.aie.families.base.KernelFamily.ddr_results>`, :meth:`KernelFamily.ddr_operand
<aielower.backends.aie.families.base.KernelFamily.ddr_operand>`: no padding, cropping or other layout), that host
step is a copy of the same bf16 values, and the device can run both launches back to back: one runtime sequence of
their shared configuration (:func:`aielower.backends.aie.designs.shared.chain_sequence`) whose second member reads
the first member's result where it wrote it. On a 7B decode layer: the first norm then the qkv GEMV, and the second
norm, the gate/up GEMV with its silu_mul epilogue and the down GEMV on its result (two submissions instead of five).

A chain is found on the ops of a function (:func:`find_chains`), at the one-row bucket (a decode step): planned ops,
each with one launch at that bucket, next to each other among the function's planned ops, all launches members of
one shared configuration, each op's first operand a result of the op before (and no other operand of it), every
other reader of a member's results after the chain's last op (the host reads them once the chain ran), at most
:data:`MAX_CHAIN` launches (the kernel's five buffer arguments). The design catalog gives the
configuration one runtime sequence per distinct chain, the host program submits a chain's launches as one
(:class:`~aielower.backends.aie.host_program.HostProgram`), and the counts from the designs
(:mod:`aielower.backends.aie.counted`) take it as one submission.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aielower.backends.aie.designs.model import MAX_SEQUENCE_ARGS
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.plan import LaunchPlan, OpPlan, plan_of
from aielower.ir import Function

CHAIN_BUCKET = 1  # chains run at a decode step's one row
CHAIN_PREFIX = "chain_"  # a chain's runtime sequence: chain_<i>_<j>.. (its members' header words)
# Launches a chain runs at most: its sequence takes each member's weight tiles, the activations and results (%io)
# and the headers, and the kernel aiecc makes has five buffer arguments (designs/model.py MAX_SEQUENCE_ARGS).
MAX_CHAIN = MAX_SEQUENCE_ARGS - 2


@dataclass(frozen=True)
class ChainLink:
    """Where one member's result is the next member's operand: the producer's runtime-sequence argument holding
    the result and the result's first element there, the consumer's argument reading it (from its first element),
    and the elements they share."""

    result_arg: str
    result_offset: int
    operand_arg: str
    elements: int


@dataclass(frozen=True)
class Chain:
    """Launches that run as one submission: the launches' own design names (their runtime sequences in the shared
    configuration ``design``), in order, and the link between each launch and the next."""

    design: str
    members: tuple[str, ...]
    links: tuple[ChainLink, ...]


@dataclass(frozen=True)
class ChainedOps:
    """A chain as it occurs in a function: its ops, in order, and each op's launch and plan."""

    chain: Chain
    ops: tuple
    launches: tuple[tuple[LaunchPlan, OpPlan], ...]


Place = Callable[[LaunchPlan, OpPlan], tuple[str, str | None]]  # a launch -> (design, runtime sequence or None)


def link(first: tuple, second: tuple) -> ChainLink | None:
    """The link between two launches ``(op, launch, plan)`` when the second op's first operand is a result of the
    first and the first launch writes it where the second can read it (same element count, no host layout on
    either side); else None."""
    (op, launch, plan), (next_op, next_launch, next_plan) = first, second
    if not next_op.operands or next_op.operands[0] not in op.results:
        return None
    places = KERNEL_FAMILIES.for_kind(plan.kind).ddr_results(op, launch, plan)
    place = places[op.results.index(next_op.operands[0])] if len(places) == len(op.results) else None
    operand = KERNEL_FAMILIES.for_kind(next_plan.kind).ddr_operand(next_op, next_launch, next_plan)
    if place is None or operand is None or place[2] != operand[1]:
        return None
    return ChainLink(place[0], place[1], operand[0], place[2])


def _read_after(ops: list, fn: Function) -> bool:
    """Whether every reader of the results of ``ops[:-1]`` comes after ``ops[-1]`` (or is ``fn``, returning it),
    but for the next op reading the result linked to it as its first operand, and as nothing else."""
    last = fn.ops.order_of(ops[-1])
    for op, nxt in zip(ops, ops[1:]):
        for result in op.results:
            for user in result.users:
                if user is nxt and [v is result for v in nxt.operands] == [True] + [False] * (len(nxt.operands) - 1):
                    continue
                if user is not fn and fn.ops.order_of(user) <= last:
                    return False
    return True


def find_chains(fn: Function, place: Place) -> list[ChainedOps]:
    """The chains of ``fn``'s one-row step (see the module docs), in program order; an op is in one chain at most.
    ``place`` gives a launch's design and sequence (:meth:`aielower.backends.aie.catalog.Placement.place`)."""
    planned = []
    for op in fn.ops:
        plan = plan_of(op)
        if plan is None:
            continue
        launches = plan.launches_for(CHAIN_BUCKET)
        planned.append((op, plan, launches[0] if len(launches) == 1 else None))
    chains: list[ChainedOps] = []
    run: list = []  # the chain being grown: [(op, launch, plan, (design, sequence))], links
    links: list[ChainLink] = []

    def close() -> None:
        while len(run) > 1 and not _read_after([x[0] for x in run], fn):  # shorten it until it is
            run.pop()
            links.pop()
        if len(run) > 1:
            design = run[0][3][0]
            chains.append(ChainedOps(Chain(design, tuple(x[3][1] for x in run), tuple(links)),
                                     tuple(x[0] for x in run), tuple((x[1], x[2]) for x in run)))
        run.clear()
        links.clear()

    for op, plan, launch in planned:
        where = place(launch, plan) if launch is not None else None
        if where is None or where[1] is None:  # not one launch of a shared configuration at this bucket
            close()
            continue
        if run:
            prev_op, prev_launch, prev_plan, prev_where = run[-1]
            joined = None
            if where[0] == prev_where[0] and len(run) < MAX_CHAIN:
                joined = link((prev_op, prev_launch, prev_plan), (op, launch, plan))
            if joined is None:
                close()
            else:
                links.append(joined)
        run.append((op, launch, plan, where))
    close()
    return chains


def chain_sequence_name(indices: list[int]) -> str:
    """The runtime sequence of a chain of the members with these header indices: ``chain_<i>_<j>..``."""
    return CHAIN_PREFIX + "_".join(str(i) for i in indices)


def is_chain_sequence(name: str) -> bool:
    return name.startswith(CHAIN_PREFIX)


__all__ = ["CHAIN_BUCKET", "CHAIN_PREFIX", "MAX_CHAIN", "Chain", "ChainLink", "ChainedOps", "chain_sequence_name",
           "find_chains", "is_chain_sequence", "link"]
