"""Group-wise quantization math: bf16 rounding, bit packing, RTN codes and their error bound."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from aielower.errors import IRError
from aielower.quant import (
    QuantizedWeight,
    bf16_bits,
    from_bf16_bits,
    pack,
    quantize_rtn,
    quantize_with_scales,
    round_to_bf16,
    unpack,
)

F32_EPS = float(np.finfo(np.float32).eps)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# bf16


def torch_bf16(x: np.ndarray) -> np.ndarray:
    """Independent reference: torch's float32 -> bfloat16 -> float32 conversion."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).float().numpy()


def test_bf16_bits_round_trip_over_all_patterns():
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    values = from_bf16_bits(bits)
    assert values.dtype == np.float32
    nan = np.isnan(values)
    assert nan.sum() == 2 * (2**7 - 1)  # exponent all ones, nonzero mantissa, both signs
    np.testing.assert_array_equal(bf16_bits(values)[~nan], bits[~nan])
    # bf16-representable values are left exactly as they are (compare bit patterns, so -0.0 counts).
    np.testing.assert_array_equal(round_to_bf16(values)[~nan].view(np.uint32), values[~nan].view(np.uint32))
    assert np.isnan(round_to_bf16(values[nan])).all()


def test_round_to_bf16_ties_to_even():
    one = np.float32(1.0)
    half_ulp = np.float32(2.0**-8)  # bf16 keeps 7 mantissa bits: ulp(1) = 2**-7
    tie_down = one + half_ulp  # halfway between 1 (even) and 1 + 2**-7 (odd)  -> 1
    tie_up = one + 3 * half_ulp  # halfway between 1 + 2**-7 (odd) and 1 + 2**-6 (even) -> 1 + 2**-6
    above_tie = one + half_ulp + np.float32(2.0**-23)  # just above a tie -> rounds up
    x = np.array([tie_down, tie_up, above_tie, -tie_down, -tie_up], dtype=np.float32)
    expected = np.array([1.0, 1.0 + 2**-6, 1.0 + 2**-7, -1.0, -(1.0 + 2**-6)], dtype=np.float32)
    np.testing.assert_array_equal(round_to_bf16(x), expected)
    np.testing.assert_array_equal(round_to_bf16(x), torch_bf16(x))
    assert bf16_bits(np.float32(1.0)) == 0x3F80


