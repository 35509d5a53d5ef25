"""What every op computes, as NumPy functions registered per op class with :func:`~aielower.interp.impl`.

The one statement of op semantics: the reference backend's generated module calls these functions, the
:class:`~aielower.interp.Interpreter` (AWQ calibration, analyses) runs them op by op, and the AIE emulator runs the
host ops with them. Operands come positionally (a variadic operand as a list), attributes as keywords, in the order
the op declares them; a symbolic dim attribute arrives as its run-time size. Ops whose results alias an operand
declare it with a trait (``ViewOf``, ``WritesInPlace``; aielower.ir.core), and an executor passes a copy of an
operand written in place when the old contents are still read.

A :class:`~aielower.ir.core.LinearLike` op's implementation is its *epilogue*: it receives the linear's output
``y = x @ W^T + bias`` first, then the op's other operands, then its attributes. Executors compute ``y``
themselves (:func:`linear` on the dense or dequantized weight, or the NPU), so an op that absorbs a linear keeps
its quantization and NPU placement. ``nn.linear`` and ``quant.linear`` have :func:`no_epilogue`.
"""

from __future__ import annotations

import numpy as np

from aielower.interp.registry import impl
from aielower.ir.dialects import fused, nn, quant, tensor
from aielower.ir.types import DTYPES as _IR_DTYPES

DTYPES = {name: getattr(np, np_name) for name, np_name in _IR_DTYPES.items() if np_name is not None}


def linear(x, weight, bias=None):
    """y = x @ weight^T + bias, as one GEMM over all leading dims (weight is [out, in]).

    The linear part of every LinearLike op; a quantized weight arrives dequantized (w = (q - zero) * scale,
    dequantized once by the executor), so this is also the quantized program's arithmetic.
    """
    y = np.reshape(x, (-1, x.shape[-1])) @ weight.T
    if bias is not None:
        y += bias
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def no_epilogue(y, **attributes):
    """The epilogue of a plain linear: its result is the linear's output. Executors recognise this function and
    skip the call."""
    return y


impl(nn.Linear)(no_epilogue)
impl(quant.QLinear)(no_epilogue)


@impl(fused.AddRMSNorm)
def fused_add_rms_norm(x, residual, weight, eps):
    """(x + residual, rms_norm(x + residual))"""
    total = np.add(x, residual)
    return total, fused_rms_norm(total, weight, eps)


@impl(fused.Attention)
def fused_attention(q, k, v, cos, sin, k_cache=None, v_cache=None, position=None, *,
                    heads, kv_heads, head_dim, scale, rope_theta=0.0, causal=True,
                    rope_rounding=None):
    """Rotary on q and k, key/value heads repeated heads/kv_heads times, then causal SDPA.

    With a cache: rope(k) and v are written into the caches (in place; code generation
    passes copies when the caller still reads them) at position..position+s-1 and q
    attends to the first position+s cache entries.
    ``rope_rounding`` (AIE numerics: the bf16 rounding) is applied to rope(q) and rope(k),
    which the NPU computes in a kernel of its own; the caches then receive only bf16 values.
    """

    def rope(x):
        half = head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        out = x * cos
        rotated *= sin
        out += rotated
        return out if rope_rounding is None else rope_rounding(out)

    n_rep = heads // kv_heads
    k = rope(k)
    offset = 0 if causal else None
    if k_cache is not None:
        start = int(position[0])
        stop = start + q.shape[2]
        if stop > k_cache.shape[2]:
            raise ValueError(f"KV cache overflow: positions up to {stop} but the cache holds {k_cache.shape[2]}")
        k_cache[:, :, start:stop] = k
        v_cache[:, :, start:stop] = v
        k, v, offset = k_cache[:, :, :stop], v_cache[:, :, :stop], start
    if n_rep > 1:
        k = np.repeat(k, n_rep, axis=1)
        v = np.repeat(v, n_rep, axis=1)
    out = _attend(rope(q), k, v, scale, offset=offset)
    return out if k_cache is None else (out, k_cache, v_cache)


@impl(fused.RMSNorm)
def fused_rms_norm(x, weight, eps):
    """weight * (x / sqrt(mean(x^2, -1) + eps)), in the order Qwen2RMSNorm computes it."""
    mean_square = np.mean(np.square(x), axis=-1, keepdims=True)
    mean_square += x.dtype.type(eps)
    return weight * (x * np.reciprocal(np.sqrt(mean_square)))


@impl(fused.SiluMul)
@impl(fused.LinearSiluMul)  # the epilogue: it receives the linear's output
def fused_silu_mul(x):
    """silu(x[..., :n]) * x[..., n:] for the fused gate/up projection."""
    n = x.shape[-1] // 2
    out = nn_silu(x[..., :n])
    out *= x[..., n:]
    return out


@impl(nn.Add)
def nn_add(lhs, rhs):
    return np.add(lhs, rhs)


@impl(nn.AddScalar)
def nn_add_scalar(x, value):
    return x + value


@impl(nn.Cos)
def nn_cos(x):
    return np.cos(x)


@impl(nn.Div)
def nn_div(lhs, rhs):
    return np.divide(lhs, rhs)


@impl(nn.DivScalar)
def nn_div_scalar(x, value):
    return x / value


