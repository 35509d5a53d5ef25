"""Checks on a model's config that run before anything is captured: a config that torch.export would trip over
deep inside, or that would compile into a program with non-finite logits, is a :class:`~aielower.errors.ModelError`
that says which field is wrong and what it must be.

A leaf module: ``frontend/models.py`` (directories, bundled configs) and ``frontend/gguf.py`` (GGUF files) both use
it, and neither imports the other for it.
"""

from __future__ import annotations

import math

from aielower.errors import ModelError

SUPPORTED_ARCHITECTURE = "Qwen2ForCausalLM"
# torch.export traces prefill with an example prompt of this many tokens (frontend/capture.py), so the model must
# accept at least that many positions.
CAPTURE_MIN_POSITIONS = 8


def rope_theta(config) -> float | None:
    """The rotary base of a config (transformers 5 keeps it in ``rope_parameters``); None when absent."""
    params = getattr(config, "rope_parameters", None) or {}
    value = params.get("rope_theta") if isinstance(params, dict) else None
    if value is None:
        value = getattr(config, "rope_theta", None)
    return value


def _positive_int(config, field: str, where: str) -> int:
    value = getattr(config, field, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{where}: config field {field} must be a positive integer, got {value!r}")
    return value


def _positive_finite(value, field: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelError(f"{where}: config field {field} must be a positive finite number, got {value!r}")
    return float(value)


def check_architecture(config, where: str) -> None:
    """The config is a qwen2 model (Qwen1.5, Qwen2, Qwen2.5)."""
    archs = getattr(config, "architectures", None) or []
    if getattr(config, "model_type", None) != "qwen2" or (archs and SUPPORTED_ARCHITECTURE not in archs):
        raise ModelError(
            f"{where}: model type {getattr(config, 'model_type', None)!r} ({', '.join(map(str, archs)) or 'no architecture'}) "
            f"is not supported; aielower compiles {SUPPORTED_ARCHITECTURE} (Qwen1.5, Qwen2, Qwen2.5)"
        )


def check_shapes(config, where: str) -> None:
    """Sizes, head counts, epsilon, rotary base and position limit, each with its own message."""
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "max_position_embeddings"):
        _positive_int(config, field, where)
    hidden, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None)
    if head_dim is None:
        if hidden % heads:
            raise ModelError(f"{where}: num_attention_heads {heads} does not divide hidden_size {hidden} (and the "
                             "config sets no head_dim); Qwen2 attention needs hidden_size = heads x head_dim")
        head_dim = hidden // heads
    elif isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
        raise ModelError(f"{where}: config field head_dim must be a positive integer, got {head_dim!r}")
    if head_dim % 2:
        raise ModelError(f"{where}: head_dim {head_dim} is odd; rotary embedding rotates pairs, it needs an even "
                         "head_dim")
    if heads % kv:
        raise ModelError(f"{where}: num_key_value_heads {kv} does not divide num_attention_heads {heads}; grouped "
                         "attention shares each key/value head among a whole number of query heads")
    _positive_finite(getattr(config, "rms_norm_eps", None), "rms_norm_eps", where)
    _positive_finite(rope_theta(config), "rope_theta", where)
    if config.max_position_embeddings < CAPTURE_MIN_POSITIONS:
        raise ModelError(f"{where}: max_position_embeddings {config.max_position_embeddings} is below "
                         f"{CAPTURE_MIN_POSITIONS}, the prompt length aielower captures prefill with")
    if getattr(config, "use_sliding_window", False):
        raise ModelError(f"{where}: use_sliding_window=True is not supported (aielower attends to the whole "
                         "context); set it to false if the window covers max_position_embeddings")


def check_config(config, where: str) -> None:
    """Everything about a config that can be checked before the model is built or captured."""
    check_architecture(config, where)
    check_shapes(config, where)


def check_loading_info(info: dict, model, where: str) -> None:
    """Every parameter of the model came from the checkpoint: transformers initialises missing ones at random and
    only warns, which would compile a model that is partly noise. Tied weights (the lm_head of a model with
    tie_word_embeddings) are not missing."""
    missing = sorted(set(info.get("missing_keys") or ()))
    if getattr(model.config, "tie_word_embeddings", False):
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise ModelError(f"{where}: the checkpoint lacks {len(missing)} weight(s) of the model ({shown}); "
                         "transformers would fill them with random values")
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise ModelError(f"{where}: {len(mismatched)} weight(s) have another shape than the config says, e.g. "
                         f"{mismatched[0]}")


def check_model(model) -> None:
    """Raise ModelError unless ``model`` is a Qwen2ForCausalLM the frontend can capture."""
    from transformers import Qwen2ForCausalLM

    if not isinstance(model, Qwen2ForCausalLM):
        raise ModelError(
            f"{type(model).__name__} is not supported; aielower compiles {SUPPORTED_ARCHITECTURE} "
            "(Qwen1.5, Qwen2, Qwen2.5). Load one with aielower.load_model() or transformers."
        )
    check_shapes(model.config, "model config")
    dtypes = {p.dtype for p in model.parameters()}
    import torch

    if dtypes != {torch.float32}:
        raise ModelError(
            f"model parameters are {', '.join(sorted(str(d) for d in dtypes))}; aielower captures fp32 models "
            "(quantization is done by the compiler): pass model.float()"
        )


__all__ = ["CAPTURE_MIN_POSITIONS", "SUPPORTED_ARCHITECTURE", "check_architecture", "check_config",
           "check_loading_info", "check_model", "check_shapes", "rope_theta"]