def test_round_to_bf16_matches_torch_on_random_bit_patterns():
    patterns = rng(1).integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    x = patterns.view(np.float32)
    x = x[~np.isnan(x)]
    extremes = np.array([3.4e38, -3.4e38, np.finfo(np.float32).max, np.inf, -np.inf, 1e-45, 0.0], np.float32)
    x = np.concatenate([x, extremes])
    got, want = round_to_bf16(x), torch_bf16(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_round_to_bf16_keeps_nan_nan():
    # A signalling NaN whose payload sits only in the dropped low bits must not round to inf.
    snan = np.array([0x7F800001, 0xFF800001, 0x7FC00000], dtype=np.uint32).view(np.float32)
    assert np.isnan(round_to_bf16(snan)).all()


# ---------------------------------------------------------------------------------------------
# packing


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pack_unpack_round_trip(bits):
    codes = rng(bits).integers(0, 2**bits, size=(7, 64), dtype=np.uint8)
    packed = pack(codes, bits)
    assert packed.dtype == np.uint8 and packed.shape == (7, 64 * bits // 8)
    np.testing.assert_array_equal(unpack(packed, bits, 64), codes)


def test_pack_byte_order_is_little_endian():
    np.testing.assert_array_equal(pack(np.array([[1, 2, 3, 4]], np.uint8), 4), [[0x21, 0x43]])
    np.testing.assert_array_equal(pack(np.array([[1, 2, 3, 0, 3, 3, 0, 1]], np.uint8), 2), [[0b00111001, 0b01001111]])
    np.testing.assert_array_equal(pack(np.array([[7, 200]], np.uint8), 8), [[7, 200]])
    np.testing.assert_array_equal(unpack(np.array([[0x21, 0x43]], np.uint8), 4, 4), [[1, 2, 3, 4]])


@pytest.mark.parametrize("bits", [0, 1, 3, 16])
def test_pack_rejects_bad_bits(bits):
    with pytest.raises(IRError, match=f"bits must be one of 2, 4, 8 for packing, got {bits}"):
        pack(np.zeros((2, 8), np.uint8), bits)
    with pytest.raises(IRError, match="bits must be one of"):
        unpack(np.zeros((2, 8), np.uint8), bits, 16)


def test_pack_rejects_bad_codes_and_shapes():
    with pytest.raises(IRError, match="cannot pack code 16 into 4 bits"):
        pack(np.array([[16, 0]], np.uint8), 4)
    with pytest.raises(IRError, match="multiple of 2"):
        pack(np.zeros((2, 3), np.uint8), 4)
    with pytest.raises(IRError, match="does not hold 8 4-bit codes per row"):
        unpack(np.zeros((2, 3), np.uint8), 4, 8)


# ---------------------------------------------------------------------------------------------
# RTN against a plain statement of the formula


def reference_rtn(w: np.ndarray, bits: int, group: int, include_zero: bool = False):
    """The convention written out with loops: per (row, group), then per element."""
    out, inp = w.shape
    n_groups = inp // group
    maxq = np.float32(2**bits - 1)
    codes = np.zeros((out, inp), np.uint8)
    scales = np.zeros((out, n_groups), np.float32)
    zeros = np.zeros((out, n_groups), np.uint8)
    for r in range(out):
        for g in range(n_groups):
            x = w[r, g * group : (g + 1) * group]
            wmax, wmin = x.max(), x.min()
            if include_zero:
                wmax, wmin = max(wmax, np.float32(0)), min(wmin, np.float32(0))
            scale = max(wmax - wmin, np.float32(1e-5)) / maxq
            scale = np.float32(torch_bf16(np.array([scale]))[0])
            zero = np.clip(np.round(-wmin / scale), 0, maxq)
            scales[r, g], zeros[r, g] = scale, zero
            for i in range(group):
                q = np.round(x[i] / scale) + zero
                codes[r, g * group + i] = min(max(q, 0), maxq)
    return codes, scales, zeros


def awkward_weight(shape, seed: int) -> np.ndarray:
    """Normal weights with outliers, plus a row entirely positive and one entirely negative."""
    w = rng(seed).standard_normal(shape).astype(np.float32)
    w[rng(seed + 1).random(shape) < 0.05] *= 30
    w[1] = np.abs(w[1]) + 0.5
    w[2] = -np.abs(w[2]) - 0.25
    return w


@pytest.mark.parametrize("group", [16, 32])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("include_zero", [False, True])
def test_quantize_rtn_matches_reference(group, bits, include_zero):
    w = awkward_weight((6, 64), seed=group + bits)
    qw = quantize_rtn(w, bits=bits, group=group, include_zero=include_zero)
    codes, scales, zeros = reference_rtn(w, bits, group, include_zero)
    assert qw.shape == (6, 64) and qw.bits == bits and qw.group == group and qw.n_groups == 64 // group
    assert qw.scales.dtype == np.float32 and qw.zeros.dtype == np.uint8
    assert np.array_equal(qw.codes, codes)
    assert np.array_equal(unpack(qw.packed, bits, 64), codes)
    assert np.array_equal(qw.zeros, zeros)
    assert np.array_equal(qw.scales, scales)
    assert np.array_equal(round_to_bf16(qw.scales), qw.scales)
    deq = (codes.astype(np.float32).reshape(6, -1, group) - zeros[..., None]) * scales[..., None]
    assert np.array_equal(qw.dequantize(), deq.reshape(6, 64))


def test_rtn_rounds_half_to_even():
    # Range 15 -> s = 1 exactly; -wmin / s = 6.5 -> z = 6; every w / s is a tie.
    w = np.array([[-6.5, 8.5, 0.5, 1.5, 2.5, -0.5, -2.5, 3.5]], np.float32)
    qw = quantize_rtn(w, bits=4, group=8)
    assert qw.scales[0, 0] == 1.0 and qw.zeros[0, 0] == 6
    np.testing.assert_array_equal(qw.codes, [[0, 14, 6, 8, 8, 6, 4, 10]])
    np.testing.assert_array_equal(qw.packed, [[0xE0, 0x86, 0x68, 0xA4]])
    np.testing.assert_array_equal(qw.dequantize(), [[-6, 8, 0, 2, 2, 0, -2, 4]])


def test_include_zero_changes_nothing_for_groups_that_straddle_zero():
    w = rng(3).standard_normal((16, 256)).astype(np.float32)
    a, b = quantize_rtn(w), quantize_rtn(w, include_zero=True)
    assert np.array_equal(a.packed, b.packed) and np.array_equal(a.scales, b.scales)
    assert np.array_equal(a.zeros, b.zeros)


def test_quantize_with_scales_reuses_rtn_scales():
    w = rng(4).standard_normal((8, 128)).astype(np.float32)
    qw = quantize_rtn(w, group=32)
    again = quantize_with_scales(w, qw.scales, qw.zeros, bits=4, group=32)
    assert np.array_equal(again.packed, qw.packed)
    # Scales are rounded to bf16 on the way in; narrower scales clip more codes.
    half = quantize_with_scales(w, qw.scales * 0.5 + 1e-4, qw.zeros, bits=4, group=32)
    assert np.array_equal(round_to_bf16(half.scales), half.scales)
    assert (half.codes == 15).sum() > (qw.codes == 15).sum()


def test_quantize_with_scales_rejects_bad_scales_and_zeros():
    w = np.zeros((2, 8), np.float32)
    ok = np.ones((2, 2), np.float32)
    with pytest.raises(IRError, match=r"must both be \[2, 2\]"):
        quantize_with_scales(w, np.ones((2, 3), np.float32), ok, bits=4, group=4)
    with pytest.raises(IRError, match="positive and finite"):
        quantize_with_scales(w, -ok, ok, bits=4, group=4)
    with pytest.raises(IRError, match=r"integers in \[0, 15\]"):
        quantize_with_scales(w, ok, ok * 16, bits=4, group=4)
    with pytest.raises(IRError, match=r"integers in \[0, 3\]"):
        quantize_with_scales(w, ok, ok * 1.5, bits=2, group=4)


# ---------------------------------------------------------------------------------------------
# error bound


def group_stats(w: np.ndarray, qw: QuantizedWeight):
    """Per-group float64 views: |w - deq| [out, n_groups, group], s, z, wmin, wmax, float tolerance."""
    shape = (w.shape[0], qw.n_groups, qw.group)
    g = w.astype(np.float64).reshape(shape)
    err = np.abs(g - qw.dequantize().astype(np.float64).reshape(shape))
    s, z = qw.scales.astype(np.float64), qw.zeros.astype(np.float64)
    wmin, wmax = g.min(-1), g.max(-1)
    # w / s and -wmin / s are computed in float32: a near-tie may round the other way, moving
    # the error by at most a few float32 ulps of |w|. (The dequantization itself is exact.)
    tol = 4 * F32_EPS * np.maximum(np.abs(wmin), np.abs(wmax))
    return err, s, z, wmin, wmax, tol


def test_dequantize_is_exact_in_float32():
    w = rng(5).standard_normal((32, 256)).astype(np.float32)
    qw = quantize_rtn(w, bits=8, group=64)
    codes = qw.codes.astype(np.float64).reshape(32, 4, 64)
    exact = (codes - qw.zeros[..., None]) * qw.scales[..., None].astype(np.float64)
    assert np.array_equal(qw.dequantize().astype(np.float64), exact.reshape(32, 256))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("kind", ["normal", "outliers"])
def test_rtn_error_is_half_a_step_plus_bf16_shortfall(bits, kind):
    """For groups with min(w) <= 0 <= max(w):  |w - deq| <= s/2 + max(0, (wmax - wmin) - maxq*s).

    s/2 alone does NOT hold: s is rounded to bf16, and when it rounds down the grid
    (maxq + 1 points s apart, bottom within s/2 of wmin) stops short of wmax by up to
    (wmax - wmin) - maxq*s <= maxq*s/256 (bf16 keeps 8 significant bits). So the tight
    per-group bound is the one above, and the uniform one is (1/2 + maxq/256) * s.
    """
    maxq = 2**bits - 1
    w = rng(bits).standard_normal((512, 256)).astype(np.float32) * 0.02
    if kind == "outliers":
        w[rng(7).random(w.shape) < 0.01] *= 40
    qw = quantize_rtn(w, bits=bits, group=64)
    err, s, _, wmin, wmax, tol = group_stats(w, qw)
    assert (wmin <= 0).all() and (wmax >= 0).all()  # precondition of the bound
    shortfall = np.maximum(0.0, (wmax - wmin) - maxq * s)
    assert (shortfall <= maxq * s / 256).all()
    assert (err <= (s / 2 + shortfall + tol)[..., None]).all()
    assert (err <= ((0.5 + maxq / 256) * s + tol)[..., None]).all()
    # ... and the extra term is really needed: some groups exceed half a step.
    assert (err.max(-1) > s / 2 + tol).any()


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("include_zero", [False, True])
def test_error_is_at_most_distance_to_the_grid(bits, include_zero):
    """For any group: |w - deq| <= max(s/2, wmax - (maxq - z)*s, -z*s - wmin).

    The codes are the nearest point of the grid {(k - z) * s : k = 0..maxq}, so the error is
    half a step inside the grid and the distance to its end outside. Groups entirely above or
    below zero (rows 1 and 2 of the awkward weight) leave the grid with the AWQ zero-point
    clip; include_zero keeps them within half a step plus the bf16 shortfall.
    """
    maxq = 2**bits - 1
    w = awkward_weight((64, 128), seed=bits)
    qw = quantize_rtn(w, bits=bits, group=32, include_zero=include_zero)
    err, s, z, wmin, wmax, tol = group_stats(w, qw)
    bound = np.maximum.reduce([s / 2, wmax - (maxq - z) * s, -z * s - wmin])
    assert (err <= (bound + tol)[..., None]).all()
    within = err.max(-1) <= (0.5 + maxq / 256) * s + tol  # the uniform bound of the test above
    straddling = np.ones(w.shape[0], bool)
    straddling[1:3] = False
    assert within[straddling].all()
    # Without include_zero the one-signed rows 1 and 2 fall outside; with it they do not.
    assert within[~straddling].all() == include_zero


def test_constant_groups():
    w = np.zeros((4, 64), np.float32)
    w[0, :32] = 0.75  # constant positive group
    w[1, 32:] = -2.5  # constant negative group
    w[2, :32] = 3e-6  # constant, smaller than the 1e-5 range floor
    with np.errstate(all="raise"):  # no division by zero or invalid values anywhere
        qw = quantize_rtn(w, bits=4, group=32)
        deq = qw.dequantize()
        qz = quantize_rtn(w, bits=4, group=32, include_zero=True)
        deqz = qz.dequantize()
    assert np.isfinite(deq).all() and (qw.scales > 0).all()
    # All-zero groups and tiny constants are represented (to half a step of a ~1e-5/15 scale).
    assert np.array_equal(deq[3], np.zeros(64, np.float32))
    assert np.array_equal(deq[0, 32:], np.zeros(32, np.float32))
    assert np.abs(deq[2, :32] - 3e-6).max() <= qw.scales[2, 0] / 2
    # AWQ convention: a constant c != 0 sits off the grid, which spans [-z*s, (15 - z)*s]
    # with s = bf16(1e-5 / 15); it dequantizes to the grid end nearest c, about +-1e-5.
    np.testing.assert_array_equal(deq[0, :32], 15 * qw.scales[0, 0])
    np.testing.assert_array_equal(deq[1, 32:], -15 * qw.scales[1, 1])
    # With include_zero the range is [min(c, 0), max(c, 0)]: c is the end of the grid,
    # reproduced up to the bf16 rounding of its scale (relative 2**-8).
    np.testing.assert_allclose(deqz, w, rtol=2**-8, atol=qz.scales.max() / 2)
    np.testing.assert_allclose(deqz[:2], w[:2], rtol=2**-8, atol=0)


# ---------------------------------------------------------------------------------------------
# errors, container, speed


def test_non_divisible_input_dimension_raises():
    msg = (
        r"cannot quantize a \[96, 100\] weight with group 128: the input dimension 100 "
        r"is not a multiple of the group size"
    )
    with pytest.raises(IRError, match=msg):
        quantize_rtn(np.zeros((96, 100), np.float32), bits=4, group=128)
    with pytest.raises(IRError, match=r"\[4, 48\] weight with group 32"):
        quantize_with_scales(np.zeros((4, 48), np.float32), np.ones((4, 1)), np.zeros((4, 1)), 4, 32)


@pytest.mark.parametrize("bits", [1, 3, 5, 16])
def test_bad_bits_raises(bits):
    with pytest.raises(IRError, match=f"bits must be one of 2, 4, 8 for packing, got {bits}"):
        quantize_rtn(np.zeros((4, 64), np.float32), bits=bits, group=32)


def test_bad_weights_raise():
    with pytest.raises(IRError, match="expected a 2-D"):
        quantize_rtn(np.zeros((4, 4, 32), np.float32), group=32)
    with pytest.raises(IRError, match="NaN or infinity"):
        quantize_rtn(np.full((2, 32), np.nan, np.float32), group=32)
    with pytest.raises(IRError, match="group size must be a positive integer"):
        quantize_rtn(np.zeros((2, 32), np.float32), group=0)


def test_quantized_weight_container():
    qw = quantize_rtn(rng(6).standard_normal((10, 256)).astype(np.float32), bits=4, group=64)
    assert qw.packed.shape == (10, 128) and qw.scales.shape == qw.zeros.shape == (10, 4)
    # 4-bit codes + 2-byte scales + 4-bit zeros: 10*128 + 2*40 + 40/2.
    assert qw.nbytes == 1280 + 80 + 20
    with pytest.raises(AttributeError):
        qw.bits = 8  # frozen
    with pytest.raises(IRError, match=r"QuantizedWeight.scales must be float32 \[10, 4\]"):
        QuantizedWeight(qw.packed, qw.scales.astype(np.float64), qw.zeros, 4, 64, (10, 256))
    with pytest.raises(IRError, match=r"QuantizedWeight.packed must be uint8 \[10, 128\]"):
        QuantizedWeight(qw.packed[:, :64], qw.scales, qw.zeros, 4, 64, (10, 256))
    with pytest.raises(IRError, match="must be \\(out, in\\)"):
        QuantizedWeight(qw.packed, qw.scales, qw.zeros, 4, 64, (10, 256, 1))


def test_qwen_sized_weight_is_fast():
    w = rng(8).standard_normal((4864, 896)).astype(np.float32) * 0.02
    t0 = time.perf_counter()
    qw = quantize_rtn(w, bits=4, group=128)
    t1 = time.perf_counter()
    deq = qw.dequantize()
    t2 = time.perf_counter()
    assert deq.shape == w.shape and deq.dtype == np.float32
    assert t1 - t0 < 1.0, f"quantize_rtn took {t1 - t0:.3f} s"
    assert t2 - t1 < 1.0, f"dequantize took {t2 - t1:.3f} s"
