"""The host side of running a planned module: what the host does around every NPU launch, launch by launch.

Ops with an ``aie.plan`` run as launches of their designs; everything else runs on the host. A
:class:`HostProgram` is an :class:`aielower.interp.Interpreter` whose planned ops are overridden with launches, so
host ops compute exactly what their ``@impl`` says; a ``LinearLike`` op with an epilogue runs its planned linear on
the NPU and the epilogue on the host, unless its kernels compute the epilogue too (``fused.linear_silu_mul``). Each
launch goes to a :class:`Launcher`, the only part that differs between
the host emulator (:class:`aielower.backends.aie.emulator.DesignLauncher`: the design files run by
:class:`~aielower.backends.aie.designs.simulate.DesignRun` with the kernels built by g++) and the XRT host runtime
(:class:`aielower.backends.aie.runtime.XrtLauncher`: buffer objects, instruction streams and kernel runs through
``pyxrt`` or the emulated device).

What the host does around each launch is the launch's kernel family's (:meth:`KernelFamily.run
<aielower.backends.aie.families.base.KernelFamily.run>`, through :meth:`HostProgram.submit`), as the NPU host runtime
must do it: it pads inputs to the launch's bucket into
DDR tensors at their padded sizes; for attention over the KV cache it writes the step header (the position of the
first query token and the valid KV length) after each query tile of the ``q`` DDR buffer and submits the runtime sequence that reads
the cache tiles before the step; it writes the rotated keys and the values of the step into the KV cache (blocked by
KV tile) at the step's position, or, for a decode design, into the query records, appending them to the cache
after the launch (nothing it writes between the rope and the attention launch of a decode step depends on the
position); it loops over the batch around the attention launches; layout ops (split, reshape, transpose)
are host copies. A chain of launches (:mod:`aielower.backends.aie.chains`: consecutive launches of one shared
configuration, each reading the one before's result where it wrote it) is one submission: the host holds back the
chain's launches until its last (their results, poisoned, go to the next member, which reads them on the device,
and to no one else before the chain ran), submits the chain's runtime sequence with every member's tensors, then
runs the held-back members' host side again on what the device wrote, and puts their results in place of the
poisoned ones. Tensors that live in DDR across launches (the pre-tiled weights, the KV caches of a
:class:`~aielower.backends.aie.kv_cache.BlockedKvCache`) are passed as :class:`Resident` so a launcher writes them
once, or only the rows a step changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aielower.backends.aie.chains import ChainedOps
from aielower.backends.aie.designs.build import kv_sequence_for
from aielower.backends.aie.designs.shared import HEADER_ARG, IO_ARG, chain_layout, header_words
from aielower.backends.aie.designs.model import Design
from aielower.backends.aie.designs.simulate import NUMPY_DTYPES, POISON
from aielower.backends.aie.device import Device
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.launcher import Launcher, Resident
from aielower.backends.aie.plan import LaunchPlan, OpPlan, plan_of
from aielower.errors import AielowerError, CompileError
from aielower.interp import Interpreter
from aielower.ir import Function, Module, Weight
from aielower.ir.core import LinearLike


class HostProgram:
    """Runs the functions of a planned module: NPU launches through ``launcher``, the rest on the host.

    ``blobs`` maps each quantized weight's name to its pre-tiled bytes (as read from ``weights/``);
    ``host_weights`` the arrays host ops read (bf16-rounded where the NPU build stores bf16); ``design_for`` gives
    a launch's design (parsed from the artifact's design files) and its runtime sequence (None: the design's own);
    ``chains`` the chains of a function, each with its runtime sequence (:meth:`~aielower.backends.aie.catalog.
    Placement.chains`; None: every launch on its own). Host ops run on their ``@impl`` (:mod:`aielower.interp`),
    through the same interpreter as the reference backend and AWQ.
    """

    def __init__(self, module: Module, device: Device, blobs: dict[str, np.ndarray],
                 host_weights: dict[str, np.ndarray],
                 design_for: Callable[[LaunchPlan, OpPlan], tuple[Design, str | None]], launcher: Launcher,
                 chains: Callable[[Function], list[tuple[str, ChainedOps]]] | None = None):
        self.module, self.device, self.launcher = module, device, launcher
        self.blobs, self.host_weights = blobs, host_weights
        self.design_for = design_for
        self.chains = chains
        self.launches = 0
        self._interpreters: dict[str, _HostInterpreter] = {}
        self._chained: dict[int, tuple[str, ChainedOps, int]] = {}  # id(op) -> its chain's sequence, chain, place
        self._running: tuple[str, ChainedOps, int] | None = None  # the chained op being run, if any
        self._held: list[dict] = []  # the tensors of the running chain's launches held back so far
        self._parts: list[tuple] = []  # (op, plan, operands, results) of the chain's held-back ops
        self._replay: dict | None = None  # the tensors the device wrote for the op being run again
        self._launched: list[dict] | None = None  # every member's tensors of the chain just submitted
        self._outputs: dict[str, frozenset[str]] = {}  # design -> the runtime-sequence arguments it writes

    @property
    def calls(self) -> int:
        """Kernel calls made by all launches so far (as the launcher counts them)."""
        return self.launcher.calls

    def submit(self, plan: OpPlan, launch: LaunchPlan, tensors: dict, cache_rows: int | None = None) -> None:
        """One launch over ``tensors`` (DDR tensors by runtime-sequence argument name). For attention that reads the
        valid tiles of a cache, the sequence that reads its ``cache_rows`` rows before the step; for a launch of a
        shared configuration, its sequence, with its header (a constant of the launch, resident in DDR)."""
        if self._replay is not None:  # a held-back member's host side again: what the device wrote
            for name, tensor in tensors.items():
                if isinstance(tensor, np.ndarray):
                    tensor[...] = self._replay[name]
            return
        running = self._running
        if running is not None and cache_rows is None and launch == running[1].launches[running[2]][0]:
            self._chain_part(plan, launch, tensors)
            return
        if self._held:
            raise AielowerError("internal: a launch was submitted in the middle of a chain")
        design, sequence = self.design_for(launch, plan)
        tkv = KERNEL_FAMILIES.for_kernel(launch.kernel).kv_tile_rows(launch) if cache_rows is not None else 0
        if sequence is not None:  # a member of a shared configuration (with a sequence per KV tile count, maybe)
            if cache_rows is not None:
                sequence = kv_sequence_for(design, cache_rows, tkv, member=sequence)
            tensors = {**tensors, HEADER_ARG: Resident(f"header/{design.name}/{sequence}",
                                                       header_words(design, sequence))}
        elif cache_rows is not None:
            sequence = kv_sequence_for(design, cache_rows, tkv)
        self.launcher.launch(design, sequence, tensors)

    def _chain_part(self, plan: OpPlan, launch: LaunchPlan, tensors: dict) -> None:
        """Hold back launch ``place`` of the running chain, or with its last submit the chain: every member's
        tensors where the chain's sequence has them (:func:`~aielower.backends.aie.designs.shared.chain_layout`:
        activations and results in ``%io``, weights as they are), the headers; then what the device wrote back
        into each member's own tensors."""
        sequence, chained, place = self._running
        if place != len(self._held):
            raise AielowerError(f"internal: chain @{sequence} reached its launch {place} after {len(self._held)}")
        self._held.append(tensors)
        design, member = self.design_for(launch, plan)
        if place < len(chained.ops) - 1:  # poisoned until the chain ran (only the device reads them before)
            outputs = self._outputs.get(design.name)
            if outputs is None:  # (a walk of every sequence of the design: once per design, not per launch)
                outputs = self._outputs[design.name] = design.output_args()
            for arg in design.runtime_sequence(member).args:
                if arg.name in outputs and isinstance(tensors.get(arg.name), np.ndarray):
                    tensors[arg.name][:] = POISON[arg.type.element]
            return
        parts = [design.runtime_sequence(name) for name in chained.chain.members]
        where = chain_layout(parts, chained.chain.links)
        args = {a.name: a for a in design.runtime_sequence(sequence).args}
        io = np.zeros(args[IO_ARG].type.size, NUMPY_DTYPES[args[IO_ARG].type.element])
        merged = {IO_ARG: io}
        for (i, name), (arg, start) in where.items():
            tensor = self._held[i][name]
            if arg != IO_ARG:
                merged[arg] = tensor
            elif isinstance(tensor, Resident):
                raise AielowerError(f"internal: chain @{sequence} packs the resident %{name} of @{parts[i].name}")
            elif i == 0 or name != chained.chain.links[i - 1].operand_arg:  # (that one the device writes)
                io[start : start + parts[i].arg(name).type.size] = tensor[: parts[i].arg(name).type.size]
        merged[HEADER_ARG] = Resident(f"header/{design.name}/{sequence}", header_words(design, sequence))
        launched, self._held = self._held, []
        self.launcher.launch(design, sequence, merged)
        for (i, name), (arg, start) in where.items():  # what the device wrote, into each member's own tensors
            if arg == IO_ARG:
                launched[i][name][: parts[i].arg(name).type.size] = io[start : start + parts[i].arg(name).type.size]
        self._launched = launched

    def launch_of(self, plan: OpPlan, bucket: int, role: str | None = None) -> LaunchPlan:
        """The launch of ``plan`` at ``bucket`` (with ``role``, when the op has several per bucket)."""
        for launch in plan.launches_for(bucket):
            if role is None or launch.role == role:
                return launch
        raise CompileError(f"no {role or plan.kind} launch planned for bucket {bucket}")

    def rows_launch(self, plan: OpPlan, m: int) -> tuple[LaunchPlan, int]:
        """The launch and bucket for ``m`` rows in one launch (an error above the largest bucket)."""
        bucket = plan.bucket_for(m)
        if m > bucket:
            raise AielowerError(f"{m} rows exceed the largest planned bucket {bucket}")
        return self.launch_of(plan, bucket), bucket

    # -- functions ----------------------------------------------------------------------------------------

    def run(self, function: str, *args: np.ndarray) -> list[np.ndarray]:
        if function not in self.module.functions:
            raise AielowerError(f"the module has no function @{function}; it has {', '.join(self.module.functions)}")
        interp = self._interpreters.get(function)
        if interp is None:
            interp = self._interpreters[function] = _HostInterpreter(self, function)
            for sequence, chained in (self.chains(self.module.functions[function]) if self.chains else ()):
                for place, op in enumerate(chained.ops):
                    self._chained[id(op)] = (sequence, chained, place)
        try:
            return interp(*args)
        finally:  # a run that stopped inside a chain (an error, an interrupt) leaves nothing held for the next
            self._held, self._parts, self._launched, self._replay, self._running = [], [], None, None, None

    # -- NPU ops ----------------------------------------------------------------------------------------------

    def npu(self, op, plan: OpPlan, operands) -> object:
        """The results of a planned op: its kernel family's host side of its launches."""
        self.launches += 1
        family = KERNEL_FAMILIES.for_kind(plan.kind)
        chained = self._running = self._chained.get(id(op))
        try:
            results = family.run(self, op, plan, tuple(operands))
        finally:
            self._running = None
        if chained is None:
            return results
        if self._held:  # held back: its results are the device's once the chain ran
            self._parts.append((op, plan, tuple(operands), results))
            return results
        if self._launched is None:  # run on its own (at another bucket than the chain's)
            return results
        launched, self._launched = self._launched, None
        parts, self._parts = self._parts, []
        for (part, part_plan, part_operands, poisoned), tensors in zip(parts, launched):
            self._replay = tensors
            try:
                again = KERNEL_FAMILIES.for_kind(part_plan.kind).run(self, part, part_plan, part_operands)
            finally:
                self._replay = None
            for old, new in zip(*((x,) if isinstance(x, np.ndarray) else x for x in (poisoned, again))):
                np.copyto(old, new)
        return results


