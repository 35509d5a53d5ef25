"""Calibration data for AWQ: text -> token chunks, and per-channel activation statistics.

Calibration text is tokenized once and cut into consecutive, non-overlapping chunks of
``seqlen`` tokens; the first ``samples`` chunks are used (fewer if the text is shorter,
never a partial chunk). The AWQ default is 128 chunks of 512 tokens.

:class:`ActivationSample` keeps what the search needs of one linear group's input and no
more: ``mean|x|`` per channel over every calibration token, and a fixed random subset of
token rows (``rows``) on which the output error is measured. Storing all activations of
128 x 512 tokens for every layer would take gigabytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aielower.data import DataError, read_text


def token_chunks(tokens: np.ndarray, samples: int, seqlen: int, *, what: str = "calibration text") -> np.ndarray:
    """The first ``samples`` non-overlapping chunks of ``seqlen`` tokens, int64 [n, seqlen]."""
    if samples < 1 or seqlen < 1:
        raise DataError(f"samples and seqlen must be >= 1, got samples={samples}, seqlen={seqlen}")
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    n = min(samples, len(tokens) // seqlen)
    if n == 0:
        raise DataError(f"{what} has {len(tokens)} tokens, fewer than one chunk of seqlen={seqlen}; "
                        "give more text or a smaller seqlen")
    return tokens[: n * seqlen].reshape(n, seqlen)


def tokenize(tokenizer, text: str) -> np.ndarray:
    """All token ids of ``text`` (no special tokens added), int64."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def calibration_chunks(path: str | Path, tokenizer, samples: int = 128, seqlen: int = 512) -> np.ndarray:
    """Token chunks [n, seqlen] of the calibration text in ``path``."""
    return token_chunks(tokenize(tokenizer, read_text(path, "calibration")), samples, seqlen,
                        what=f"calibration text {path}")


class ActivationSample:
    """``mean|x|`` per channel over every row added, and the rows ``row_ids`` picked per batch.

    ``add(x)`` takes one batch ``x [..., channels]`` (leading dims are flattened into rows);
    ``pick[i]`` are the row indices kept from batch ``i`` (the same for every group, so that
    all groups are measured on the same tokens).
    """

    def __init__(self, channels: int, pick: list[np.ndarray]):
        self.abs_sum = np.zeros(channels, dtype=np.float64)
        self.count = 0
        self.pick = pick
        self._rows: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> None:
        x = x.reshape(-1, x.shape[-1])
        self.abs_sum += np.abs(x).sum(axis=0, dtype=np.float64)
        self.count += x.shape[0]
        self._rows.append(x[self.pick[len(self._rows)]].astype(np.float32, copy=True))

    @property
    def mean_abs(self) -> np.ndarray:
        return self.abs_sum / max(self.count, 1)

    @property
    def rows_nbytes(self) -> int:
        return sum(r.nbytes for r in self._rows)

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate(self._rows, axis=0)


def pick_rows(batch_rows: list[int], total: int, seed: int = 0) -> list[np.ndarray]:
    """Sorted random row indices per batch, ``total`` in all (or every row if fewer), spread evenly."""
    rng = np.random.default_rng(seed)
    n_all = sum(batch_rows)
    picks = []
    for n in batch_rows:
        k = n if total >= n_all else max(1, round(total * n / n_all))
        picks.append(np.sort(rng.choice(n, size=min(k, n), replace=False)))
    return picks
