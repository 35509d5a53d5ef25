"""quantize-linear / quantize-lm-head: the linear of every linear-like op -> packed group-quantized weights.

Every op with the :class:`~aielower.ir.core.LinearLike` interface is quantized: ``nn.linear`` becomes
``quant.linear``; a fused op carrying a linear (a linear with an epilogue) keeps its class and reads the quantized
weight. Weights become ``qtensor<out x in x u{bits}, group=G, scale=bf16, zero=u4>`` values
named like the Hugging Face module (``model.layers.0.self_attn.qkv_proj``); their data is
a :class:`aielower.quant.QuantizedWeight` (packed codes, bf16 scales, zero points), or
nothing on ``meta``. The input dimension must be a multiple of the group size.

``method=awq`` first runs AWQ (:mod:`aielower.passes.awq`): it tokenizes the calibration
text (``calib``, default the text in ``../shared/data/calibration/``) with ``tokenizer``
(default: the model the module was compiled from, when it was given by name), runs
``samples`` chunks of ``seqlen`` tokens through @prefill, and folds per-channel scales into
the weights; then it rounds as RTN does. The lm_head is never scaled.

A linear-like op left dense (the lm_head by quantize-linear, whose twin quantize-lm-head takes it) is not an error;
one that a pass selects but cannot quantize is (run-time weights, a group size that does not divide).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Callable

from aielower.errors import CompileError
from aielower.ir import Module, QTensorType, Weight
from aielower.ir.core import LinearLike
from aielower.passes.base import ModulePass, option, pass_class, register_pass
from aielower.passes.rewriter import Rewriter
from aielower.quant import quantize_rtn


def is_lm_head(fn, op) -> bool:
    """The linear that produces a returned value (the logits)."""
    return len(op.results) == 1 and any(v is op.results[0] for v in fn.results)


@pass_class
class _QuantizeLinears(ModulePass):
    bits: int = option(4, "bits per weight", choices=(2, 4, 8))
    group: int = option(128, "input channels sharing one scale and zero point", minimum=1)
    method: str = option("rtn", "rtn: round to nearest", choices=("rtn",))
    lm_head = False  # class-level: which linears the pass selects

    def prepare(self, module: Module) -> None:
        """Change the fp32 weights before rounding (AWQ); nothing for RTN."""

    def selects(self, fn, op) -> bool:
        return is_lm_head(fn, op) == self.lm_head

    def quantized_name(self, op) -> str:
        name = op.linear_weight.name
        return "lm_head" if self.lm_head else name[: -len(".weight")] if name.endswith(".weight") else name

    def targets(self, module: Module) -> list:
        """(function, linear-like op) pairs to quantize, checked before anything changes."""
        found = []
        for fn in module.functions.values():
            for op in [o for o in fn.ops if isinstance(o, LinearLike) and self.selects(fn, o)]:
                w = op.linear_weight
                if isinstance(w.type, QTensorType):
                    continue  # quantized already (e.g. by an earlier pass)
                if not isinstance(w, Weight):
                    raise CompileError(
                        f"{self.name}: the weight of {op.name} in @{fn.name} is a run-time value ({w.type}), "
                        "not a module weight; only module weights can be quantized ahead of time"
                    )
                in_f = w.type.shape[1]
                if in_f % self.group:
                    raise CompileError(
                        f"{self.name}: @{w.name} has {in_f} input features, not a multiple of group {self.group}; "
                        f"choose a group size that divides {in_f}"
                    )
                found.append((fn, op))
        return found

    def run(self, module: Module) -> int:
        self.targets(module)  # bad weights or group sizes fail before any calibration
        self.prepare(module)  # may erase dead linears
        targets = self.targets(module)
        for fn in module.functions.values():
            rw = Rewriter(module, fn)
            for op in [op for f, op in targets if f is fn]:
                w = op.linear_weight
                out_f, in_f = w.type.shape
                qweight = rw.derived_weight(
                    ("quantize", self.method, self.bits, self.group, w.name), self.quantized_name(op),
                    lambda: (QTensorType((out_f, in_f), bits=self.bits, group=self.group),
                             None if w.data is None else quantize_rtn(w.data, bits=self.bits, group=self.group)),
                )
                rw.anchor = op
                new = rw.insert(op.with_linear_weight(qweight))
                for key, value in op.attributes.items():  # discardable attributes (plans, notes) stay
                    if key not in new.attributes:
                        new.set_attr(key, value)
                rw.replace_op(op, new.results)
        module.remove_unused_weights()
        return len(targets)

    def leftovers(self, module: Module) -> list[str]:
        return [f"{op.name} in @{fn.name} (weight {_weight_label(op)}) is linear-like but was left unquantized; "
                "run the pass after the fusion that made it"
                for fn in module.functions.values() for op in fn.ops
                if isinstance(op, LinearLike) and self.selects(fn, op) and not isinstance(op.linear_weight.type, QTensorType)]


def _weight_label(op) -> str:
    w = op.linear_weight
    return f"@{w.name}" if isinstance(w, Weight) else str(w.type)


@register_pass("quantize-linear")
class QuantizeLinear(_QuantizeLinears):
    """Every linear-like op but the lm_head -> 4-bit group-quantized weight (g128 by default; method=rtn or awq)."""

    method: str = option("rtn", "rtn: round to nearest; awq: activation-aware scales, then rtn", choices=("rtn", "awq"))
    calib: str = option("", "awq: calibration text file (default: ../shared/data/calibration/*.txt)", detail=True)
    tokenizer: str = option("", "awq: model name, directory or .gguf whose tokenizer reads calib (default: the model's)",
                            detail=True)
    samples: int = option(128, "awq: calibration chunks", minimum=1, detail=True)
    seqlen: int = option(512, "awq: tokens per calibration chunk", minimum=1, detail=True)
    clip: bool = option(False, "awq: also search the clipping range of each weight group", detail=True)
    search_tokens: int = option(4096, "awq: calibration tokens the output error is measured on", minimum=1,
                                detail=True)
    progress: bool = option(True, "awq: progress bar on stderr", detail=True)
    # Not an option: how a tokenizer name becomes a tokenizer (the frontend's ``load_tokenizer``; passes do not
    # import the frontend). ``aielower.compile`` and ``aielower opt`` provide it.
    tokenizer_loader: Callable[[str], Any] | None = field(default=None, compare=False, repr=False)

    AWQ_ONLY = ("calib", "tokenizer", "samples", "seqlen", "clip", "search_tokens", "progress")

    def validate(self) -> None:
        defaults = {o.name: o.default for o in self.options}
        given = [k for k in self.AWQ_ONLY if getattr(self, k) != defaults[k]]
        if self.method != "awq" and given:
            raise CompileError(f"pass '{self.name}': option(s) {', '.join(given)} apply to method=awq only "
                               f"(method is {self.method})")

    def spec(self) -> str:
        if self.method == "awq":
            return super().spec()
        return self.name + "{" + " ".join(f"{k}={v}" for k, v in self.values.items() if k not in self.AWQ_ONLY) + "}"
    def calibration_tokens(self, module: Module):
        from aielower.data import default_calibration_file
        from aielower.quant.calibration import calibration_chunks

        source = self.tokenizer or module.metadata.get("source")
        if not source:
            raise CompileError(
                f"pass '{self.name}': method=awq tokenizes the calibration text, but no tokenizer is known for "
                f"{module.name!r}: give tokenizer=NAME_OR_DIR (QuantConfig(tokenizer=...)), or compile the model by "
                "name or directory"
            )
        if self.tokenizer_loader is None:
            raise CompileError(f"pass '{self.name}': method=awq needs a tokenizer loader to read {source!r}: run the "
                               "pipeline through aielower.compile or `aielower opt` (they pass "
                               "aielower.load_tokenizer), or build the pass with tokenizer_loader=")
        path = self.calib or default_calibration_file()
        return calibration_chunks(path, self.tokenizer_loader(source), self.samples, self.seqlen)

    def prepare(self, module: Module) -> None:
        if self.method != "awq":
            return
        from aielower.passes.awq import AWQOptions, apply_awq

        if not module.has_weight_data:
            raise CompileError(f"pass '{self.name}': method=awq calibrates on the model's weights, but "
                               f"{module.name!r} has none (meta device); load a checkpoint")
        tokens = self.calibration_tokens(module)
        report = apply_awq(module, tokens, AWQOptions(bits=self.bits, group=self.group, clip=self.clip,
                                                      search_tokens=self.search_tokens, progress=self.progress))
        module.metadata["awq"] = report.as_dict() | {"summary": report.summary()}


@register_pass("quantize-lm-head")
class QuantizeLMHead(_QuantizeLinears):
    """The lm_head linear -> quant.linear (group 32 by default, as the model card)."""

    group: int = option(32, "input channels sharing one scale and zero point", minimum=1)
    lm_head = True
