"""What the AIE backend writes: nothing outside ``out_dir``, every check before the first byte, no half-written
artifact, and hostile plan attributes in IR text refused before any file exists."""

from __future__ import annotations

import re

import pytest
import torch

import aielower
from aielower.errors import CompileError, IRError
from aielower.ir import TensorType
from tests.security.conftest import only_inside

TINY_META = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
QUANT = aielower.QuantConfig(group_size=16, lm_head_group_size=16)


def _meta_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.device("meta"):
        return Qwen2ForCausalLM(Qwen2Config(**TINY_META)).eval()


@pytest.fixture(scope="module")
def planned_ir(tmp_path_factory) -> str:
    """module.ir of a tiny model planned for npu2 (meta device: no weights)."""
    out = tmp_path_factory.mktemp("planned") / "aie"
    aielower.compile(_meta_model(), target="aie", quant=QUANT, out_dir=out)
    return (out / "module.ir").read_text()


def _compile_ir(text: str, out_dir):
    return aielower.compile(aielower.parse(text), target="aie", pipeline="", out_dir=out_dir)


def test_planned_ir_compiles_as_it_is(planned_ir, sandbox):
    art = _compile_ir(planned_ir, "out")
    assert (sandbox.root / "out" / "manifest.json").is_file() and art.manifest["designs"]
    assert only_inside(sandbox.files(), "out")


@pytest.mark.parametrize("field, value, message", [
    ("role", "../../evil", "a launch role is '../../evil'"),
    ("role", "gemv\\n  aie.end", "a launch role is"),
    ("kind", "../linear", "the plan kind is"),
    ("name", "x\\n    aie.core(%tile_0_2) {}", "a stream name is"),
    ("name", "../../etc", "a stream name is"),
    ("kernel", "linear_w4_gemv; rm -rf", "a kernel family is"),
])
def test_hostile_plan_fields_are_refused_before_anything_is_written(planned_ir, sandbox, field, value, message):
    text, n = re.subn(rf'\b{field} = "[^"]*"', lambda m: f'{field} = "{value}"', planned_ir, count=1)
    assert n == 1
    with pytest.raises(IRError, match=re.escape(message)):
        _compile_ir(text, "out")
    assert not (sandbox.root / "out").exists()
    assert sandbox.files() == set()


def test_plan_params_must_be_numbers(planned_ir, sandbox):
    text, n = re.subn(r"\btn = [0-9]+", lambda m: 'tn = "16); system(\\"id\\""', planned_ir, count=1)
    assert n == 1
    with pytest.raises(IRError, match=r"(shape|params)\.tn is .16\); system"):
        _compile_ir(text, "out")
    assert sandbox.files() == set()


def test_a_shape_note_with_mlir_is_a_comment_at_most(planned_ir, sandbox):
    """Free text in the plan's shape (a float here: only numbers are allowed) never becomes MLIR."""
    text, n = re.subn(r"\bshape = \{", lambda m: 'shape = {note = "x\\n  aie.device(npu2) {}", ', planned_ir, count=1)
    assert n == 1
    with pytest.raises(IRError, match=r"shape\.note is"):
        _compile_ir(text, "out")
    assert sandbox.files() == set()


def test_weight_names_with_path_separators_are_refused_where_they_are_made():
    from aielower.ir import Module

    module = Module()
    for bad in ("../evil", "a/b", "..", ".hidden", "x\n#", "w eight"):
        with pytest.raises(IRError, match="weight name .* is not allowed"):
            module.add_weight(bad, TensorType((2,), "f32"))


def test_a_weight_name_that_bypassed_the_grammar_never_leaves_out_dir(sandbox):
    from tests.conftest import tiny_qwen2

    art = aielower.compile(tiny_qwen2(num_hidden_layers=1), target="aie", quant=QUANT, max_seq_len=32, out_dir="first")
    module = art.ir
    name = next(n for n in module.weights if n.endswith("norm.weight"))
    module.weights[name].name = "../../escaped"  # as if a bug skipped the check
    module.weights = {("../../escaped" if n == name else n): w for n, w in module.weights.items()}
    before = sandbox.files()
    with pytest.raises(CompileError, match="refusing to write a file named '..'"):
        aielower.compile(module, target="aie", pipeline="", out_dir="out")
    assert sandbox.files() == before and not (sandbox.root / "out").exists()
    assert not (sandbox.root.parent / "escaped.bf16.bin").exists()


def test_out_dir_that_is_a_file_is_an_error_before_capture(sandbox):
    (sandbox.root / "taken").write_text("mine")
    with pytest.raises(CompileError, match="exists and is not a directory"):
        aielower.compile(_meta_model(), target="aie", out_dir="taken")
    assert (sandbox.root / "taken").read_text() == "mine"


def test_out_dir_with_other_files_is_never_replaced(sandbox):
    (sandbox.root / "home").mkdir()
    (sandbox.root / "home" / "notes.txt").write_text("keep me")
    with pytest.raises(CompileError, match="not empty and holds no aielower artifact"):
        aielower.compile(_meta_model(), target="aie", quant=QUANT, out_dir="home")
    assert (sandbox.root / "home" / "notes.txt").read_text() == "keep me"


def test_a_failed_compile_leaves_the_earlier_artifact_untouched(planned_ir, sandbox, monkeypatch):
    _compile_ir(planned_ir, "out")
    before = {f: (sandbox.root / f).read_bytes() for f in sandbox.files()}
    from aielower.backends.aie import artifact

    def broken(*args, **kwargs):
        raise CompileError("disk full (simulated)")

    monkeypatch.setattr(artifact, "print_module", broken)
    with pytest.raises(CompileError, match="simulated"):
        _compile_ir(planned_ir, "out")
    assert {f: (sandbox.root / f).read_bytes() for f in sandbox.files()} == before  # no staging files left either


def test_a_failure_while_writing_leaves_no_partial_directory(planned_ir, sandbox, monkeypatch):
    from aielower.output import ArtifactWriter

    calls = {"n": 0}
    real = ArtifactWriter.write_text

    def flaky(self, relative, text):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(self, relative, text)

    monkeypatch.setattr(ArtifactWriter, "write_text", flaky)
    with pytest.raises(OSError):
        _compile_ir(planned_ir, "out")
    assert sandbox.files() == set() and not (sandbox.root / "out").exists()
