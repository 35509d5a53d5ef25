"""Latency tables in the Ryzen AI model card's format.

The formatting lives in :mod:`aielower.reporting` (shared with the AIE report, which must not import ``eval``);
these names are kept here for the evaluation code and its users.
"""

from __future__ import annotations

from aielower.reporting import COLUMNS, LatencyRow, grid, markdown_table

__all__ = ["COLUMNS", "LatencyRow", "grid", "markdown_table"]
