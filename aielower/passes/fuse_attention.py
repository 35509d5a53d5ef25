"""fuse-attention: rotary embedding + GQA key/value repetition + causal SDPA -> fused.attention.

Matched (as torch captures Qwen2Attention)::

    rope(x)   = nn.add(nn.mul(x, cos), nn.mul(tensor.concat(nn.neg(x[..., d/2:]), x[..., :d/2]), sin))
    repeat(x) = tensor.reshape(tensor.expand(tensor.reshape(x, [b, kv, 1, s, d]), [b, kv, n, s, d]), [b, kv*n, s, d])
    nn.sdpa(rope(q), repeat(rope(k)), repeat(v)) {causal = true}

and, for decode over a KV cache (``position`` the first new position, ``s`` new tokens)::

    cp   = nn.add(tensor.arange {end = ?s}, position)
    kc'  = tensor.index_copy(k_cache, cp, rope(k)) {dim = 2}       vc' likewise with v
    mask = tensor.reshape(nn.le(reshape(tensor.arange {end = max_len}), reshape(cp)))
    nn.sdpa(rope(q), repeat(kc'), repeat(vc'), mask)

which becomes ``fused.attention`` with the caches and position as operands and the new
caches as extra results.
"""

from __future__ import annotations

from aielower.ir.dialects import fused, nn, tensor
from aielower.passes.base import register_pass
from aielower.passes.rewriter import PatternPass, RewritePattern, defined_before, match_commutative, producer


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
    for a, b in match_commutative(add):
        m_cos, m_sin = producer(a, nn.Mul), producer(b, nn.Mul)
        if m_cos is None or m_sin is None:
            continue
        for rot, sin in match_commutative(m_sin):
            x = match_rotate_half(rot)
            if x is None:
                continue
            for x2, cos in match_commutative(m_cos):
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


def strip_reshapes(value):
    while (r := producer(value, tensor.Reshape)) is not None:
        value = r.x
    return value


def match_positions(value, length):
    """``position`` for ``arange(length) + position`` (position a [1] tensor), else None."""
    add = producer(value, nn.Add)
    if add is None:
        return None
    for a, b in match_commutative(add):
        ar = producer(a, tensor.Arange)
        if ar is not None and (ar.start, ar.step, ar.end) == (0, 1, length) and b.type.shape == (1,):
            return b
    return None


def match_visible(mask, positions, max_len) -> bool:
    """True for the mask ``arange(max_len)[None, :] <= positions[:, None]`` ([s, max_len],
    possibly reshaped to [1, 1, s, max_len])."""
    le = producer(strip_reshapes(mask), nn.Le)
    if le is None or strip_reshapes(le.rhs) is not positions:
        return False
    n = positions.type.shape[0]
    if le.result.type.shape != (n, max_len) or mask.type.shape[-2:] != (n, max_len):
        return False
    if le.lhs.type.shape != (1, max_len) or le.rhs.type.shape != (n, 1):
        return False
    keys = producer(strip_reshapes(le.lhs), tensor.Arange)
    return keys is not None and (keys.start, keys.step, keys.end) == (0, 1, max_len)


class FuseAttention(RewritePattern):
    root = nn.ScaledDotProductAttention

    def __init__(self, rope_theta: float = 0.0):
        self.rope_theta = rope_theta

    def match_and_rewrite(self, op, rw):
        if op.mask is None and op.causal:
            self.rewrite_prefill(op, rw)
        elif op.mask is not None:
            self.rewrite_cached(op, rw)

    def attrs(self, op, q, k):
        return dict(heads=q.type.shape[1], kv_heads=k.type.shape[1], head_dim=q.type.shape[3],
                    scale=op.scale, rope_theta=self.rope_theta, causal=True)

    def rewrite_prefill(self, op, rw):
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
        out = rw.add(fused.Attention(q, k, v, cos, sin, **self.attrs(op, q, k)))
        rw.replace_op(op, [out])

    def rewrite_cached(self, op, rw):
        q_rope = match_rope(op.q)
        k_full, n_k = match_repeat_kv(op.k)
        v_full, n_v = match_repeat_kv(op.v)
        kc, vc = producer(k_full, tensor.IndexCopy), producer(v_full, tensor.IndexCopy)
        if q_rope is None or kc is None or vc is None or n_k != n_v or kc.index is not vc.index:
            return
        if kc.dim % 4 != 2 or vc.dim % 4 != 2:
            return
        k_rope = match_rope(kc.src)
        position = match_positions(kc.index, op.q.type.shape[2])
        if k_rope is None or position is None:
            return
        q, cos, sin = q_rope
        k, k_cos, k_sin = k_rope
        if (k_cos, k_sin) != (cos, sin) or cos.type.rank != 4:
            return
        if not match_visible(op.mask, kc.index, kc.x.type.shape[2]):
            return
        first = min(kc, vc, key=rw.fn.ops.order_of)  # every user of the new caches comes after it
        if not defined_before(rw.fn, [q, k, vc.src, cos, sin, kc.x, vc.x, position], first):
            return
        fused_op = rw.insert(
            fused.Attention(q, k, vc.src, cos, sin, kc.x, vc.x, position, **self.attrs(op, q, k)), before=first
        )
        out, new_k, new_v = fused_op.results
        kc.result.replace_all_uses_with(new_k)
        vc.result.replace_all_uses_with(new_v)
        rw.replace_op(op, [out])


@register_pass("fuse-attention")
class FuseAttentionPass(PatternPass):
    """Rotary + GQA repeat + causal SDPA -> fused.attention."""

    def patterns_for(self, module):
        return (FuseAttention(rope_theta=float(module.attribute("rope_theta", (int, float), 0.0))),)
