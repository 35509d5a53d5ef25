"""Decode over the KV cache, generate(), and their agreement with prefill and HF generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aielower
from aielower.errors import AielowerError
from tests.conftest import CONFIGS, tiny_qwen2


def ids_for(model, batch, seq, seed=0):
    return torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pipeline", ["", None], ids=["unfused", "default"])
@pytest.mark.parametrize("name", ["mha", "gqa-14x2"])
def test_decode_steps_match_prefill(name, pipeline):
    model = tiny_qwen2(seed=2, **CONFIGS[name])
    cm = aielower.compile(model, pipeline=pipeline, max_seq_len=48)
    ids = ids_for(model, 2, 12).numpy()
    full = cm(ids)
    cache = cm.new_cache(batch=2)
    logits = cm.decode(ids[:, :5], 0, cache)  # prefill of 5 tokens into the cache: the last one's logits
    assert logits.shape == (2, 1, full.shape[-1])
    np.testing.assert_allclose(logits, full[:, 4:5], rtol=0, atol=1e-5 * np.abs(full).max())
    for t in range(5, 12):
        step = cm.decode(ids[:, t : t + 1], t, cache)
        np.testing.assert_allclose(step[:, 0], full[:, t], rtol=0, atol=1e-5 * np.abs(full).max())


def test_decode_of_several_tokens_after_a_prefix():
    model = tiny_qwen2(seed=3, **CONFIGS["odd-hidden"])
    cm = aielower.compile(model, max_seq_len=40)
    ids = ids_for(model, 1, 30).numpy()
    full = cm(ids)
    cache = cm.new_cache(batch=1)
    cm.decode(ids[:, :17], 0, cache)
    chunk = cm.decode(ids[:, 17:30], 17, cache)  # 13 tokens at once, attending to the cached 17
    np.testing.assert_allclose(chunk, full[:, 29:30], rtol=0, atol=1e-5 * np.abs(full).max())
    nxt = np.ones((1, 1), ids.dtype)
    step = cm.decode(nxt, 30, cache)  # the cache holds the chunk's 13 rows as prefill saw them
    np.testing.assert_allclose(step, cm(np.concatenate([ids, nxt], axis=1))[:, 30:31], rtol=0,
                               atol=1e-5 * np.abs(full).max())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_greedy_generate_equals_hf_generate(name):
    model = tiny_qwen2(seed=4, **CONFIGS[name])
    cm = aielower.compile(model, max_seq_len=80)
    ids = ids_for(model, 2, 9, seed=1)
    ours = cm.generate(ids, max_new_tokens=60)
    with torch.no_grad():
        theirs = model.generate(ids, max_new_tokens=60, do_sample=False).numpy()
    np.testing.assert_array_equal(ours, theirs)
    stats = cm.last_stats
    assert stats.prompt_tokens == 9 and stats.new_tokens == 60 and stats.ms_per_token > 0


def test_quantized_generate_runs_the_quantized_decode():
    model = tiny_qwen2(seed=5, **CONFIGS["gqa-14x2"])
    cm = aielower.compile(model, quant=aielower.QuantConfig(group_size=16), max_seq_len=40)
    ids = ids_for(model, 1, 6).numpy()
    out = cm.generate(ids, max_new_tokens=8)
    # Each new token is the argmax of the quantized prefill logits of the sequence before it.
    for t in range(6, 14):
        assert out[0, t] == cm(out[:, :t])[0, -1].argmax()


def test_eos_stops_and_pads():
    model = tiny_qwen2(seed=4)
    cm = aielower.compile(model, max_seq_len=64)
    ids = ids_for(model, 2, 5, seed=2)
    greedy = cm.generate(ids, max_new_tokens=20)
    eos = int(greedy[0, 5 + 3])  # row 0's fourth new token
    out = cm.generate(ids, max_new_tokens=20, eos_token_id=eos, pad_token_id=0)
    row0 = out[0, 5:]
    assert eos in row0.tolist()
    first = row0.tolist().index(eos)
    assert (row0[first + 1 :] == 0).all()  # padded after EOS
    with torch.no_grad():
        hf = model.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=eos, pad_token_id=0).numpy()
    np.testing.assert_array_equal(out, hf)


def test_sampling_is_seeded_and_top_k_1_is_greedy():
    model = tiny_qwen2(seed=6)
    cm = aielower.compile(model, max_seq_len=40)
    ids = ids_for(model, 1, 4)
    a = cm.generate(ids, 10, do_sample=True, temperature=0.8, top_p=0.9, seed=7)
    b = cm.generate(ids, 10, do_sample=True, temperature=0.8, top_p=0.9, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cm.generate(ids, 10, do_sample=True, top_k=1, seed=1), cm.generate(ids, 10))


@pytest.mark.parametrize("kwargs, message", [
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(do_sample=True, top_p=1.5), "top_p must be in (0, 1]"),
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    (dict(max_new_tokens=40), "does not fit the KV cache of 16"),
])
def test_generate_errors(kwargs, message):
    cm = aielower.compile(tiny_qwen2(num_hidden_layers=1), max_seq_len=16)
    with pytest.raises(AielowerError) as info:
        cm.generate(np.array([[1, 2, 3]]), **kwargs)
    assert message in str(info.value)


def test_prefill_and_decode_share_one_copy_of_the_weights():
    model = tiny_qwen2(**CONFIGS["gqa-14x2"])
    both = aielower.compile(model, quant=aielower.QuantConfig(group_size=16), max_seq_len=32).ir
    users = {fn: set() for fn in both.functions}
    for w in both.weights.values():
        for user in w.users:
            for name, fn in both.functions.items():
                if user in fn.ops:
                    users[name].add(w.name)
    assert users["prefill"] == users["decode"] == set(both.weights)
    prefill_only = aielower.compile(model, quant=aielower.QuantConfig(group_size=16), functions=("prefill",))
    assert len(both.weights) == len(prefill_only.ir.weights)
    decode_kinds = {op.name for op in both.functions["decode"].ops}
    assert {"quant.linear", "fused.attention", "fused.add_rms_norm", "fused.silu_mul"} <= decode_kinds
    assert "nn.sdpa" not in decode_kinds and "tensor.index_copy" not in decode_kinds


def test_bad_max_seq_len():
    with pytest.raises(aielower.ModelError, match=r"max_seq_len must be in \[1, 256\]"):
        aielower.compile(tiny_qwen2(num_hidden_layers=1), max_seq_len=1000)


def test_unknown_function_names_are_errors():
    model = tiny_qwen2(num_hidden_layers=1)
    with pytest.raises(aielower.ModelError, match="unknown function.*bogus.*valid: prefill, decode"):
        aielower.compile(model, functions=("bogus",))
    cm = aielower.compile(model, functions=("prefill",))
    with pytest.raises(AielowerError, match="no function @decode; this module has prefill"):
        cm.run("decode")
    with pytest.raises(AielowerError, match="no decode function"):
        cm.generate([[1, 2]])


def test_cache_queries_without_decode_are_errors():
    cm = aielower.compile(tiny_qwen2(num_hidden_layers=1), functions=("prefill",))
    with pytest.raises(AielowerError, match="no decode function"):
        cm.max_seq_len
    with pytest.raises(AielowerError, match="no decode function"):
        cm.decode([[1]], 0, [])
