"""Decode-token figures counted from the generated designs' runtime sequences (not from the plan)."""

from __future__ import annotations

import pytest

from aielower.backends.aie import cost, counted
from aielower.backends.aie.catalog import Placement
from aielower.backends.aie.designs import model as m
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import gemv_attention
from aielower.backends.aie.plan import plan_of
from aielower.backends.aie.report import build_report, render_markdown
from aielower.errors import CompileError


def _design(sequence) -> m.Design:
    shim, core = m.Tile(0, 0), m.Tile(0, 2)
    bf16 = m.MemrefType(64, "bf16")
    fifos = (m.ObjectFifo("in0", shim, (core,), 2, bf16), m.ObjectFifo("out0", core, (shim,), 2, bf16))
    args = (m.SequenceArg("x", m.MemrefType(256, "bf16")), m.SequenceArg("y", m.MemrefType(256, "f32")))
    return m.Design("d", "npu2", (), (shim, core), fifos, (), (), (), (m.RuntimeSequence("", tuple(sequence), args),))


def test_a_sequence_is_counted_op_by_op():
    seq = [m.DmaMemcpy("x", 0, (1, 1, 2, 64), (0, 0, 64, 1), 0, "in0"),
           m.DmaMemcpy("x", 128, (1, 1, 1, 64), (0, 0, 0, 1), 1, "in0", issue_token=True),
           m.DmaMemcpy("y", 0, (1, 1, 1, 64), (0, 0, 0, 1), 2, "out0", issue_token=True),
           m.DmaWait("out0"), m.RtpWrite("rtp", 0, 7)]
    c = counted.count_sequence(_design(seq))
    assert (c.ddr_read_bytes, c.ddr_write_bytes) == (3 * 64 * 2, 64 * 4)  # element size of the argument
    assert (c.transfers, c.waits, c.rtp_writes) == (3, 1, 1)
    # header 4 + MM2S 30 + MM2S with token 37 + S2MM 37 + wait 4 + rtp_write 6
    assert c.instruction_words == 4 + 30 + 37 + 37 + 4 + 6
    assert (c + c).transfers == 6 and c.times(3).ddr_bytes == 3 * c.ddr_bytes


def test_a_decode_token_counted_from_its_designs(planned):
    token = counted.decode_token_count(planned, NPU2, cost.decode_function(planned))
    plan = cost.FunctionPlan.of(cost.decode_function(planned))
    # one design run per launch, but a chain of launches (chains.py) is one
    chains = Placement(planned, NPU2).chains(cost.decode_function(planned))
    launches = cost.function_cost(plan, NPU2, 1, kv_len=1).launches
    assert token.submissions == launches - sum(len(c.ops) - 1 for _, c in chains)
    assert token.chains == len(chains) > 0
    assert token.device_configurations > token.designs_per_token > 1
    assert token.total.transfers > 0 and token.total.instruction_words > 4 * token.submissions
    # Counted at the whole static cache (the default): the decode attention designs read all of it (128 positions,
    # K and V, bf16, 4 heads x 16, both layers).
    full_cache = 2 * 2 * 128 * 4 * 16 * 2
    assert token.by_role["attention"] >= full_cache
    assert token.total.ddr_bytes > cost.min_ddr_bytes_per_decode_token(planned, 8)


