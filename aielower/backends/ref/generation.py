"""Token selection and generation statistics for ``RefCompiledModel.generate``."""

from __future__ import annotations

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
