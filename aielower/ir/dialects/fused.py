"""``fused`` dialect: the fused ops the pass pipeline forms (the model card's module tree)."""

from __future__ import annotations

from aielower.ir.core import LinearLike, Op, WritesInPlace, attr, op, operand, require, same_dtype, tensor_type


def _normed_type(op: Op):
    """The type of ``op.x``, checked against ``op.weight`` (one weight per channel of the last dim)."""
    x = tensor_type(op.x, op.name, "x")
    w = tensor_type(op.weight, op.name, "weight")
    require(w.shape == x.shape[-1:], f"{op.name}: weight {w} must match the last dim of x {x}")
    same_dtype(op, x, w)
    return x


@op("fused.rms_norm")
class RMSNorm(Op):
    """y = x / sqrt(mean(x^2, -1) + eps) * weight"""

    x = operand()
    weight = operand()
    eps = attr("float")

    def result_types(self):
        return [_normed_type(self)]


@op("fused.add_rms_norm")
class AddRMSNorm(Op):
    """sum = x + residual; normed = rms_norm(sum, weight, eps). Two results: (sum, normed)."""

    x = operand()
    residual = operand()
    weight = operand()
    eps = attr("float")

    def result_types(self):
        x = _normed_type(self)
        r = tensor_type(self.residual, self.name, "residual")
        require(x == r, f"{self.name}: x {x} and residual {r} must have the same type")
        return [x, x]


@op("fused.silu_mul")
class SiluMul(Op):
    """The gated-MLP activation on a fused gate/up projection: silu(x[..., :n]) * x[..., n:]."""

    x = operand()

    def result_types(self):
        x = tensor_type(self.x, self.name, "x")
        last = x.shape[-1]
        require(isinstance(last, int) and last % 2 == 0, f"{self.name}: last dim of {x} must be even")
        return [x.with_shape(x.shape[:-1] + (last // 2,))]


@op("fused.linear_silu_mul")
class LinearSiluMul(LinearLike, Op):
    """The fused gate/up projection with the gated-MLP activation as its epilogue: ``y = x @ W^T (+ bias)`` with
    ``W = [Wg; Wu]`` of shape [2n, in], result ``silu(y[..., :n]) * y[..., n:]`` [..., n]. ``fused.silu_mul`` of a
    plain linear, as one op, for backends whose linear kernels compute the activation before they store (the AIE
    pass ``fuse-aie-epilogues`` makes it)."""

    x = operand()
    weight = operand()
    bias = operand(optional=True)

    def result_types(self):
        y = self.linear_result_type()
        last = y.shape[-1]
        require(isinstance(last, int) and last % 2 == 0,
                f"{self.name}: the weight must have an even number of rows (gate rows, then as many up rows), "
                f"got {last}")
        return [y.with_shape(y.shape[:-1] + (last // 2,))]


@op("fused.attention")
class Attention(Op):
    """Causal multi-head attention with rotary embedding and grouped key/value heads.

    q [b, heads, s, d], k and v [b, kv_heads, s, d] (before rotary); cos and sin
    [1, 1, s, d] are the rotary tables of the positions. Computes
    rope(q), rope(k) with rope(x) = x*cos + rotate_half(x)*sin, repeats each key/value
    head heads/kv_heads times, then softmax(q k^T * scale + causal mask) v -> [b, heads, s, d].
    ``rope_theta`` records the base the tables were built with (0.0 when unknown).

    With a KV cache (``k_cache``, ``v_cache`` [b, kv_heads, max_len, d] and ``position``
    [1], all three or none): rope(k) and v are written into the caches at positions
    ``position .. position+s-1``, query i attends to cache entries j <= position + i,
    and the results are (out, new k_cache, new v_cache).
    """

    traits = (WritesInPlace({1: "k_cache", 2: "v_cache"}),)

    q = operand()
    k = operand()
    v = operand()
    cos = operand()
    sin = operand()
    k_cache = operand(optional=True)
    v_cache = operand(optional=True)
    position = operand(optional=True)
    heads = attr("int")
    kv_heads = attr("int")
    head_dim = attr("int")
    scale = attr("float")
    rope_theta = attr("float", 0.0)
    causal = attr("bool", True)

    def result_types(self):
        q, k, v = (tensor_type(getattr(self, n), self.name, n) for n in ("q", "k", "v"))
        cos, sin = tensor_type(self.cos, self.name, "cos"), tensor_type(self.sin, self.name, "sin")
        require(q.rank == k.rank == v.rank == 4, f"{self.name}: q, k, v must be 4-D [batch, heads, seq, head_dim]")
        require(q.shape[1] == self.heads and k.shape[1] == v.shape[1] == self.kv_heads,
                f"{self.name}: q has {q.shape[1]} heads, k/v {k.shape[1]}/{v.shape[1]}; attributes say {self.heads}/{self.kv_heads}")
        require(self.heads % self.kv_heads == 0, f"{self.name}: heads {self.heads} not a multiple of kv_heads {self.kv_heads}")
        require(q.shape[3] == k.shape[3] == v.shape[3] == self.head_dim and self.head_dim % 2 == 0,
                f"{self.name}: head dims of q, k, v must equal head_dim {self.head_dim} (even)")
        require(k.shape[2] == v.shape[2], f"{self.name}: key and value lengths differ")
        require(q.shape[0] == k.shape[0] == v.shape[0], f"{self.name}: batch of q, k, v differ")
        require(k.shape[2] == q.shape[2], f"{self.name}: q has {q.shape[2]} positions, the new k/v {k.shape[2]}")
        same_dtype(self, q, k, v, cos, sin)
        require(cos == sin and cos.rank == 4 and cos.shape[2:] == (q.shape[2], self.head_dim),
                f"{self.name}: cos/sin {cos} must be [1, 1, seq, head_dim] like q")
        cache = [self.k_cache, self.v_cache, self.position]
        if all(c is None for c in cache):
            return [q]
        require(all(c is not None for c in cache), f"{self.name}: give k_cache, v_cache and position together")
        kc, vc = tensor_type(self.k_cache, self.name, "k_cache"), tensor_type(self.v_cache, self.name, "v_cache")
        pos = tensor_type(self.position, self.name, "position")
        same_dtype(self, k, kc)
        require(kc == vc and kc.rank == 4 and kc.shape[1] == self.kv_heads and kc.shape[3] == self.head_dim
                and kc.shape[0] == k.shape[0], f"{self.name}: caches {kc}, {vc} must be [batch, kv_heads, max_len, head_dim]")
        require(pos.shape == (1,) and pos.dtype in ("i64", "i32"), f"{self.name}: position must be tensor<1xi64>, got {pos}")
        return [q, kc, vc]
