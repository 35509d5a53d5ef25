"""Token selection, the generation loop and its statistics: ``generate()`` of the reference backend and of the AIE
host runtime (one loop for both, so they select tokens and stop the same way)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from aielower.errors import AielowerError


@dataclass(frozen=True)
class SamplingConfig:
    """Greedy by default; with ``do_sample``: temperature, then top-k, then top-p (nucleus)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if self.temperature <= 0:
            raise AielowerError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise AielowerError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise AielowerError(f"top_p must be in (0, 1], got {self.top_p}")


class TokenSelector:
    """Picks the next token of each row from its last logits."""

    def __init__(self, config: SamplingConfig):
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if not self.config.do_sample:
            return np.argmax(logits, axis=-1)
        return np.array([self._sample(row) for row in logits.astype(np.float64)])

    def _sample(self, row: np.ndarray) -> int:
        c = self.config
        row = row / c.temperature
        if c.top_k:
            cutoff = np.partition(row, -c.top_k)[-c.top_k] if c.top_k < row.size else -np.inf
            row = np.where(row < cutoff, -np.inf, row)
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        if c.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cumulative, c.top_p) + 1)]
            mask = np.zeros_like(probs)
            mask[keep] = 1.0
            probs = probs * mask
            probs /= probs.sum()
        return int(self.rng.choice(probs.size, p=probs))


@dataclass
class GenerationStats:
    """Wall-clock figures of the last generate(): the prefill step and each decode step."""

    prompt_tokens: int = 0
    prefill_s: float = 0.0
    step_s: list[float] = field(default_factory=list)

    @property
    def new_tokens(self) -> int:
        return len(self.step_s) + 1  # the prefill step yields the first new token

    @property
    def total_s(self) -> float:
        return self.prefill_s + sum(self.step_s)

    @property
    def ms_per_token(self) -> float:
        """Mean decode step time (the model card's Time/Token); NaN with a single new token."""
        return 1e3 * sum(self.step_s) / len(self.step_s) if self.step_s else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return 1e3 / self.ms_per_token if self.step_s else float("nan")


def eos_ids(eos_token_id, config: dict) -> list[int]:
    """The EOS ids to stop at: ``eos_token_id`` (an id or a list), else the model config's, else none."""
    if eos_token_id is None:
        eos_token_id = config.get("eos_token_id")
    if eos_token_id is None:
        return []
    return [int(e) for e in (eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])]


def generate_tokens(decode: Callable[[np.ndarray, int, list], np.ndarray], cache: list, ids: np.ndarray,
                    max_new_tokens: int, max_seq_len: int, sampling: SamplingConfig, eos: Sequence[int],
                    pad_token_id: int | None = None) -> tuple[np.ndarray, GenerationStats]:
    """Prefill the prompt ``ids`` into ``cache`` with ``decode(ids, position, cache) -> logits``, then one decode
    step per new token. Rows that produce an id of ``eos`` are finished and padded with ``pad_token_id`` (default:
    the first EOS id); generation stops when every row is finished. Returns prompt + new tokens and the timings."""
    if max_new_tokens < 1:
        raise AielowerError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    needed = ids.shape[1] + max_new_tokens - 1  # the last new token is never fed back
    if needed > max_seq_len:
        raise AielowerError(
            f"sequence of {needed} tokens does not fit the KV cache of {max_seq_len} "
            "(compile with a larger max_seq_len, or ask for fewer new tokens)"
        )
    select = TokenSelector(sampling)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    stats = GenerationStats(prompt_tokens=ids.shape[1])
    tokens = [ids]
    finished = np.zeros(ids.shape[0], dtype=bool)
    position = 0
    step_input = ids
    for step in range(max_new_tokens):
        t0 = time.perf_counter()
        logits = decode(step_input, position, cache)
        nxt = select(logits[:, -1])
        elapsed = time.perf_counter() - t0
        if step == 0:
            stats.prefill_s = elapsed
        else:
            stats.step_s.append(elapsed)
        nxt = np.where(finished, pad, nxt)
        finished |= np.isin(nxt, eos)
        tokens.append(nxt[:, None])
        position += step_input.shape[1]
        step_input = nxt[:, None].astype(np.int64)
        if finished.all():
            break
    return np.concatenate(tokens, axis=1), stats
