"""``aielower.compile``: frontend -> pass pipeline -> backend."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aielower import names
from aielower.backends.aie.device import get_device
from aielower.errors import CompileError
from aielower.frontend import import_model, load_model, load_tokenizer
from aielower.ir import Module, verify
from aielower.passes import PassManager, PassTiming
from aielower.passes.quantize_linear import QuantizeLinear, QuantizeLMHead

TARGETS = ("ref", "aie")
FUSIONS = "canonicalize,fuse-norm,fuse-attention,fuse-qkv,fuse-mlp"
CLEANUP = "cse,dce"


def _default(pass_cls, option: str):
    """The default of a pass option: QuantConfig declares no default or check of its own."""
    return next(o.default for o in pass_cls.options if o.name == option)


@dataclass(frozen=True)
class QuantConfig:
    """Weight-only group quantization (AWQ / Ryzen AI convention: asymmetric, bf16 scales): the options of the
    ``quantize-linear`` and ``quantize-lm-head`` passes under the names the model card uses. Defaults and checks are
    the passes' own (declared once, on the pass); building a QuantConfig builds the passes, so a bad value fails here.

    ``lm_head_group_size=None`` leaves the lm_head in fp32; the model card's
    "+ lm_head(g:32)" is ``lm_head_group_size=32``.
    """

    bits: int = _default(QuantizeLinear, "bits")
    group_size: int = _default(QuantizeLinear, "group")
    method: str = _default(QuantizeLinear, "method")
    lm_head_group_size: int | None = None
    # AWQ calibration (method="awq" only); see the quantize-linear pass.
    calib: str | None = None  # text file; default: ../shared/data/calibration/*.txt
    tokenizer: str | None = None  # model name, directory or .gguf; default: the compiled model's
    samples: int = _default(QuantizeLinear, "samples")
    seqlen: int = _default(QuantizeLinear, "seqlen")
    clip: bool = _default(QuantizeLinear, "clip")  # the clip search raised perplexity on the real checkpoint (README)
    progress: bool = _default(QuantizeLinear, "progress")

    def __post_init__(self) -> None:
        self.passes()

    def label(self) -> str:
        """As the model card writes it, e.g. ``w4 g128 rtn + lm_head g32``."""
        text = f"w{self.bits} g{self.group_size} {self.method}"
        return text + (f" + lm_head g{self.lm_head_group_size}" if self.lm_head_group_size is not None else "")

    def passes(self) -> list:
        """The quantization passes this config stands for (checked by the passes' own option rules)."""
        options = {"bits": self.bits, "group": self.group_size, "method": self.method}
        if self.method == "awq":
            for key, value in (("calib", self.calib), ("tokenizer", self.tokenizer)):
                if value is not None:
                    if not value or any(c.isspace() or c in "{},=" for c in str(value)):
                        raise CompileError(f"QuantConfig.{key} {value!r} cannot go into a pipeline string "
                                           "(no spaces, braces, commas or '='): rename or link the file")
                    options[key] = str(value)
            options.update(samples=self.samples, seqlen=self.seqlen, clip=self.clip, progress=self.progress)
        passes = [QuantizeLinear.from_options(**options)]
        if self.lm_head_group_size is not None:  # the lm_head is rounded to nearest whatever the method
            passes.append(QuantizeLMHead.from_options(bits=self.bits, group=self.lm_head_group_size, method="rtn"))
        return passes

    def pipeline(self) -> str:
        return ",".join(p.spec() for p in self.passes())


AIE_QUANT = QuantConfig(lm_head_group_size=32)  # the model card's "w4 g128 + lm_head(g:32)"


def default_pipeline(target: str = "ref", quant: QuantConfig | None = None, device: str = "npu2") -> str:
    """Fusions, then quantization when asked, then cleanup; ``aie`` adds ``fuse-aie-epilogues`` (the elementwise
    ops its linear kernels compute as they store) and ``plan-aie-tiling{device=...}``."""
    parts = [FUSIONS] + ([quant.pipeline()] if quant is not None else []) + [CLEANUP]
    if target == "aie":
        parts.append(f"fuse-aie-epilogues,plan-aie-tiling{{device={device}}}")
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
    numerics: str = "fp32",
    out_dir: str | Path | None = None,
    device: str = "npu2",
    progress=None,
):
    """Compile a Qwen2ForCausalLM (or a bundled config name / local HF directory / a :class:`~aielower.ir.Module`,
    e.g. IR text read with :func:`aielower.parse`: it is compiled as it is, without capture).

    ``quant`` selects weight quantization (None keeps fp32); ``pipeline`` replaces the
    default pass pipeline (see ``default_pipeline``); ``dump_ir`` names a directory that
    receives the IR before and after every pass; ``max_seq_len`` is the length of the
    static KV cache of ``decode`` (default 4096, or less if the model allows less); ``functions`` selects what to capture (``prefill``:
    logits of whole prompts; ``decode``: tokens over the KV cache, for ``generate``, with the logits of the last token).
    ``target="ref"`` returns a
    :class:`~aielower.backends.ref.RefCompiledModel`: call it with ``input_ids`` [batch, seq].
    ``numerics`` (ref): ``"fp32"``, or ``"aie"`` to mirror the AIE backend's bf16 numerics (docs/aie-kernels.md).
    ``target="aie"`` plans the module for ``device`` (``npu1`` or ``npu2``), writes kernels, designs, pre-tiled
    weights, manifest, build file and report into ``out_dir`` and returns an
    :class:`~aielower.backends.aie.compiled.AieArtifact` (``emulate`` / ``emulate_decode`` run it on the host
    emulator); without ``quant`` or ``pipeline`` it quantizes as the model card does (w4 g128, lm_head g32).
    ``progress`` (aie), if given, is called as ``progress(done, total, design)`` after each design is built (the
    7B model has 81, minutes of work).
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if pipeline is not None and quant is not None:
        raise CompileError("give either quant= or pipeline= (a pipeline string already says how to quantize)")
    from aielower.backends.ref import RefCompiledModel, check_numerics, generate

    check_numerics(numerics)
    if target == "aie":
        if out_dir is None:
            raise CompileError("target 'aie' writes kernels, designs, weights and a report: give out_dir=")
        from aielower.backends.aie.artifact import artifact_writer

        artifact_writer(out_dir).check()  # a bad output path fails before the capture, not after it
        get_device(device)
        if "decode" not in functions:
            raise CompileError("target 'aie' needs the decode function (the report models decode steps): compile "
                               "with functions=('prefill', 'decode')")
        if pipeline is None and quant is None:
            quant = AIE_QUANT
    text = pipeline if pipeline is not None else default_pipeline(target, quant, device)
    stats = CompileStats(pipeline=text)
    manager = PassManager.parse(text, verify_each=verify_each, dump_dir=dump_ir)  # rejects bad pipelines first
    manager.provide(tokenizer_loader=load_tokenizer)  # AWQ calibration tokenizes with the frontend's loader

    if name is not None:
        names.check("module", name, "module name", CompileError)
    t0 = time.perf_counter()
    source = None
    if isinstance(model, Module):  # IR (parsed from text, or built): no capture
        if max_seq_len is not None:
            raise CompileError("max_seq_len applies to capturing a model; a Module's KV cache length is in its IR")
        module = model
        if name is not None:
            module.name = name
    else:
        if isinstance(model, (str, Path)):
            name = name or names.derive_module_name(Path(model).name)
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

    t0 = time.perf_counter()
    if target == "aie":
        compiled = _aie_artifact(module, device, out_dir, text, quant, progress)
    else:
        compiled = RefCompiledModel(module, generate(module, numerics), numerics)
    stats.seconds["codegen"] = time.perf_counter() - t0
    compiled.stats = stats
    return compiled


def _aie_artifact(module: Module, device: str, out_dir, pipeline: str, quant: QuantConfig | None, progress=None):
    from aielower.backends.aie.artifact import write_artifact
    from aielower.backends.aie.compiled import AieArtifact
    from aielower.backends.aie.report import NEW_TOKENS, SHORT_PROMPTS, build_report

    from aielower.backends.aie.cost import kv_capacity
    from aielower.backends.aie.plan import plan_of

    planned = module.metadata.get("aie_device")
    if planned is None:  # IR that was planned before it was printed: the plans name their device
        devices = {plan.device for fn in module.functions.values() for op in fn.ops
                   if (plan := plan_of(op)) is not None}
        if len(devices) > 1:
            raise CompileError(f"the module's aie.plan attributes are for several devices: {', '.join(sorted(devices))}")
        planned = devices.pop() if devices else None
    if planned is None:
        raise CompileError("the pipeline has no plan-aie-tiling pass: target 'aie' needs one, e.g. "
                           f"'...,plan-aie-tiling{{device={device}}}'")
    dev = get_device(planned)
    module.metadata["aie_device"] = dev.name
    label = quant.label() if quant is not None else "as the pipeline says"
    cache = kv_capacity(module)
    def report(built: dict, placement) -> dict:
        # made while worker processes build the other designs; the decode designs it builds to count them go to
        # ``built``, and the artifact renders them
        if cache >= max(SHORT_PROMPTS) + NEW_TOKENS:
            return build_report(module, dev, quant=label, built=built, placement=placement)
        # a small KV cache (tests, tiny models): model a quarter of it as prompt and a quarter as new tokens
        return build_report(module, dev, quant=label, new_tokens=max(1, cache // 4),
                            short_prompts=(max(1, cache // 4),), built=built, placement=placement)

    manifest, made = write_artifact(module, dev, out_dir, pipeline, report, progress=progress)
    return AieArtifact(module, dev, Path(out_dir), manifest, made)
