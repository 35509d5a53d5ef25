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
are host copies. Tensors that live in DDR across launches (the pre-tiled weights, the KV caches of a
:class:`~aielower.backends.aie.kv_cache.BlockedKvCache`) are passed as :class:`Resident` so a launcher writes them
once, or only the rows a step changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aielower.backends.aie.designs.build import kv_sequence_for
from aielower.backends.aie.designs.shared import HEADER_ARG, header_words
from aielower.backends.aie.designs.model import Design
from aielower.backends.aie.device import Device
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.launcher import Launcher, Resident
from aielower.backends.aie.plan import LaunchPlan, OpPlan, plan_of
from aielower.errors import AielowerError, CompileError
from aielower.interp import Interpreter
from aielower.ir import Module, Weight
from aielower.ir.core import LinearLike


class HostProgram:
    """Runs the functions of a planned module: NPU launches through ``launcher``, the rest on the host.

    ``blobs`` maps each quantized weight's name to its pre-tiled bytes (as read from ``weights/``);
    ``host_weights`` the arrays host ops read (bf16-rounded where the NPU build stores bf16); ``design_for`` gives
    a launch's design (parsed from the artifact's design files) and its runtime sequence (None: the design's own).
    Host ops run on their ``@impl`` (:mod:`aielower.interp`), through the same interpreter as the reference backend
    and AWQ.
    """

    def __init__(self, module: Module, device: Device, blobs: dict[str, np.ndarray],
                 host_weights: dict[str, np.ndarray],
                 design_for: Callable[[LaunchPlan, OpPlan], tuple[Design, str | None]], launcher: Launcher):
        self.module, self.device, self.launcher = module, device, launcher
        self.blobs, self.host_weights = blobs, host_weights
        self.design_for = design_for
        self.launches = 0
        self._interpreters: dict[str, _HostInterpreter] = {}

    @property
    def calls(self) -> int:
        """Kernel calls made by all launches so far (as the launcher counts them)."""
        return self.launcher.calls

    def submit(self, plan: OpPlan, launch: LaunchPlan, tensors: dict, cache_rows: int | None = None) -> None:
        """One launch over ``tensors`` (DDR tensors by runtime-sequence argument name). For attention that reads the
        valid tiles of a cache, the sequence that reads its ``cache_rows`` rows before the step; for a launch of a
        shared configuration, its sequence, with its header (a constant of the launch, resident in DDR)."""
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
        return interp(*args)

    # -- NPU ops ----------------------------------------------------------------------------------------------

    def npu(self, op, plan: OpPlan, operands) -> object:
        """The results of a planned op: its kernel family's host side of its launches."""
        self.launches += 1
        return KERNEL_FAMILIES.for_kind(plan.kind).run(self, op, plan, tuple(operands))


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
