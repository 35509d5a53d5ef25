"""What ``compile(model, target="aie", out_dir=...)`` returns: the output directory, and a host emulator of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aielower.backends.aie.device import Device
from aielower.backends.aie.emulator import Emulator
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.ref.runtime import as_input_ids
from aielower.errors import AielowerError, ModelError
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
        self._emulator: Emulator | None = None

    # -- emulation --------------------------------------------------------------------------------------------

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:
            self._emulator = self._build_emulator()
        return self._emulator

    def _build_emulator(self) -> Emulator:
        from aielower.backends.aie.artifact import collect, read_weights

        weights_dir = self.out_dir / "weights"
        if not (weights_dir / "index.json").exists():
            raise ModelError(
                f"{self.out_dir} has no weights/: the model was compiled without weights (the meta device), which "
                "is enough to plan and report but not to emulate; compile a checkpoint to emulate it")
        kernels, _ = collect(self.ir, self.device)
        library = KernelLibrary.build(kernels.values(), self.out_dir / "host-build")
        blobs, arrays = read_weights(weights_dir, self.ir)
        return Emulator(self.ir, self.device, library, blobs, arrays, self._design_reader())

    def _design_reader(self):
        """launch -> its design, parsed from this artifact's ``design/`` files (read once each)."""
        from functools import lru_cache

        from aielower.backends.aie.artifact import design_name
        from aielower.backends.aie.designs import read_design
        from aielower.output import safe_path

        @lru_cache(maxsize=None)
        def read(name: str):
            return read_design(safe_path(self.out_dir, "design", f"{name}.mlir"))

        return lambda launch, plan: read(design_name(launch, plan))

    def emulate(self, input_ids) -> np.ndarray:
        """Logits [batch, seq, vocab] of ``prefill`` on the host emulator."""
        return self.emulator.run("prefill", as_input_ids(input_ids))[0]

    def new_cache(self, batch: int) -> list[np.ndarray]:
        """Zeroed KV caches for ``emulate_decode`` (k_cache_0.., v_cache_0..)."""
        return [np.zeros((batch,) + tuple(a.type.shape[1:]), np.float32) for a in self._decode_fn().args[2:]]

    def emulate_decode(self, input_ids, position: int, cache: list[np.ndarray]) -> np.ndarray:
        """Run ``decode`` for tokens at ``position ...`` on the emulator; updates ``cache`` in place, returns logits."""
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
