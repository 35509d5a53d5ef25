"""The DDR KV cache of a decoder layer: its blocked layout, what a launch is sent."""

import numpy as np
import pytest

from aielower.backends.aie.host_arrays import kv_blocks, query_records, step_header
from aielower.backends.aie.kv_cache import BlockedKvCache
from aielower.errors import AielowerError

LAYOUT = dict(kv_heads=2, d_pad=8, tkv=4)


def rows(heads: int, s: int, d: int, base: int) -> np.ndarray:
    return (np.arange(heads * s * d, dtype=np.uint16) + base).reshape(heads, s, d)


def test_the_cache_is_laid_out_as_kv_blocks():
    cache = BlockedKvCache("l0", 1, 2, 8, 6)
    k, v = rows(2, 5, 6, 1), rows(2, 5, 6, 1000)
    cache.write(0, 0, k, v, **LAYOUT)
    full_k = np.zeros((2, 8, 6), np.uint16)
    full_v = np.zeros((2, 8, 6), np.uint16)
    full_k[:, :5], full_v[:, :5] = k, v
    expected = kv_blocks(full_k, full_v, 2, 8, 8, 4)
    np.testing.assert_array_equal(cache.data[0], expected)
    assert cache.data[0].size == 2 * 2 * 2 * 4 * 8  # [kv_heads][blocks][K|V][tkv][d_pad], nothing after
    blocks = expected.reshape(2, 2, 2, 4, 8)
    np.testing.assert_array_equal(blocks[1, 1, 0, 0, :6], k[1, 4])  # head 1, position 4: block 1, row 0, K
    np.testing.assert_array_equal(blocks[1, 1, 1, 0, :6], v[1, 4])


def test_query_records_carry_the_step_rows_of_their_kv_head():
    # 4 query heads over 2 KV heads (GQ 2), 2 query tiles of one row: per (KV head, tile) a record of the tile's
    # queries [gq][tq][d], the head's step keys and values [rows][d], the rotary row, the header.
    queries = rows(4, 2, 8, 0)
    keys, values = rows(2, 1, 8, 5000), rows(2, 1, 8, 6000)
    rotary = np.arange(8, dtype=np.uint16) + 9000
    records = query_records(queries, 2, 1, step_header(3, 4), rotary, (keys, values)).reshape(2, 2, -1)
    assert records.shape[2] == 2 * 8 + 2 * 8 + 8 + 4
    for h in range(2):
        for qt in range(2):
            r = records[h, qt]
            np.testing.assert_array_equal(r[:16].reshape(2, 8), queries[2 * h : 2 * h + 2, qt])
            np.testing.assert_array_equal(r[16:24], keys[h, 0])
            np.testing.assert_array_equal(r[24:32], values[h, 0])
            np.testing.assert_array_equal(r[32:40], rotary)
            np.testing.assert_array_equal(r[40:], step_header(3, 4))
    with pytest.raises(ValueError, match=r"step keys \(2, 1, 8\) and values \(2, 2, 8\) must both be \[2, rows, 8\]"):
        query_records(queries, 2, 1, step_header(3, 4), None, (keys, rows(2, 2, 8, 0)))


def test_a_launch_gets_the_whole_row_first_then_the_ranges_written_since_the_last_launch():
    cache = BlockedKvCache("l0", 1, 2, 8, 8)
    first = cache.resident(0, **LAYOUT)  # a decode step from an empty cache: its rows come with the queries
    assert first.changed is None and not first.array.any()  # first launch: all of it
    cache.write(0, 5, rows(2, 1, 8, 1), rows(2, 1, 8, 2), **LAYOUT)  # appended after that launch
    tile = 2 * 4 * 8  # position 5: row 1 of block 1 of each head (2 blocks a head), K then V
    assert cache.pending(0) == ((1 * tile + 8, 8), (1 * tile + 40, 8), (3 * tile + 8, 8), (3 * tile + 40, 8))
    resident = cache.resident(0, **LAYOUT)
    assert resident.key == "kv/l0/0" and len(resident.changed) == 4  # the append
    assert cache.pending(0) == () and cache.resident(0, **LAYOUT).changed == ()


@pytest.mark.parametrize("call, message", [
    (lambda c: c.write(0, 7, rows(2, 2, 8, 0), rows(2, 2, 8, 0), **LAYOUT),
     r"positions 7\.\.8 do not fit the KV cache of 8"),
    (lambda c: c.write(0, -1, rows(2, 1, 8, 0), rows(2, 1, 8, 0), **LAYOUT),
     r"positions -1\.\.-1 do not fit the KV cache of 8"),
    (lambda c: c.write(1, 0, rows(2, 1, 8, 0), rows(2, 1, 8, 0), **LAYOUT), "has batch rows 0..0, not 1"),
    (lambda c: c.resident(1, **LAYOUT), "has batch rows 0..0, not 1"),
    (lambda c: c.write(0, 0, rows(2, 1, 8, 0), rows(2, 2, 8, 0), **LAYOUT), r"keys \(2, 1, 8\) and values \(2, 2, 8\)"),
    (lambda c: c.resident(0, kv_heads=2, d_pad=8, tkv=3), "8 positions are not a whole number of KV tiles of 3"),
])
def test_bad_use_of_a_cache_says_what_is_wrong(call, message):
    with pytest.raises(AielowerError, match=message):
        call(BlockedKvCache("l0", 1, 2, 8, 8))


def test_a_cache_keeps_the_layout_of_its_first_write():
    cache = BlockedKvCache("l0", 1, 2, 8, 8)
    cache.write(0, 0, rows(2, 1, 8, 0), rows(2, 1, 8, 0), **LAYOUT)
    with pytest.raises(AielowerError, match=r"laid out for \(kv_heads, d_pad, tkv\) = \(2, 8, 4\), not \(2, 8, 8\)"):
        cache.resident(0, kv_heads=2, d_pad=8, tkv=8)
