"""quantize-linear / quantize-lm-head: nn.linear -> quant.linear with packed group-quantized weights.

Weights become ``qtensor<out x in x u{bits}, group=G, scale=bf16, zero=u4>`` values
named like the Hugging Face module (``model.layers.0.self_attn.qkv_proj``); their data is
a :class:`aielower.quant.QuantizedWeight` (packed codes, bf16 scales, zero points), or
nothing on ``meta``. The input dimension must be a multiple of the group size.

``method=awq`` first runs AWQ (:mod:`aielower.passes.awq`): it tokenizes the calibration
text (``calib``, default the text in ``../shared/data/calibration/``) with ``tokenizer``
(default: the model the module was compiled from, when it was given by name), runs
``samples`` chunks of ``seqlen`` tokens through @prefill, and folds per-channel scales into
the weights; then it rounds as RTN does. The lm_head is never scaled.
"""

from __future__ import annotations

import dataclasses

from aielower.errors import CompileError
from aielower.ir import Module, QTensorType, Weight
from aielower.ir.dialects import nn, quant
from aielower.passes.base import ModulePass, Option, register_pass
from aielower.passes.rewriter import Rewriter
from aielower.quant import quantize_rtn


def is_lm_head(fn, op) -> bool:
    """The linear that produces a returned value (the logits)."""
    return any(v is op.result for v in fn.results)


class _QuantizeLinears(ModulePass):
    options = (
        Option("bits", int, 4, "bits per weight", choices=(2, 4, 8)),
        Option("group", int, 128, "input channels sharing one scale and zero point", minimum=1),
        Option("method", str, "rtn", "rtn: round to nearest", choices=("rtn",)),
    )
    lm_head: bool = False

    def prepare(self, module: Module) -> None:
        """Change the fp32 weights before rounding (AWQ); nothing for RTN."""

    def selects(self, fn, op) -> bool:
        return is_lm_head(fn, op) == self.lm_head

    def quantized_name(self, op) -> str:
        name = op.weight.name
        return "lm_head" if self.lm_head else name[: -len(".weight")] if name.endswith(".weight") else name

    def targets(self, module: Module) -> list:
        """(function, linear) pairs to quantize, checked before anything changes."""
        found = []
        for fn in module.functions.values():
            for op in [o for o in fn.ops if isinstance(o, nn.Linear) and self.selects(fn, o)]:
                w = op.weight
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

    def run(self, module: Module) -> None:
        self.targets(module)  # bad weights or group sizes fail before any calibration
        self.prepare(module)  # may erase dead linears
        targets = self.targets(module)
        for fn in module.functions.values():
            rw = Rewriter(module, fn)
            for op in [op for f, op in targets if f is fn]:
                w = op.weight
                out_f, in_f = w.type.shape
                qweight = rw.derived_weight(
                    ("quantize", self.method, self.bits, self.group, w.name), self.quantized_name(op),
                    lambda: (QTensorType((out_f, in_f), bits=self.bits, group=self.group),
                             None if w.data is None else quantize_rtn(w.data, bits=self.bits, group=self.group)),
                )
                rw.anchor = op
                new = rw.add(quant.QLinear(op.x, qweight, op.bias, bits=self.bits, group=self.group))
                rw.replace_op(op, [new])
        module.remove_unused_weights()


AWQ_OPTIONS = (
    Option("calib", str, "", "awq: calibration text file (default: ../shared/data/calibration/*.txt)", detail=True),
    Option("tokenizer", str, "", "awq: model name, directory or .gguf whose tokenizer reads calib (default: the model's)", detail=True),
    Option("samples", int, 128, "awq: calibration chunks", minimum=1, detail=True),
    Option("seqlen", int, 512, "awq: tokens per calibration chunk", minimum=1, detail=True),
    Option("clip", bool, False, "awq: also search the clipping range of each weight group", detail=True),
    Option("search_tokens", int, 4096, "awq: calibration tokens the output error is measured on", minimum=1, detail=True),
    Option("progress", bool, True, "awq: progress bar on stderr", detail=True),
)


@register_pass("quantize-linear")
class QuantizeLinear(_QuantizeLinears):
    """Every nn.linear but the lm_head -> quant.linear (w4 g128 by default; method=rtn or awq)."""

    options = tuple(
        dataclasses.replace(o, choices=("rtn", "awq"), help="rtn: round to nearest; awq: activation-aware scales, then rtn")
        if o.name == "method" else o for o in _QuantizeLinears.options
    ) + AWQ_OPTIONS

    def __init__(self, **values):
        super().__init__(**values)
        given = sorted(set(values) & {o.name for o in AWQ_OPTIONS})
        if self.method != "awq" and given:
            raise CompileError(f"pass '{self.name}': option(s) {', '.join(given)} apply to method=awq only "
                               f"(method is {self.method})")

    def spec(self) -> str:
        if self.method == "awq":
            return super().spec()
        awq = {o.name for o in AWQ_OPTIONS}
        return self.name + "{" + " ".join(f"{k}={v}" for k, v in self.values.items() if k not in awq) + "}"

    def calibration_tokens(self, module: Module):
        from aielower.data import default_calibration_file
        from aielower.frontend import load_tokenizer
        from aielower.quant.calibration import calibration_chunks

        source = self.tokenizer or module.metadata.get("source")
        if not source:
            raise CompileError(
                f"pass '{self.name}': method=awq tokenizes the calibration text, but no tokenizer is known for "
                f"{module.name!r}: give tokenizer=NAME_OR_DIR (QuantConfig(tokenizer=...)), or compile the model by "
                "name or directory"
            )
        path = self.calib or default_calibration_file()
        return calibration_chunks(path, load_tokenizer(source), self.samples, self.seqlen)

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

    options = tuple(dataclasses.replace(o, default=32) if o.name == "group" else o for o in _QuantizeLinears.options)
    lm_head = True