def test_decode_attention_reads_only_the_valid_kv_tiles():
    # One compile, one runtime sequence per count of KV tiles: at a short context the host submits the sequence
    # reading only the cache tiles of the rows before the step (the step's own keys and values come in the query
    # records), so the counted KV traffic grows with the context in whole tiles.
    from aielower.api import QuantConfig, default_pipeline
    from aielower.frontend import import_model
    from aielower.passes import PassManager
    from tests.conftest import tiny_qwen2

    module = import_model(tiny_qwen2(), "tiny", max_seq_len=256)
    quant = QuantConfig(bits=4, group_size=32, lm_head_group_size=32)
    PassManager.parse(default_pipeline("ref", quant) + ",plan-aie-tiling{device=npu2}").run(module)
    decode = cost.decode_function(module)
    plan = next(plan_of(op) for op in decode.ops if plan_of(op) is not None and plan_of(op).kind == "attention")
    attention = next(x for x in plan.launches_for(1) if x.role == "attention")
    assert gemv_attention.is_attention(attention)  # its 4 KV heads fill a column: it runs on the GEMVs' configuration
    p = attention.params
    tkv = p["attn_tkv"]
    w_tile = next(s.tile_bytes for s in attention.streams if s.name == "w")
    assert p["attn_rows"] * 16 * 2 <= w_tile
    # K and V of one cache tile, 4 heads, both layers: a weight tile per CR KV rows of 16 bf16
    tile_bytes = 2 * 2 * (tkv // p["attn_rows"]) * w_tile * 4
    assert 256 // tkv >= 2
    designs: dict = {}
    one = counted.decode_token_count(module, NPU2, decode, 1, designs)
    full = counted.decode_token_count(module, NPU2, decode, 256, designs)
    two = counted.decode_token_count(module, NPU2, decode, 2, designs)
    assert counted.decode_token_count(module, NPU2, decode, tkv + 1, designs).total == two.total
    assert two.by_role["attention"] - one.by_role["attention"] == tile_bytes  # the first cache tile
    assert counted.decode_token_count(module, NPU2, decode, None, designs).total == full.total
    assert full.by_role["attention"] - one.by_role["attention"] == (256 // tkv) * tile_bytes
    assert one.submissions == full.submissions
    with pytest.raises(CompileError, match="at least one valid KV position \\(its own\\), not kv_len=0"):
        counted.decode_token_count(module, NPU2, decode, 0, designs)


def test_the_report_carries_the_counted_figures(planned):
    r = build_report(planned, NPU2, quant="w4g32", new_tokens=8, short_prompts=(8,), prompt_lengths=(16,))
    token = r["decode_token_counted"]
    assert r["ddr_bytes_per_decode_token"] == token["ddr_bytes"]
    assert r["submissions_per_decode_token"] == token["submissions"] < r["launches_per_decode_token"]
    assert r["launches_per_decode_token"] - token["submissions"] >= token["chained_submissions"] > 0
    assert r["device_configurations"] == token["device_configurations"]
    assert r["ddr_bytes_per_decode_token_planned"] > 0
    target = next(t for t in r["targets"] if t["key"] == "ddr_bytes_vs_min")
    assert target["value"] == pytest.approx(r["ddr_bytes_per_decode_token"] / r["min_ddr_bytes_per_decode_token"])
    # counted at the report's fixed contexts that the 128-position cache holds (64; not 2048)
    (context,) = r["decode_counted_by_context"]
    at = r["decode_counted_by_context"][context]
    assert context == "64" and at["ddr_bytes"] >= at["min_ddr_bytes"] > 0 and at["ms_counted"] > at["ddr_floor_ms"]
    counted_target = next(t for t in r["targets"] if t["key"] == "counted_decode_vs_ddr_floor")
    assert counted_target["value"] == pytest.approx(r["decode_ms_per_token_counted"]["total"]
                                                    / r["ddr_floor_ms_per_token"])


def test_reconfigurations_count_design_switches_token_after_token():
    assert counted.reconfigurations(["a", "a", "a"]) == 0
    assert counted.reconfigurations(["a", "b"]) == 2  # a -> b, then the next token's a
    assert counted.reconfigurations(["n", "q", "k", "a", "n", "g"]) == 6
    assert counted.reconfigurations(["a", "a", "b", "b"]) == 2


def test_one_call_loads_its_first_design_too():
    assert counted.reconfigurations([], repeated=False) == 0
    assert counted.reconfigurations(["a", "a"], repeated=False) == 1
    assert counted.reconfigurations(["a", "b", "b", "a"], repeated=False) == 3


def test_a_prompt_is_placed_launch_by_launch(planned):
    from aielower.backends.aie.catalog import Placement
    from aielower.backends.aie.plan import rows_follow_tokens

    placement = Placement(planned, NPU2)
    decode = cost.decode_function(planned)
    largest = max(b for op in decode.ops if (p := plan_of(op)) is not None for b in p.buckets)
    one = counted.call_design_order(decode, largest, placement)
    launches = sum(len(p.launches_for(p.bucket_for(largest if rows_follow_tokens(op) else 1)))
                   for op in decode.ops if (p := plan_of(op)) is not None)
    assert len(one) == launches and set(one) <= set(placement.designs)
    # the last-token lm_head runs on one row, on decode's design; the other launches on prompt designs
    assert one[-1] == counted.call_design_order(decode, 1, placement)[-1]
    assert counted.reconfigurations(one, repeated=False) >= len(set(one))
    # the host program runs no more than the largest bucket's rows in one call
    for rows in (0, largest + 1):
        with pytest.raises(CompileError, match=f"runs 1 to {largest} rows in one call"):
            counted.call_design_order(decode, rows, placement)


def test_the_report_charges_a_prompts_configuration_loads(planned):
    r = build_report(planned, NPU2, quant="w4g32", new_tokens=8, short_prompts=(8,), prompt_lengths=(16,))
    loads = r["prefill_configuration_loads"]
    assert set(loads) == set(r["prefill_submissions"]) == set(r["prefill_ms"]) == {"8", "16"}
    for n, count in loads.items():
        assert 0 < count <= r["prefill_submissions"][n]
        assert r["prefill_ms_with_configuration_loads"][n] == pytest.approx(
            r["prefill_ms"][n] + count * NPU2.reconfiguration_s * 1e3)
        low, high = r["prefill_ms_with_configuration_loads_at_bounds"][n]
        assert r["prefill_ms"][n] < low < high
    assert set(r["prefill_function_configuration_loads"]) == set(r["prefill_function_ms"])


def test_each_latency_row_has_its_counted_decode_step_and_prefill_with_loads(planned):
    """The card comparison shows the plan-modelled figures beside the counted ones: a row's decode step counted at
    its mean context (reconfigurations charged), its prefill with the prompt's configuration loads."""
    r = build_report(planned, NPU2, quant="w4g32", new_tokens=8, short_prompts=(8,), prompt_lengths=(16,))
    decode = cost.decode_function(planned)
    for row in r["latency"]["decode"] + r["latency"]["benchmark_exact"]:
        at = counted.decode_token_count(planned, NPU2, decode, round(row["mean_kv_len"]))
        assert row["ms_per_token_counted"] == pytest.approx(counted.counted_decode_ms(at, NPU2)["total"])
        assert row["prefill_ms_with_configuration_loads"] == r["prefill_ms_with_configuration_loads"][
            str(row["prompt_tokens"])]
    assert "Time/Token (ms), counted" in render_markdown(r)


def test_counted_milliseconds_charge_traffic_instructions_and_switches():
    token = counted.TokenCount(total=counted.SequenceCount(ddr_read_bytes=57_600_000, instruction_words=1_440_000),
                               submissions=10, reconfigurations=4)
    ms = counted.counted_decode_ms(token, NPU2)
    assert ms["ddr"] == pytest.approx(1.0) and ms["instructions"] == pytest.approx(0.1)
    assert ms["reconfigurations"] == pytest.approx(4 * NPU2.reconfiguration_s * 1e3)
    assert ms["submissions"] == pytest.approx(10 * NPU2.launch_overhead_s * 1e3)
    assert ms["total"] == pytest.approx(sum(v for k, v in ms.items() if k != "total"))
    low, high = NPU2.reconfiguration_bounds_s
    assert low < NPU2.reconfiguration_s < high  # the ASSUMPTION lies between the measured figures
    at_high = counted.counted_decode_ms(token, NPU2, high)
    assert at_high["reconfigurations"] == pytest.approx(4 * high * 1e3)
    assert at_high["total"] - ms["total"] == pytest.approx(4 * (high - NPU2.reconfiguration_s) * 1e3)
