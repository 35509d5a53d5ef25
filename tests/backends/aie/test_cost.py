"""The cost model: exact costs of hand-built launches, chunking and overhead modes, and the minimum DDR traffic of a
tiny planned model counted by hand."""

from __future__ import annotations

from collections import Counter

import pytest

from aielower.backends.aie import cost
from aielower.backends.aie.device import NPU1, NPU2
from aielower.backends.aie.plan import LaunchPlan, OpPlan
from aielower.errors import CompileError


def launch(kernel="linear_w4_gemv", bucket=1, columns=8, rows=4, macs=0, padded_macs=None, ddr_read=0, ddr_write=0,
           ddr_read_per_kv=0, macs_per_kv=0, role="") -> LaunchPlan:
    return LaunchPlan(bucket=bucket, kernel=kernel, params={}, columns=columns, rows=rows, buffers=(), streams=(),
                      macs=macs, padded_macs=macs if padded_macs is None else padded_macs, ddr_read=ddr_read,
                      ddr_write=ddr_write, ddr_read_per_kv=ddr_read_per_kv, macs_per_kv=macs_per_kv, role=role)


def test_rates_come_from_the_device_model():
    assert cost.ddr_bytes_per_s(NPU2) == NPU2.ddr_practical_bytes_per_s == 57.6e9
    assert cost.ddr_bytes_per_s(NPU1) == NPU1.ddr_practical_bytes_per_s == 25.6e9
    # half of one column's shim streams (2 channels x 4 B x 1.8 GHz), the same rule on fewer columns
    assert cost.ddr_bytes_per_s(NPU2, 1) == pytest.approx(7.2e9)
    assert cost.ddr_bytes_per_s(NPU2, 4) == pytest.approx(28.8e9)
    assert cost.macs_per_cycle("linear_w4_gemm", NPU2) == 256 and cost.macs_per_cycle("linear_w4_gemm", NPU1) == 128
    assert cost.vector_macs_per_cycle(NPU2) == cost.macs_per_cycle("linear_w4_gemv", NPU2) == 512 // 32
    assert cost.macs_per_cycle("attention", NPU1) == 16


def test_ddr_bound_launch():
    # 57.6 MB at 57.6 GB/s = 1 ms; 92.16 M MACs at 16 x 32 cores x 1.8 GHz = 0.1 ms; + 45 us
    c = cost.launch_cost(launch(ddr_read=57_000_000, ddr_write=600_000, macs=92_160_000), NPU2)
    assert c.ddr_bytes == 57_600_000 and c.macs == c.useful_macs == 92_160_000
    assert c.dma_s == pytest.approx(1e-3) and c.compute_s == pytest.approx(1e-4)
    assert c.overhead_s == 45e-6 and c.seconds == pytest.approx(1.045e-3)
    assert c.bound == "ddr"


def test_compute_bound_launch_counts_padded_macs():
    # 14.7456 G MACs at 256 x 32 cores x 1.8 GHz = 1 ms; 5.76 MB = 0.1 ms
    c = cost.launch_cost(launch("linear_w4_gemm", 128, macs=14_000_000_000, padded_macs=14_745_600_000,
                                ddr_read=5_760_000), NPU2)
    assert c.compute_s == pytest.approx(1e-3) and c.dma_s == pytest.approx(1e-4)
    assert c.useful_macs == 14_000_000_000 and c.bound == "compute"
    assert c.seconds == pytest.approx(1.045e-3)
    no_overhead = cost.launch_cost(launch("linear_w4_gemm", 128, padded_macs=14_745_600_000, macs=1), NPU2,
                                   overhead=False)
    assert no_overhead.overhead_s == 0 and no_overhead.seconds == pytest.approx(1e-3)


def test_small_launch_is_launch_bound_and_narrow_launches_get_fewer_shim_channels():
    c = cost.launch_cost(launch("rms_norm", columns=1, rows=1, macs=4096, ddr_read=16384, ddr_write=8192), NPU2)
    assert c.dma_s == pytest.approx(24576 / 7.2e9)
    assert c.compute_s == pytest.approx(4096 / (16 * 1 * 1.8e9))
    assert c.bound == "launch"


