"""Running generated reference code: the compiled-model object returned by ``compile(target="ref")``."""

from __future__ import annotations

import linecache
from typing import Any

import numpy as np

from aielower.errors import AielowerError, ModelError
from aielower.ir import Module, QTensorType


def load_source(source: str, filename: str) -> dict[str, Any]:
    """Execute generated source as a module namespace; tracebacks show its lines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": filename}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def as_input_ids(input_ids) -> np.ndarray:
    """Accept a NumPy or torch integer array [batch, seq] (or a list of lists)."""
    if hasattr(input_ids, "detach"):
        input_ids = input_ids.detach().cpu().numpy()
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.shape[1] == 0:
        raise AielowerError(f"input_ids must be a non-empty 2-D integer array [batch, seq], got shape {ids.shape} of {ids.dtype}")
    return ids.astype(np.int64, copy=False)


class RefCompiledModel:
    """A module compiled to NumPy. ``cm(input_ids)`` returns logits [batch, seq, vocab].

    ``ir`` is the module after the pipeline; ``source`` the generated Python code.
    """

    target = "ref"

    def __init__(self, module: Module, source: str):
        self.ir = module
        self.source = source
        self._namespace = load_source(source, f"<aielower-ref {module.name}>")
        self._weights: dict[str, np.ndarray] | None = None
        tables = [op.table.type.shape[0] for op in module.functions["prefill"].ops if op.name == "nn.embedding"]
        self._vocab = tables[0] if tables else None

    @property
    def weights(self) -> dict[str, np.ndarray]:
        if self._weights is None:
            missing = [n for n, w in self.ir.weights.items() if w.data is None]
            if missing:
                raise ModelError(
                    f"model {self.ir.name!r} has no weights ({len(missing)} of {len(self.ir.weights)} are shape-only, "
                    f"e.g. @{missing[0]}): it was built on the meta device, which is enough to compile but not to run. "
                    "Load a checkpoint (a local Hugging Face directory) to run it."
                )
            # Quantized weights are dequantized once here; kernels see [out, in] float32.
            self._weights = {n: w.data.dequantize() if isinstance(w.type, QTensorType) else w.data
                             for n, w in self.ir.weights.items()}
        return self._weights

    def run(self, function: str, *args):
        return self._namespace[function](*args, self.weights)

    def __call__(self, input_ids) -> np.ndarray:
        ids = as_input_ids(input_ids)
        if self._vocab is not None and (ids.min() < 0 or ids.max() >= self._vocab):
            raise AielowerError(f"input_ids out of range [0, {self._vocab}): min {ids.min()}, max {ids.max()}")
        return self.run("prefill", ids)

    def __repr__(self) -> str:
        return f"<RefCompiledModel {self.ir.name}: {', '.join(self.ir.functions)}>"
