"""`aielower eval table`: the five rows of the model card's accuracy table on a tiny model."""

from __future__ import annotations

import json

import pytest

from aielower.cli import main
from tests.eval.test_mmlu import write_rows


def test_table_has_the_model_card_rows_and_columns(eval_dir, tmp_path, capsys):
    path, _ = eval_dir
    out = tmp_path / "table.json"
    argv = ["eval", "table", str(path), "--data", str(path / "text.txt"), "--seqlen", "48", "--samples", "2",
            "--all-chunks", "3", "--subject", "toy algebra", "--n", "4", "--mmlu-data",
            str(write_rows(tmp_path / "m.jsonl")), "--group", "32", "--lm-head-group", "16",
            "--calib", str(path / "calib.txt"), "--calib-samples", "2", "--calib-seqlen", "32", "--no-progress",
            "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "**Precision + Config**", "**Dev**", "**Perplexity (2 samples)**", "**Perplexity (first 3 of 42 chunks)**",
        "**MMLU (toy algebra, 4)**"]
    assert len({len(line) for line in lines[:7]}) == 1  # columns aligned
    configs = [line.split("|")[1].strip() + " | " + line.split("|")[2].strip() for line in lines[2:7]]
    assert configs == ["fp32 | CPU (torch)", "fp32 | CPU (ref)", "w4 (RTN, 4-bit, g:32) | CPU (ref)",
                       "w4 (AWQ, 4-bit, g:32) | CPU (ref)", "w4 (AWQ, 4-bit, g:32) + lm_head(g:16) | CPU (ref)"]
    rows = json.loads(out.read_text())["rows"]
    torch_row, ref_row = rows[0], rows[1]
    assert torch_row["ppl_samples"] == pytest.approx(ref_row["ppl_samples"], rel=5e-5)
    assert all(r["ppl_all"] is not None and r["mmlu"] is not None for r in rows)
    assert rows[3]["notes"].startswith("awq: 2 x 32 calibration tokens")
    assert rows[4]["ppl_samples"] != rows[3]["ppl_samples"]  # the lm_head is quantized in the last row
    assert "time per row:" in text