def test_attention_cost_grows_with_the_kv_cache():
    att = launch("attention", columns=8, rows=2, ddr_read=8192, ddr_write=8192, ddr_read_per_kv=16384,
                 macs_per_kv=8192, role="attention")
    costs = [cost.launch_cost(att, NPU2, kv) for kv in (0, 1, 1000, 4000)]
    assert [c.ddr_bytes for c in costs] == [16384, 32768, 16384 + 16_384_000, 16384 + 65_536_000]
    assert costs[2].macs == costs[2].useful_macs == 8_192_000
    assert costs[3].dma_s == pytest.approx((16384 + 65_536_000) / 57.6e9)
    assert all(a.seconds < b.seconds for a, b in zip(costs, costs[1:]))
    assert costs[0].role == "attention"
    with pytest.raises(CompileError, match="kv_len must be >= 0"):
        cost.launch_cost(att, NPU2, -1)


def _plan(kind, launches):
    return OpPlan(kind, "npu2", {}, tuple(launches))


def test_function_cost_buckets_chunks_and_overhead_modes():
    gemv = launch(ddr_read=57_600_000, role="gemv")  # 1 ms
    gemms = [launch("linear_w4_gemm", b, ddr_read=b * 57_600, role="gemm") for b in (128, 2048)]  # b/1000 ms
    att = [launch("attention", b, ddr_read_per_kv=57_600, role="attention") for b in (1, 128, 2048)]  # 1 us / pos
    fp = cost.FunctionPlan("decode", (
        cost.PlannedOp("lin", "quant.linear", _plan("linear", [gemv] + gemms), 3),
        cost.PlannedOp("att", "fused.attention", _plan("attention", att), 2),
    ), Counter({"tensor.reshape": 5}))
    assert fp.largest_bucket == 2048

    step = cost.function_cost(fp, NPU2, 1, kv_len=100, overhead="none")
    assert step.chunks == (1,) and step.launches == 5 and step.host_ops == Counter({"tensor.reshape": 5})
    assert step.seconds == pytest.approx(3 * 1e-3 + 2 * 100e-6)
    assert step.ddr_bytes == 3 * 57_600_000 + 2 * 100 * 57_600

    # 3000 rows: a 2048 chunk (cache 0..2048), then 952 rows at bucket 2048 (cache 0..3000)
    prompt = cost.function_cost(fp, NPU2, 3000, kv_len=3000, overhead="none")
    assert prompt.chunks == (2048, 952)
    assert [x.bucket for x in prompt.ops[0].launches] == [2048, 2048]
    assert prompt.seconds == pytest.approx(3 * 2 * 2.048e-3 + 2 * (2048 + 3000) * 1e-6)

    per_launch = cost.function_cost(fp, NPU2, 3000, kv_len=3000)
    assert per_launch.overhead == "launch" and per_launch.launches == 10
    assert per_launch.seconds == pytest.approx(prompt.seconds + 10 * 45e-6)
    one_submission = cost.function_cost(fp, NPU2, 3000, kv_len=3000, overhead="submission")
    assert one_submission.seconds == pytest.approx(prompt.seconds + 2 * 45e-6)  # one per chunk
    with pytest.raises(CompileError, match="unknown overhead mode 'sometimes'"):
        cost.function_cost(fp, NPU2, 1, overhead="sometimes")
    with pytest.raises(CompileError, match="tokens must be >= 1"):
        cost.function_cost(fp, NPU2, 0)


# --------------------------------------------------------------------------- a tiny planned model


@pytest.fixture(scope="module")
def planned():
    from aielower.api import QuantConfig, default_pipeline
    from aielower.frontend import import_model
    from aielower.passes import PassManager
    from tests.conftest import tiny_qwen2

    module = import_model(tiny_qwen2(), "tiny", max_seq_len=128)
    quant = QuantConfig(bits=4, group_size=32, lm_head_group_size=32)
    PassManager.parse(default_pipeline("ref", quant) + ",plan-aie-tiling{device=npu2}").run(module)
    return module


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
    assert steps[0].seconds < steps[1].seconds < steps[2].seconds
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
