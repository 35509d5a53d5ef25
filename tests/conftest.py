"""Shared test helpers: tiny random Qwen2 models with fixed seeds."""

from __future__ import annotations

import pytest
import torch

TINY = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=256,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)

# name -> overrides of TINY; each is a shape family the compiler must handle.
CONFIGS = {
    "mha": {},
    "gqa-14x2": dict(hidden_size=112, num_attention_heads=14, num_key_value_heads=2, intermediate_size=160),
    "tied": dict(tie_word_embeddings=True),
    "odd-hidden": dict(hidden_size=72, num_attention_heads=6, num_key_value_heads=3, intermediate_size=100),
}


def tiny_qwen2(seed: int = 0, **overrides):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**{**TINY, **overrides})
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    # Random init leaves biases at zero and norms at one; perturb them so they are tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture
def tiny_model():
    return tiny_qwen2()


def torch_logits(model, ids) -> "torch.Tensor":
    with torch.no_grad():
        return model(torch.as_tensor(ids)).logits.numpy()
