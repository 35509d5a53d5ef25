"""The real Qwen2.5-Coder-0.5B-Instruct checkpoint end to end (needs the optional 'gguf' extra;
`.ci/run` installs it, so CI runs these)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aielower
import aielower.frontend.gguf as gg
from aielower.frontend.gguf import QWEN_CODER_GGUF, assemble_checkpoint

PROMPT = "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n"


@pytest.fixture(scope="module")
def real(real_checkpoint):
    model, tokenizer = real_checkpoint
    return model, tokenizer, tokenizer(PROMPT, return_tensors="np").input_ids


def test_fp32_generate_equals_hf_generate_for_60_tokens(real):
    model, tokenizer, ids = real
    cm = aielower.compile(model, max_seq_len=ids.shape[1] + 60)
    eos = model.generation_config.eos_token_id
    ours = cm.generate(ids, max_new_tokens=60, eos_token_id=eos)
    with torch.no_grad():
        theirs = model.generate(torch.from_numpy(ids), max_new_tokens=60, do_sample=False).numpy()
    np.testing.assert_array_equal(ours, theirs)
    text = tokenizer.decode(ours[0, ids.shape[1]:], skip_special_tokens=True)
    assert len(text.strip()) > 0


def test_prefill_logits_match_torch(real):
    model, _, ids = real
    cm = aielower.compile(model, functions=("prefill",))
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).logits.numpy()
    got = cm(ids)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_w4_g128_decode_runs_and_stays_close(real):
    model, _, ids = real
    cq = aielower.compile(model, quant=aielower.QuantConfig(bits=4, group_size=128, lm_head_group_size=32),
                          max_seq_len=ids.shape[1] + 8)
    kinds = aielower.api.CompileStats.ops_by_kind_in(cq.ir.functions["decode"])
    assert kinds["quant.linear"] == 4 * 24 + 1
    out = cq.generate(ids, max_new_tokens=8)
    with torch.no_grad():
        fp32 = model(torch.from_numpy(ids)).logits.numpy()[0, -1]
    w4 = cq(ids)[0, -1]
    # 4-bit weights move the logits, but the fp32 top choice stays among the w4 top 5.
    assert fp32.argmax() in np.argsort(w4)[-5:]
    assert out.shape == (1, ids.shape[1] + 8)


def test_aie_runtime_on_the_emulated_device_gives_the_reference_greedy_tokens(real, tmp_path):
    """The 0.5B checkpoint compiled for npu2 (w4 g128, lm_head g32), built for the emulated device and run by the
    XRT host runtime: its first 8 greedy tokens are the reference backend's with AIE numerics. Its time per token
    is emulated (this CPU running the design files), printed for the record, not checked."""
    model, tokenizer, _ = real
    ids = tokenizer("def fib(n):", return_tensors="np").input_ids
    quant = aielower.QuantConfig(bits=4, group_size=128, lm_head_group_size=32)
    art = aielower.compile(model, target="aie", quant=quant, max_seq_len=64, out_dir=tmp_path / "aie")
    art.build(emulate=True)
    tokens = art.generate(ids, max_new_tokens=8, device="emulator")
    ref = aielower.compile(model, quant=quant, max_seq_len=64, numerics="aie")
    np.testing.assert_array_equal(tokens, ref.generate(ids, max_new_tokens=8))
    stats = art.last_stats
    print(f"emulated: prefill {stats.prefill_s * 1e3:.0f} ms, {stats.ms_per_token:.0f} ms/token over "
          f"{stats.new_tokens} tokens ({art.runtime('emulator').launcher.submissions} submissions)")


def test_ref_perplexity_equals_torch_to_4_significant_digits(real):
    """Two chunks of 512 WikiText-2 tokens: the ref program's perplexity is torch's (the 2048-token
    figures are in the README's accuracy table)."""
    from aielower.data import WIKITEXT_TEST
    from aielower.eval.perplexity import load_text, perplexity, torch_logits_fn
    from aielower.quant.calibration import tokenize

    if not WIKITEXT_TEST.is_file():
        pytest.skip(f"{WIKITEXT_TEST} is not present")
    model, tokenizer, _ = real
    tokens = tokenize(tokenizer, load_text()[0][:8000])[:1024]
    cm = aielower.compile(model, functions=("prefill",))
    ours = perplexity(cm, tokens, seqlen=512, samples=2, progress=False)
    theirs = perplexity(torch_logits_fn(model), tokens, seqlen=512, samples=2, progress=False)
    assert 1 < theirs.ppl_samples < 100
    assert abs(ours.ppl_samples - theirs.ppl_samples) <= 5e-5 * theirs.ppl_samples


# Here, not in tests/frontend/test_gguf.py: the session fixture loads the checkpoint once per test worker, and the
# tests that need it share one file (one worker) so it is loaded once per run.
def test_real_qwen_coder_checkpoint_assembles_and_loads(real_checkpoint):
    """The packaged checkpoint (loaded once per session by the fixture, via aielower.load_model)."""
    import torch

    model, tokenizer = real_checkpoint
    path = assemble_checkpoint()  # the default cache: joined once, then found by its marker
    assert path.stat().st_size == QWEN_CODER_GGUF.size
    assert gg._sha256_of(path) == QWEN_CODER_GGUF.sha256
    c = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM" and not model.training
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (24, 896, 14, 2)
    assert (c.intermediate_size, c.vocab_size, c.tie_word_embeddings) == (4864, 151936, False)
    assert not hasattr(c, "quantization_config")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    assert tokenizer.decode(tokenizer("def fibonacci(n):").input_ids) == "def fibonacci(n):"
