"""torch.export capture of a Qwen2ForCausalLM: ``prefill`` and ``decode``.

The model is exported non-strict with a dynamic batch and sequence length. For the
duration of the capture its attention runs through a small attention function of ours
(registered with transformers' AttentionInterface), which states the attention as the
plain pieces the IR knows: key/value heads repeated for GQA, then
``scaled_dot_product_attention``. That keeps transformers' mask construction
(position bookkeeping for packed sequences, padding) out of the graph.

- ``prefill(input_ids) -> logits``: one unpadded prompt per row, causal by definition.
- ``decode(input_ids, position, k_cache_0.., v_cache_0..) -> (logits, k_cache_0'.., v_cache_0'..)``:
  ``s`` new tokens at positions ``position .. position+s-1`` over an explicit static KV
  cache (``[batch, kv_heads, max_seq_len, head_dim]`` per layer, keys after rotary).
  The new keys/values are written into the cache (``index_copy``) and attention sees
  cache entries ``j <= position + i`` (an explicit boolean mask). With ``position=0``
  and the whole prompt this is the prefill that fills the cache; with ``s=1`` it is one
  decode step. Its logits are those of the last new token only (``[batch, 1, vocab]``: the
  lm_head runs on one row per sequence, as HF's ``generate`` runs it with ``logits_to_keep=1``);
  ``prefill`` scores every position.
"""

from __future__ import annotations

import contextlib

import torch

ATTENTION_NAME = "aielower_capture"
WRAPPER_PREFIX = "hf."
from aielower.ir.types import BATCH_SYMBOL, SEQ_SYMBOL  # noqa: E402  (re-exported: the frontend's symbols)


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[b, kv_heads, s, d] -> [b, kv_heads * n_rep, s, d], each kv head repeated n_rep times."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def causal_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """An attention implementation in transformers' interface: SDPA over repeated kv heads,
    causal when no mask is given (prefill), else with the given boolean mask (decode)."""
    n_rep = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if attention_mask is None:
        out = sdpa(query, key, value, is_causal=True, scale=scaling)
    else:
        out = sdpa(query, key, value, attn_mask=attention_mask, scale=scaling)
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


class ExplicitKVCache:
    """The cache object handed to the HF layers during decode capture.

    Quacks like a transformers ``Cache`` as far as Qwen2Attention uses one
    (``update``): writes the new keys/values at ``cache_position`` (functionally, with
    ``index_copy``) and returns the whole cache, whose new values become outputs.
    """

    def __init__(self, keys, values, cache_position):
        self.keys, self.values, self.cache_position = list(keys), list(values), cache_position

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx] = self.keys[layer_idx].index_copy(2, self.cache_position, key_states)
        self.values[layer_idx] = self.values[layer_idx].index_copy(2, self.cache_position, value_states)
        return self.keys[layer_idx], self.values[layer_idx]


class _DecodeStep(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model

    def forward(self, input_ids, position, keys, values):
        cache_position = torch.arange(input_ids.shape[1], device=input_ids.device) + position
        max_len = keys[0].shape[2]
        visible = torch.arange(max_len, device=input_ids.device)[None, :] <= cache_position[:, None]
        cache = ExplicitKVCache(keys, values, cache_position)
        out = self.hf(
            input_ids=input_ids,
            position_ids=cache_position[None, :],
            attention_mask={"full_attention": visible[None, None]},  # a prepared mask: HF builds none
            cache=cache,
            use_cache=False,
            logits_to_keep=1,  # the next token's logits only, as HF's generate asks for them
        )
        return out.logits, cache.keys, cache.values


def cache_shape(config, batch: int, max_seq_len: int) -> tuple[int, int, int, int]:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (batch, config.num_key_value_heads, max_seq_len, head_dim)


def export_decode(model, max_seq_len: int = 4096) -> torch.export.ExportedProgram:
    """``torch.export`` of the cached step (see the module docstring); ``max_seq_len`` is
    the static cache length. Placeholders: input_ids, position, keys_i, values_i."""
    config = model.config
    device = next(model.parameters()).device
    layers = config.num_hidden_layers
    example_len = min(4, max_seq_len)
    ids = torch.zeros((2, example_len), dtype=torch.long, device=device)
    position = torch.zeros((1,), dtype=torch.long, device=device)
    shape = cache_shape(config, 2, max_seq_len)
    keys = [torch.zeros(shape, dtype=torch.float32, device=device) for _ in range(layers)]
    values = [torch.zeros(shape, dtype=torch.float32, device=device) for _ in range(layers)]
    batch = torch.export.Dim(BATCH_SYMBOL, min=1, max=4096)
    seq = torch.export.Dim(SEQ_SYMBOL, min=1, max=max_seq_len)
    dynamic = {
        "input_ids": {0: batch, 1: seq},
        "position": None,
        "keys": [{0: batch}] * layers,
        "values": [{0: batch}] * layers,
    }
    with capture_attention(model), torch.no_grad():
        return torch.export.export(_DecodeStep(model), (ids, position, keys, values), dynamic_shapes=dynamic, strict=False)


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
