"""Pre-tiled linear weights: exact bytes of a hand-built example, and pretile -> untile round trips."""

from __future__ import annotations

import numpy as np
import pytest

from aielower.backends.aie.weights import linear_tile_bytes, pretile_linear, tile_positions, untile_linear
from aielower.errors import CompileError
from aielower.quant.bf16 import round_to_bf16
from aielower.quant.groupwise import QuantizedWeight, quantize_rtn
from aielower.quant.packing import pack


def _weight(codes, scales, zeros, group) -> QuantizedWeight:
    codes = np.array(codes, dtype=np.uint8)
    return QuantizedWeight(pack(codes, 4), np.array(scales, np.float32), np.array(zeros, np.uint8), 4, group,
                           codes.shape)


def test_tile_bytes_count_every_part_and_pad_to_words():
    # bias 2*16 + codes 16*128/2 + scales 2*16*4 + zeros 16*4/2 = 32 + 1024 + 128 + 32
    assert linear_tile_bytes(16, 128, 32, True) == 1216
    assert linear_tile_bytes(16, 128, 32, False) == 1184
    # 2*2*2 + ... : tn=2, tk=4, g=2 -> codes 4, scales 8, zeros 2 (+ bias 4) = 18 -> 20; without bias 14 -> 16
    assert linear_tile_bytes(2, 4, 2, True) == 20
    assert linear_tile_bytes(2, 4, 2, False) == 16
    # an odd number of zero points takes a whole byte: tn=3, one group -> 2 bytes
    assert linear_tile_bytes(3, 32, 32, False) == (48 + 6 + 2 + 3) // 4 * 4