@impl(nn.Embedding)
def nn_embedding(ids, table):
    """Rows of table picked by ids."""
    return np.take(table, ids, axis=0)


@impl(nn.Exp)
def nn_exp(x):
    return np.exp(x)


@impl(nn.Le)
def nn_le(lhs, rhs):
    return np.less_equal(lhs, rhs)


@impl(nn.Mean)
def nn_mean(x, dims, keepdim=False):
    return np.mean(x, axis=tuple(dims), keepdims=keepdim)


@impl(nn.Mul)
def nn_mul(lhs, rhs):
    return np.multiply(lhs, rhs)


@impl(nn.MulScalar)
def nn_mul_scalar(x, value):
    return x * value


@impl(nn.Neg)
def nn_neg(x):
    return np.negative(x)


@impl(nn.PowScalar)
def nn_pow_scalar(x, value):
    return np.square(x) if value == 2 else np.power(x, value)


@impl(nn.Rsqrt)
def nn_rsqrt(x):
    return np.reciprocal(np.sqrt(x))


@impl(nn.ScaledDotProductAttention)
def nn_sdpa(q, k, v, mask=None, scale=1.0, causal=False):
    """softmax(q @ k^T * scale [+ mask]) @ v on [batch, heads, seq, head_dim].

    causal: query i sees keys j <= i. mask: boolean, true where a key is visible.
    """
    if mask is not None:
        scores = np.matmul(q, np.swapaxes(k, -1, -2))
        scores *= q.dtype.type(scale)
        scores = np.where(mask, scores, q.dtype.type(-np.inf))
        return np.matmul(_softmax_rows(scores), v)
    return _attend(q, k, v, scale, offset=0 if causal else None)


def _attend(q, k, v, scale, offset=None, block=128):
    """Attention of q against k, v; with ``offset``, query i sees keys j <= offset + i.

    Causal attention runs in blocks of ``block`` queries, each against only the keys it
    can see, so the masked part of the scores is never computed.
    """
    n_q, n_k = q.shape[-2], k.shape[-2]
    k_t = np.swapaxes(k, -1, -2)
    if offset is None:
        return np.matmul(_softmax_rows(np.matmul(q, k_t) * q.dtype.type(scale)), v)
    out = np.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)
    upper = np.triu(np.full((block, block), -np.inf, dtype=q.dtype), 1)
    for start in range(0, n_q, block):
        stop = min(start + block, n_q)
        seen = min(offset + stop, n_k)
        scores = np.matmul(q[..., start:stop, :], k_t[..., :seen])
        scores *= q.dtype.type(scale)
        diagonal = offset + start  # first key column that only some queries of the block see
        if seen > diagonal:
            scores[..., diagonal:seen] += upper[: stop - start, : seen - diagonal]
        out[..., start:stop, :] = np.matmul(_softmax_rows(scores), v[..., :seen, :])
    return out


def _softmax_rows(scores):
    scores -= np.max(scores, axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= np.sum(scores, axis=-1, keepdims=True)
    return scores


@impl(nn.Silu)
def nn_silu(x):
    """x * sigmoid(x), with sigmoid = 0.5 + 0.5 tanh(x / 2) so that it cannot overflow."""
    y = np.multiply(x, x.dtype.type(0.5))
    np.tanh(y, out=y)
    y *= x.dtype.type(0.5)
    y += x.dtype.type(0.5)
    y *= x
    return y


@impl(nn.Sin)
def nn_sin(x):
    return np.sin(x)


@impl(nn.Softmax)
def nn_softmax(x, dim):
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


@impl(nn.Sqrt)
def nn_sqrt(x):
    return np.sqrt(x)


@impl(nn.Sub)
def nn_sub(lhs, rhs):
    return np.subtract(lhs, rhs)


@impl(tensor.Arange)
def tensor_arange(end, start=0, step=1, dtype="i64"):
    return np.arange(start, end, step, dtype=DTYPES[dtype])


@impl(tensor.Cast)
def tensor_cast(x, dtype):
    return x.astype(DTYPES[dtype])


@impl(tensor.Concat)
def tensor_concat(inputs, dim):
    return np.concatenate(inputs, axis=dim)


@impl(tensor.Expand)
def tensor_expand(x, shape):
    return np.broadcast_to(x, shape)


@impl(tensor.IndexCopy)
def tensor_index_copy(x, index, src, dim):
    """x with slices index[i] along dim replaced by src's. Writes into x: code generation
    passes a copy when x is still read after this op."""
    target = [slice(None)] * x.ndim
    index = np.asarray(index)
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        target[dim] = slice(int(index[0]), int(index[0]) + index.size)  # contiguous: a plain slice write
    else:
        target[dim] = index
    x[tuple(target)] = src
    return x


@impl(tensor.Permute)
def tensor_permute(x, perm):
    return np.transpose(x, perm)


@impl(tensor.Reshape)
def tensor_reshape(x, shape):
    return np.reshape(x, shape)


@impl(tensor.Slice)
def tensor_slice(x, dim, end, start=0, step=1):
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, end, step)
    return x[tuple(index)]


@impl(tensor.Split)
def tensor_split(x, dim, sizes):
    return np.split(x, np.cumsum(sizes)[:-1], axis=dim)


@impl(tensor.Transpose)
def tensor_transpose(x, dim0, dim1):
    return np.swapaxes(x, dim0, dim1)
