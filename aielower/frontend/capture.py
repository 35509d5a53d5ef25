"""torch.export capture of a Qwen2ForCausalLM.

The model is exported non-strict with a dynamic batch and sequence length. For the
duration of the capture its attention runs through a small attention function of ours
(registered with transformers' AttentionInterface), which states the attention as the
plain pieces the IR knows: key/value heads repeated for GQA, then
``scaled_dot_product_attention(is_causal=True)``. That keeps transformers' mask
construction (position bookkeeping for packed sequences, padding) out of the graph:
a prefill over one unpadded prompt per row is causal by definition.
"""

from __future__ import annotations

import contextlib

import torch

ATTENTION_NAME = "aielower_capture"
WRAPPER_PREFIX = "hf."
BATCH_SYMBOL, SEQ_SYMBOL = "b", "s"


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[b, kv_heads, s, d] -> [b, kv_heads * n_rep, s, d], each kv head repeated n_rep times."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def causal_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """An attention implementation in transformers' interface: causal SDPA over repeated kv heads."""
    n_rep = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs):
    return None


@contextlib.contextmanager
def capture_attention(model):
    """Run ``model`` with :func:`causal_attention`; restore its attention implementation after."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, causal_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, _no_mask)
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION_NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


class _LogitsOnly(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model

    def forward(self, input_ids):
        return self.hf(input_ids=input_ids, use_cache=False).logits


def export_prefill(model, max_seq_len: int | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of ``input_ids [batch, seq] -> logits [batch, seq, vocab]``.

    Parameter names in the program carry the ``hf.`` prefix of the wrapper; the importer
    strips it so weights keep their Hugging Face state-dict names.
    """
    max_seq = max_seq_len or getattr(model.config, "max_position_embeddings", 32768)
    device = next(model.parameters()).device
    example = torch.zeros((2, 8), dtype=torch.long, device=device)
    dynamic = {
        "input_ids": {
            0: torch.export.Dim(BATCH_SYMBOL, min=1, max=4096),
            1: torch.export.Dim(SEQ_SYMBOL, min=1, max=max_seq),
        }
    }
    with capture_attention(model), torch.no_grad():
        return torch.export.export(_LogitsOnly(model), (example,), dynamic_shapes=dynamic, strict=False)
