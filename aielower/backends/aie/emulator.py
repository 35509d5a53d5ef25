"""The host emulator's launcher: every launch runs its design file on the CPU.

:class:`DesignLauncher` runs a launch with :class:`~aielower.backends.aie.designs.simulate.DesignRun`, which derives
what every core receives from the design's object FIFOs, links and runtime sequence as mlir-aie's lowering sets
them up and calls the generated kernels (compiled with g++ against our host AIE API). A layout bug in a design
therefore shows up as wrong logits. Driven by a :class:`~aielower.backends.aie.host_program.HostProgram`, it is the
``emulate`` of :class:`~aielower.backends.aie.compiled.AieArtifact`; the emulated XRT device
(:mod:`aielower.backends.aie.emulated_xrt`) runs its kernel runs the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from aielower.backends.aie.designs.model import Design
from aielower.backends.aie.designs.simulate import DesignRun
from aielower.backends.aie.launcher import Resident


class DesignLauncher:
    """Runs launches with the designs' own text: one :class:`DesignRun` per design (kept between launches), kernel
    functions from ``functions`` (name -> callable, e.g. :meth:`KernelLibrary.function`)."""

    def __init__(self, functions: Callable):
        self.functions = functions
        self.calls = 0
        self._runs: dict[str, DesignRun] = {}

    def launch(self, design: Design, sequence: str | None, tensors: Mapping[str, np.ndarray | Resident]) -> None:
        run = self._runs.get(design.name)
        if run is None:
            run = self._runs[design.name] = DesignRun(design, self.functions)
        arrays = {name: t.array if isinstance(t, Resident) else t for name, t in tensors.items()}
        before = run.calls
        run.run(arrays, sequence=sequence)
        self.calls += run.calls - before


__all__ = ["DesignLauncher"]
