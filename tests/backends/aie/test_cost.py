"""The cost model: exact costs of hand-built launches, chunking and overhead modes, and the minimum DDR traffic of a
tiny planned model counted by hand."""

from __future__ import annotations

from collections import Counter

import pytest

from aielower.backends.aie import cost
from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.device import NPU1, NPU2
from aielower.backends.aie.plan import LaunchPlan, OpPlan
from aielower.backends.aie.families.attention import plan_attention
from aielower.backends.aie.families.linear_w4 import plan_linear
from aielower.backends.aie.families.rms_norm import plan_norm
from aielower.errors import CompileError


def _launch(plan: OpPlan, bucket: int, role: str | None = None) -> LaunchPlan:
    return next(x for x in plan.launches_for(bucket) if role is None or x.role == role)


QKV_7B = plan_linear("qkv", 12288, 4096, 128, True, (1, 128, 2048), NPU2)  # Qwen1.5-7B's fused q/k/v projection
ATTENTION_7B = plan_attention("att", 32, 32, 128, 128 ** -0.5, True, 4096, (1, 128, 2048), NPU2)


def test_rates_come_from_the_device_model():
    assert cost.ddr_bytes_per_s(NPU2) == NPU2.ddr_practical_bytes_per_s == 57.6e9
    assert cost.ddr_bytes_per_s(NPU1) == NPU1.ddr_practical_bytes_per_s == 25.6e9
    # half of one column's shim streams (2 channels x 4 B x 1.8 GHz), the same rule on fewer columns
    assert cost.ddr_bytes_per_s(NPU2, 1) == pytest.approx(7.2e9)
    assert cost.ddr_bytes_per_s(NPU2, 4) == pytest.approx(28.8e9)
    assert cost.macs_per_cycle("linear_w4_gemm", NPU2) == 256 and cost.macs_per_cycle("linear_w4_gemm", NPU1) == 128
    assert cost.vector_macs_per_cycle(NPU2) == cost.macs_per_cycle("linear_w4_gemv", NPU2) == 512 // 32


def _compute_s(launch, plan, kv_len=0):
    spec = kernel_spec(launch, NPU2)
    calls = cost.calls_per_core(launch, plan.shape, kv_len)
    return sum(n * spec.cycles(spec.symbol + (f"_{fn}" if fn else "")) for fn, n in calls.items()) / NPU2.clock_hz


