"""What ``compile(model, target="aie", out_dir=...)`` returns: the output directory, and a host emulator of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aielower.backends.aie.device import Device
from aielower.backends.aie.emulator import DesignLauncher
from aielower.backends.aie.host_program import HostProgram
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.ref.runtime import as_input_ids
from aielower.errors import AielowerError
from aielower.ir import Module


class AieArtifact:
    """A module compiled for an NPU: ``out_dir`` holds kernels, designs, weights, manifest and report.

    ``emulate(input_ids)`` runs ``prefill`` and ``emulate_decode(input_ids, position, cache)`` runs ``decode`` on
    the host emulator: the generated kernels compiled with g++ (into ``out_dir/host-build``), driven launch by
    launch and tile by tile with the planned access patterns, reading the weights from ``out_dir/weights``.
    Results equal the reference backend with ``numerics="aie"`` up to bf16 rounding.
    """

    target = "aie"

    def __init__(self, module: Module, device: Device, out_dir: Path, manifest: dict, report: dict):
        self.ir, self.device, self.out_dir = module, device, Path(out_dir)
        self.manifest, self.report = manifest, report
        self.stats = None
        self.last_stats = None
        self._emulator: HostProgram | None = None
        self._runtimes: dict = {}

    # -- emulation --------------------------------------------------------------------------------------------

    @property
    def emulator(self) -> HostProgram:
        if self._emulator is None:
            self._emulator = self._build_emulator()
        return self._emulator

    def _build_emulator(self) -> HostProgram:
        from aielower.backends.aie.artifact import Placement, design_reader, read_artifact_weights

        blobs, arrays = read_artifact_weights(self.out_dir, self.ir, "emulate")
        placement = Placement(self.ir, self.device)
        library = KernelLibrary.build(placement.kernels.values(), self.out_dir / "host-build")
        return HostProgram(self.ir, self.device, blobs, arrays, design_reader(self.out_dir, placement),
                           DesignLauncher(library.function), placement.chains)

    def emulate(self, input_ids) -> np.ndarray:
        """Logits [batch, seq, vocab] of ``prefill`` on the host emulator."""
        return self.emulator.run("prefill", as_input_ids(input_ids))[0]

    def new_cache(self, batch: int) -> list[np.ndarray]:
        """Zeroed KV caches for ``emulate_decode`` (k_cache_0.., v_cache_0..)."""
        return [np.zeros((batch,) + tuple(a.type.shape[1:]), np.float32) for a in self._decode_fn().args[2:]]

    def emulate_decode(self, input_ids, position: int, cache: list[np.ndarray]) -> np.ndarray:
        """Run ``decode`` for tokens at ``position ...`` on the emulator; updates ``cache`` in place, returns the last
        token's logits [batch, 1, vocab]."""
        ids = as_input_ids(input_ids)
        self._decode_fn()
        logits, *new = self.emulator.run("decode", ids, np.array([position], np.int64), *cache)
        cache[:] = new
        return logits

    def _decode_fn(self):
        fn = self.ir.functions.get("decode")
        if fn is None:
            raise AielowerError("this artifact has no decode function: compile with functions=('prefill', 'decode')")
        return fn

    # -- building and running on a device ------------------------------------------------------------------------

    def build(self, emulate: bool = False, *, peano=None, mlir_aie=None, jobs: int = 2, progress=None) -> dict:
        """Build this artifact for a device and record the build in its manifest; returns the build record.
        ``emulate``: for the emulated XRT device (kernels built with g++, emulated xclbins and instruction files in
        ``emulated/``); else for the NPU with the Makefile, Peano in ``peano`` and mlir-aie in ``mlir_aie``."""
        from aielower.backends.aie.device_build import build_for_emulator, build_for_npu

        self._runtimes.clear()
        if emulate:
            return build_for_emulator(self.out_dir, progress=progress)
        return build_for_npu(self.out_dir, peano, mlir_aie, jobs=jobs)

    def runtime(self, device: str = "npu"):
        """The :class:`~aielower.backends.aie.runtime.AieRuntime` of this artifact on ``device`` (``"npu"`` or
        ``"emulator"``), opened once."""
        from aielower.backends.aie.runtime import AieRuntime

        found = self._runtimes.get(device)
        if found is None:
            found = self._runtimes[device] = AieRuntime(self.out_dir, device)
        return found

    def generate(self, input_ids, max_new_tokens: int = 60, *, device: str = "npu", **options) -> np.ndarray:
        """``generate()`` through the XRT host runtime on ``device`` (``"npu"``, or ``"emulator"`` for the emulated
        device); the reference backend's signature and options (``do_sample``, ``temperature``, ``top_k``,
        ``top_p``, ``seed``, ``eos_token_id``, ``pad_token_id``). Timings are in ``last_stats``, labelled by
        ``runtime(device).timing``. Build first (:meth:`build`)."""
        runtime = self.runtime(device)
        tokens = runtime.generate(input_ids, max_new_tokens, **options)
        self.last_stats = runtime.last_stats
        return tokens

    def record_run(self, device: str = "npu") -> dict:
        """Add the last ``generate()`` on ``device`` to ``report.md`` / ``report.json`` under "Runs of this artifact",
        labelled measured (NPU) or emulated (the emulated device). Returns the row."""
        from aielower.backends.aie.report import record_run

        runtime = self._runtimes.get(device)
        if runtime is None or runtime.last_stats is None:
            raise AielowerError(f"nothing to record: generate(..., device={device!r}) has not run")
        where = (f"{self.device.product} ({self.device.name})" if runtime.timing == "measured"
                 else f"emulated {self.device.name} on this CPU")
        return record_run(self.out_dir, runtime.last_stats, runtime.timing, where)

    # -- the real toolchain ------------------------------------------------------------------------------------------

    def check_aie(self, aie_opt=None, jobs: int = 2):
        """Every design of this artifact through mlir-aie's ``aie-opt``: parse and verify, then the lowering steps
        ``aiecc`` runs (objectFifo lowering and addresses, routing, NPU instructions). Returns a
        :class:`~aielower.backends.aie.toolchain.CheckReport` (per design: pass, or the step and the tool's first
        error). ``aie_opt`` is the tool's path; by default it is found as ``aielower check-aie`` finds it
        (``$AIELOWER_AIE_OPT``, ``PATH``, ``../shared/tools/aie-opt/aie-opt``)."""
        import os

        from aielower.backends.aie.toolchain import check_artifact, find_aie_opt

        return check_artifact(self.out_dir, find_aie_opt(aie_opt, os.environ), jobs=jobs)

    def __repr__(self) -> str:
        return f"<AieArtifact {self.ir.name} for {self.device.name} in {self.out_dir}>"


__all__ = ["AieArtifact"]