def test_hand_built_2x2_tiles_have_the_contract_bytes():
    """A [3, 6] weight, group 2, tiles of 2 x 4: padded to [4, 8], i.e. 2 x 2 tiles of 20 bytes."""
    w = _weight(
        codes=[[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], [13, 14, 15, 0, 1, 2]],
        scales=[[1.0, 2.0, 0.5], [0.25, 4.0, 1.0], [8.0, 1.0, 2.0]],
        zeros=[[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        group=2,
    )
    bias = np.array([1.0, -2.0, 0.5], np.float32)
    blob = pretile_linear(w, bias, n_pad=4, k_pad=8, tn=2, tk=4)
    expected = [
        # (nt 0, kt 0): bias 1.0 -2.0 | codes 1 2 3 4, 7 8 9 10 | scales 1 2, 0.25 4 | zeros 1 2 4 5 | pad
        0x80, 0x3F, 0x00, 0xC0, 0x21, 0x43, 0x87, 0xA9, 0x80, 0x3F, 0x00, 0x40, 0x80, 0x3E, 0x80, 0x40,
        0x21, 0x54, 0, 0,
        # (0, 1): bias only in kt == 0 | codes 5 6 pad pad, 11 12 pad pad | scales 0.5 0, 1 0 | zeros 3 0 6 0
        0, 0, 0, 0, 0x65, 0x00, 0xCB, 0x00, 0x00, 0x3F, 0, 0, 0x80, 0x3F, 0, 0, 0x03, 0x06, 0, 0,
        # (1, 0): bias 0.5, padded row 0 | codes 13 14 15 0, padded row | scales 8 1, 0 0 | zeros 7 8 0 0
        0x00, 0x3F, 0, 0, 0xED, 0x0F, 0, 0, 0x00, 0x41, 0x80, 0x3F, 0, 0, 0, 0, 0x87, 0x00, 0, 0,
        # (1, 1): no bias | codes 1 2 pad pad, padded row | scales 2 0, 0 0 | zeros 9 0 0 0
        0, 0, 0, 0, 0x21, 0x00, 0, 0, 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0x09, 0x00, 0, 0,
    ]
    assert blob.dtype == np.uint8 and blob.ndim == 1
    assert blob.tolist() == expected


@pytest.mark.parametrize(
    "n, k, group, tn, tk, n_pad, k_pad, with_bias",
    [
        (40, 256, 32, 16, 128, 48, 256, True),  # padded rows, 2 x 3 tiles
        (33, 160, 32, 11, 64, 44, 192, False),  # padded rows and a padded group of columns, odd zero count
        (64, 384, 128, 32, 128, 64, 384, True),  # no padding
        (7, 64, 64, 7, 64, 7, 64, False),  # one tile
    ],
)
def test_pretile_then_untile_gives_the_bf16_dequantized_weight(n, k, group, tn, tk, n_pad, k_pad, with_bias):
    rng = np.random.default_rng(n * 1000 + k)
    w = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32), bits=4, group=group)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    blob = pretile_linear(w, bias, n_pad, k_pad, tn, tk)
    assert blob.size == (n_pad // tn) * (k_pad // tk) * linear_tile_bytes(tn, tk, group, with_bias)

    full, b = untile_linear(blob, n_pad, k_pad, n_pad, k_pad, tn, tk, group, with_bias)
    expected = np.zeros((n_pad, k_pad), np.float32)
    expected[:n, :k] = round_to_bf16(w.dequantize())
    np.testing.assert_array_equal(full, expected)  # padding dequantizes to exactly 0

    real, b = untile_linear(blob, n, k, n_pad, k_pad, tn, tk, group, with_bias)
    np.testing.assert_array_equal(real, expected[:n, :k])
    if with_bias:
        np.testing.assert_array_equal(b, round_to_bf16(bias))
    else:
        assert b is None


def test_bias_is_zero_in_every_tile_but_the_first_of_a_row_block():
    rng = np.random.default_rng(1)
    w = quantize_rtn(rng.standard_normal((16, 96)).astype(np.float32), bits=4, group=32)
    bias = np.ones(16, np.float32)
    tiles = pretile_linear(w, bias, 16, 96, 16, 32).reshape(3, -1)
    assert (tiles[0, :32] != 0).any()
    assert not tiles[1:, :32].any()


@pytest.mark.parametrize(
    "n_pad, k_pad, tn, tk, message",
    [
        (20, 64, 16, 64, "not a whole number of [16, 64] tiles"),
        (8, 64, 8, 64, "at least the real one"),
        (16, 64, 16, 48, "TK=48 is not a multiple of the group size G=32"),
    ],
)
def test_bad_grids_are_compile_errors(n_pad, k_pad, tn, tk, message):
    w = quantize_rtn(np.ones((16, 64), np.float32), bits=4, group=32)
    with pytest.raises(CompileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pretile_linear(w, None, n_pad, k_pad, tn, tk)


def test_only_4_bit_weights_tile():
    w = quantize_rtn(np.ones((4, 64), np.float32), bits=8, group=32)
    with pytest.raises(CompileError, match="4-bit"):
        pretile_linear(w, None, 4, 64, 4, 64)


def test_blob_is_in_the_gemv_dma_order():
    """A 2 x 3 grid: per column, for each core step, the 3 rows' tiles side by side; untile inverts it."""
    rng = np.random.default_rng(7)
    n, k, tn, tk, group, columns, rows = 96, 128, 8, 64, 32, 2, 3  # 12 N tiles: 2 per core, 2 K tiles
    w = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32), bits=4, group=group)
    bias = rng.standard_normal(n).astype(np.float32)
    size = linear_tile_bytes(tn, tk, group, True)
    plain = pretile_linear(w, bias, n, k, tn, tk).reshape(n // tn, k // tk, size)
    blob = pretile_linear(w, bias, n, k, tn, tk, columns, rows)
    order = [(c * 6 + r * 2 + i, kt) for c in range(columns) for i in range(2) for kt in range(2) for r in range(rows)]
    np.testing.assert_array_equal(blob, np.concatenate([plain[nt, kt] for nt, kt in order]))
    for position, (nt, kt) in enumerate(order):
        assert tile_positions(nt, kt, n // tn, k // tk, columns, rows) == position
    full, b = untile_linear(blob, n, k, n, k, tn, tk, group, True, columns, rows)
    np.testing.assert_array_equal(full, round_to_bf16(w.dequantize()))
    np.testing.assert_array_equal(b, round_to_bf16(bias))
    with pytest.raises(CompileError, match="do not split evenly over a 5 x 1 core grid"):
        pretile_linear(w, bias, n, k, tn, tk, 5, 1)
