"""fuse-attention: rotary embedding + GQA key/value repetition + causal SDPA -> fused.attention.

Matched (as torch captures Qwen2Attention)::

    rope(x)   = nn.add(nn.mul(x, cos), nn.mul(tensor.concat(nn.neg(x[..., d/2:]), x[..., :d/2]), sin))
    repeat(x) = tensor.reshape(tensor.expand(tensor.reshape(x, [b, kv, 1, s, d]), [b, kv, n, s, d]), [b, kv*n, s, d])
    nn.sdpa(rope(q), repeat(rope(k)), repeat(v)) {causal = true}
"""

from __future__ import annotations

from aielower.ir.dialects import fused, nn, tensor
from aielower.passes.base import register_pass
from aielower.passes.rewriter import PatternPass, RewritePattern, producer


def _operand_pairs(op):
    return ((op.lhs, op.rhs), (op.rhs, op.lhs))


def match_rotate_half(value):
    """x for ``concat(neg(x[..., d/2:]), x[..., :d/2])``, else None."""
    cat = producer(value, tensor.Concat)
    if cat is None or len(cat.inputs) != 2 or cat.dim % value.type.rank != value.type.rank - 1:
        return None
    neg = producer(cat.inputs[0], nn.Neg)
    hi = producer(neg.x, tensor.Slice) if neg is not None else None
    lo = producer(cat.inputs[1], tensor.Slice)
    if hi is None or lo is None or hi.x is not lo.x:
        return None
    x = hi.x
    d = x.type.shape[-1]
    last = x.type.rank - 1
    ok = (
        isinstance(d, int)
        and hi.dim % x.type.rank == last == lo.dim % x.type.rank
        and (hi.start, hi.end, hi.step) == (d // 2, d, 1)
        and (lo.start, lo.end, lo.step) == (0, d // 2, 1)
    )
    return x if ok else None


def match_rope(value):
    """(x, cos, sin) for ``x * cos + rotate_half(x) * sin``, else None."""
    add = producer(value, nn.Add)
    if add is None:
        return None
    for a, b in _operand_pairs(add):
        m_cos, m_sin = producer(a, nn.Mul), producer(b, nn.Mul)
        if m_cos is None or m_sin is None:
            continue
        for rot, sin in _operand_pairs(m_sin):
            x = match_rotate_half(rot)
            if x is None:
                continue
            for x2, cos in _operand_pairs(m_cos):
                if x2 is x:
                    return x, cos, sin
    return None


def match_repeat_kv(value):
    """(x, n_rep) for the repeat_kv reshape/expand/reshape chain; (value, 1) when there is none."""
    outer = producer(value, tensor.Reshape)
    expand = producer(outer.x, tensor.Expand) if outer is not None else None
    inner = producer(expand.x, tensor.Reshape) if expand is not None else None
    if inner is None:
        return value, 1
    x = inner.x
    if x.type.rank != 4:
        return value, 1
    b, kv, s, d = x.type.shape
    n_rep = expand.shape[2]
    if inner.shape != (b, kv, 1, s, d) or expand.shape != (b, kv, n_rep, s, d) or outer.shape != (b, kv * n_rep, s, d):
        return value, 1
    return x, n_rep


class FuseAttention(RewritePattern):
    root = nn.ScaledDotProductAttention

    def __init__(self, rope_theta: float = 0.0):
        self.rope_theta = rope_theta

    def match_and_rewrite(self, op, rw):
        if not op.causal:
            return
        q_rope = match_rope(op.q)
        k_rot, n_k = match_repeat_kv(op.k)
        v, n_v = match_repeat_kv(op.v)
        k_rope = match_rope(k_rot)
        if q_rope is None or k_rope is None or n_k != n_v:
            return
        q, cos, sin = q_rope
        k, k_cos, k_sin = k_rope
        if (k_cos, k_sin) != (cos, sin) or cos.type.rank != 4:
            return
        heads, kv_heads, head_dim = q.type.shape[1], k.type.shape[1], q.type.shape[3]
        out = rw.add(
            fused.Attention(q, k, v, cos, sin, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                            scale=op.scale, rope_theta=self.rope_theta, causal=True)
        )
        rw.replace_op(op, [out])


@register_pass("fuse-attention")
class FuseAttentionPass(PatternPass):
    """Rotary + GQA repeat + causal SDPA -> fused.attention."""

    def patterns_for(self, module):
        return (FuseAttention(rope_theta=float(module.metadata.get("rope_theta", 0.0))),)
