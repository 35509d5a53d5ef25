"""Optional MLIR export through torch-mlir (aielower.frontend.mlir_export).

The argument checks and the missing-torch-mlir error run everywhere; the exports need the
optional extra 'mlir' (torch-mlir) and skip without it.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

from aielower.errors import CompileError
from aielower.frontend.mlir_export import INSTALL_HINT, export_mlir, write_mlir
from tests.conftest import TINY, tiny_qwen2

SKIP_REASON = "torch-mlir (optional extra 'mlir') is not installed"


def needs_torch_mlir():
    return pytest.importorskip("torch_mlir", reason=SKIP_REASON)


def meta_qwen2(**overrides):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.device("meta"):
        return Qwen2ForCausalLM(Qwen2Config(**{**TINY, **overrides})).eval()


def signature(text: str) -> str:
    return re.search(r"func\.func @main\((.*?)\) -> (.*?) (attributes )?\{", text).group(0)


def weight_args(text: str) -> list[str]:
    return re.findall(r'aielower\.weight = "([^"]+)"', signature(text))


def parses(text: str, torch_mlir) -> None:
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d

    with ir.Context() as ctx:
        torch_d.register_dialect(ctx)
        ir.Module.parse(text).operation.verify()


# --- always run --------------------------------------------------------------------


def test_missing_torch_mlir_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_mlir", None)  # `import torch_mlir` raises ImportError
    with pytest.raises(CompileError, match=re.escape(INSTALL_HINT)):
        export_mlir(tiny_qwen2(num_hidden_layers=1))
    assert "pip install torch==2.13.0 -e '.[mlir]'" in INSTALL_HINT


def test_unknown_dialect():
    with pytest.raises(CompileError, match=r"unknown MLIR dialect 'tosa'.*torch, linalg"):
        export_mlir(tiny_qwen2(num_hidden_layers=1), "tosa")


def test_unknown_weights_mode():
    with pytest.raises(CompileError, match=r"unknown weights mode 'none'.*auto, inline, args"):
        export_mlir(tiny_qwen2(num_hidden_layers=1), weights="none")


# --- need torch-mlir ---------------------------------------------------------------


def test_torch_dialect():
    torch_mlir = needs_torch_mlir()
    model = tiny_qwen2(num_hidden_layers=1)
    text = export_mlir(model, "torch")
    assert "func.func @main(%arg0: !torch.vtensor<[?,?],si64>) -> !torch.vtensor<[?,?,128],f32>" in text
    for op in ("torch.aten.embedding", "torch.aten.mm", "torch.aten.bmm", "torch.aten.rsqrt", "torch.aten.sigmoid"):
        assert op in text, op
    assert "linalg." not in text
    # weights inline, one dense_resource blob each, named by the state-dict name
    assert weight_args(text) == []
    assert "torch.vtensor.literal(dense_resource<model.embed_tokens.weight> : tensor<128x64xf32>)" in text
    assert "dialect_resources" in text
    parses(text, torch_mlir)


def test_linalg_dialect():
    torch_mlir = needs_torch_mlir()
    text = export_mlir(tiny_qwen2(num_hidden_layers=1), "linalg")
    assert "func.func @main(%arg0: tensor<?x?xi64>) -> tensor<?x?x128xf32>" in text
    for op in ("linalg.generic", "linalg.matmul", "linalg.batch_matmul", "arith.constant dense_resource<"):
        assert op in text, op
    assert "torch.aten." not in text and "!torch.vtensor" not in text
    parses(text, torch_mlir)


def test_inline_blob_holds_the_weights():
    needs_torch_mlir()
    model = tiny_qwen2(num_hidden_layers=1)
    text = export_mlir(model, "torch", weights="inline")
    blob = re.search(r'^\s*model\.norm\.weight: "0x([0-9A-F]+)"', text, re.M).group(1)
    raw = bytes.fromhex(blob)
    assert int.from_bytes(raw[:4], "little") == 4  # alignment header
    np.testing.assert_array_equal(np.frombuffer(raw[4:], "<f4"), model.model.norm.weight.detach().numpy())


@pytest.mark.parametrize("dialect", ["torch", "linalg"])
def test_meta_model_takes_the_weights_as_arguments(dialect):
    torch_mlir = needs_torch_mlir()
    text = export_mlir(meta_qwen2(num_hidden_layers=1), dialect)
    names = weight_args(text)
    assert names[0] == "model.embed_tokens.weight"
    assert {"lm_head.weight", "model.norm.weight", "model.layers.0.self_attn.q_proj.bias"} <= set(names)
    assert "model.rotary_emb.inv_freq" in names  # no data on meta either
    assert len(names) == 15 + 2  # parameters of one layer + rotary buffers
    sig = signature(text)
    first = "%arg0: !torch.vtensor<[?,?],si64>" if dialect == "torch" else "%arg0: tensor<?x?xi64>"
    assert sig.startswith(f"func.func @main({first}, %arg1: ")
    assert "dense_resource" not in text and '"meta"' not in text
    parses(text, torch_mlir)


def test_args_mode_on_a_model_with_weights_matches_its_meta_twin():
    needs_torch_mlir()
    real, meta = tiny_qwen2(num_hidden_layers=1), meta_qwen2(num_hidden_layers=1)
    text = export_mlir(real, "torch", weights="args")
    assert "dense_resource" not in text
    assert weight_args(text) == weight_args(export_mlir(meta, "torch"))
    assert signature(text) == signature(export_mlir(meta, "torch"))


def test_tied_embedding_is_one_argument():
    needs_torch_mlir()
    names = weight_args(export_mlir(meta_qwen2(num_hidden_layers=1, tie_word_embeddings=True), "torch"))
    assert names.count("model.embed_tokens.weight") == 1 and "lm_head.weight" not in names
    assert len(names) == 14 + 2


def test_inline_on_a_meta_model_raises():
    needs_torch_mlir()
    with pytest.raises(CompileError, match=r"weights='inline' needs a model with weights.*meta device"):
        export_mlir(meta_qwen2(num_hidden_layers=1), weights="inline")


def test_write_mlir_writes_what_export_mlir_returns(tmp_path):
    needs_torch_mlir()
    model = meta_qwen2(num_hidden_layers=1)
    path = tmp_path / "prefill.mlir"
    write_mlir(model, path, "linalg")
    assert path.read_text() == export_mlir(model, "linalg")
