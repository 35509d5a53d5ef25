"""quantize-linear{method=awq}: groups, exact folds, and a real gain over RTN on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aielower
from aielower.api import FUSIONS
from aielower.backends.ref import RefCompiledModel, generate
from aielower.errors import AielowerError, CompileError
from aielower.frontend import import_model
from aielower.ir import parse
from aielower.passes import PassManager
from aielower.passes.awq import AWQOptions, apply_awq, module_groups
from tests.conftest import CONFIGS, save_tiny_tokenizer, tiny_qwen2, torch_logits

CALIB_TEXT = ("The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. " * 60)


def fused_module(model, max_seq_len=64):
    module = import_model(model, max_seq_len=max_seq_len)
    PassManager.parse(FUSIONS).run(module)
    return module


@pytest.mark.parametrize("name", ["mha", "gqa-14x2", "tied"])
def test_folded_program_is_the_same_function(name):
    """Without clipping, AWQ only moves scales between producer and linear: same logits, prefill and decode."""
    model = tiny_qwen2(seed=5, **CONFIGS[name])
    module = fused_module(model)
    before = {n: w.data.copy() for n, w in module.weights.items()}
    tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, (4, 32))
    report = apply_awq(module, tokens, AWQOptions(group=16, clip=False, progress=False))
    # Every group of both layers is folded, o_proj too (through the value rows, tied under GQA).
    assert [g.fold.split(" ")[0] for g in report.groups] == ["@model.layers.0.input_layernorm.weight", "rows",
                                                             "@model.layers.0.post_attention_layernorm.weight",
                                                             "rows"] + [g.fold.split(" ")[0] for g in report.groups[4:]]
    assert all(g.alpha is not None for g in report.groups)
    assert sum(g.alpha > 0 for g in report.groups) >= 6
    changed = [n for n in module.weights if not np.array_equal(before[n], module.weights[n].data)]
    assert any("input_layernorm" in n for n in changed) and any("gate_up_proj" in n for n in changed)
    cm = RefCompiledModel(module, generate(module))
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, (2, 20))
    expected = torch_logits(model, ids)
    scale = np.abs(expected).max()
    assert np.abs(cm(ids) - expected).max() <= 1e-5 * scale
    assert np.abs(cm.decode(ids, 0, cm.new_cache(2)) - expected[:, -1:]).max() <= 1e-5 * scale  # the last token's
    # The torch model's own weights are untouched (IR weights may share its memory).
    assert np.array_equal(torch_logits(model, ids), expected)


def outlier_model_dir(tmp_path):
    """A tiny model whose RMSNorm weights have a few channels 25x larger: activation outliers."""
    model = tiny_qwen2(seed=5, hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[torch.randperm(128, generator=gen)[:4]] *= 25
    model.save_pretrained(tmp_path)
    save_tiny_tokenizer(tmp_path)
    (tmp_path / "calib.txt").write_text(CALIB_TEXT)
    return model, tmp_path


def test_awq_beats_rtn_on_activation_outliers(tmp_path):
    model, path = outlier_model_dir(tmp_path)
    ids = np.random.default_rng(1).integers(0, 95, (1, 64))
    fp32 = torch_logits(model, ids)

    def rms_error(**quant):
        cm = aielower.compile(model, quant=aielower.QuantConfig(group_size=32, **quant), functions=("prefill",))
        return float(np.sqrt(np.mean((cm(ids) - fp32) ** 2))), cm

    rtn, _ = rms_error()
    awq, cm = rms_error(method="awq", calib=str(path / "calib.txt"), tokenizer=str(path), samples=8, seqlen=64, clip=True,
                        progress=False)
    assert awq < 0.75 * rtn, (awq, rtn)  # measured: 0.038 vs 0.073
    report = cm.ir.metadata["awq"]
    assert report["samples"] == 8 and report["seqlen"] == 64 and report["seconds"] > 0 and report["peak_rss_mb"] > 0
    assert "awq: 8 x 64 calibration tokens, 8/8 groups foldable, 8 scaled (alpha > 0" in report["summary"]
    assert set(report["phases"]) == {"forward", "scale search", "clip search"}
    # Still an ordinary quantized program: quant.linear ops, printable and parsable.
    kinds = aielower.api.CompileStats.ops_by_kind_in(cm.ir.functions["prefill"])
    assert kinds["quant.linear"] == 8 and kinds["nn.linear"] == 1
    assert str(parse(str(cm.ir))) == str(cm.ir)


def test_awq_by_model_directory_uses_its_tokenizer_and_the_pipeline_text(tmp_path):
    _, path = outlier_model_dir(tmp_path)
    pipeline = FUSIONS + f",quantize-linear{{group=32 method=awq calib={path / 'calib.txt'} samples=2 seqlen=32 " \
                         "clip=false progress=false},cse,dce"
    cm = aielower.compile(str(path), pipeline=pipeline, functions=("prefill",))
    assert cm.ir.metadata["source"] == str(path)
    assert "awq: 2 x 32 calibration tokens" in cm.ir.metadata["awq"]["summary"]
    assert all(g["clip_error"] is None for g in cm.ir.metadata["awq"]["groups"])


def test_groups_without_a_foldable_producer_keep_scale_one():
    """Without fusions the norms are plain arithmetic: nothing to fold into, but the linears are still grouped."""
    module = import_model(tiny_qwen2(seed=2), functions=("prefill",))
    PassManager.parse("fuse-qkv").run(module)
    groups = module_groups(module)
    assert [g.name.rsplit(".", 1)[-1] for g in groups[:4]] == ["qkv_proj", "o_proj", "{gate_proj,up_proj}", "down_proj"]
    assert all(g.fold is None for g in groups)
    assert "nn.mul, which has no weight to fold 1/s into" in groups[0].why_not


@pytest.mark.parametrize(
    "quant, message",
    [
        (dict(), "no tokenizer is known for"),
        (dict(tokenizer="TOKDIR", calib="/no/such/calib.txt"), "calibration file /no/such/calib.txt does not exist"),
        (dict(tokenizer="TOKDIR", calib="SHORT", seqlen=512), "fewer than one chunk of seqlen=512"),
        (dict(tokenizer="TOKDIR", group_size=48), "not a multiple of group 48"),
    ],
)
def test_awq_errors_say_what_to_do(tmp_path, quant, message):
    save_tiny_tokenizer(tmp_path)
    (tmp_path / "short.txt").write_text("only a few words")
    quant = {k: str(tmp_path) if v == "TOKDIR" else str(tmp_path / "short.txt") if v == "SHORT" else v
             for k, v in quant.items()}
    with pytest.raises(AielowerError, match=message):
        config = aielower.QuantConfig(**({"group_size": 32} | quant), method="awq", progress=False)
        aielower.compile(tiny_qwen2(), quant=config, functions=("prefill",))


def test_awq_on_the_meta_device_is_refused():
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(tiny_qwen2().config)
    with pytest.raises(CompileError, match="method=awq calibrates on the model's weights, but 'meta-tiny' has none"):
        aielower.compile(model, quant=aielower.QuantConfig(group_size=32, method="awq"), functions=("prefill",),
                         name="meta-tiny")


def test_awq_options_are_rejected_with_rtn_and_in_bad_quant_configs():
    with pytest.raises(CompileError, match=r"option\(s\) samples apply to method=awq only"):
        PassManager.parse("quantize-linear{samples=4}")
    with pytest.raises(CompileError, match="cannot go into a pipeline string"):
        aielower.QuantConfig(method="awq", calib="my calib.txt").pipeline()
