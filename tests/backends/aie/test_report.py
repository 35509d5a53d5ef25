"""The AIE latency report and ``aielower bench``: report.json keys, modelled labels, the card's figures, the CLI."""

from __future__ import annotations

import json
import math

import jinja2
import pytest

from aielower.backends.aie import report as report_module
from aielower.backends.aie.device import NPU1, NPU2
from aielower.cli import main
from aielower.errors import CompileError
from aielower.eval import model_card

REQUIRED_KEYS = ("device", "decode_ms_per_token", "ddr_bytes_per_decode_token", "min_ddr_bytes_per_decode_token",
                 "prefill_ms", "ops")


@pytest.fixture(scope="module")
def planned():
    from aielower.api import QuantConfig, default_pipeline
    from aielower.frontend import import_model
    from aielower.passes import PassManager
    from tests.conftest import tiny_qwen2

    module = import_model(tiny_qwen2(num_hidden_layers=1), "tiny", max_seq_len=256)
    quant = QuantConfig(bits=4, group_size=32, lm_head_group_size=32)
    PassManager.parse(default_pipeline("ref", quant) + ",plan-aie-tiling{device=npu2}").run(module)
    return module


@pytest.fixture(scope="module")
def report(planned):
    return report_module.build_report(planned, NPU2, quant="w4g32 + lm_head g32")


def test_report_has_the_required_keys_and_consistent_figures(report):
    for key in REQUIRED_KEYS:
        assert key in report
    assert report["device"] == "npu2" and report["modelled"] is True
    assert report["card"]["applies"] is False  # a tiny model is not the card's
    # 256-position cache: 128 + 59 fits, 256 + 59 does not
    assert report["skipped_prompt_lengths"] == [256, 512, 1024, 2048]
    assert set(report["prefill_ms"]) == {"23", "24", "25", "26", "27", "128"}
    assert report["ddr_bytes_per_decode_token"] >= report["min_ddr_bytes_per_decode_token"] > 0
    assert report["ddr_floor_ms_per_token"] == pytest.approx(
        report["min_ddr_bytes_per_decode_token"] / NPU2.ddr_practical_bytes_per_s * 1e3)
    by = report["decode_ms_per_token_by_overhead"]
    assert by["launch"] == report["decode_ms_per_token"] and by["none"] <= by["submission"] <= by["launch"]
    assert {t["key"] for t in report["targets"]} == {"ddr_bytes_vs_min", "padding_waste", "decode_vs_ddr_floor",
                                                     "counted_decode_vs_ddr_floor"}
    assert all(t["pass"] == (t["value"] <= t["limit"]) for t in report["targets"])


def test_op_rows_model_planned_ops_and_only_count_host_ops(report):
    modelled = [r for r in report["ops"] if r["ms"] is not None]
    host = [r for r in report["ops"] if r["ms"] is None]
    assert {r["bound"] for r in modelled} <= {"ddr", "compute", "launch"}
    # decode attention rotates q and k itself: no rope launch in a decode step
    assert {r["launch"] for r in modelled if r["kind"] == "attention"} == {"attention"}
    assert sum(r["share"] for r in modelled) == pytest.approx(1.0)
    assert host and all(r["kind"] == "host (not modelled)" and r["ddr_bytes"] is None for r in host)
    assert any(r["op"] == "nn.embedding" for r in host)
    assert report["launches_per_decode_token"] == sum(r["launches"] for r in modelled)


def test_written_report_is_labelled_modelled(report, tmp_path):
    md, js = report_module.write_report(report, tmp_path)
    data = json.loads(js.read_text())  # strict JSON: figures the card lacks are null, not NaN
    assert data["device"] == "npu2" and data["prefill_ms"] == report["prefill_ms"]
    text = md.read_text()
    assert "| Example# | Prompt Length (tokens) | New Tokens Generated | Total Time (s), modelled |" in text
    assert "Time/Token (ms), card" in text and "host (not modelled)" in text
    assert "## Per-op breakdown: one decode step at context 55 (modelled)" in text
    assert "reference/ryzenai-qwen1.5-7b-chat-model-card.md" in text
    assert "shown here for information" in text  # the targets are the 7B's


def test_template_is_strict(report):
    broken = dict(report)
    del broken["ddr_floor_ms_per_token"]
    with pytest.raises(jinja2.UndefinedError):
        report_module.render_markdown(broken)


def test_report_refuses_a_module_planned_for_another_device(planned):
    with pytest.raises(CompileError, match="planned for npu2, not npu1"):
        report_module.build_report(planned, NPU1, quant="w4g32")


def test_card_figures_are_self_consistent():
    assert len(model_card.DECODE_SHORT_PROMPTS) == 10 and len(model_card.BENCHMARK_EXACT) == 5
    assert [r.prompt_tokens for r in model_card.BENCHMARK_EXACT] == [128, 256, 512, 1024, 2048]
    for row in model_card.DECODE_SHORT_PROMPTS + model_card.BENCHMARK_EXACT:
        assert row.new_tokens == 60
        assert row.tokens_per_s == pytest.approx(1e3 / row.ms_per_token, rel=1e-4)
    assert model_card.BENCHMARK_EXACT[-1].prefill_ms == 6317.18
    assert model_card.card_applies("qwen1.5-7b-chat", "npu2") and not model_card.card_applies("tiny", "npu2")


def test_bench_cli_writes_report_md_and_json(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "out"
    argv = ["bench", str(tiny_model_dir), "--device", "npu1", "--quant", "w4g32", "-o", str(out), "--plot"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "--plot needs matplotlib" in captured.err
    assert "Time/Token (ms), modelled" in captured.out and "## Targets" in captured.out
    assert "wrote " + str(out / "report.md") in captured.out
    data = json.loads((out / "report.json").read_text())
    assert data["device"] == "npu1" and data["quant"] == "w4g32 + lm_head g32"
    assert all(math.isfinite(data[k]) for k in REQUIRED_KEYS[1:4])
    assert not (out / "report.png").exists()


def test_bench_cli_plot(tiny_model_dir, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["bench", str(tiny_model_dir), "--quant", "w4g32", "-o", str(tmp_path), "--plot"]) == 0
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")


def test_bench_cli_option_errors(capsys):
    assert main(["bench", "qwen2-0.5b", "--quant", "int4"]) == 1
    assert "bad --quant 'int4'" in capsys.readouterr().err
