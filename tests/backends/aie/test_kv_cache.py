"""The DDR KV cache of a decoder layer: its blocked layout with a step tile per head, what a launch is sent."""

import numpy as np
import pytest

from aielower.backends.aie.host_arrays import kv_blocks
from aielower.backends.aie.kv_cache import BlockedKvCache
from aielower.errors import AielowerError

LAYOUT = dict(kv_heads=2, d_pad=8, tkv=4)


def rows(heads: int, s: int, d: int, base: int) -> np.ndarray:
    return (np.arange(heads * s * d, dtype=np.uint16) + base).reshape(heads, s, d)


def test_the_cache_is_laid_out_as_kv_blocks_with_the_step_tile_last():
    cache = BlockedKvCache("l0", 1, 2, 8, 6)
    k, v = rows(2, 3, 6, 1), rows(2, 3, 6, 1000)
    cache.write(0, 0, k, v, **LAYOUT)
    step_k, step_v = rows(2, 1, 6, 2000), rows(2, 1, 6, 3000)
    cache.stage(0, step_k, step_v, **LAYOUT)
    full_k = np.zeros((2, 8, 6), np.uint16)
    full_v = np.zeros((2, 8, 6), np.uint16)
    full_k[:, :3], full_v[:, :3] = k, v
    expected = kv_blocks(full_k, full_v, 2, 8, 8, 4, step=(step_k, step_v))
    np.testing.assert_array_equal(cache.data[0], expected)
    step = expected[2 * 8 * 2 * 8:].reshape(2, 2, 4, 8)  # after the cache tiles: [head][K|V][tkv][d_pad]
    np.testing.assert_array_equal(step[:, 0, 0, :6], step_k[:, 0])
    np.testing.assert_array_equal(step[:, 1, 0, :6], step_v[:, 0])
    assert not step[:, :, 1:].any()
    assert kv_blocks(full_k, full_v, 2, 8, 8, 4, cache=False).size == 2 * 2 * 2 * 4 * 8  # a prompt's: no step tile
    with pytest.raises(ValueError, match="only a KV cache has step tiles"):
        kv_blocks(full_k, full_v, 2, 8, 8, 4, step=(step_k, step_v), cache=False)


def test_a_launch_gets_the_whole_row_first_then_the_ranges_written_since_the_last_launch():
    cache = BlockedKvCache("l0", 1, 2, 8, 8)
    cache.stage(0, rows(2, 1, 8, 1), rows(2, 1, 8, 2), **LAYOUT)
    assert cache.resident(0).changed is None  # first launch: all of it
    cache.write(0, 5, rows(2, 1, 8, 1), rows(2, 1, 8, 2), **LAYOUT)  # appended after that launch
    tile = 2 * 4 * 8  # position 5: row 1 of block 1 of each head (2 blocks a head), K then V
    assert cache.pending(0) == ((1 * tile + 8, 8), (1 * tile + 40, 8), (3 * tile + 8, 8), (3 * tile + 40, 8))
    cache.stage(0, rows(2, 1, 8, 3), rows(2, 1, 8, 4), **LAYOUT)
    resident = cache.resident(0)
    assert resident.key == "kv/l0/0" and len(resident.changed) == 8  # the append and the new step's rows
    assert cache.pending(0) == () and cache.resident(0).changed == ()


@pytest.mark.parametrize("call, message", [
    (lambda c: c.stage(0, rows(2, 5, 8, 0), rows(2, 5, 8, 0), **LAYOUT), "a step tile holds 4 rows, not 5"),
    (lambda c: c.write(0, 7, rows(2, 2, 8, 0), rows(2, 2, 8, 0), **LAYOUT),
     r"positions 7\.\.8 do not fit the KV cache of 8"),
    (lambda c: c.write(1, 0, rows(2, 1, 8, 0), rows(2, 1, 8, 0), **LAYOUT), "has batch rows 0..0, not 1"),
    (lambda c: c.stage(0, rows(2, 1, 8, 0), rows(2, 2, 8, 0), **LAYOUT), r"keys \(2, 1, 8\) and values \(2, 2, 8\)"),
    (lambda c: c.resident(0), "nothing was written before a launch read it"),
])
def test_bad_use_of_a_cache_says_what_is_wrong(call, message):
    with pytest.raises(AielowerError, match=message):
        call(BlockedKvCache("l0", 1, 2, 8, 8))


def test_a_cache_keeps_the_layout_of_its_first_write():
    cache = BlockedKvCache("l0", 1, 2, 8, 8)
    cache.write(0, 0, rows(2, 1, 8, 0), rows(2, 1, 8, 0), **LAYOUT)
    with pytest.raises(AielowerError, match=r"laid out for \(kv_heads, d_pad, tkv\) = \(2, 8, 4\), not \(2, 8, 8\)"):
        cache.stage(0, rows(2, 1, 8, 0), rows(2, 1, 8, 0), kv_heads=2, d_pad=8, tkv=8)