def test_a_decode_gemv_is_ddr_bound_and_its_compute_is_the_kernels_cycles():
    gemv = _launch(QKV_7B, 1)
    c = cost.launch_cost(gemv, NPU2, shape=QKV_7B.shape)
    assert c.ddr_bytes == gemv.ddr_read + gemv.ddr_write and c.dma_s == pytest.approx(c.ddr_bytes / 57.6e9)
    # the output tiles split over 32 cores, every K tile of each (dequantization included in the cycles); each tile
    # stored in two halves
    tiles = -(-QKV_7B.shape["n_pad"] // QKV_7B.shape["tn"] // 32)
    k_tiles = QKV_7B.shape["k_pad"] // QKV_7B.shape["tk"]
    assert gemv.params["ys"] == QKV_7B.shape["tn"] // 2
    # qkv's bias is in bias tiles: its accumulators start from them (bias_init) instead of zero (init)
    assert gemv.params["bias_init"]
    assert cost.calls_per_core(gemv, QKV_7B.shape) == {"bias_init": tiles, "step": tiles * k_tiles, "store": 2 * tiles}
    assert c.compute_s == pytest.approx(_compute_s(gemv, QKV_7B)) and 0 < c.compute_s < c.dma_s
    assert c.bound == "ddr" and c.overhead_s == 45e-6 and c.seconds == pytest.approx(c.dma_s + 45e-6)


def test_a_prefill_gemm_charges_its_kernel_cycles():
    gemm = _launch(QKV_7B, 2048)
    c = cost.launch_cost(gemm, NPU2, shape=QKV_7B.shape)
    assert c.compute_s == pytest.approx(_compute_s(gemm, QKV_7B))
    assert c.bound == "compute" and c.seconds == pytest.approx(c.compute_s + 45e-6)
    assert c.macs >= c.useful_macs == 2048 * 12288 * 4096
    no_overhead = cost.launch_cost(gemm, NPU2, overhead=False, shape=QKV_7B.shape)
    assert no_overhead.overhead_s == 0 and no_overhead.seconds == pytest.approx(c.compute_s)
    with pytest.raises(CompileError, match="needs its op plan's shape"):
        cost.launch_cost(gemm, NPU2)


def test_a_one_row_norm_is_launch_bound():
    plan = plan_norm("n", 4096, 1e-6, False, (1,), NPU2)
    c = cost.launch_cost(_launch(plan, 1), NPU2, shape=plan.shape)
    assert c.bound == "launch" and c.seconds == pytest.approx(45e-6 + max(c.dma_s, c.compute_s))


def test_attention_cost_grows_with_the_kv_cache():
    att = _launch(ATTENTION_7B, 1, "attention")
    costs = [cost.launch_cost(att, NPU2, kv, shape=ATTENTION_7B.shape) for kv in (0, 1, 1000, 4000)]
    assert [c.ddr_bytes - costs[0].ddr_bytes for c in costs] == [kv * att.ddr_read_per_kv for kv in (0, 1, 1000, 4000)]
    items = -(-32 // att.cores)  # KV heads per core, one query tile each
    tkv = att.params["tkv"]
    # the cache tiles of the rows before the step, then the step's own row from the query record
    calls = [cost.calls_per_core(att, ATTENTION_7B.shape, kv) for kv in (1000, 4000)]
    assert [c["step"] for c in calls] == [items * -(-999 // tkv), items * -(-3999 // tkv)]
    assert [c["step_new"] for c in calls] == [items, items]
    assert all(a.seconds < b.seconds for a, b in zip(costs[1:], costs[2:]))
    assert costs[0].role == "attention"
    with pytest.raises(CompileError, match="kv_len must be >= 0"):
        cost.launch_cost(att, NPU2, -1, shape=ATTENTION_7B.shape)


def test_function_cost_buckets_chunks_and_overhead_modes():
    fp = cost.FunctionPlan("decode", (
        cost.PlannedOp("lin", "quant.linear", QKV_7B, 3),
        cost.PlannedOp("att", "fused.attention", ATTENTION_7B, 2),
    ), Counter({"tensor.reshape": 5}))
    assert fp.largest_bucket == 2048

    step = cost.function_cost(fp, NPU2, 1, kv_len=100, overhead="none")
    assert step.chunks == (1,) and step.host_ops == Counter({"tensor.reshape": 5})
    assert step.launches == 3 * 1 + 2 * 1  # decode attention rotates q and k itself: one launch
    lin = cost.launch_cost(_launch(QKV_7B, 1), NPU2, overhead=False, shape=QKV_7B.shape)
    att = [cost.launch_cost(x, NPU2, 100, overhead=False, shape=ATTENTION_7B.shape)
           for x in ATTENTION_7B.launches_for(1)]
    assert step.seconds == pytest.approx(3 * lin.seconds + 2 * sum(a.seconds for a in att))
    assert step.ddr_bytes == 3 * lin.ddr_bytes + 2 * sum(a.ddr_bytes for a in att)

    # 3000 rows: a 2048 chunk (cache 0..2048), then 952 rows at bucket 2048 (cache 0..3000)
    prompt = cost.function_cost(fp, NPU2, 3000, kv_len=3000, overhead="none")
    assert prompt.chunks == (2048, 952)
    assert [x.bucket for x in prompt.ops[0].launches] == [2048, 2048]

    per_launch = cost.function_cost(fp, NPU2, 3000, kv_len=3000)
    assert per_launch.overhead == "launch" and per_launch.launches == 2 * (3 + 2 * 2)  # prompt: rope, attention
    assert per_launch.seconds == pytest.approx(prompt.seconds + per_launch.launches * 45e-6)
    one_submission = cost.function_cost(fp, NPU2, 3000, kv_len=3000, overhead="submission")
    assert one_submission.seconds == pytest.approx(prompt.seconds + 2 * 45e-6)  # one per chunk
    with pytest.raises(CompileError, match="unknown overhead mode 'sometimes'"):
        cost.function_cost(fp, NPU2, 1, overhead="sometimes")
    with pytest.raises(CompileError, match="tokens must be >= 1"):
        cost.function_cost(fp, NPU2, 0)


# --------------------------------------------------------------------------- a tiny planned model


def test_min_ddr_bytes_of_a_tiny_model_by_hand(planned):
    # hidden 64, intermediate 96, 4 heads of 16 (no GQA), 2 layers, vocab 128; 4-bit, group 32, bf16 scales, u4 zeros
    def q4(n, k):
        return n * k // 2 + (n * k // 32) * (2 + 0.5)

    per_layer = (q4(192, 64) + 192 * 2  # qkv_proj + bias
                 + q4(64, 64)  # o_proj
                 + q4(192, 64)  # gate_up_proj
                 + q4(64, 96)  # down_proj
                 + 2 * 64 * 2)  # input / post-attention norms
    weights = 2 * per_layer + 64 * 2 + q4(128, 64)  # + final norm + lm_head; no embedding table
    assert weights == 46400
    assert cost.min_weight_bytes_per_decode_token(planned) == 46400
    assert cost.kv_bytes_per_position(planned) == 2 * 2 * 4 * 16 * 2  # layers x (K, V) x heads x dim x bf16
    assert cost.min_ddr_bytes_per_decode_token(planned, 10) == 46400 + 10 * 512


def test_decode_cost_of_a_planned_model(planned):
    fp = cost.FunctionPlan.of(planned.functions["decode"])
    # per layer 4 linears, silu_mul, attention, 2 norms; then the final norm and the lm_head
    assert sum(p.count for p in fp.ops) == 2 * 8 + 2
    steps = [cost.function_cost(fp, NPU2, 1, kv_len=kv) for kv in (1, 32, 128)]
    # 1 and 32 positions: one KV tile either way (the tiny model's attention launch is overhead-bound: its time may
    # not grow with the context, its traffic does)
    assert steps[0].seconds <= steps[1].seconds <= steps[2].seconds
    assert steps[0].ddr_bytes < steps[1].ddr_bytes < steps[2].ddr_bytes
    # the planned traffic at least covers the minimum
    assert steps[1].ddr_bytes >= cost.min_ddr_bytes_per_decode_token(planned, 32)
    assert "nn.embedding" in steps[0].host_ops

    lat = cost.model_latency(planned, NPU2, prompt_len=20, new_tokens=5, planned=fp)
    assert len(lat.steps) == 4 and [s.kv_len for s in lat.steps] == [21, 22, 23, 24]
    assert lat.prefill.tokens == 20 and lat.prefill.kv_len == 20
    assert lat.ms_per_token == pytest.approx(1e3 * sum(s.seconds for s in lat.steps) / 4)
    assert lat.tokens_per_s == pytest.approx(1e3 / lat.ms_per_token)
    assert lat.total_s == pytest.approx(lat.prefill.seconds + sum(s.seconds for s in lat.steps))
    with pytest.raises(CompileError, match="do not fit the KV cache of 128"):
        cost.model_latency(planned, NPU2, prompt_len=100, new_tokens=30)
    assert 0 <= cost.padding_waste(fp, 1) < 0.5


def test_the_decode_lm_head_runs_on_one_row_per_prompt(planned):
    """The decode function keeps the last token's logits: its lm_head is planned for one row and batches (buckets 1
    and 128), and a prompt's cost charges it one row (GEMV), while the ops before it run at the prompt's bucket."""
    fp = cost.FunctionPlan.of(planned.functions["decode"])
    lm_head = next(p for p in fp.ops if p.label == "lm_head")
    assert not lm_head.per_token and lm_head.plan.buckets == (1, 128)
    assert all(p.per_token for p in fp.ops if p is not lm_head)
    prompt = cost.function_cost(fp, NPU2, 100, kv_len=100)
    by_label = {op.label: op for op in prompt.ops}
    assert [x.role for x in by_label["lm_head"].launches] == ["gemv"]
    assert {x.bucket for x in by_label["model.layers.*.mlp.down_proj"].launches} == {128}
    prefill_lm_head = next(p for p in cost.FunctionPlan.of(planned.functions["prefill"]).ops if p.label == "lm_head")
    assert prefill_lm_head.per_token and 128 in prefill_lm_head.plan.buckets  # prefill scores every position
