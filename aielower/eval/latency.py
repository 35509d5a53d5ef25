"""Latency tables in the Ryzen AI model card's format."""

from __future__ import annotations

from dataclasses import dataclass

from aielower.backends.ref.generation import GenerationStats

COLUMNS = ("Example#", "Prompt Length (tokens)", "New Tokens Generated", "Total Time (s)",
           "Prefill Phase (ms)", "Time/Token (ms)", "Tokens/Sec")


@dataclass(frozen=True)
class LatencyRow:
    prompt_tokens: int
    new_tokens: int
    total_s: float
    prefill_ms: float
    ms_per_token: float
    tokens_per_s: float

    @classmethod
    def from_stats(cls, stats: GenerationStats) -> "LatencyRow":
        return cls(stats.prompt_tokens, stats.new_tokens, stats.total_s, stats.prefill_s * 1e3,
                   stats.ms_per_token, stats.tokens_per_s)


def markdown_table(rows: list[LatencyRow]) -> str:
    """The card's table: one row per example, numbers right-aligned."""
    cells = [
        [str(i), str(r.prompt_tokens), str(r.new_tokens), f"{r.total_s:.5g}", f"{r.prefill_ms:.6g}",
         f"{r.ms_per_token:.6g}", f"{r.tokens_per_s:.6g}"]
        for i, r in enumerate(rows, start=1)
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(COLUMNS, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)
