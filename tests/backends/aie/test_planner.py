"""plan-aie-tiling: budgets hold for random shapes on both devices, plans survive the IR text round trip, and ops
that cannot be tiled get errors naming them and the budget."""

from __future__ import annotations

import random

import pytest

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.budget import Usage, violations
from aielower.backends.aie.device import DEVICES, NPU2
from aielower.backends.aie.plan import DECODE_BUCKETS, PLAN_ATTR, OpPlan, plan_of
from aielower.backends.aie.families.attention import plan_attention
from aielower.backends.aie.families.linear_w4 import GEMM_ACCUMULATORS, GEMV_ACCUMULATORS, gemv_item_sizes, plan_linear
from aielower.backends.aie.families.rms_norm import plan_norm
from aielower.backends.aie.families.silu_mul import plan_silu_mul
from aielower.backends.aie.planner import padding_waste
from aielower.errors import CompileError
from aielower.ir import parse, print_module
from aielower.passes import PassManager


def check_plan(plan: OpPlan, device) -> None:
    for launch in plan.launches:
        assert violations(launch, device) == [], (plan.shape, launch.to_attr())
        u = Usage.of(launch)
        assert u.l1 <= device.core_data_memory and u.l2 <= device.mem_tile_memory
        assert u.core_in <= device.core_dma_in and u.mem_out <= device.mem_tile_dma_out
        kernel_spec(launch, device)  # the kernel accepts the constants
        assert launch.padded_macs >= launch.macs


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_random_shapes_hold_the_budgets(device):
    dev = DEVICES[device]
    rng = random.Random(1234)
    for _ in range(12):
        group = rng.choice([16, 32, 64, 128])
        n, k = rng.randint(1, 400) * 16 + rng.choice([0, 8, 3]), rng.randint(1, 96) * group
        plan = plan_linear("linear", n, k, group, rng.random() < 0.5, DECODE_BUCKETS, dev)
        check_plan(plan, dev)
        s = plan.shape
        assert s["n_pad"] >= n and s["k_pad"] >= k and s["k_pad"] % s["tk"] == 0 and s["n_pad"] % s["tn"] == 0
        gemv = plan.launches_for(1)[0]
        # decode streams every weight byte from DDR once per token (plus one activation vector per column and work
        # item); a GEMV work item is whole blocks of the weight blob (all the core's tiles, or as many blocks as the
        # accumulators allow), a GEMM N block one block per row of the grid
        per_core = s["n_pad"] // s["tn"] // (gemv.columns * gemv.rows)
        block, sizes = s["w_block"], gemv_item_sizes(per_core, s["w_block"])
        assert block <= per_core and sum(sizes) == per_core and gemv.params["nb"] == max(sizes) <= GEMV_ACCUMULATORS
        assert all(size % block == 0 for size in sizes[:-1])  # whole blocks; the last item may be the short block
        # the weight tiles and, for a biased linear, its GEMV's bias tiles (one per core and item; the GEMM's are not
        # read); or a bias in every weight tile
        tiles = (s["n_pad"] // s["tn"]) * (s["k_pad"] // s["tk"]) + s.get("gemv_bias_tiles", 0)
        assert s.get("gemv_bias_tiles", 0) in (0, gemv.cores * len(sizes))
        assert gemv.ddr_read == tiles * s["tile_bytes"] + len(sizes) * gemv.columns * s["k_pad"] * 2
        for gemm in plan.launches[1:]:
            assert gemm.params["nb"] == block * s["w_rows"] <= GEMM_ACCUMULATORS
    for _ in range(8):
        d = rng.randint(1, 600) * 8 + rng.choice([0, 4])
        check_plan(plan_norm("norm", d, 1e-6, rng.random() < 0.5, DECODE_BUCKETS, dev), dev)
        check_plan(plan_silu_mul("silu", rng.randint(1, 1500) * 8, DECODE_BUCKETS, dev), dev)
    for _ in range(8):
        kv = rng.choice([1, 2, 4, 8, 32])
        heads = kv * rng.choice([1, 2, 4, 7])
        head_dim = rng.choice([12, 64, 80, 128])
        cache = rng.choice([None, 64, 512, 4096])
        check_plan(plan_attention("attn", heads, kv, head_dim, head_dim**-0.5, True, cache,
                                  DECODE_BUCKETS if cache else DECODE_BUCKETS[1:], dev), dev)


def test_seven_b_shapes_have_little_padding_and_stream_weights_once():
    plans = [plan_linear("l", n, k, g, b, DECODE_BUCKETS, NPU2)
             for n, k, g, b in [(12288, 4096, 128, True), (4096, 4096, 128, False), (22016, 4096, 128, False),
                                (4096, 11008, 128, False), (151936, 4096, 32, False)]]
    assert padding_waste(plans, 1) < 0.01
    for p in plans:
        assert p.launches_for(1)[0].cores == 32


def test_plans_round_trip_through_the_ir_text():
    text = """weight @w : qtensor<100x48xu4, group=16, scale=bf16, zero=u4>
func @decode(%x: tensor<?bx?sx48xf32>) -> tensor<?bx?sx100xf32> {
  %y = quant.linear %x, @w {bits = 4, group = 16} : tensor<?bx?sx100xf32>
  return %y
}
"""
    module = parse(text)
    PassManager.parse("plan-aie-tiling{device=npu1}").run(module)
    printed = print_module(module)
    again = parse(printed)
    assert print_module(again) == printed
    op = again.functions["decode"].ops[0]
    assert plan_of(op) == plan_of(module.functions["decode"].ops[0])
    assert plan_of(op).device == "npu1" and PLAN_ATTR in printed


def test_an_op_that_cannot_be_tiled_names_itself_and_the_budget():
    with pytest.raises(CompileError, match=r"cannot tile @decode op #0 \(fused.rms_norm @n\) on npu2: .*L1 bytes per core"):
        module = parse("""weight @n : tensor<40000xf32>
func @decode(%x: tensor<?bx?sx40000xf32>) -> tensor<?bx?sx40000xf32> {
  %y = fused.rms_norm %x, @n {eps = 1e-06} : tensor<?bx?sx40000xf32>
  return %y
}
""")
        PassManager.parse("plan-aie-tiling").run(module)


def test_a_kv_cache_that_cannot_be_tiled_is_an_error():
    with pytest.raises(CompileError, match=r"cannot tile attn on npu2: .*no KV tile .* divides the KV length 50"):
        plan_attention("attn", 4, 2, 16, 0.25, True, 50, DECODE_BUCKETS, NPU2)


def test_group_sizes_the_kernels_cannot_take_are_refused():
    with pytest.raises(CompileError, match=r"cannot tile lin on npu2: .*G=8 is not a multiple of 16"):
        plan_linear("lin", 64, 64, 8, False, (1,), NPU2)


def test_eight_bit_weights_are_refused():
    module = parse("""weight @w : qtensor<64x64xu8, group=32, scale=bf16, zero=u4>
func @decode(%x: tensor<?bx?sx64xf32>) -> tensor<?bx?sx64xf32> {
  %y = quant.linear %x, @w {bits = 8, group = 32} : tensor<?bx?sx64xf32>
  return %y
}
""")
    with pytest.raises(CompileError, match=r"the AIE kernels take 4-bit weights, this one has 8 bits"):
        PassManager.parse("plan-aie-tiling").run(module)


def test_unknown_device_is_a_pipeline_error():
    with pytest.raises(CompileError, match=r"option 'device' must be one of npu1, npu2, got 'npu3'"):
        PassManager.parse("plan-aie-tiling{device=npu3}")


def test_gemv_items_are_whole_blocks_then_the_short_block():
    assert gemv_item_sizes(297, 4) == [64] * 4 + [40, 1]
    assert gemv_item_sizes(24, 4) == [24]
    assert gemv_item_sizes(5, 5) == [5]
    assert gemv_item_sizes(5, 4) == [4, 1]
    assert gemv_item_sizes(12, 2) == [12]
    assert gemv_item_sizes(40, 16) == [32, 8]
    assert gemv_item_sizes(150, 16) == [64, 64, 16, 6]


@pytest.mark.parametrize("change, message", [
    ({"w_block": 0}, "shape.w_block must be a positive integer, got 0"),
    ({"w_block": True}, "shape.w_block must be a positive integer, got True"),
    ({"w_block": 2.5}, "shape.w_block must be a positive integer, got 2.5"),
    ({"w_block": 99}, "w_block = 99 is more than the 1 output tiles of a core"),
    ({"n_pad": 160}, r"N_pad = 160 is not a whole number of TN = 32 tiles per core of the 1 x 3 weight grid"),
])
def test_a_linear_plan_whose_weight_grid_does_not_add_up_is_refused(change, message):
    # a plan read from IR text is data from outside: the blob order and every core's work follow from these numbers
    import dataclasses

    from aielower.backends.aie.families.linear_w4 import LinearW4

    plan = plan_linear("linear", 96, 64, 32, True, (1, 128), NPU2)
    bad = dataclasses.replace(plan, shape=dict(plan.shape, **change))
    for launch in bad.launches:
        with pytest.raises(CompileError, match=message):
            LinearW4().array_work(launch, bad)
