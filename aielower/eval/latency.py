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


def grid(columns, cells: list[list[str]]) -> str:
    """A markdown table in the card's style: header, dashes, cells right-aligned."""
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def markdown_table(rows: list[LatencyRow], columns=COLUMNS) -> str:
    """The card's table: one row per example, numbers right-aligned. ``columns`` renames the headers (e.g. to
    label them as modelled); there must be seven."""
    if len(columns) != len(COLUMNS):
        raise ValueError(f"the card's table has {len(COLUMNS)} columns, got {len(columns)} names")
    cells = [
        [str(i), str(r.prompt_tokens), str(r.new_tokens), f"{r.total_s:.5g}", f"{r.prefill_ms:.6g}",
         f"{r.ms_per_token:.6g}", f"{r.tokens_per_s:.6g}"]
        for i, r in enumerate(rows, start=1)
    ]
    return grid(columns, cells)
