"""MMLU accuracy, zero-shot, as the Ryzen AI model card reports it (abstract algebra, 30 questions).

Each question becomes the usual MMLU prompt (Hendrycks et al.)::

    The following are multiple choice questions (with answers) about abstract algebra.

    <question>
    A. <answer a>
    B. <answer b>
    C. <answer c>
    D. <answer d>
    Answer:

and the model's answer is whichever of the tokens " A", " B", " C", " D" has the highest
next-token logit after "Answer:". Accuracy is the percentage answered correctly. Rows are
taken in file order: the first ``n`` of the subject.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aielower.data import MMLU, DataError, read_text

LETTERS = ("A", "B", "C", "D")
FIELDS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")


def normalize_subject(subject: str) -> str:
    """``abstract_algebra`` and ``Abstract Algebra`` both name ``abstract algebra``."""
    return " ".join(subject.replace("_", " ").lower().split())


def load_mmlu(subject: str, n: int | None = None, path: str | Path | None = None) -> list[dict]:
    """The first ``n`` rows (all if None) of ``subject`` from an MMLU jsonl file."""
    path = Path(path) if path is not None else MMLU
    text = read_text(path, "MMLU")
    wanted = normalize_subject(subject)
    rows, topics = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not a JSON object ({e.msg})") from None
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise DataError(f"{path}:{number}: missing field(s) {', '.join(missing)}; each row needs {', '.join(FIELDS)}")
        if row["question"] == "question" and row["correct_answer"] == "answer":
            continue  # a CSV header row carried into the data (the bundled file has two)
        if row["correct_answer"] not in LETTERS:
            raise DataError(f"{path}:{number}: correct_answer must be one of A-D, got {row['correct_answer']!r}")
        topic = normalize_subject(row["topic"])
        topics.add(topic)
        if topic == wanted:
            rows.append(row)
    if not rows:
        known = ", ".join(sorted(topics)[:8]) + (", ..." if len(topics) > 8 else "")
        raise DataError(f"no MMLU questions on {subject!r} in {path}; subjects there: {known}")
    if n is not None:
        if n < 1 or n > len(rows):
            raise DataError(f"--n must be in [1, {len(rows)}] ({len(rows)} questions on {wanted!r}), got {n}")
        rows = rows[:n]
    return rows


def prompt(row: dict) -> str:
    subject = normalize_subject(row["topic"])
    options = "\n".join(f"{letter}. {row['answer_' + letter.lower()]}" for letter in LETTERS)
    return (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            f"{row['question'].strip()}\n{options}\nAnswer:")


def answer_token_ids(tokenizer) -> list[int]:
    """Ids of " A" .. " D"; each must be one token."""
    ids = []
    for letter in LETTERS:
        tokens = tokenizer(" " + letter, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise DataError(f"the tokenizer splits ' {letter}' into {len(tokens)} tokens; MMLU scoring needs one")
        ids.append(tokens[0])
    return ids


@dataclass
class MMLUResult:
    subject: str
    n: int
    correct: int
    accuracy: float  # percent
    predictions: list[str]
    backend: str
    quant: str
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def mmlu_accuracy(logits_fn: Callable[[np.ndarray], np.ndarray], tokenizer, rows: list[dict], *,
                  backend: str = "ref", quant: str = "fp32", progress: bool = True) -> MMLUResult:
    """Zero-shot accuracy of ``logits_fn`` (ids [1, seq] -> logits [1, seq, vocab]) on ``rows``."""
    t0 = time.perf_counter()
    choices = answer_token_ids(tokenizer)
    predictions = []
    items = rows
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(rows, desc=f"mmlu {backend} {quant}", unit="question", leave=False)
    for row in items:
        ids = np.asarray([tokenizer(prompt(row), add_special_tokens=False)["input_ids"]], dtype=np.int64)
        last = np.asarray(logits_fn(ids))[0, -1]
        predictions.append(LETTERS[int(np.argmax(last[choices]))])
    correct = sum(p == r["correct_answer"] for p, r in zip(predictions, rows))
    subject = normalize_subject(rows[0]["topic"]) if rows else ""
    return MMLUResult(subject, len(rows), correct, 100.0 * correct / max(len(rows), 1), predictions, backend, quant,
                      time.perf_counter() - t0)
