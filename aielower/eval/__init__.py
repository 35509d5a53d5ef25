"""Evaluation: perplexity, MMLU, the model card's accuracy table, latency tables (formatted by
:mod:`aielower.reporting`)."""
