"""compile(target="aie") end to end on tiny random Qwen2 models: the host emulator (generated kernels built with
g++, launches run tile by tile with the planned access patterns, weights read from weights/) against the reference
backend running the same quantized program with AIE numerics; determinism of the output directory."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
import torch

import aielower
from aielower.backends.aie.compiled import AieArtifact
from aielower.errors import CompileError, ModelError
from tests.conftest import CONFIGS, tiny_qwen2

# Shapes that need padding everywhere: head_dim 12 (attention pads to 16), hidden 48 (K tiles of 64), GQA 4/2.
ODD = dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, intermediate_size=80)
MODELS = {"mha": CONFIGS["mha"], "gqa-14x2": CONFIGS["gqa-14x2"], "odd": ODD}
QUANT = aielower.QuantConfig(group_size=16, lm_head_group_size=16)


def close(a, b):
    """Equal up to bf16 rounding: the kernels and the reference round at the same points but may sum in another
    order, which now and then moves a value by one bf16 step (2**-8 relative) and the layers after it a little."""
    return np.abs(a - b).max() <= 1e-2 * np.abs(b).max()


@pytest.fixture(scope="module", params=sorted(MODELS))
def compiled(request, tmp_path_factory):
    model = tiny_qwen2(**MODELS[request.param])
    art = aielower.compile(model, target="aie", quant=QUANT, max_seq_len=64,
                           out_dir=tmp_path_factory.mktemp(request.param) / "aie")
    ref = aielower.compile(model, quant=QUANT, max_seq_len=64, numerics="aie")
    return art, ref


def test_prefill_matches_the_reference_with_aie_numerics(compiled):
    art, ref = compiled
    ids = np.random.default_rng(0).integers(0, 128, size=(2, 13))
    out, expected = art.emulate(ids), ref(ids)
    assert out.shape == expected.shape
    assert close(out, expected), np.abs(out - expected).max()
    assert (out.argmax(-1) == expected.argmax(-1)).mean() >= 0.95
    assert art.emulator.calls > 0


@pytest.mark.parametrize("batch", [1, 2])  # batch 1 decodes with GEMV launches, batch 2 with GEMM (M = 2)
def test_decode_steps_over_the_kv_cache_match_the_reference(compiled, batch):
    art, ref = compiled
    ids = np.random.default_rng(1).integers(0, 128, size=(batch, 7))
    cache, ref_cache = art.new_cache(batch), ref.new_cache(batch)
    out, expected = art.emulate_decode(ids, 0, cache), ref.decode(ids, 0, ref_cache)
    assert close(out, expected)
    position, token = ids.shape[1], expected[:, -1:].argmax(-1)
    for _ in range(4):
        out, expected = art.emulate_decode(token, position, cache), ref.decode(token, position, ref_cache)
        assert close(out, expected)
        position, token = position + 1, expected[:, -1:].argmax(-1)
    for mine, theirs in zip(cache, ref_cache):
        assert np.abs(mine - theirs).max() <= 1e-2 * np.abs(theirs).max()


def test_decode_from_an_empty_cache_one_token_at_a_time_matches_the_reference(compiled):
    # The first step reads no cache tile (sequence kv_tiles_0: no KV transfer, the step's key and value come in the
    # query records); every step rotates q and its key in the attention launch and appends the rotated key the
    # design writes: the caches match the reference's.
    art, ref = compiled
    cache, ref_cache = art.new_cache(1), ref.new_cache(1)
    token = np.array([[5]])
    for position in range(3):
        out, expected = art.emulate_decode(token, position, cache), ref.decode(token, position, ref_cache)
        assert close(out, expected)
        token = expected[:, -1:].argmax(-1)
    for mine, theirs in zip(cache, ref_cache):
        assert np.abs(mine[:, :, :3] - theirs[:, :, :3]).max() <= 1e-2 * np.abs(theirs).max()
        assert not np.any(mine[:, :, 3:])


def test_a_step_of_several_tokens_after_the_prompt_matches_the_reference(compiled):
    # 3 tokens at position 5: a split design whose query records carry the step's 3 keys and values (causal among
    # themselves) after the cache rows of the prompt, or a design reading the whole cache.
    art, ref = compiled
    ids = np.random.default_rng(2).integers(0, 128, size=(1, 8))
    cache, ref_cache = art.new_cache(1), ref.new_cache(1)
    art.emulate_decode(ids[:, :5], 0, cache), ref.decode(ids[:, :5], 0, ref_cache)
    out, expected = art.emulate_decode(ids[:, 5:], 5, cache), ref.decode(ids[:, 5:], 5, ref_cache)
    assert out.shape == expected.shape and close(out, expected)
    for mine, theirs in zip(cache, ref_cache):
        assert np.abs(mine[:, :, :8] - theirs[:, :, :8]).max() <= 1e-2 * np.abs(theirs).max()
        assert not np.any(mine[:, :, 8:])


def test_the_emulator_reads_the_weights_from_the_output_directory(tmp_path):
    model = tiny_qwen2(**CONFIGS["mha"])
    built = []
    art = aielower.compile(model, target="aie", quant=QUANT, max_seq_len=64, out_dir=tmp_path / "a",
                           progress=lambda done, total, design: built.append((done, total, design)))
    assert [b[0] for b in built] == list(range(1, len(art.manifest["designs"]) + 1))  # progress, design by design
    assert {b[2] for b in built} == {d["name"] for d in art.manifest["designs"]}
    ids = np.arange(10).reshape(1, 10)
    before = art.emulate(ids)
    index = json.loads((tmp_path / "a" / "weights" / "index.json").read_text())
    path = tmp_path / "a" / "weights" / index["lm_head"]["file"]
    blob = np.fromfile(path, np.uint8)
    blob[: blob.size // 2] = 0x77  # codes 7, and garbage scales for the first half of the tiles
    blob.tofile(path)
    again = AieArtifact(art.ir, art.device, art.out_dir, art.manifest, art.report)  # reads the damaged files
    assert not np.allclose(again.emulate(ids), before)


def test_compiling_twice_gives_byte_identical_output(tmp_path):
    model = tiny_qwen2(**CONFIGS["gqa-14x2"])
    for d in ("one", "two"):
        aielower.compile(model, target="aie", quant=QUANT, max_seq_len=64, out_dir=tmp_path / d)
    cmp = filecmp.dircmp(tmp_path / "one", tmp_path / "two")
    files = [p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file()]
    assert len(files) > 20
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel
    assert not cmp.left_only and not cmp.right_only


def test_target_aie_needs_an_output_directory():
    with pytest.raises(CompileError, match="target 'aie' writes kernels, designs, weights and a report: give out_dir="):
        aielower.compile(tiny_qwen2(), target="aie")


def test_target_aie_needs_the_planning_pass(tmp_path):
    with pytest.raises(CompileError, match="the pipeline has no plan-aie-tiling pass"):
        aielower.compile(tiny_qwen2(), target="aie", pipeline="fuse-norm", out_dir=tmp_path)


def test_emulating_a_model_without_weights_explains_why(tmp_path):
    with torch.device("meta"):
        model = tiny_qwen2(**CONFIGS["mha"])
    art = aielower.compile(model, target="aie", quant=QUANT, out_dir=tmp_path, max_seq_len=64)
    assert not (tmp_path / "weights").exists() and (tmp_path / "manifest.json").exists()
    with pytest.raises(ModelError, match="compiled without weights .*the meta device"):
        art.emulate(np.zeros((1, 4), np.int64))


def test_target_aie_needs_the_decode_function(tmp_path):
    with pytest.raises(CompileError, match="target 'aie' needs the decode function"):
        aielower.compile(tiny_qwen2(), target="aie", quant=QUANT, functions=("prefill",), out_dir=tmp_path)


def test_unknown_device(tmp_path):
    with pytest.raises(CompileError, match="unknown AIE device 'npu9': choose one of npu1, npu2"):
        aielower.compile(tiny_qwen2(), target="aie", device="npu9", out_dir=tmp_path)


def test_decode_reading_kv_tiles_past_the_valid_rows_gives_the_same_logits(tmp_path, monkeypatch):
    # A cache of two 128-row KV tiles. With reads rounded up to blocks of 256 rows, decode attention has only the
    # 2-tile sequence: at positions 7..10 its second tile holds no valid row, and the logits must not change by a bit
    # (the kernel leaves a row with no valid KV row unchanged). The 7B reads blocks of 64 rows of 32-row tiles.
    import aielower.backends.aie.families.attention as attention

    model = tiny_qwen2(**CONFIGS["mha"])
    ids = np.random.default_rng(3).integers(0, 128, size=(1, 7))
    runs = {}
    default = attention.KV_READ_BLOCK
    for block in (default, 256):
        monkeypatch.setattr(attention, "KV_READ_BLOCK", block)
        art = aielower.compile(model, target="aie", quant=QUANT, max_seq_len=256, out_dir=tmp_path / str(block))
        # decode attention's sequences: of its own design, or of its member of the GEMVs' configuration
        runs[block] = (sorted(n[n.index("kv_tiles_"):] for d in art.manifest["designs"] for n in d["instructions"]
                              if "kv_tiles_" in n), [])
        cache = art.new_cache(1)
        out = art.emulate_decode(ids, 0, cache)
        position, token = ids.shape[1], out[:, -1:].argmax(-1)
        for _ in range(4):
            out = art.emulate_decode(token, position, cache)
            runs[block][1].append(out)
            position, token = position + 1, out[:, -1:].argmax(-1)
    assert runs[default][0] == ["kv_tiles_0", "kv_tiles_1", "kv_tiles_2"]
    assert runs[256][0] == ["kv_tiles_0", "kv_tiles_2"]
    for a, b in zip(runs[default][1], runs[256][1]):
        np.testing.assert_array_equal(a, b)
