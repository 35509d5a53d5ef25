"""AWQ search math (NumPy only): scales beat RTN where activations have outlier channels."""

from __future__ import annotations

import numpy as np
import pytest

from aielower.errors import IRError
from aielower.quant import quantize_rtn, rtn_dequantized
from aielower.quant.awq import OutputError, apply_clip, search_clip, search_scale


def outlier_activations(rng, tokens, channels, outliers=8, factor=30.0):
    """Gaussian activations with a few channels ``factor`` times larger, as LLM activations have."""
    x = rng.standard_normal((tokens, channels)).astype(np.float32)
    x[:, rng.choice(channels, outliers, replace=False)] *= factor
    return x


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_rtn_dequantized_is_the_quantize_rtn_round_trip(bits):
    rng = np.random.default_rng(bits)
    w = (rng.standard_normal((48, 256)) * rng.gamma(1.0, 1.0, (1, 256))).astype(np.float32)
    np.testing.assert_array_equal(rtn_dequantized(w, bits, 64), quantize_rtn(w, bits, 64).dequantize())


def test_output_error_by_gram_matrix_equals_the_direct_error():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((40, 32)).astype(np.float32)
    many, few = rng.standard_normal((100, 32)).astype(np.float32), rng.standard_normal((16, 32)).astype(np.float32)
    assert OutputError(many).gram is not None and OutputError(few).gram is None
    for x in (many, few):
        assert OutputError(x)(e) == pytest.approx(np.mean((x @ e.T) ** 2), rel=1e-5)


def test_scales_reduce_the_output_error_on_outlier_channels():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    x = outlier_activations(rng, 2048 + 512, 256)
    search, held_out = x[:2048], x[2048:]
    found = search_scale(w, search, np.abs(search).mean(0), bits=4, group=64)
    assert 0 < found.alpha < 1
    assert found.loss < 0.5 * found.rtn_loss  # measured: 0.32
    # The effect is real on rows the search never saw: quantize W * s, run x / s.
    rtn = rtn_dequantized(w, 4, 64)
    awq = quantize_rtn(w * found.scale, 4, 64).dequantize()
    exact = held_out @ w.T
    err_rtn = np.mean((held_out @ rtn.T - exact) ** 2)
    err_awq = np.mean(((held_out / found.scale) @ awq.T - exact) ** 2)
    assert err_awq < 0.5 * err_rtn


def test_alpha_zero_is_plain_rtn_and_the_search_keeps_the_best():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 128)).astype(np.float32)
    x = rng.standard_normal((300, 128)).astype(np.float32)  # no outliers: little to gain
    found = search_scale(w, x, np.abs(x).mean(0), bits=4, group=32)
    assert found.alphas[0] == 0 and found.losses[0] == found.rtn_loss
    assert found.rtn_loss == pytest.approx(np.mean((x @ (rtn_dequantized(w, 4, 32) - w).T) ** 2), rel=1e-4)
    assert found.loss == found.losses.min() <= found.rtn_loss


def test_tied_scales_are_shared_by_the_channels_of_one_parameter():
    rng = np.random.default_rng(3)
    heads, kv_heads, dim = 4, 2, 16
    channel = np.arange(heads * dim)
    tie = (channel // dim) // (heads // kv_heads) * dim + channel % dim
    w = rng.standard_normal((32, heads * dim)).astype(np.float32)
    x = outlier_activations(rng, 512, heads * dim, outliers=4)
    found = search_scale(w, x, np.abs(x).mean(0), group=32, tie=tie)
    assert found.param_scale.shape == (kv_heads * dim,)
    np.testing.assert_array_equal(found.scale, found.param_scale[tie])
    assert found.loss <= found.rtn_loss


def test_clip_search_never_increases_the_group_error_and_clips_within_range():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((96, 128)).astype(np.float32)
    w[rng.integers(0, 96, 20), rng.integers(0, 128, 20)] *= 8  # a few large weights stretch their groups
    x = rng.standard_normal((256, 128)).astype(np.float32)
    found = search_clip(w, x, bits=4, group=32, rows_per_block=40)
    assert found.error < found.rtn_error
    amax = np.abs(w.reshape(96, 4, 32)).max(-1)
    assert np.all(found.max_val <= amax) and np.all(found.max_val >= 0.5 * amax)
    clipped = apply_clip(w, found.max_val, 32)
    assert np.abs(clipped.reshape(96, 4, 32)).max(-1) == pytest.approx(found.max_val)


def test_bad_shapes_are_errors():
    with pytest.raises(IRError, match=r"AWQ needs W \[out, in\] and x \[tokens, in\]"):
        search_scale(np.ones((4, 8)), np.ones((3, 6)), np.ones(8))
    with pytest.raises(IRError, match=r"x_mean must be \[8\]"):
        search_scale(np.ones((4, 8)), np.ones((3, 8)), np.ones(6))
