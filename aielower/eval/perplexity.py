"""Perplexity on WikiText-2 (raw, test), as the Ryzen AI model card reports it.

The text is tokenized once (no special tokens) and cut into non-overlapping chunks of
``seqlen`` tokens (stride = seqlen; the tail shorter than a chunk is dropped). Each chunk
is one forward pass; every token but the first of a chunk is predicted from the ones
before it in that chunk. Perplexity is ``exp(total NLL / predicted tokens)`` over the
first ``samples`` chunks ("8 samples" in the card) and, when asked, over all chunks
("All") or a stated number of leading chunks.

``logits_fn(ids [1, seqlen]) -> logits [1, seqlen, vocab]`` is anything that scores a
chunk: a ref-compiled model (``cm``), or :func:`torch_logits_fn` for the eager baseline.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aielower.data import WIKITEXT_TEST, DataError, read_text
from aielower.quant.calibration import tokenize

HF_DATA = "hf"  # --data hf: the Hugging Face split (needs `datasets` and a network)


def load_text(data: str | Path | None = None) -> tuple[str, str]:
    """(text, where it came from): the bundled WikiText-2 test file, any text file, or ``hf``."""
    if data is None:
        return read_text(WIKITEXT_TEST, "WikiText-2 test"), str(WIKITEXT_TEST)
    if str(data) == HF_DATA:
        try:
            import datasets
        except ImportError:
            raise DataError("--data hf needs the 'datasets' package (pip install datasets) and a network; "
                            f"or leave --data out to use {WIKITEXT_TEST}") from None
        try:
            rows = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="test")["text"]
        except Exception as e:  # network, hub or cache errors of any kind
            raise DataError(f"could not load wikitext-2-raw-v1 (test) from the Hugging Face hub: {e}") from None
        return "\n\n".join(rows), "huggingface:wikitext/wikitext-2-raw-v1/test"
    return read_text(data, "evaluation text"), str(data)


def check_seqlen(seqlen: int, max_positions: int | None) -> None:
    if seqlen < 2:
        raise DataError(f"seqlen must be >= 2 (a chunk predicts its tokens after the first), got {seqlen}")
    if max_positions is not None and seqlen > max_positions:
        raise DataError(f"seqlen {seqlen} is longer than the model's max_position_embeddings ({max_positions}); "
                        f"use --seqlen {max_positions} or less")


def chunk_tokens(tokens: np.ndarray, seqlen: int) -> np.ndarray:
    """Non-overlapping chunks [n, seqlen] (stride = seqlen); DataError if there is not one."""
    n = len(tokens) // seqlen
    if n == 0:
        raise DataError(f"the evaluation text has {len(tokens)} tokens, fewer than one chunk of seqlen={seqlen}")
    return np.asarray(tokens[: n * seqlen], dtype=np.int64).reshape(n, seqlen)


def chunk_nll(logits: np.ndarray, ids: np.ndarray, block: int = 256) -> float:
    """Sum of -log p(ids[t+1] | logits[t]) over one chunk (float64), in row blocks to bound memory."""
    logits = np.asarray(logits).reshape(-1, np.shape(logits)[-1])
    ids = np.asarray(ids).reshape(-1)
    total = 0.0
    for start in range(0, len(ids) - 1, block):
        stop = min(start + block, len(ids) - 1)
        rows = logits[start:stop].astype(np.float64)
        peak = rows.max(axis=1, keepdims=True)
        lse = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
        total += float(np.sum(lse - rows[np.arange(stop - start), ids[start + 1:stop + 1]]))
    return total


@dataclass
class PerplexityResult:
    ppl_samples: float
    ppl_all: float | None  # None when not computed
    samples: int
    seqlen: int
    n_tokens: int  # tokens in the whole evaluation text
    n_chunks: int  # chunks the text gives
    chunks_all: int | None  # chunks behind ppl_all (n_chunks for "All", fewer for a stated subset)
    backend: str
    quant: str
    data: str
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def all_label(self) -> str:
        if self.chunks_all is None:
            return "All"
        return "All" if self.chunks_all == self.n_chunks else f"first {self.chunks_all} of {self.n_chunks} chunks"


def perplexity(logits_fn: Callable[[np.ndarray], np.ndarray], tokens: np.ndarray, *, seqlen: int = 2048,
               samples: int = 8, all_chunks: int | bool = False, backend: str = "ref", quant: str = "fp32",
               data: str = "", progress: bool = True) -> PerplexityResult:
    """Perplexity over the first ``samples`` chunks, and over all chunks (``all_chunks=True``)
    or the first ``all_chunks`` chunks (an int)."""
    t0 = time.perf_counter()
    chunks = chunk_tokens(tokens, seqlen)
    if samples < 1 or samples > len(chunks):
        raise DataError(f"--samples must be in [1, {len(chunks)}] (the text gives {len(chunks)} chunks of {seqlen} "
                        f"tokens), got {samples}")
    if all_chunks is True:
        n_all = len(chunks)
    elif all_chunks is False or all_chunks is None:
        n_all = None
    else:
        if not samples <= all_chunks <= len(chunks):
            raise DataError(f"the larger figure needs between {samples} (--samples) and {len(chunks)} chunks, "
                            f"got {all_chunks}")
        n_all = int(all_chunks)
    nll = []
    for ids in _progress(chunks[: max(samples, n_all or 0)], progress, f"perplexity {backend} {quant}"):
        nll.append(chunk_nll(logits_fn(ids[None, :]), ids))
    per_chunk = seqlen - 1

    def ppl(n):
        return float(np.exp(sum(nll[:n]) / (n * per_chunk)))

    return PerplexityResult(ppl(samples), None if n_all is None else ppl(n_all), samples, seqlen, int(len(tokens)),
                            len(chunks), n_all, backend, quant, data, time.perf_counter() - t0)


def eval_tokens(tokenizer, data: str | Path | None = None) -> tuple[np.ndarray, str]:
    """(token ids of the evaluation text, its source)."""
    text, source = load_text(data)
    return tokenize(tokenizer, text), source


def torch_logits_fn(model):
    """Eager fp32 torch as a ``logits_fn``: the baseline."""
    import torch

    def run(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(ids)).logits.numpy()

    return run


def _progress(items, show: bool, description: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="chunk", leave=False)
