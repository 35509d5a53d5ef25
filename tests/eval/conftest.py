"""A tiny model directory whose tokenizer has the MMLU answer tokens " A" .. " D"."""

from __future__ import annotations

import json

import pytest

from tests.conftest import save_tiny_tokenizer, tiny_qwen2

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity. ") * 12
CALIB = "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little. " * 20


def save_answer_tokenizer(directory) -> None:
    """The tiny single-character tokenizer plus merged tokens for " A" .. " D" (ids 95-98)."""
    save_tiny_tokenizer(directory)
    vocab = json.loads((directory / "vocab.json").read_text())
    for i, letter in enumerate("ABCD"):
        del vocab[f"<extra_{95 + i}>"]
        vocab["\u0120" + letter] = 95 + i
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"\u0120 {c}\n" for c in "ABCD"))


@pytest.fixture
def eval_dir(tmp_path):
    """(directory with a 1-layer tiny model + tokenizer + text.txt + calib.txt, the model)."""
    model = tiny_qwen2(seed=3, num_hidden_layers=1)
    model.save_pretrained(tmp_path)
    save_answer_tokenizer(tmp_path)
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "calib.txt").write_text(CALIB)
    return tmp_path, model
