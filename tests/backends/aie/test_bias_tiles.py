"""A linear's bias in tiles of its own (families/linear_w4.py, bias_tile_rows): its weight tiles carry none, so a
biased decode GEMV (Qwen2's qkv) shares the configuration of the GEMVs without bias; its accumulators start from
the bias tile. On the emulator, bit for bit what the kernels that take the bias from every weight tile compute."""

from __future__ import annotations

import numpy as np
import pytest

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.designs import DesignRun, build_design
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.families.linear_w4 import bias_tile_rows, gemv_item_sizes, plan_linear
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.aie.weights import linear_tile_bytes
from tests.backends.aie.test_shared import _tensors

GEMV = KERNEL_FAMILIES.for_kernel("linear_w4_gemv")


def _plans(n: int = 200, k: int = 32, buckets=(1, 128)):
    """A biased linear planned with its bias in tiles of its own and in every weight tile: one tiling (K = 32 leaves
    one K tile size), so both compute the same sums."""
    tiles = plan_linear("q", n, k, 32, True, buckets, NPU2)
    inline = plan_linear("q", n, k, 32, True, buckets, NPU2, bias_tiles=False)
    same = ("tn", "tk", "n_pad", "k_pad", "w_columns", "w_rows", "w_block")
    assert {key: tiles.shape[key] for key in same} == {key: inline.shape[key] for key in same}
    return tiles, inline


