"""The Ryzen AI model card's measured latency of Qwen1.5-7B-Chat on a Strix (STX B0) NPU: the figures we compare with.

The figures live in :mod:`aielower.reporting` (the AIE report compares with them and must not import ``eval``);
this module keeps their names. They are measurements of the Ryzen AI flow, not of aielower.
"""

from __future__ import annotations

from aielower.reporting import (BENCHMARK_EXACT, CARD_DEVICE, CARD_FILE, CARD_MODEL, CARD_SETUP,
                                DECODE_SHORT_PROMPTS, LatencyRow, card_applies)
from aielower.reporting import CARD_TABLES as TABLES

__all__ = ["BENCHMARK_EXACT", "CARD_DEVICE", "CARD_FILE", "CARD_MODEL", "CARD_SETUP", "DECODE_SHORT_PROMPTS",
           "LatencyRow", "TABLES", "card_applies"]
