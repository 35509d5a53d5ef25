"""Perplexity: the chunked figure equals a direct torch computation; bad input is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import aielower
from aielower.cli import main
from aielower.data import DataError, check_disjoint
from aielower.eval.perplexity import check_seqlen, chunk_nll, eval_tokens, perplexity, torch_logits_fn


def direct_perplexity(model, tokens, seqlen, n):
    """exp(mean cross-entropy) over the first n chunks, straight from torch."""
    chunks = torch.as_tensor(tokens[: n * seqlen]).reshape(n, seqlen)
    with torch.no_grad():
        logits = model(chunks).logits
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), chunks[:, 1:].reshape(-1))
    return float(torch.exp(loss))


def test_perplexity_of_a_tiny_model_equals_a_direct_torch_computation(eval_dir):
    path, model = eval_dir
    tokens, source = eval_tokens(aielower.load_tokenizer(path), path / "text.txt")
    assert source == str(path / "text.txt") and len(tokens) > 4 * 48
    cm = aielower.compile(model, functions=("prefill",))
    result = perplexity(cm, tokens, seqlen=48, samples=2, all_chunks=True, progress=False)
    n_chunks = len(tokens) // 48
    assert (result.samples, result.seqlen, result.n_chunks, result.chunks_all) == (2, 48, n_chunks, n_chunks)
    assert result.ppl_samples == pytest.approx(direct_perplexity(model, tokens, 48, 2), rel=1e-5)
    assert result.ppl_all == pytest.approx(direct_perplexity(model, tokens, 48, n_chunks), rel=1e-5)
    baseline = perplexity(torch_logits_fn(model), tokens, seqlen=48, samples=2, backend="torch", progress=False)
    assert baseline.ppl_all is None and baseline.ppl_samples == pytest.approx(result.ppl_samples, rel=5e-5)


def test_chunk_nll_in_blocks_equals_one_block():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1, 70, 11)).astype(np.float32) * 5
    ids = rng.integers(0, 11, 70)
    expected = F.cross_entropy(torch.from_numpy(logits[0, :-1]).double(), torch.from_numpy(ids[1:]), reduction="sum")
    assert chunk_nll(logits, ids, block=16) == pytest.approx(float(expected), rel=1e-12)


def test_bad_settings_are_clear_errors():
    tokens = np.arange(100)
    with pytest.raises(DataError, match="seqlen 4096 is longer than the model's max_position_embeddings"):
        check_seqlen(4096, 256)
    with pytest.raises(DataError, match="fewer than one chunk of seqlen=200"):
        perplexity(lambda ids: None, tokens, seqlen=200, samples=1)
    with pytest.raises(DataError, match=r"--samples must be in \[1, 3\]"):
        perplexity(lambda ids: None, tokens, seqlen=32, samples=8)
    with pytest.raises(DataError, match="evaluation text file /no/such.txt does not exist"):
        eval_tokens(None, "/no/such.txt")


def test_calibration_and_evaluation_text_must_not_overlap(tmp_path):
    line = "A line long enough to count as shared text between the two files, surely.\n"
    (tmp_path / "eval.txt").write_text("heading\n" + line + "more evaluation text of its own, also long enough\n")
    (tmp_path / "calib.txt").write_text("heading\n" + "calibration text of its own that is long enough\n")
    check_disjoint(tmp_path / "calib.txt", tmp_path / "eval.txt")  # a short shared heading is fine
    (tmp_path / "calib.txt").write_text("other text\n" + line)
    with pytest.raises(DataError, match="share 1 line"):
        check_disjoint(tmp_path / "calib.txt", tmp_path / "eval.txt")
    with pytest.raises(DataError, match="are the same file"):
        check_disjoint(tmp_path / "eval.txt", tmp_path / "eval.txt")


def test_cli_perplexity_writes_json(eval_dir, tmp_path, capsys):
    path, model = eval_dir
    out = tmp_path / "ppl.json"
    argv = ["eval", "perplexity", str(path), "--data", str(path / "text.txt"), "--seqlen", "48", "--samples", "2",
            "--all", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    assert "perplexity (2 samples of 48 tokens):" in capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert {"ppl_samples", "ppl_all", "samples", "seqlen", "n_tokens", "backend", "quant"} <= set(figures)
    assert (figures["samples"], figures["seqlen"], figures["backend"], figures["quant"]) == (2, 48, "ref", "fp32")
    tokens, _ = eval_tokens(aielower.load_tokenizer(path), path / "text.txt")
    assert figures["ppl_samples"] == pytest.approx(direct_perplexity(model, tokens, 48, 2), rel=1e-5)
    assert main(argv[:-3] + ["--quant", "w4g32", "--method", "awq", "--calib", str(path / "calib.txt"),
                             "--calib-samples", "2", "--calib-seqlen", "32", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["quant"] == "w4g32 awq"
    assert "awq: 2 x 32 calibration tokens" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--backend", "torch", "--quant", "w4g32"], "--backend torch runs the fp32 model"),
        (["--method", "awq"], "--method awq needs --quant"),
        (["--quant", "w4g32", "--calib", "x.txt"], "apply to --method awq only"),
        (["--seqlen", "1000"], "seqlen 1000 is longer than the model's max_position_embeddings (256)"),
        (["--data", "/no/such/file.txt"], "evaluation text file /no/such/file.txt does not exist"),
        (["--quant", "w4g32", "--method", "awq", "--calib", "TEXT"], "are the same file"),
    ],
)
def test_cli_perplexity_errors(eval_dir, extra, message, capsys):
    path, _ = eval_dir
    extra = [str(path / "text.txt") if e == "TEXT" else e for e in extra]
    data = [] if "--data" in extra else ["--data", str(path / "text.txt")]
    assert main(["eval", "perplexity", str(path), *data, "--seqlen", "48", "--samples", "1", *extra]) == 1
    assert message in capsys.readouterr().err