def test_a_biased_gemv_has_bias_free_weight_tiles_and_the_key_of_the_linears_without_bias():
    tiles, inline = _plans()
    s = tiles.shape
    assert s["bias"] and s["tile_bytes"] == linear_tile_bytes(s["tn"], s["tk"], 32, False) < inline.shape["tile_bytes"]
    counts = (s["gemv_bias_tiles"], s["gemm_bias_tiles"])
    assert counts == (s["w_columns"] * s["w_rows"], s["w_columns"])  # one item per core; one N block per column
    assert s["weight_bytes"] == ((s["n_pad"] // s["tn"]) * (s["k_pad"] // s["tk"]) + sum(counts)) * s["tile_bytes"]
    gemv = tiles.launches_for(1)[0]
    assert gemv.params["bias"] is False and gemv.params["bias_init"] is True
    plain = plan_linear("o", 200, 32, 32, False, (1, 128), NPU2)
    assert GEMV.configuration_key(gemv, tiles) == GEMV.configuration_key(plain.launches_for(1)[0], plain)
    assert GEMV.configuration_key(inline.launches_for(1)[0], inline) != GEMV.configuration_key(gemv, tiles)
    # the rows of each bias tile: the GEMV's per column, item and core row, then the GEMM's per column and N block
    rows = bias_tile_rows(s)
    assert [r.tolist() for r in rows[:2]] == [[0], [1]] and len(rows) == sum(counts)
    assert sorted(int(t) for r in rows[: counts[0]] for t in r) == list(range(s["n_pad"] // s["tn"]))
    prefill_only = plan_linear("q", 200, 32, 32, True, (128,), NPU2)
    assert "gemv_bias_tiles" not in prefill_only.shape  # no GEMV to share a configuration: the bias stays inline


def test_a_gemv_item_whose_bias_does_not_fit_a_tile_keeps_the_bias_in_its_weight_tiles():
    # 64 output tiles of 16 rows per core in one item: 2048 bytes of bias, more than a 296-byte tile
    plan = plan_linear("q", 64 * 32 * 16, 32, 32, True, (1,), NPU2)
    assert "gemv_bias_tiles" not in plan.shape and plan.launches[0].params["bias"] is True


@pytest.mark.parametrize("bucket", [1, 128], ids=["gemv", "gemm"])
def test_bias_tiles_compute_bit_for_bit_what_the_inline_bias_computes(tmp_path, bucket):
    tiles, inline = _plans()
    launches = [plan.launches_for(bucket)[0] for plan in (tiles, inline)]
    specs = [kernel_spec(launch, NPU2) for launch in launches]
    assert specs[0].p.get("bias_init") and not specs[0].p["bias"] and specs[1].p["bias"]
    library = KernelLibrary.build(specs, tmp_path / "kernels")
    out = "y" if bucket == 1 else "c"
    results = []
    for launch, plan, spec in zip(launches, (tiles, inline), specs):
        args = _tensors(launch, plan, np.random.default_rng(11))  # the same weights, bias and activations
        DesignRun(build_design(launch, plan, NPU2, spec, "d"), library.function).run(args)
        results.append(args[out].copy())
    assert results[0].any()
    np.testing.assert_array_equal(results[0], results[1])
    # the bias tiles are read: the same blob without them gives another result
    args = _tensors(launches[0], tiles, np.random.default_rng(11))
    s = tiles.shape
    args["w"][(s["n_pad"] // s["tn"]) * (s["k_pad"] // s["tk"]) * s["tile_bytes"]:] = 0
    DesignRun(build_design(launches[0], tiles, NPU2, specs[0], "d"), library.function).run(args)
    assert not np.array_equal(args[out], results[0])


def _inline(plan):
    """``plan`` (bias tiles) with the bias in every weight tile, on the same tiling (plan_linear may tile it
    otherwise): its launches re-planned from its shape."""
    from aielower.backends.aie.families.linear_w4 import _gemm, _gemv
    from aielower.backends.aie.plan import OpPlan
    from aielower.backends.aie.planner import checked

    s = {k: v for k, v in plan.shape.items() if k not in ("gemv_bias_tiles", "gemm_bias_tiles")}
    s["tile_bytes"] = linear_tile_bytes(s["tn"], s["tk"], s["group"], True)
    s["weight_bytes"] = (s["n_pad"] // s["tn"]) * (s["k_pad"] // s["tk"]) * s["tile_bytes"]
    launches = tuple(checked(_gemv(s, x.columns, x.rows), NPU2) if x.kernel == "linear_w4_gemv" else
                     checked(_gemm(s, x.bucket, x.params["tm"], x.params["nb"], x.columns, x.rows, NPU2.mmul["bf16"]),
                             NPU2) for x in plan.launches)
    return OpPlan("linear", plan.device, s, launches)


@pytest.mark.parametrize("n, k, buckets, bucket, epilogue", [
    (2560, 96, (1, 256), 1, None),  # GEMV items of 4 and 1 tiles per core, 3 K tiles
    (2560, 96, (1, 256), 1, "silu_mul"),  # the gated-MLP store, gate/up bias interleaved by half tile
    (2560, 96, (1, 512), 512, None),  # GEMM: two M tiles per core, a short last N block
    (2304, 96, (1, 128), 128, "silu_mul"),  # GEMM with the epilogue, padded rows
], ids=["gemv-items", "gemv-silu", "gemm-m-tiles", "gemm-silu"])
def test_bias_tiles_match_the_inline_bias_on_the_same_tiling(tmp_path, n, k, buckets, bucket, epilogue):
    tiles = plan_linear("q", n, k, 32, True, buckets, NPU2, epilogue)
    inline = _inline(tiles)
    launches = [plan.launches_for(bucket)[0] for plan in (tiles, inline)]
    s, launch = tiles.shape, launches[0]
    assert s["k_pad"] // s["tk"] > 1  # several K tiles: the bias enters once, at the first
    if bucket == 1 and epilogue is None:  # items of unequal sizes per core
        assert len(set(gemv_item_sizes(s["n_pad"] // s["tn"] // launch.cores, s["w_block"]))) > 1
    if bucket == 512:  # two M tiles per core, and a short last N block per column
        per_column, nb = s["n_pad"] // s["tn"] // launch.columns, launch.params["nb"]
        assert bucket // (launch.rows * launch.params["tm"]) == 2 and per_column % nb
    specs = [kernel_spec(launch, NPU2) for launch in launches]
    library = KernelLibrary.build(specs, tmp_path / "kernels")
    out = "y" if bucket == 1 else "c"
    results = []
    for launch, plan, spec in zip(launches, (tiles, inline), specs):
        args = _tensors(launch, plan, np.random.default_rng(5))
        DesignRun(build_design(launch, plan, NPU2, spec, "d"), library.function).run(args)
        results.append(args[out].copy())
    assert results[0].any()
    np.testing.assert_array_equal(results[0], results[1])


def test_a_launch_whose_bias_does_not_match_its_plan_is_refused():
    import dataclasses

    from aielower.errors import CompileError

    tiles, _ = _plans()
    gemv = tiles.launches_for(1)[0]
    dropped = dataclasses.replace(gemv, params={k: v for k, v in gemv.params.items() if k != "bias_init"})
    with pytest.raises(CompileError, match="bias_init=False does not match its shape"):
        GEMV.array_work(dropped, tiles)
