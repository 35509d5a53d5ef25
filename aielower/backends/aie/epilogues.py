"""fuse-aie-epilogues: give the AIE linear kernels the elementwise op that follows them, so it needs no launch.

A target pass (it lives with the AIE backend, like ``plan-aie-tiling``, and runs before it in the ``aie``
pipeline). It rewrites ``fused.silu_mul(linear(x, W))``, where the plain linear with a quantized weight has no
other user, into one ``fused.linear_silu_mul(x, W)``: the gated-MLP activation becomes the epilogue of the
gate/up projection. The ``linear_w4`` GEMV and GEMM then compute ``silu(g) * u`` when they store an output tile
(whose rows are half gate rows, half the matching up rows: the pre-tiled weight interleaves them), so a decode step
has one launch, one device configuration and one DDR round trip of the ``2 x intermediate`` activation less per
decoder layer. The numerics are unchanged: the store rounds ``g`` and ``u`` to bf16 first, as the separate
``silu_mul`` kernel read them from DDR.

Left alone (and still run as a ``silu_mul`` launch): a ``fused.silu_mul`` whose input is not a plain linear, a
linear whose output something else also reads, a linear with a dense weight (it runs on the host), and a linear
whose weight another op reads unfused (one pre-tiled blob per weight: its rows are interleaved or they are not).
"""

from __future__ import annotations

from aielower.ir import QTensorType
from aielower.ir.dialects import fused, nn
from aielower.passes.base import register_pass
from aielower.passes.rewriter import PatternPass, RewritePattern, producer, single_user


def _gated(linear) -> bool:
    """``linear`` is a plain linear whose only user is a ``fused.silu_mul``."""
    return (isinstance(linear, nn.LinearBase) and single_user(linear.result)
            and isinstance(linear.result.users[0], fused.SiluMul))


class SiluMulIntoLinear(RewritePattern):
    root = fused.SiluMul

    def match_and_rewrite(self, op, rw):
        linear = producer(op.x, nn.LinearBase)
        if linear is None or not _gated(linear):
            return
        weight = linear.weight
        if not isinstance(weight.type, QTensorType):
            return  # a dense linear runs on the host; the silu_mul stays a kernel of its own
        # The kernels read the fused op's weight with its gate and up rows interleaved: one blob per weight, so every
        # linear reading it must be fused too (the same weight in another function's gated MLP is).
        if not all(isinstance(u, fused.LinearSiluMul) or _gated(u) for u in weight.users):
            return
        fused_op = fused.LinearSiluMul(linear.x, weight, linear.bias)
        rw.replace_op(op, [rw.add(fused_op)])
        rw.erase(linear)


@register_pass("fuse-aie-epilogues")
class FuseAieEpilogues(PatternPass):
    """quant.linear + fused.silu_mul -> fused.linear_silu_mul (the AIE linear kernels compute the activation)."""

    patterns = (SiluMulIntoLinear(),)