class _HostInterpreter(Interpreter):
    """The interpreter with the host program's launches: ops that carry a plan run as launches (a planned
    LinearLike op: its linear; an epilogue, if any, then runs on the host unless the launches compute it too); host
    ops read the weights from ``weights/``."""

    def __init__(self, program: HostProgram, function: str):
        self.program = program
        super().__init__(program.module, function)

    def weight(self, w: Weight):
        return self.program.host_weights.get(w.name)  # None for a 4-bit weight: only the NPU reads it (blobs)

    def linear(self, op: LinearLike):
        plan = plan_of(op)
        if plan is None:
            return super().linear(op)
        program = self.program

        def npu_linear(x, weight, bias):
            return program.npu(op, plan, (x, weight, bias))

        return npu_linear

    def evaluator(self, op):
        plan = plan_of(op)
        if plan is None:
            return super().evaluator(op)
        program = self.program
        if isinstance(op, LinearLike):
            if not KERNEL_FAMILIES.for_kind(plan.kind).computes_epilogue(plan):
                return super().evaluator(op)  # the linear on the NPU, then the epilogue on the host
            return lambda x, weight, bias, *rest, **attributes: program.npu(op, plan, (x, weight, bias, *rest))
        return lambda *operands, **attributes: program.npu(op, plan, operands)


__all__ = ["HostProgram"]
