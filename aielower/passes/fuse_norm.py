"""fuse-norm: the captured RMSNorm subgraph -> fused.rms_norm; residual add + RMSNorm -> fused.add_rms_norm.

Matched (as torch captures Qwen2RMSNorm)::

    %sq = nn.pow_scalar %x {value = 2}
    %ms = nn.mean %sq {dims = [-1], keepdim = true}
    %e  = nn.add_scalar %ms {value = eps}
    %r  = nn.rsqrt %e
    %n  = nn.mul %x, %r
    %y  = nn.mul @weight, %n          (either operand order)
"""

from __future__ import annotations

from aielower.ir.dialects import fused, nn
from aielower.passes.base import register_pass
from aielower.passes.rewriter import PatternPass, RewritePattern, defined_before, match_commutative, producer


def _split_mul(op: nn.Mul, first_cls):
    """(a, b) of a Mul with ``a`` produced by ``first_cls`` (either order), else None."""
    for a, b in match_commutative(op):
        if producer(a, first_cls) is not None:
            return a, b
    return None


class FuseRMSNorm(RewritePattern):
    root = nn.Mul

    def match_and_rewrite(self, op, rw):
        for normed, weight in match_commutative(op):
            n = producer(normed, nn.Mul)
            if n is None or weight.type.rank != 1:
                continue
            parts = _split_mul(n, nn.Rsqrt)
            if parts is None:
                continue
            rsqrt_value, x = parts
            e = producer(producer(rsqrt_value).x, nn.AddScalar)
            ms = producer(e.x, nn.Mean) if e is not None else None
            sq = producer(ms.x, nn.PowScalar) if ms is not None else None
            if sq is None or sq.x is not x or sq.value != 2 or not ms.keepdim:
                continue
            if tuple(d % x.type.rank for d in ms.dims) != (x.type.rank - 1,):
                continue
            if weight.type.shape != x.type.shape[-1:] or op.result.type != x.type:
                continue
            rw.replace_op(op, [rw.add(fused.RMSNorm(x, weight, eps=float(e.value)))])
            return


class FuseAddRMSNorm(RewritePattern):
    """rms_norm(a + b) -> add_rms_norm(a, b): one pass over the residual stream."""

    root = fused.RMSNorm

    def match_and_rewrite(self, op, rw):
        add = producer(op.x, nn.Add)
        if add is None or add.lhs.type != add.rhs.type or not defined_before(rw.fn, [op.weight], add):
            return
        # At the add's place: every user of the sum comes after it.
        both = rw.insert(fused.AddRMSNorm(add.lhs, add.rhs, op.weight, eps=op.eps), before=add)
        add.result.replace_all_uses_with(both.results[0])
        rw.replace_op(op, [both.results[1]])
        rw.erase(add)


@register_pass("fuse-norm")
class FuseNorm(PatternPass):
    """RMSNorm subgraphs -> fused.rms_norm / fused.add_rms_norm."""

    patterns = (FuseRMSNorm(), FuseAddRMSNorm())

