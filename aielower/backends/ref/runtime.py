"""Running generated reference code: the compiled-model object returned by ``compile(target="ref")``."""

from __future__ import annotations

import linecache
from typing import Any

import numpy as np

from aielower.backends.ref.generation import GenerationStats, SamplingConfig, eos_ids, generate_tokens
from aielower.backends.ref.numerics import bf16_weight_names, check_numerics
from aielower.errors import AielowerError, CompileError, ModelError
from aielower.ir import Module, QTensorType
from aielower.quant.bf16 import round_to_bf16


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


def checked_input_ids(input_ids, vocab: int | None) -> np.ndarray:
    """``input_ids`` as an int64 [batch, seq] array whose ids lie in ``[0, vocab)`` (when the vocabulary is known)."""
    ids = as_input_ids(input_ids)
    if vocab is not None and (ids.min() < 0 or ids.max() >= vocab):
        raise AielowerError(f"input_ids out of range [0, {vocab}): min {ids.min()}, max {ids.max()}")
    return ids


class RefCompiledModel:
    """A module compiled to NumPy. ``cm(input_ids)`` returns logits [batch, seq, vocab].

    ``ir`` is the module after the pipeline; ``source`` the generated Python code, made by
    ``generate(module, numerics)`` with the same ``numerics`` (``"fp32"`` or ``"aie"``, see
    :mod:`aielower.backends.ref.numerics`).
    """

    target = "ref"

    def __init__(self, module: Module, source: str, numerics: str = "fp32"):
        self.ir = module
        self.source = source
        self.numerics = check_numerics(numerics)
        self._namespace = load_source(source, f"<aielower-ref {module.name}>")
        generated_for = self._namespace.get("NUMERICS", "fp32")
        if generated_for != numerics:
            raise CompileError(
                f"the source was generated with numerics={generated_for!r} but the model is built with "
                f"numerics={numerics!r}; pass the same value to generate() and RefCompiledModel()"
            )
        self._weights: dict[str, np.ndarray] | None = None
        tables = [op.table.type.shape[0] for fn in module.functions.values() for op in fn.ops if op.name == "nn.embedding"]
        self._vocab = tables[0] if tables else None
        self.last_stats: GenerationStats | None = None

    @property
    def weights(self) -> dict[str, np.ndarray]:
        if self._weights is None:
            missing = [n for n, w in self.ir.weights.items() if w.data is None]
            if missing:
                raise ModelError(
                    f"model {self.ir.name!r} has no weights ({len(missing)} of {len(self.ir.weights)} are shape-only, "
                    f"e.g. @{missing[0]}): it was built on the meta device, which is enough to compile but not to run. "
                    "Load a checkpoint (a local Hugging Face directory, a .gguf file or a packaged checkpoint) to run it."
                )
            # Quantized weights are dequantized once here; kernels see [out, in] float32.
            self._weights = {n: w.data.dequantize() if isinstance(w.type, QTensorType) else w.data
                             for n, w in self.ir.weights.items()}
            if self.numerics == "aie":  # what the NPU stores: bf16, and bf16((q - z) * s)
                for n in bf16_weight_names(self.ir):
                    self._weights[n] = round_to_bf16(self._weights[n])
        return self._weights

    def run(self, function: str, *args):
        """Call a generated function with its IR arguments (the weights are passed for you)."""
        if function not in self.ir.functions:
            raise AielowerError(f"no function @{function}; this module has {', '.join(self.ir.functions)}")
        return self._namespace["FUNCTIONS"][function](*args, self.weights)

    def __call__(self, input_ids) -> np.ndarray:
        """Logits [batch, seq, vocab] of the prompts (the ``prefill`` function)."""
        return self.run("prefill", self._check_ids(input_ids))

    # -- decode ----------------------------------------------------------------------

    def _decode_fn(self):
        if "decode" not in self.ir.functions:
            raise AielowerError("this module has no decode function: compile with functions including 'decode'")
        return self.ir.functions["decode"]

    def new_cache(self, batch: int) -> list[np.ndarray]:
        """Zeroed KV caches for ``decode`` (k_cache_0.., v_cache_0..), preallocated once."""
        return [np.zeros((batch,) + tuple(a.type.shape[1:]), dtype=self._namespace["DTYPES"][a.type.dtype])
                for a in self._decode_fn().args[2:]]

    @property
    def max_seq_len(self) -> int:
        return self._decode_fn().args[2].type.shape[2]

    def decode(self, input_ids, position: int, cache: list[np.ndarray]) -> np.ndarray:
        """Run ``s`` tokens at ``position..position+s-1``; updates ``cache`` (in place); returns the last token's
        logits [batch, 1, vocab] (``prefill`` scores every position)."""
        ids = self._check_ids(input_ids)
        if position + ids.shape[1] > self.max_seq_len:
            raise AielowerError(
                f"sequence of {position + ids.shape[1]} tokens does not fit the KV cache of {self.max_seq_len} "
                "(compile with a larger max_seq_len)"
            )
        logits, *new = self.run("decode", ids, np.array([position], dtype=np.int64), *cache)
        cache[:] = new
        return logits

    def generate(self, input_ids, max_new_tokens: int = 60, *, do_sample: bool = False, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                 eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None) -> np.ndarray:
        """Prefill the prompt into the KV cache, then one decode step per new token.

        Greedy unless ``do_sample``. Rows that produce ``eos_token_id`` (default: the
        model config's) are finished and padded with ``pad_token_id`` (default: the first
        EOS id); generation stops when every row is finished. Returns prompt + new tokens
        [batch, prompt + n]; timings of the run are in ``last_stats``.
        """
        ids = self._check_ids(input_ids)
        sampling = SamplingConfig(do_sample, temperature, top_k, top_p, seed)
        tokens, self.last_stats = generate_tokens(self.decode, self.new_cache(ids.shape[0]), ids, max_new_tokens,
                                                  self.max_seq_len, sampling, self._eos_ids(eos_token_id),
                                                  pad_token_id)
        return tokens

    def _check_ids(self, input_ids) -> np.ndarray:
        return checked_input_ids(input_ids, self._vocab)

    def _eos_ids(self, eos_token_id) -> list[int]:
        return eos_ids(eos_token_id, self.ir.metadata.get("config", {}))

    def __repr__(self) -> str:
        numerics = ", aie numerics" if self.numerics == "aie" else ""
        return f"<RefCompiledModel {self.ir.name}: {', '.join(self.ir.functions)}{numerics}>"
