"""quantize-linear / quantize-lm-head: nn.linear -> quant.linear with packed group-quantized weights.

Weights become ``qtensor<out x in x u{bits}, group=G, scale=bf16, zero=u4>`` values
named like the Hugging Face module (``model.layers.0.self_attn.qkv_proj``); their data is
a :class:`aielower.quant.QuantizedWeight` (packed codes, bf16 scales, zero points), or
nothing on ``meta``. The input dimension must be a multiple of the group size.
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

    def selects(self, fn, op) -> bool:
        return is_lm_head(fn, op) == self.lm_head

    def quantized_name(self, op) -> str:
        name = op.weight.name
        return "lm_head" if self.lm_head else name[: -len(".weight")] if name.endswith(".weight") else name

    def run(self, module: Module) -> None:
        for fn in module.functions.values():
            rw = Rewriter(module, fn)
            for op in [o for o in fn.ops if isinstance(o, nn.Linear) and self.selects(fn, o)]:
                w = op.weight
                if not isinstance(w, Weight):
                    raise CompileError(
                        f"{self.name}: the weight of {op.name} in @{fn.name} is a run-time value ({w.type}), "
                        "not a module weight; only module weights can be quantized ahead of time"
                    )
                out_f, in_f = w.type.shape
                if in_f % self.group:
                    raise CompileError(
                        f"{self.name}: @{w.name} has {in_f} input features, not a multiple of group {self.group}; "
                        f"choose a group size that divides {in_f}"
                    )
                qweight = rw.derived_weight(
                    ("quantize", self.method, self.bits, self.group, w.name), self.quantized_name(op),
                    lambda: (QTensorType((out_f, in_f), bits=self.bits, group=self.group),
                             None if w.data is None else quantize_rtn(w.data, bits=self.bits, group=self.group)),
                )
                rw.anchor = op
                new = rw.add(quant.QLinear(op.x, qweight, op.bias, bits=self.bits, group=self.group))
                rw.replace_op(op, [new])
        module.remove_unused_weights()


@register_pass("quantize-linear")
class QuantizeLinear(_QuantizeLinears):
    """Every nn.linear but the lm_head -> quant.linear (w4 g128 by default)."""


@register_pass("quantize-lm-head")
class QuantizeLMHead(_QuantizeLinears):
    """The lm_head linear -> quant.linear (group 32 by default, as the model card)."""

    options = tuple(dataclasses.replace(o, default=32) if o.name == "group" else o for o in _QuantizeLinears.options)
    lm_head = True
