"""Evaluation: latency tables (and, later, perplexity and MMLU)."""
