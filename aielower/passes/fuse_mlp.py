"""fuse-mlp: silu(x @ Wg^T) * (x @ Wu^T) -> fused.silu_mul(x @ [Wg; Wu]^T)."""

from __future__ import annotations

from aielower.ir import Weight
from aielower.ir.dialects import fused, nn
from aielower.passes.base import register_pass
from aielower.passes.naming import fused_weight_name
from aielower.passes.rewriter import PatternPass, RewritePattern, match_commutative, producer, single_user


class FuseGatedMLP(RewritePattern):
    root = nn.Mul

    def match_and_rewrite(self, op, rw):
        for act, up_value in match_commutative(op):
            silu = producer(act, nn.Silu)
            gate = producer(silu.x, nn.Linear) if silu is not None else None
            up = producer(up_value, nn.Linear)
            if gate is None or up is None or gate.x is not up.x or gate.bias is not None or up.bias is not None:
                continue
            if not (single_user(act) and single_user(silu.x) and single_user(up_value)):
                continue
            if gate.out_features != up.out_features:
                continue
            if not (isinstance(gate.weight, Weight) and isinstance(up.weight, Weight)):
                continue  # only module weights can be concatenated
            if gate.weight.type.dtype != up.weight.type.dtype:
                continue
            names = [gate.weight.name, up.weight.name]
            weight = rw.concat_weights([gate.weight, up.weight], fused_weight_name(names, "gate_up_proj"))
            gate_up = rw.add(nn.Linear(gate.x, weight))
            rw.replace_op(op, [rw.add(fused.SiluMul(gate_up))])
            return


@register_pass("fuse-mlp")
class FuseMLP(PatternPass):
    """Gate and up linears + SiLU * mul -> one linear + fused.silu_mul."""

    patterns = (FuseGatedMLP(),)
