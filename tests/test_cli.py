"""The ``aielower`` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aielower.cli import main
from tests.ir.test_text_format import SAMPLE


def test_compile_bundled_config_prints_summary(tmp_path, capsys):
    argv = ["compile", "qwen1.5-7b-chat", "--target", "ref", "--quant", "w4g128", "--lm-head-group", "32"]
    assert main(argv + ["--dump-ir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "compiled qwen1.5-7b-chat for target ref" in out
    assert "function @prefill(%input_ids: tensor<?bx?sxi64>) -> tensor<?bx?sx151936xf32>" in out
    assert "function @decode(%input_ids: tensor<?bx?sxi64>, %position: tensor<1xi64>, %k_cache_0: tensor<?bx32x4096x128xf32>, ... 63 more)" in out
    assert "ops by kind:            prefill   decode" in out
    assert "    quant.linear              129      129" in out
    assert "    fused.attention            32       32" in out
    assert "quantize-linear{bits=4 group=128 method=rtn},quantize-lm-head{bits=4 group=32 method=rtn}" in out
    assert "shape only (meta device)" in out
    text = (tmp_path / "00-input.ir").read_text()
    header, blank, first_weight = text.splitlines()[:3]
    assert header.startswith('module @qwen1.5-7b-chat attributes {config = {') and "rope_theta = 1000000.0" in header
    assert blank == "" and first_weight == "weight @model.embed_tokens.weight : tensor<151936x4096xf32>"
    assert "qtensor<22016x4096xu4, group=128" in (tmp_path / "09-dce.ir").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quant", "int4"], "bad --quant 'int4': expected w<bits>g<group>, e.g. w4g128"),
        (["--lm-head-group", "32"], "--lm-head-group needs --quant"),
        (["--pipeline", "fuse-norm,bogus"], "unknown pass 'bogus' in pipeline"),
    ],
)
def test_compile_option_errors(argv, message, capsys):
    assert main(["compile", "qwen2-0.5b", *argv]) == 1
    assert message in capsys.readouterr().err


def test_opt_runs_a_pipeline(tmp_path, capsys):
    f = tmp_path / "g.ir"
    f.write_text(SAMPLE.replace("  return %a, %g", "  %dead = nn.exp %g : tensor<?bx?sx32xf32>\n  return %a, %g"))
    assert main(["opt", str(f)]) == 0
    assert "%dead = nn.exp" in capsys.readouterr().out
    assert main(["opt", str(f), "--pipeline", "dce"]) == 0
    out = capsys.readouterr().out
    assert "%dead" not in out and "nn.sdpa" in out


def test_opt_missing_file(capsys):
    assert main(["opt", "/no/such/file.ir"]) == 1
    assert "cannot read /no/such/file.ir" in capsys.readouterr().err


def test_passes_lists_registered_passes(capsys):
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    assert "quantize-linear{bits=4 group=128 method=rtn}" in out and "default pipeline" in out


def test_target_aie_needs_an_output_directory(capsys):
    assert main(["compile", "qwen2-0.5b", "--target", "aie"]) == 1
    assert "--target aie writes kernels, designs, weights and a report: give -o DIR" in capsys.readouterr().err


def test_output_directory_is_for_target_aie_only(capsys):
    assert main(["compile", "qwen2-0.5b", "-o", "x"]) == 1
    assert "-o and --device are options of --target aie" in capsys.readouterr().err


def test_unknown_target_lists_valid_ones(capsys):
    assert main(["compile", "qwen2-0.5b", "--target", "gpu"]) == 1
    assert "unknown target 'gpu'; valid targets: ref, aie" in capsys.readouterr().err


def test_unknown_model(capsys):
    assert main(["compile", "no-such-model"]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_opt_round_trips_an_ir_file(tmp_path, capsys):
    f = tmp_path / "g.ir"
    f.write_text(SAMPLE)
    assert main(["opt", str(f)]) == 0
    assert capsys.readouterr().out == SAMPLE


def test_opt_reports_parse_errors_with_location(tmp_path, capsys):
    f = tmp_path / "bad.ir"
    f.write_text(SAMPLE.replace("nn.silu", "nn.swish"))
    assert main(["opt", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{f}:32:8: error: unknown op 'nn.swish'")
    assert "^" in err


@pytest.mark.parametrize("argv", [["-m", "aielower", "--help"]])
def test_python_dash_m_entry_point(argv):
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    assert result.returncode == 0
    assert "compile" in result.stdout and "opt" in result.stdout


def expected_text(model_dir, prompt, new_tokens, quant=None):
    import aielower

    tokenizer = aielower.load_tokenizer(model_dir)
    cm = aielower.compile(aielower.load_model(model_dir), quant=quant, max_seq_len=64)
    ids = tokenizer(prompt, return_tensors="np").input_ids
    return tokenizer.decode(cm.generate(ids, max_new_tokens=new_tokens)[0, ids.shape[1]:], skip_special_tokens=True)


def test_run_generates_and_prints_the_latency_table(tiny_model_dir, capsys):
    assert main(["run", str(tiny_model_dir), "--prompt", "def f(x):", "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    text, table = out.split("\n\nLatency: ", 1)
    assert text == expected_text(tiny_model_dir, "def f(x):", 6)
    assert "measured on the ref backend" in table and "fp32" in table
    header, rule, row = table.splitlines()[1:4]
    assert "Prompt Length (tokens)" in header and "Time/Token (ms)" in header and "Tokens/Sec" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["1", "9", "6"] and float(cells[5]) > 0


def test_run_with_quantization(tiny_model_dir, capsys):
    from aielower.api import QuantConfig

    argv = ["run", str(tiny_model_dir), "--prompt", "x = 1", "--max-new-tokens", "5", "--quant", "w4g16"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "w4g16" in out
    assert out.split("\n\nLatency: ")[0] == expected_text(tiny_model_dir, "x = 1", 5, QuantConfig(group_size=16))


def test_run_needs_weights(capsys):
    assert main(["run", "qwen1.5-7b-chat", "--prompt", "hi"]) == 1
    assert "bundled config (architecture only): it has no tokenizer or weights" in capsys.readouterr().err


def test_export_mlir_without_torch_mlir_says_how_to_install(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_mlir", None)  # as if the optional extra were absent
    assert main(["export-mlir", "qwen2-0.5b", "-o", str(tmp_path / "m.mlir")]) == 1
    assert "export-mlir needs torch-mlir: pip install torch==2.13.0 -e '.[mlir]'" in capsys.readouterr().err


def test_export_mlir_writes_a_file(tmp_path, capsys):
    pytest.importorskip("torch_mlir", reason="torch-mlir (optional extra 'mlir') is not installed")
    out = tmp_path / "tiny.mlir"
    from tests.conftest import tiny_qwen2

    model_dir = tmp_path / "model"
    tiny_qwen2(num_hidden_layers=1).save_pretrained(model_dir)
    assert main(["export-mlir", str(model_dir), "-o", str(out), "--dialect", "linalg"]) == 0
    assert "linalg dialect" in capsys.readouterr().out
    assert "func.func @main" in out.read_text() and "linalg." in out.read_text()


def test_opt_on_a_binary_file(tmp_path, capsys):
    f = tmp_path / "b.ir"
    f.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["opt", str(f)]) == 1
    assert "not UTF-8 text" in capsys.readouterr().err


def test_zero_group_from_the_command_line(capsys):
    assert main(["compile", "qwen2-0.5b", "--quant", "w4g0"]) == 1
    assert "option 'group' must be >= 1, got 0" in capsys.readouterr().err


def test_method_needs_quant(capsys):
    assert main(["compile", "qwen2-0.5b", "--method", "awq"]) == 1
    assert "--method awq needs --quant" in capsys.readouterr().err


# --------------------------------------------------------------------------- aielower opt --load

PLUGIN = '''\
import sys

from aielower.ir import op
from aielower.ir.dialects.nn import Silu
from aielower.passes import ModulePass, register_pass


@op("ext.swish")
class Swish(Silu):
    """x * sigmoid(x), under another name: an op defined outside the package"""


@register_pass("ext-announce")
class Announce(ModulePass):
    """A pass defined outside the package."""

    def run(self, module):
        print(f"ext-announce ran on {module.name}", file=sys.stderr)
'''


@pytest.fixture
def registries():
    """Restore the pass and op registries after a test that loads a plugin."""
    from aielower.ir import OP_REGISTRY
    from aielower.passes import PASS_REGISTRY

    saved = dict(PASS_REGISTRY), dict(OP_REGISTRY)
    yield
    for registry, before in zip((PASS_REGISTRY, OP_REGISTRY), saved):
        registry.clear()
        registry.update(before)


def test_opt_load_registers_a_pass_and_an_op_from_a_file(tmp_path, capsys, registries):
    plugin = tmp_path / "my_passes.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    f = tmp_path / "g.ir"
    f.write_text(SAMPLE.replace("  return %a, %g", "  %w = ext.swish %g : tensor<?bx?sx32xf32>\n  return %a, %w"))
    assert main(["opt", str(f), "--load", str(plugin), "--pipeline", "ext-announce,dce"]) == 0
    captured = capsys.readouterr()
    assert "ext-announce ran on" in captured.err
    assert "= ext.swish %g : tensor<?bx?sx32xf32>" in captured.out
    # loading the same file twice (a repeated --load) imports it once: no "registered twice"
    assert main(["opt", str(f), "--load", str(plugin), "--load", str(plugin), "--pipeline", "ext-announce"]) == 0
    assert main(["passes", "--load", str(plugin)]) == 0
    assert "ext-announce" in capsys.readouterr().out


def test_opt_load_a_module_by_name(tmp_path, capsys, registries, monkeypatch):
    for name in ("extpkg", "extpkg.passes"):  # imported afresh, and not left behind for other tests
        monkeypatch.delitem(sys.modules, name, raising=False)
    package = tmp_path / "extpkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "passes.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    f = tmp_path / "g.ir"
    f.write_text(SAMPLE)
    assert main(["opt", str(f), "--load", "extpkg.passes", "--pipeline", "ext-announce"]) == 0
    assert "ext-announce ran on" in capsys.readouterr().err
    assert main(["opt", str(f), "--load", "extpkg.nothing"]) == 1
    assert "--load extpkg.nothing: no module named 'extpkg.nothing' on the Python path" in capsys.readouterr().err


def test_opt_without_load_does_not_know_the_pass(tmp_path, capsys):
    f = tmp_path / "g.ir"
    f.write_text(SAMPLE)
    assert main(["opt", str(f), "--pipeline", "ext-announce-unknown"]) == 1
    assert "unknown pass 'ext-announce-unknown'" in capsys.readouterr().err


@pytest.mark.parametrize("body, message", [
    (None, "--load {path}: no such file"),
    ("raise RuntimeError('plugin is broken')\n", "--load {path}: RuntimeError: plugin is broken"),
    ("def f(:\n", "--load {path}: SyntaxError: "),
    ("import no_such_module_for_aielower\n",
     "--load {path}: ModuleNotFoundError: No module named 'no_such_module_for_aielower'"),
    ("import sys\nsys.exit(3)\n", "--load {path}: SystemExit: 3"),
])
def test_opt_load_errors_are_one_line(tmp_path, capsys, body, message):
    plugin = tmp_path / "bad_plugin.py"
    if body is not None:
        plugin.write_text(body, encoding="utf-8")
    f = tmp_path / "g.ir"
    f.write_text(SAMPLE)
    assert main(["opt", str(f), "--load", str(plugin)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aielower: error: " + message.format(path=plugin)), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not [m for m in sys.modules if m.startswith("_aielower_load_bad_plugin")]  # no half-imported module


def test_opt_load_traceback_shows_the_plugins_error(tmp_path):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text("def setup():\n    raise RuntimeError('plugin is broken')\n\nsetup()\n", encoding="utf-8")
    f = tmp_path / "g.ir"
    f.write_text(SAMPLE)
    with pytest.raises(Exception) as info:
        main(["opt", str(f), "--load", str(plugin), "--traceback"])
    assert "RuntimeError: plugin is broken" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)  # the full traceback of the plugin is chained


def test_opt_load_is_documented():
    result = subprocess.run([sys.executable, "-m", "aielower", "opt", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--load FILE.py|MODULE" in result.stdout and "@register_pass" in result.stdout
