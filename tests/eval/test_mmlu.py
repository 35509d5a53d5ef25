"""MMLU: prompt, answer tokens, scoring by the highest logit among A-D, data errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import aielower
from aielower.cli import main
from aielower.data import MMLU, DataError
from aielower.eval.mmlu import answer_token_ids, load_mmlu, mmlu_accuracy, prompt
from tests.conftest import torch_logits

ROWS = [
    {"question": f"Question {i}?", "answer_a": "one", "answer_b": "two", "answer_c": "three", "answer_d": "four",
     "correct_answer": answer, "topic": "toy algebra"}
    for i, answer in enumerate("CACDCB")
]


def write_rows(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_is_the_usual_zero_shot_format():
    assert prompt(ROWS[0]) == ("The following are multiple choice questions (with answers) about toy algebra.\n\n"
                               "Question 0?\nA. one\nB. two\nC. three\nD. four\nAnswer:")


def test_scoring_picks_the_highest_logit_among_the_four_answers(eval_dir):
    path, _ = eval_dir
    tokenizer = aielower.load_tokenizer(path)
    choices = answer_token_ids(tokenizer)
    assert choices == [95, 96, 97, 98]

    def always_c(ids):  # " C" beats A, B, D; a non-answer token is higher still and must be ignored
        logits = np.zeros((1, ids.shape[1], 128), dtype=np.float32)
        logits[0, -1, choices] = [1.0, 2.0, 3.0, 0.5]
        logits[0, -1, 5] = 10.0
        return logits

    result = mmlu_accuracy(always_c, tokenizer, ROWS, progress=False)
    assert result.predictions == ["C"] * 6
    assert (result.correct, result.n, result.accuracy) == (3, 6, 50.0)


def test_model_answers_are_the_argmax_of_its_next_token_logits(eval_dir):
    path, model = eval_dir
    tokenizer = aielower.load_tokenizer(path)
    cm = aielower.compile(model, functions=("prefill",))
    result = mmlu_accuracy(cm, tokenizer, ROWS, progress=False)
    choices = answer_token_ids(tokenizer)
    expected = []
    for row in ROWS:
        ids = np.asarray([tokenizer(prompt(row), add_special_tokens=False)["input_ids"]])
        expected.append("ABCD"[int(np.argmax(torch_logits(model, ids)[0, -1, choices]))])
    assert result.predictions == expected
    assert result.correct == sum(p == r["correct_answer"] for p, r in zip(expected, ROWS))


def test_the_bundled_file_has_the_model_card_subject():
    if not MMLU.is_file():
        pytest.skip(f"{MMLU} is not present")
    rows = load_mmlu("abstract_algebra", 30)
    assert len(rows) == 30 and {r["topic"] for r in rows} == {"abstract algebra"}
    assert len(load_mmlu("Abstract Algebra")) == 100


def test_data_errors(tmp_path):
    path = write_rows(tmp_path / "m.jsonl")
    with pytest.raises(DataError, match="no MMLU questions on 'geometry'.*subjects there: toy algebra"):
        load_mmlu("geometry", path=path)
    with pytest.raises(DataError, match=r"--n must be in \[1, 6\]"):
        load_mmlu("toy algebra", 30, path)
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: missing field"):
        load_mmlu("toy algebra", path=tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="MMLU file /no/such.jsonl does not exist"):
        load_mmlu("toy algebra", path="/no/such.jsonl")


def test_cli_mmlu(eval_dir, tmp_path, capsys):
    path, _ = eval_dir
    data = write_rows(tmp_path / "m.jsonl")
    assert main(["eval", "mmlu", str(path), "--subject", "toy_algebra", "--n", "4", "--data", str(data),
                 "--no-progress", "--json", str(tmp_path / "m.json")]) == 0
    assert "MMLU toy algebra: " in capsys.readouterr().out
    figures = json.loads((tmp_path / "m.json").read_text())
    assert figures["n"] == 4 and len(figures["predictions"]) == 4
    assert main(["eval", "mmlu", str(path), "--subject", "nothing", "--data", str(data)]) == 1
    assert "no MMLU questions on 'nothing'" in capsys.readouterr().err
