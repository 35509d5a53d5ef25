"""AWQ (activation-aware weight quantization) search math, NumPy only.

Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", 2023; the grid and the normalisation follow the AutoAWQ implementation.

Scale search. A group of linears reading one input ``x [tokens, in]`` is stacked into one
weight ``W [out, in]``. Scaling input channel ``c`` by ``s_c`` changes nothing before
quantization, ``y = (x / s) @ (W * s)^T``, but the quantization step of a group follows
its largest weights, so channels with large activations (large ``mean|x_c|``) lose less
when their weights are scaled up before rounding. For ``alpha`` in ``{0, 1/n, .., (n-1)/n}``::

    s = mean|x|^alpha, clamped below at 1e-4, divided by sqrt(max(s) * min(s))
    loss(alpha) = mean((x / s) @ deq(rtn(W * s))^T - x @ W^T)^2)       over sample rows of x

and the ``s`` of the smallest loss is kept. ``alpha = 0`` is ``s = 1``, plain RTN, so on
the rows it is measured on the search never does worse than RTN. The caller folds
``1 / s`` into whatever produces ``x`` and multiplies the columns of ``W`` by ``s``.

Tied scales. When one parameter must scale several channels (grouped-query attention:
one value head feeds ``heads / kv_heads`` query heads of ``o_proj``), ``tie[c]`` names the
parameter of channel ``c``; the statistic of a parameter is the mean of its channels' and
``s[c] = s_param[tie[c]]``.

Clip search. Per output row and quantization group, the weight range ``[-m, m]`` with
``m = max|w| * (1 - i / n)``, ``i = 0 .. n * max_shrink - 1``, that minimises the error of
that group's partial output ``x_g @ w_g`` after RTN; the weights are then clipped to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aielower.errors import IRError
from aielower.quant.groupwise import rtn_dequantized

SCALE_FLOOR = 1e-4


@dataclass(frozen=True)
class ScaleSearch:
    """The result of :func:`search_scale`.

    ``scale`` [in] multiplies the columns of W (and ``1/scale`` goes into the producer of
    x); ``param_scale`` is the same per tied parameter. ``losses[i]`` is the loss at
    ``alphas[i]``; ``rtn_loss`` is ``losses[0]`` (``s = 1``).
    """

    scale: np.ndarray
    param_scale: np.ndarray
    alpha: float
    loss: float
    rtn_loss: float
    alphas: np.ndarray
    losses: np.ndarray


def _check(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, x = np.asarray(w, dtype=np.float32), np.asarray(x, dtype=np.float32)
    if w.ndim != 2 or x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise IRError(f"AWQ needs W [out, in] and x [tokens, in]; got W {list(w.shape)}, x {list(x.shape)}")
    return w, x


def tied_statistic(x_mean: np.ndarray, tie: np.ndarray | None) -> np.ndarray:
    """Per-parameter mean of ``x_mean`` over the channels tied to each parameter."""
    x_mean = np.asarray(x_mean, dtype=np.float64)
    if tie is None:
        return x_mean
    counts = np.bincount(tie)
    if (counts == 0).any():
        raise IRError("every tied scale parameter needs at least one channel")
    return np.bincount(tie, weights=x_mean) / counts


def scales_for(param_stat: np.ndarray, alpha: float) -> np.ndarray:
    """``mean|x|^alpha`` clamped and normalised as AutoAWQ does (float32)."""
    s = np.power(np.maximum(param_stat, SCALE_FLOOR), alpha)
    s = np.maximum(s, SCALE_FLOOR)
    s = s / np.sqrt(s.max() * s.min())
    return s.astype(np.float32)


class OutputError:
    """``mean((x @ E^T)^2)`` for weight errors ``E`` [out, in] on fixed rows ``x`` [tokens, in].

    With fewer input channels than rows it uses the Gram matrix ``x^T x / tokens``
    (``mean_o E_o G E_o^T``: out * in^2 work instead of tokens * in * out); the two are
    the same number up to rounding.
    """

    def __init__(self, x: np.ndarray):
        self.x = x
        self.gram = (x.T @ x) / np.float32(x.shape[0]) if x.shape[1] < x.shape[0] else None

    def __call__(self, e: np.ndarray) -> float:
        if self.gram is not None:
            return float(np.einsum("oi,oi->", e @ self.gram, e, dtype=np.float64)) / e.shape[0]
        return float(np.mean(np.square(self.x @ e.T, dtype=np.float64)))


def search_scale(
    w: np.ndarray, x: np.ndarray, x_mean: np.ndarray, *, bits: int = 4, group: int = 128, n_grid: int = 20,
    tie: np.ndarray | None = None,
) -> ScaleSearch:
    """The per-input-channel scale of the smallest quantized output error (module docs).

    ``w`` [out, in]: the group's stacked weights; ``x`` [tokens, in]: sample rows of its
    input; ``x_mean`` [in]: ``mean|x|`` over all calibration tokens; ``tie`` [in] (optional):
    the scale parameter of each channel.
    """
    w, x = _check(w, x)
    if np.shape(x_mean) != (w.shape[1],):
        raise IRError(f"x_mean must be [{w.shape[1]}], got {list(np.shape(x_mean))}")
    if tie is not None and np.shape(tie) != (w.shape[1],):
        raise IRError(f"tie must be [{w.shape[1]}], got {list(np.shape(tie))}")
    if n_grid < 1:
        raise IRError(f"n_grid must be >= 1, got {n_grid}")
    stat = tied_statistic(x_mean, tie)
    loss_of = OutputError(x)
    alphas = np.arange(n_grid) / n_grid
    losses = np.empty(n_grid)
    best = None
    for i, alpha in enumerate(alphas):
        param = scales_for(stat, alpha)
        s = param if tie is None else param[tie]
        deq = rtn_dequantized(w * s, bits, group)
        deq /= s  # the effective weight: (x / s) @ deq^T == x @ (deq / s)^T
        deq -= w
        losses[i] = loss_of(deq)
        if best is None or losses[i] < losses[best[0]]:
            best = (i, param, s)
    i, param, s = best
    return ScaleSearch(s, param, float(alphas[i]), float(losses[i]), float(losses[0]), alphas, losses)


@dataclass(frozen=True)
class ClipSearch:
    """``max_val`` [out, n_groups]: clip each group to [-max_val, max_val]; errors summed over rows."""

    max_val: np.ndarray
    error: float
    rtn_error: float


def search_clip(
    w: np.ndarray, x: np.ndarray, *, bits: int = 4, group: int = 128, n_grid: int = 20, max_shrink: float = 0.5,
    rows_per_block: int = 4096,
) -> ClipSearch:
    """Per row and group, the clipping range with the smallest partial-output error (module docs)."""
    w, x = _check(w, x)
    out_f, in_f = w.shape
    if in_f % group:
        raise IRError(f"group {group} does not divide the input dimension {in_f}")
    n_groups = in_f // group
    # The error of a group's partial output, mean_t ((w_g - deq_g) . x_tg)^2, is e G_g e^T with
    # G_g = x_g^T x_g / tokens: one [group, group] Gram matrix per group, computed once.
    xg = np.ascontiguousarray(x.reshape(x.shape[0], n_groups, group).transpose(1, 0, 2))  # [groups, tokens, group]
    gram = np.matmul(xg.transpose(0, 2, 1), xg) / np.float32(x.shape[0])  # [groups, group, group]
    max_val = np.empty((out_f, n_groups), dtype=np.float32)
    total = rtn_total = 0.0
    steps = max(1, int(max_shrink * n_grid))
    for start in range(0, out_f, rows_per_block):
        wb = w[start:start + rows_per_block].reshape(-1, n_groups, group)  # [rows, groups, group]
        amax = np.abs(wb).max(axis=-1)  # [rows, groups]
        best_err = np.full(amax.shape, np.inf)
        best_max = amax.copy()
        for i in range(steps):
            m = amax * np.float32(1 - i / n_grid)
            clipped = np.clip(wb, -m[..., None], m[..., None])
            e = rtn_dequantized(clipped.reshape(-1, group), bits, group).reshape(wb.shape)
            e -= wb
            e = np.ascontiguousarray(e.transpose(1, 0, 2))  # [groups, rows, group]
            err = np.sum(np.matmul(e, gram) * e, axis=-1, dtype=np.float64).T  # [rows, groups]
            if i == 0:
                rtn_total += float(err.sum())
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_max = np.where(better, m, best_max)
        max_val[start:start + rows_per_block] = best_max
        total += float(best_err.sum())
    return ClipSearch(max_val, total, rtn_total)


def apply_clip(w: np.ndarray, max_val: np.ndarray, group: int) -> np.ndarray:
    """``w`` with each group clipped to ``[-max_val, max_val]`` (a new array)."""
    w = np.asarray(w, dtype=np.float32)
    g = w.reshape(w.shape[0], -1, group)
    m = np.asarray(max_val, dtype=np.float32)[..., None]
    return np.clip(g, -m, m).reshape(w.shape)
