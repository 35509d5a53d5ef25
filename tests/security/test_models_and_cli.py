"""Models and configs from elsewhere, and the command line: every bad input is a ModelError / CompileError (one
``aielower: error: ...`` line from the CLI), checked before torch.export runs."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

import aielower
from aielower.errors import ModelError
from tests.conftest import tiny_qwen2
from tests.security.conftest import PY_INJECTION, save_tiny_model_dir, write_gguf


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden_size=64, num_attention_heads=5, num_key_value_heads=5), r"num_attention_heads 5 does not divide hidden_size 64"),
    (dict(num_attention_heads=4, num_key_value_heads=3), r"num_key_value_heads 3 does not divide num_attention_heads 4"),
    (dict(max_position_embeddings=1), r"max_position_embeddings 1 is below 8"),
    (dict(rms_norm_eps=0.0), r"rms_norm_eps must be a positive finite number, got 0.0"),
    (dict(rms_norm_eps=-1e-6), r"rms_norm_eps must be a positive finite number"),
    (dict(rms_norm_eps=math.nan), r"rms_norm_eps must be a positive finite number, got nan"),
    (dict(rope_theta=math.inf), r"rope_theta must be a positive finite number, got inf"),
    (dict(rope_theta=0.0), r"rope_theta must be a positive finite number, got 0.0"),
    (dict(use_sliding_window=True), r"use_sliding_window=True is not supported"),
])
def test_bad_configs_are_model_errors_before_capture(overrides, message, monkeypatch):
    import aielower.frontend as frontend

    def no_export(*args, **kwargs):
        raise AssertionError("torch.export ran on a config that should have been refused")

    monkeypatch.setattr(frontend, "export_prefill", no_export)
    monkeypatch.setattr(frontend, "export_decode", no_export)
    from transformers import Qwen2Config

    config = Qwen2Config(**{**dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64),
                            **overrides})
    with pytest.raises(ModelError, match=message):
        aielower.frontend.config_checks.check_config(config, "config")
    if overrides.get("hidden_size") is None and "num_attention_heads" not in overrides:
        model = tiny_qwen2(num_hidden_layers=1)
        for key, value in overrides.items():
            if key == "rope_theta":
                model.config.rope_parameters["rope_theta"] = value
            else:
                setattr(model.config, key, value)
        with pytest.raises(ModelError, match=message):
            aielower.compile(model, functions=("prefill",))


def test_bad_config_json_in_a_directory_is_a_model_error(sandbox):
    directory = save_tiny_model_dir(sandbox.root / "m")
    text = (directory / "config.json").read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": -1.0')
    (directory / "config.json").write_text(text)
    with pytest.raises(ModelError, match=r"rms_norm_eps must be a positive finite number, got -1.0"):
        aielower.load_model(directory)


def test_directory_without_weights_is_a_model_error(sandbox):
    directory = save_tiny_model_dir(sandbox.root / "m")
    for f in directory.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelError, match="cannot load the model weights"):
        aielower.load_model(directory)


def test_gguf_with_header_and_tokenizer_but_no_tensors_is_refused(sandbox):
    path = write_gguf(sandbox.root / "empty.gguf")
    pytest.importorskip("accelerate")
    with pytest.raises(ModelError, match=r"the checkpoint lacks 1[0-9] weight\(s\) of the model"):
        aielower.load_model(path)


def test_gguf_without_tokenizer_is_a_model_error(sandbox):
    path = write_gguf(sandbox.root / "notok.gguf", tokenizer=False)
    with pytest.raises(ModelError, match=r"no usable tokenizer in the GGUF file"):
        aielower.load_tokenizer(path)


def test_gguf_of_another_architecture_is_refused(sandbox):
    path = write_gguf(sandbox.root / "llama.gguf", arch="llama")
    pytest.importorskip("accelerate")
    with pytest.raises(ModelError, match=r"GGUF architecture 'llama' is not supported"):
        aielower.load_model(path)


def test_bytes_that_are_not_gguf_are_a_model_error(sandbox):
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    path = sandbox.root / "junk.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(ModelError, match=r"not a readable GGUF file"):
        aielower.load_model(path)


def test_gguf_whose_file_name_holds_python_is_named_safely(sandbox):
    """The module of a .gguf is named after the file: a hostile file name is made to fit the grammar."""
    from aielower.names import derive_module_name, is_valid

    assert is_valid("module", derive_module_name(PY_INJECTION + ".gguf"))


# --- the command line -----------------------------------------------------------------------------------------------


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aielower", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_huge_dim_is_one_error_line_with_a_location(sandbox):
    (sandbox.root / "big.ir").write_text("func @f(%x: tensor<" + "9" * 5000 + "xf32>) -> tensor<3xf32> {}\n")
    proc = _cli("opt", "big.ir", cwd=sandbox.root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("big.ir:1:20: error: a dim") and len(proc.stderr) < 1000


def test_cli_out_dir_that_is_a_file_is_one_error_line(sandbox):
    (sandbox.root / "taken").write_text("x")
    proc = _cli("compile", "qwen2-0.5b", "--target", "aie", "-o", "taken", cwd=sandbox.root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("aielower: error: output directory taken exists and is not a directory: choose "
                                   "another path")


def test_cli_traceback_flag_shows_the_traceback(sandbox):
    (sandbox.root / "taken").write_text("x")
    proc = _cli("compile", "qwen2-0.5b", "--target", "aie", "-o", "taken", "--traceback", cwd=sandbox.root)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "CompileError" in proc.stderr


def test_cli_ir_that_is_not_utf8_is_one_error_line(sandbox):
    (sandbox.root / "bin.ir").write_bytes(b"\xff\xfe\x00garbage")
    proc = _cli("opt", "bin.ir", cwd=sandbox.root)
    assert proc.returncode == 1 and proc.stderr.startswith("aielower: error: cannot read bin.ir: not UTF-8")


def test_cli_unicode_digits_in_a_pipeline_are_one_error_line(sandbox):
    (sandbox.root / "a.ir").write_text("func @f(%x: tensor<3xf32>) -> tensor<3xf32> {\n  return %x\n}\n")
    proc = _cli("opt", "a.ir", "--pipeline", "quantize-linear{group=\u0663\u0662}", cwd=sandbox.root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "option 'group' expects int" in proc.stderr
