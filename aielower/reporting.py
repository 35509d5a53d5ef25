"""Report formatting shared by the evaluation tables (:mod:`aielower.eval`) and the AIE latency report
(:mod:`aielower.backends.aie.report`): markdown grids, the latency table in the Ryzen AI model card's format, and
the card's measured latency figures that modelled and measured numbers are compared with.

A neutral module: it imports nothing of aielower, so a backend can format a report without importing ``eval``
(and ``eval`` without importing a backend).

The card's figures: the measured latency of Qwen1.5-7B-Chat on a Strix (STX B0) NPU, copied from
``reference/ryzenai-qwen1.5-7b-chat-model-card.md`` (the project's copy of the card; DESIGN.md, "Reference facts"),
section "Latency : STX B0", "AWQ Plus": the table of ``run_awq.py ... --task decode`` (short prompts, 60 new tokens)
and the table of ``--task benchmark_exact`` (prompts of 128 ... 2048 tokens, 60 new tokens). The numbers are as
printed in the card, unrounded. They are measurements of the Ryzen AI flow, not of aielower.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------- markdown grids


def grid(columns, cells: list[list[str]], align: str = "right") -> str:
    """A markdown table: header, dashes, then the cells padded to the column width, right-aligned (the card's
    latency tables) or left-aligned (``align="left"``: the card's accuracy table)."""
    if align not in ("right", "left"):
        raise ValueError(f"align must be 'right' or 'left', got {align!r}")

    def pad(text: str, width: int) -> str:
        return text.rjust(width) if align == "right" else text.ljust(width)

    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(pad(c, w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(pad(c, w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- latency tables

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
    def from_stats(cls, stats) -> "LatencyRow":
        """The row of a generation's statistics (a ``GenerationStats`` of the ref backend, or anything with its
        fields: prompt_tokens, new_tokens, total_s, prefill_s, ms_per_token, tokens_per_s)."""
        return cls(stats.prompt_tokens, stats.new_tokens, stats.total_s, stats.prefill_s * 1e3,
                   stats.ms_per_token, stats.tokens_per_s)


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


# --------------------------------------------------------------------------- the model card's measured figures

CARD_FILE = "reference/ryzenai-qwen1.5-7b-chat-model-card.md"
CARD_MODEL = "qwen1.5-7b-chat"
CARD_DEVICE = "npu2"  # STX = Strix Point (device.py: NPU2)
CARD_SETUP = "STX B0, AWQ Plus (w4abf16, g128), --fast_attention --fast_mlp --fast_norm --fast_decoder"

# "--task decode": Example# 1..10 (Prompt Length, New Tokens, Total Time (s), Prefill (ms), Time/Token (ms), Tokens/Sec)
DECODE_SHORT_PROMPTS = (
    LatencyRow(26, 60, 9.50457, 510.835, 141.416, 7.07134),
    LatencyRow(27, 60, 8.98255, 448.795, 139.953, 7.14527),
    LatencyRow(25, 60, 8.98326, 440.235, 139.979, 7.14393),
    LatencyRow(26, 60, 8.9608, 440.454, 140.014, 7.14216),
    LatencyRow(24, 60, 8.97102, 428.335, 139.896, 7.14817),
    LatencyRow(23, 60, 9.00449, 425.687, 140.23, 7.13115),
    LatencyRow(26, 60, 8.97505, 438.906, 140.244, 7.13044),
    LatencyRow(25, 60, 9.01231, 434.741, 140.58, 7.11336),
    LatencyRow(25, 60, 9.06598, 445.545, 141.285, 7.07789),
    LatencyRow(25, 60, 9.04631, 447.766, 141.022, 7.0911),
)

# "--task benchmark_exact": prompts of exactly 128, 256, 512, 1024, 2048 tokens.
BENCHMARK_EXACT = (
    LatencyRow(128, 60, 12.1429, 1878.06, 160.447, 6.23259),
    LatencyRow(256, 60, 12.0324, 2221.12, 161.372, 6.19684),
    LatencyRow(512, 60, 13.5529, 2746.85, 178.018, 5.61741),
    LatencyRow(1024, 60, 17.1916, 3561.86, 225.936, 4.42604),
    LatencyRow(2048, 60, 24.2573, 6317.18, 298.567, 3.34934),
)

CARD_TABLES = {
    "decode": ("Decode with short prompts (card: --task decode)", DECODE_SHORT_PROMPTS),
    "benchmark_exact": ("Prompts of 128 to 2048 tokens (card: --task benchmark_exact)", BENCHMARK_EXACT),
}


def card_applies(model: str, device: str) -> bool:
    """Whether the card's figures describe ``model`` on ``device`` (otherwise they are shown for scale only)."""
    return model == CARD_MODEL and device == CARD_DEVICE


__all__ = ["BENCHMARK_EXACT", "CARD_DEVICE", "CARD_FILE", "CARD_MODEL", "CARD_SETUP", "CARD_TABLES", "COLUMNS",
           "DECODE_SHORT_PROMPTS", "LatencyRow", "card_applies", "grid", "markdown_table"]
