"""Frontend: torch.export capture of Qwen2 into the IR, bundled configs, model loading, errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import aielower
from aielower.errors import ConversionError, ModelError
from aielower.frontend import bundled_configs, import_model, load_model
from aielower.ir import parse, verify
from tests.conftest import tiny_qwen2, torch_logits

HERE = Path(__file__).parent


def test_one_layer_ir_filecheck(tmp_path):
    model = tiny_qwen2(num_hidden_layers=1, num_key_value_heads=2)
    ir = tmp_path / "prefill.ir"
    ir.write_text(str(import_model(model, functions=("prefill",))))
    result = subprocess.run(
        [sys.executable, "-m", "filecheck", str(HERE / "one_layer_prefill.check"), "--input-file", str(ir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_layer_decode_ir_filecheck(tmp_path):
    model = tiny_qwen2(num_hidden_layers=1, num_key_value_heads=2)
    ir = tmp_path / "decode.ir"
    ir.write_text(str(import_model(model, functions=("decode",), max_seq_len=32)))
    result = subprocess.run(
        [sys.executable, "-m", "filecheck", str(HERE / "one_layer_decode.check"), "--input-file", str(ir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_capture_restores_the_models_attention():
    model = tiny_qwen2(num_hidden_layers=1)
    before = model.config._attn_implementation
    import_model(model)
    assert model.config._attn_implementation == before


@pytest.mark.parametrize("name", ["qwen1.5-7b-chat", "qwen2-7b"])
def test_7b_configs_capture_on_meta(name):
    t0 = time.perf_counter()
    module = import_model(load_model(name), name, functions=("prefill",))
    seconds = time.perf_counter() - t0
    verify(module)
    text = str(module)
    assert str(parse(text)) == text
    fn = module.functions["prefill"]
    layers = 32 if name == "qwen1.5-7b-chat" else 28
    assert sum(op.name == "nn.linear" for op in fn.ops) == 7 * layers + 1
    assert sum(op.name == "nn.sdpa" for op in fn.ops) == layers
    assert module.weights["model.layers.0.self_attn.q_proj.bias"].data is None
    assert fn.results[0].type.shape[-1] == (151936 if name == "qwen1.5-7b-chat" else 152064)
    assert seconds < 120


def test_qwen15_7b_shapes_match_the_model_card():
    module = import_model(load_model("qwen1.5-7b-chat"), functions=("prefill",))
    w = {n: tuple(x.type.shape) for n, x in module.weights.items()}
    assert w["model.embed_tokens.weight"] == (151936, 4096)
    assert w["model.layers.31.self_attn.q_proj.weight"] == (4096, 4096)
    assert w["model.layers.31.self_attn.k_proj.bias"] == (4096,)
    assert w["model.layers.0.mlp.gate_proj.weight"] == (11008, 4096)
    assert w["model.layers.0.mlp.down_proj.weight"] == (4096, 11008)
    assert w["lm_head.weight"] == (151936, 4096)


def test_bundled_configs():
    assert {"qwen1.5-7b-chat", "qwen2-0.5b", "qwen2.5-0.5b", "qwen2-7b"} <= set(bundled_configs())
    model = load_model("qwen2.5-0.5b")
    assert next(model.parameters()).is_meta
    assert model.config.num_key_value_heads == 2


def test_unknown_model_name():
    with pytest.raises(ModelError, match=r"unknown model 'qwen9-1t'.*qwen1\.5-7b-chat"):
        load_model("qwen9-1t")


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelError, match="without config.json"):
        load_model(tmp_path)


def test_local_hf_directory_round_trip(tmp_path):
    model = tiny_qwen2(num_hidden_layers=1)
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    cm = aielower.compile(tmp_path, target="ref")
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    expected = torch_logits(model, ids)
    assert abs(cm(ids) - expected).max() <= 1e-4 * abs(expected).max()
    assert not next(loaded.parameters()).is_meta


def test_non_qwen2_model_is_rejected(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    with pytest.raises(ModelError, match="LlamaForCausalLM is not supported; aielower compiles Qwen2ForCausalLM"):
        aielower.compile(llama)
    llama.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="model type 'llama'.*is not supported"):
        load_model(tmp_path)


def test_bf16_model_is_rejected_with_advice():
    model = tiny_qwen2(num_hidden_layers=1).to(torch.bfloat16)
    with pytest.raises(ModelError, match=r"pass model.float\(\)"):
        aielower.compile(model)


def test_unsupported_aten_op_names_op_and_module():
    model = tiny_qwen2(num_hidden_layers=1)
    model.model.layers[0].mlp.act_fn = torch.nn.GELU()
    with pytest.raises(ConversionError) as info:
        import_model(model)
    message = str(info.value)
    assert message.startswith("no conversion for aten.gelu.default")
    assert "at model.layers.0.mlp.act_fn (GELU), node %gelu" in message
    assert "add a rule in aielower/frontend/aten_to_ir.py" in message
