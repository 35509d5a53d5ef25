"""fuse-qkv: the q, k and v linears reading one value -> one linear and a split."""

from __future__ import annotations

from aielower.ir import Weight
from aielower.ir.dialects import nn, tensor
from aielower.passes.base import register_pass
from aielower.passes.naming import fused_weight_name
from aielower.passes.rewriter import PatternPass, RewritePattern, op_users


class FuseQKV(RewritePattern):
    root = nn.Linear

    def match_and_rewrite(self, op, rw):
        siblings = op_users(op.x, nn.Linear)
        if len(siblings) != 3 or op is not siblings[0] or any(s.x is not op.x for s in siblings):
            return
        if len({s.bias is None for s in siblings}) != 1:
            return
        params = [s.weight for s in siblings] + [s.bias for s in siblings if s.bias is not None]
        if not all(isinstance(p, Weight) for p in params) or len({p.type.dtype for p in params}) != 1:
            return  # only module weights can be concatenated
        names = [s.weight.name for s in siblings]
        weight = rw.concat_weights([s.weight for s in siblings], fused_weight_name(names, "qkv_proj"))
        bias = None
        if siblings[0].bias is not None:
            bias = rw.concat_weights([s.bias for s in siblings], fused_weight_name([s.bias.name for s in siblings], "qkv_proj"))
        first = min(siblings, key=rw.fn.ops.order_of)  # every use of q, k, v comes after it
        qkv = rw.add(nn.Linear(op.x, weight, bias), before=first)
        parts = rw.insert(tensor.Split(qkv, dim=-1, sizes=[s.out_features for s in siblings]), before=first)
        for s, part in zip(siblings, parts.results):
            rw.replace_op(s, [part])


@register_pass("fuse-qkv")
class FuseQKVPass(PatternPass):
    """q, k, v linears on one input -> one linear [q; k; v] + tensor.split."""

    patterns = (FuseQKV(),)
