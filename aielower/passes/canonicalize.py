"""canonicalize: remove no-op ops left by capture and fold chains of views."""

from __future__ import annotations

from aielower.ir.dialects import nn, tensor
from aielower.passes.base import register_pass
from aielower.passes.rewriter import PatternPass, RewritePattern, producer


class DropIdentityScalar(RewritePattern):
    """x * 1 and x + 0 (and x / 1) are x."""

    root = nn._Scalar

    def match_and_rewrite(self, op, rw):
        neutral = 0 if isinstance(op, nn.AddScalar) else 1 if isinstance(op, (nn.MulScalar, nn.DivScalar, nn.PowScalar)) else None
        if neutral is not None and op.value == neutral:
            rw.replace_op(op, [op.x])


class DropNoOpView(RewritePattern):
    """A reshape / expand / cast to the type it already has."""

    root = (tensor.Reshape, tensor.Expand, tensor.Cast)

    def match_and_rewrite(self, op, rw):
        if op.result.type == op.x.type:
            rw.replace_op(op, [op.x])


class FoldReshapeChain(RewritePattern):
    """reshape(reshape(x)) -> reshape(x)."""

    root = tensor.Reshape

    def match_and_rewrite(self, op, rw):
        inner = producer(op.x, tensor.Reshape)
        if inner is not None:
            rw.replace_op(op, [rw.add(tensor.Reshape(inner.x, shape=op.shape))])


class FoldTransposePair(RewritePattern):
    """transpose(transpose(x, a, b), a, b) -> x."""

    root = tensor.Transpose

    def match_and_rewrite(self, op, rw):
        inner = producer(op.x, tensor.Transpose)
        if inner is not None and {op.dim0 % op.x.type.rank, op.dim1 % op.x.type.rank} == {
            inner.dim0 % inner.x.type.rank,
            inner.dim1 % inner.x.type.rank,
        }:
            rw.replace_op(op, [inner.x])


@register_pass("canonicalize")
class Canonicalize(PatternPass):
    """Remove no-op scalars/views, fold reshape chains and transpose pairs."""

    patterns = (DropIdentityScalar(), DropNoOpView(), FoldReshapeChain(), FoldTransposePair())
