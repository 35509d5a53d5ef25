"""Pre-tiled linear weights: exact bytes against a loop-by-loop encoder of the documented layout, the codes' byte
order inside a tile, and pretile -> untile round trips."""

from __future__ import annotations

import numpy as np
import pytest

from aielower.backends.aie.device import NPU1, NPU2
from aielower.backends.aie.weights import linear_tile_bytes, pretile_linear, tile_positions, untile_linear
from aielower.errors import CompileError
from aielower.quant.bf16 import bf16_bits, round_to_bf16
from aielower.quant.groupwise import QuantizedWeight, quantize_rtn
from aielower.quant.packing import pack

MMULS = {"npu1": NPU1.mmul["bf16"], "npu2": NPU2.mmul["bf16"]}  # B blocks [S][T] = [8][4] and [8][8]


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


def _encode_tile(codes, scales, zeros, bias, tn, tk, group, s, t, first):
    """One tile's bytes, element by element, as docs/aie-kernels.md states the layout (independent of weights.py's
    array reshapes). ``codes`` [tn, tk], ``scales`` / ``zeros`` [tn, tk/group] of this tile; ``bias`` [tn] or None."""
    out = []
    if bias is not None:
        bits = bf16_bits(np.asarray(bias, np.float32)) if first else np.zeros(tn, np.uint16)
        out += [b for v in bits for b in (int(v) & 0xFF, int(v) >> 8)]
    for n8 in range(tn // 8):
        for kb in range(tk // s):
            unit = [0] * (8 * s)
            for jb in range(8 // t):
                for k in range(s):
                    for c in range(t):
                        unit[(jb * s + k) * t + c] = int(codes[8 * n8 + jb * t + c][kb * s + k])
            half = 4 * s
            out += [unit[j] | unit[j + half] << 4 for j in range(half)]
    ng = tk // group
    for n8 in range(tn // 8):
        for g in range(ng):
            for c in range(8):
                v = int(bf16_bits(np.float32(scales[8 * n8 + c][g])))
                out += [v & 0xFF, v >> 8]
    z = [int(zeros[8 * n8 + c][g]) for n8 in range(tn // 8) for g in range(ng) for c in range(8)]
    out += [z[e] | z[e + 1] << 4 for e in range(0, len(z), 2)]
    return out + [0] * (-len(out) % 4)


@pytest.mark.parametrize("device", sorted(MMULS))
@pytest.mark.parametrize("with_bias", [True, False])
def test_tiles_have_the_documented_bytes(device, with_bias):
    """A [13, 40] weight (group 8) in tiles of 8 x 16, padded to [16, 48]: 2 x 3 tiles, every byte as documented."""
    mmul = MMULS[device]
    rng = np.random.default_rng(3)
    n, k, group, tn, tk = 13, 40, 8, 8, 16
    w = _weight(rng.integers(0, 16, (n, k)), round_to_bf16(rng.uniform(0.01, 2.0, (n, k // group))),
                rng.integers(0, 16, (n, k // group)), group)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    blob = pretile_linear(w, bias, 16, 48, tn, tk, mmul=mmul)
    codes = np.zeros((16, 48), np.uint8)
    codes[:n, :k] = np.array(w.packed[:, :, None] >> np.array([0, 4], np.uint8) & 0x0F).reshape(n, k)
    scales, zeros = np.zeros((16, 6), np.float32), np.zeros((16, 6), np.uint8)
    scales[:n, :5], zeros[:n, :5] = w.scales, w.zeros
    b = np.zeros(16, np.float32)
    if with_bias:
        b[:n] = bias
    size = linear_tile_bytes(tn, tk, group, with_bias)
    assert blob.size == 6 * size
    for nt in range(2):
        for kt in range(3):
            expected = _encode_tile(codes[nt * 8:(nt + 1) * 8, kt * 16:(kt + 1) * 16],
                                    scales[nt * 8:(nt + 1) * 8, kt * 2:(kt + 1) * 2],
                                    zeros[nt * 8:(nt + 1) * 8, kt * 2:(kt + 1) * 2],
                                    b[nt * 8:(nt + 1) * 8] if with_bias else None, tn, tk, group, mmul.k, mmul.n,
                                    kt == 0)
            position = nt * 3 + kt
            assert blob[position * size:(position + 1) * size].tolist() == expected, (nt, kt)


def test_codes_are_stored_in_mmul_b_order_not_row_major():
    """Byte order of the codes of one 8 x 16 tile (no bias), code(n, k) = (n + 2k) % 16 and the per-row order
    today's n-major layout had (byte j of row n = codes k = 2j, 2j+1) would give other bytes. npu2 (T = 8): a unit
    is the B block [8 k][8 n]; byte j holds element j (k = j / 8, n = j % 8) low and element j + 32 (k + 4) high.
    npu1 (T = 4): a unit is two B blocks [8 k][4 n]; byte j holds block 0's element j (k = j / 4, n = j % 4) low and
    block 1's element j (same k, n + 4) high."""
    codes = np.array([[(n + 2 * k) % 16 for k in range(16)] for n in range(8)], np.uint8)
    w = _weight(codes, np.ones((8, 2), np.float32), np.zeros((8, 2), np.uint8), 8)
    npu2 = pretile_linear(w, None, 8, 16, 8, 16, mmul=MMULS["npu2"])
    npu1 = pretile_linear(w, None, 8, 16, 8, 16, mmul=MMULS["npu1"])
    assert npu2[:8].tolist() == [c | (c + 8) % 16 << 4 for c in range(8)]  # k = 0, n = 0..7 | k = 4, n = 0..7
    assert npu2[8:16].tolist() == [(c + 2) % 16 | (c + 10) % 16 << 4 for c in range(8)]  # k = 1 | k = 5
    assert npu1[:8].tolist() == [c | (c + 4) << 4 for c in range(4)] + [(c + 2) | (c + 6) << 4 for c in range(4)]
    assert npu2[32:40].tolist() == [(c + 16) % 16 | (c + 24) % 16 << 4 for c in range(8)]  # second unit: k = 8 | 12
    row_major = pack(codes, 4)[0, :8].tolist()  # the old layout's first bytes: row 0, k = 0 .. 15
    assert npu2[:8].tolist() != row_major and npu1[:8].tolist() != row_major


@pytest.mark.parametrize("device", sorted(MMULS))
@pytest.mark.parametrize(
    "n, k, group, tn, tk, n_pad, k_pad, with_bias",
    [
        (40, 256, 32, 16, 128, 48, 256, True),  # padded rows, 2 x 3 tiles
        (33, 160, 32, 24, 64, 48, 192, False),  # padded rows and a padded group of columns
        (64, 384, 128, 32, 128, 64, 384, True),  # no padding
        (7, 64, 64, 8, 64, 8, 64, False),  # one tile
    ],
)
def test_pretile_then_untile_gives_the_bf16_dequantized_weight(n, k, group, tn, tk, n_pad, k_pad, with_bias, device):
    rng = np.random.default_rng(n * 1000 + k)
    w = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32), bits=4, group=group)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    blob = pretile_linear(w, bias, n_pad, k_pad, tn, tk, mmul=MMULS[device])
    assert blob.size == (n_pad // tn) * (k_pad // tk) * linear_tile_bytes(tn, tk, group, with_bias)

    full, b = untile_linear(blob, n_pad, k_pad, n_pad, k_pad, tn, tk, group, with_bias, mmul=MMULS[device])
    expected = np.zeros((n_pad, k_pad), np.float32)
    expected[:n, :k] = round_to_bf16(w.dequantize())
    np.testing.assert_array_equal(full, expected)  # padding dequantizes to exactly 0

    real, b = untile_linear(blob, n, k, n_pad, k_pad, tn, tk, group, with_bias, mmul=MMULS[device])
    np.testing.assert_array_equal(real, expected[:n, :k])
    if with_bias:
        np.testing.assert_array_equal(b, round_to_bf16(bias))
    else:
        assert b is None


def test_bias_is_zero_in_every_tile_but_the_first_of_a_row_block():
    rng = np.random.default_rng(1)
    w = quantize_rtn(rng.standard_normal((16, 96)).astype(np.float32), bits=4, group=32)
    bias = np.ones(16, np.float32)
    tiles = pretile_linear(w, bias, 16, 96, 16, 32, mmul=MMULS["npu2"]).reshape(3, -1)
    assert (tiles[0, :32] != 0).any()
    assert not tiles[1:, :32].any()


@pytest.mark.parametrize(
    "n_pad, k_pad, tn, tk, message",
    [
        (20, 64, 16, 64, "not a whole number of [16, 64] tiles"),
        (8, 64, 8, 64, "at least the real one"),
        (16, 64, 16, 48, "TK=48 is not a multiple of the group size G=32"),
        (20, 64, 4, 64, "TN=4 is not a multiple of 8"),
    ],
)
def test_bad_grids_are_compile_errors(n_pad, k_pad, tn, tk, message):
    w = quantize_rtn(np.ones((16, 64), np.float32), bits=4, group=32)
    with pytest.raises(CompileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pretile_linear(w, None, n_pad, k_pad, tn, tk, mmul=MMULS["npu1"])


def test_the_layout_needs_the_devices_mmul_shape():
    w = quantize_rtn(np.ones((16, 64), np.float32), bits=4, group=32)
    with pytest.raises(TypeError, match="mmul"):
        pretile_linear(w, None, 16, 64, 16, 64)  # noqa: the keyword is required
    with pytest.raises(CompileError, match="mmul must be the device's bf16 MMulShape"):
        pretile_linear(w, None, 16, 64, 16, 64, mmul=(4, 8, 8))
    w4 = quantize_rtn(np.ones((16, 64), np.float32), bits=4, group=4)
    with pytest.raises(CompileError, match="must be multiples of the mmul's S=8"):
        pretile_linear(w4, None, 16, 64, 16, 64, mmul=MMULS["npu2"])


def test_only_4_bit_weights_tile():
    w = quantize_rtn(np.ones((8, 64), np.float32), bits=8, group=32)
    with pytest.raises(CompileError, match="4-bit"):
        pretile_linear(w, None, 8, 64, 8, 64, mmul=MMULS["npu1"])


def test_pretiling_in_chunks_gives_the_same_blob(monkeypatch):
    """The codes are unpacked a few N tiles at a time; the chunk size changes nothing."""
    import aielower.backends.aie.weights as W

    rng = np.random.default_rng(9)
    w = quantize_rtn(rng.standard_normal((40, 192)).astype(np.float32), bits=4, group=32)
    whole = pretile_linear(w, None, 48, 192, 16, 64, mmul=MMULS["npu2"])
    monkeypatch.setattr(W, "_CHUNK_CODES", 16 * 192)  # one N tile per chunk
    np.testing.assert_array_equal(pretile_linear(w, None, 48, 192, 16, 64, mmul=MMULS["npu2"]), whole)


@pytest.mark.parametrize("device", sorted(MMULS))
def test_blob_is_in_the_gemv_dma_order(device):
    """A 2 x 3 grid: per column, for each core step, the 3 rows' tiles side by side; untile inverts it."""
    mmul = MMULS[device]
    rng = np.random.default_rng(7)
    n, k, tn, tk, group, columns, rows = 96, 128, 8, 64, 32, 2, 3  # 12 N tiles: 2 per core, 2 K tiles
    w = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32), bits=4, group=group)
    bias = rng.standard_normal(n).astype(np.float32)
    size = linear_tile_bytes(tn, tk, group, True)
    plain = pretile_linear(w, bias, n, k, tn, tk, mmul=mmul).reshape(n // tn, k // tk, size)
    blob = pretile_linear(w, bias, n, k, tn, tk, columns, rows, mmul=mmul)
    order = [(c * 6 + r * 2 + i, kt) for c in range(columns) for i in range(2) for kt in range(2) for r in range(rows)]
    np.testing.assert_array_equal(blob, np.concatenate([plain[nt, kt] for nt, kt in order]))
    for position, (nt, kt) in enumerate(order):
        assert tile_positions(nt, kt, n // tn, k // tk, columns, rows) == position
    full, b = untile_linear(blob, n, k, n, k, tn, tk, group, True, columns, rows, mmul=mmul)
    np.testing.assert_array_equal(full, round_to_bf16(w.dequantize()))
    np.testing.assert_array_equal(b, round_to_bf16(bias))
    with pytest.raises(CompileError, match="do not split evenly over a 5 x 1 core grid"):
        pretile_linear(w, bias, n, k, tn, tk, 5, 1, mmul=mmul)


@pytest.mark.parametrize("device", sorted(MMULS))
def test_blocked_blob_stores_each_block_k_outer_and_the_last_block_short(device):
    """A 2 x 3 grid with 5 N tiles per core in blocks of 2: per column, blocks of (2, 2, 1) tiles per core, each
    stored K outer with its tiles and the rows side by side, so a column is one run in the order a GEMV item and a
    GEMM N block consume it; untile inverts it."""
    mmul = MMULS[device]
    rng = np.random.default_rng(8)
    n, k, tn, tk, group, columns, rows, block = 240, 128, 8, 64, 32, 2, 3, 2  # 30 N tiles: 5 per core, 2 K tiles
    w = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32), bits=4, group=group)
    size = linear_tile_bytes(tn, tk, group, False)
    plain = pretile_linear(w, None, n, k, tn, tk, mmul=mmul).reshape(n // tn, k // tk, size)
    blob = pretile_linear(w, None, n, k, tn, tk, columns, rows, block, mmul=mmul)
    order = [(c * 15 + r * 5 + i0 + ii, kt) for c in range(columns) for i0, b in ((0, 2), (2, 2), (4, 1))
             for kt in range(2) for ii in range(b) for r in range(rows)]
    np.testing.assert_array_equal(blob, np.concatenate([plain[nt, kt] for nt, kt in order]))
    nts, kts = np.array(order).T
    np.testing.assert_array_equal(tile_positions(nts, kts, n // tn, k // tk, columns, rows, block),
                                  np.arange(len(order)))
    full, _ = untile_linear(blob, n, k, n, k, tn, tk, group, False, columns, rows, block, mmul=mmul)
    np.testing.assert_array_equal(full, round_to_bf16(w.dequantize()))
    with pytest.raises(CompileError, match="block must be a positive integer, got 0"):
        pretile_linear(w, None, n, k, tn, tk, columns, rows, 0, mmul=mmul)
