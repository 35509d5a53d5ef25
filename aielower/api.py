"""``aielower.compile``: frontend -> pass pipeline -> backend."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aielower.errors import CompileError
from aielower.frontend import import_model, load_model
from aielower.ir import Module, verify
from aielower.passes import PassManager, PassTiming

TARGETS = ("ref", "aie")
FUSIONS = "canonicalize,fuse-norm,fuse-attention,fuse-qkv,fuse-mlp"
CLEANUP = "cse,dce"


@dataclass(frozen=True)
class QuantConfig:
    """Weight-only group quantization (AWQ / Ryzen AI convention: asymmetric, bf16 scales).

    ``lm_head_group_size=None`` leaves the lm_head in fp32; the model card's
    "+ lm_head(g:32)" is ``lm_head_group_size=32``.
    """

    bits: int = 4
    group_size: int = 128
    method: str = "rtn"
    lm_head_group_size: int | None = None
    # AWQ calibration (method="awq" only); see the quantize-linear pass.
    calib: str | None = None  # text file; default: ../shared/data/calibration/*.txt
    tokenizer: str | None = None  # model name, directory or .gguf; default: the compiled model's
    samples: int = 128
    seqlen: int = 512
    clip: bool = False  # the clip search raised perplexity on the real checkpoint (README)
    progress: bool = True

    def pipeline(self) -> str:
        options = f"bits={self.bits} group={self.group_size} method={self.method}"
        if self.method == "awq":
            for key, value in (("calib", self.calib), ("tokenizer", self.tokenizer)):
                if value is not None:
                    if not value or any(c.isspace() or c in "{},=" for c in str(value)):
                        raise CompileError(f"QuantConfig.{key} {value!r} cannot go into a pipeline string "
                                           "(no spaces, braces, commas or '='): rename or link the file")
                    options += f" {key}={value}"
            options += f" samples={self.samples} seqlen={self.seqlen} clip={str(self.clip).lower()}"
            options += f" progress={str(self.progress).lower()}"
        text = f"quantize-linear{{{options}}}"
        if self.lm_head_group_size is not None:  # the lm_head is rounded to nearest whatever the method
            text += f",quantize-lm-head{{bits={self.bits} group={self.lm_head_group_size} method=rtn}}"
        return text


def default_pipeline(target: str = "ref", quant: QuantConfig | None = None) -> str:
    """Fusions, then quantization when asked, then cleanup (``ref`` and ``aie`` share it)."""
    parts = [FUSIONS] + ([quant.pipeline()] if quant is not None else []) + [CLEANUP]
    return ",".join(parts)


@dataclass
class CompileStats:
    """What a compile did: seconds per stage and per pass."""

    seconds: dict[str, float] = field(default_factory=dict)
    passes: list[PassTiming] = field(default_factory=list)
    pipeline: str = ""

    @staticmethod
    def ops_by_kind(module: Module) -> Counter:
        return Counter(op.name for fn in module.functions.values() for op in fn.ops)

    @staticmethod
    def ops_by_kind_in(fn) -> Counter:
        return Counter(op.name for op in fn.ops)


def compile(
    model,
    target: str = "ref",
    *,
    quant: QuantConfig | None = None,
    pipeline: str | None = None,
    dump_ir: str | Path | None = None,
    verify_each: bool = True,
    max_seq_len: int | None = None,
    functions: tuple[str, ...] = ("prefill", "decode"),
    name: str | None = None,
):
    """Compile a Qwen2ForCausalLM (or a bundled config name / local HF directory).

    ``quant`` selects weight quantization (None keeps fp32); ``pipeline`` replaces the
    default pass pipeline (see ``default_pipeline``); ``dump_ir`` names a directory that
    receives the IR before and after every pass; ``max_seq_len`` is the length of the
    static KV cache of ``decode`` (default 4096, or less if the model allows less); ``functions`` selects what to capture (``prefill``:
    logits of whole prompts; ``decode``: tokens over the KV cache, for ``generate``).
    ``target="ref"`` returns a
    :class:`~aielower.backends.ref.RefCompiledModel`: call it with ``input_ids`` [batch, seq].
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if target == "aie":
        raise CompileError("target 'aie' is not available yet: the AIE backend is not implemented; use target='ref'")
    if pipeline is not None and quant is not None:
        raise CompileError("give either quant= or pipeline= (a pipeline string already says how to quantize)")
    text = pipeline if pipeline is not None else default_pipeline(target, quant)
    stats = CompileStats(pipeline=text)
    manager = PassManager.parse(text, verify_each=verify_each, dump_dir=dump_ir)  # rejects bad pipelines first

    t0 = time.perf_counter()
    source = None
    if isinstance(model, (str, Path)):
        name = name or Path(model).name
        source = str(model)
        model = load_model(model)
    module = import_model(model, name, functions=functions, max_seq_len=max_seq_len)
    if source is not None:
        module.metadata["source"] = source  # where the tokenizer is, for AWQ calibration
    verify(module)
    stats.seconds["capture"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    manager.run(module)
    stats.seconds["passes"] = time.perf_counter() - t0
    stats.passes = manager.timings

    from aielower.backends.ref import RefCompiledModel, generate

    t0 = time.perf_counter()
    compiled = RefCompiledModel(module, generate(module))
    stats.seconds["codegen"] = time.perf_counter() - t0
    compiled.stats = stats
    return compiled
