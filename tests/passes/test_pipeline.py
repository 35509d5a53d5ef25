"""Pass infrastructure: pipeline strings, options, PassManager (verify, dump, timing), errors."""

from __future__ import annotations

import pytest

import aielower
from aielower.errors import CompileError, VerifyError
from aielower.ir import parse
from aielower.passes import PassManager, parse_pipeline
from aielower.passes.base import ModulePass, register_pass
from tests.conftest import tiny_qwen2

SMALL = """\
weight @w : tensor<32x64xf32>

func @prefill(%x: tensor<?bx?sx64xf32>) -> tensor<?bx?sx32xf32> {
  %0 = nn.mul_scalar %x {value = 1.0} : tensor<?bx?sx64xf32>
  %1 = nn.linear %0, @w : tensor<?bx?sx32xf32>
  return %1
}
"""


def test_pipeline_string_builds_passes_with_typed_options():
    passes = parse_pipeline("fuse-norm, quantize-linear{bits=8 group=64},quantize-lm-head,dce")
    assert [p.name for p in passes] == ["fuse-norm", "quantize-linear", "quantize-lm-head", "dce"]
    assert (passes[1].bits, passes[1].group, passes[1].method) == (8, 64, "rtn")
    assert passes[2].group == 32
    assert PassManager(passes).pipeline == (
        "fuse-norm,quantize-linear{bits=8 group=64 method=rtn},quantize-lm-head{bits=4 group=32 method=rtn},dce"
    )


@pytest.mark.parametrize(
    "pipeline, message",
    [
        ("fuse-nrm", "unknown pass 'fuse-nrm' in pipeline; available passes:\n  canonicalize"),
        ("dce{x=1}", "pass 'dce' has no option 'x'; valid: this pass takes no options"),
        ("quantize-linear{bitz=4}", "pass 'quantize-linear' has no option 'bitz'; valid: bits=4 (2|4|8): bits per weight"),
        ("quantize-linear{bits=5}", "option 'bits' must be one of 2, 4, 8, got 5"),
        ("quantize-linear{group=big}", "option 'group' expects int, got 'big'"),
        ("quantize-linear{method=gptq}", "option 'method' must be one of rtn, awq, got 'gptq'"),
        ("quantize-lm-head{method=awq}", "option 'method' must be one of rtn, got 'awq'"),
        ("quantize-linear{calib=x.txt}", "option(s) calib apply to method=awq only (method is rtn)"),
        ("quantize-linear{bits 4}", "bad option 'bits', expected key=value"),
        ("fuse-norm,,dce", "bad pipeline 'fuse-norm,,dce' at character 11"),
        ("fuse-norm{", "bad pipeline 'fuse-norm{' at character 1"),
    ],
)
def test_bad_pipelines_are_rejected_before_running(pipeline, message):
    with pytest.raises(CompileError) as info:
        parse_pipeline(pipeline)
    assert message in str(info.value)


def test_compile_rejects_a_bad_pipeline_before_capturing(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("capture ran")

    monkeypatch.setattr(aielower.api, "import_model", boom)
    with pytest.raises(CompileError, match="unknown pass 'nope'"):
        aielower.compile(tiny_qwen2(), pipeline="nope")


def test_quant_and_pipeline_are_exclusive():
    with pytest.raises(CompileError, match="either quant= or pipeline="):
        aielower.compile(tiny_qwen2(), quant=aielower.QuantConfig(), pipeline="dce")


def test_group_that_does_not_divide_is_a_clear_error():
    module = parse(SMALL)
    with pytest.raises(CompileError, match=r"@w has 64 input features, not a multiple of group 48; choose a group size that divides 64"):
        PassManager.parse("quantize-lm-head{group=48}").run(module)


def test_pass_manager_dumps_numbered_files_and_times(tmp_path):
    module = parse(SMALL)
    seen = []
    pm = PassManager.parse("canonicalize,quantize-lm-head{group=16},dce", dump_dir=tmp_path, on_pass=seen.append)
    pm.run(module)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00-input.ir", "01-canonicalize.ir", "02-quantize-lm-head.ir", "03-dce.ir",
    ]
    assert "nn.mul_scalar" in (tmp_path / "00-input.ir").read_text()
    assert "nn.mul_scalar" not in (tmp_path / "01-canonicalize.ir").read_text()
    assert "quant.linear" in (tmp_path / "03-dce.ir").read_text()
    assert [t.name for t in seen] == ["canonicalize", "quantize-lm-head", "dce"]
    assert all(t.seconds >= 0 for t in pm.timings) and pm.timings[-1].ops_after == 1


def test_verify_after_each_pass_names_the_pass():
    @register_pass("test-break-types")
    class BreakTypes(ModulePass):
        """Corrupts the IR (for this test)."""

        def run(self, module):
            fn = module.functions["prefill"]
            fn.ops.reverse()

    try:
        with pytest.raises(VerifyError, match="after pass 'test-break-types': @prefill, op #0"):
            PassManager.parse("test-break-types").run(parse(SMALL))
    finally:
        from aielower.passes.base import PASS_REGISTRY

        del PASS_REGISTRY["test-break-types"]


def test_compile_dump_ir_writes_every_stage(tmp_path):
    aielower.compile(tiny_qwen2(num_hidden_layers=1), quant=aielower.QuantConfig(group_size=16), dump_ir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "00-input.ir" and "06-quantize-linear.ir" in names and names[-1] == "08-dce.ir"


def test_group_must_be_positive():
    with pytest.raises(CompileError, match="option 'group' must be >= 1, got 0"):
        parse_pipeline("quantize-linear{group=0}")
    with pytest.raises(CompileError, match="must be >= 1"):
        aielower.compile(tiny_qwen2(), quant=aielower.QuantConfig(group_size=0))


def test_fusions_leave_linears_on_function_arguments_alone():
    text = """\
func @prefill(%x: tensor<?bx8xf32>, %wq: tensor<8x8xf32>, %wk: tensor<4x8xf32>, %wv: tensor<4x8xf32>) -> (tensor<?bx8xf32>, tensor<?bx4xf32>, tensor<?bx4xf32>) {
  %q = nn.linear %x, %wq : tensor<?bx8xf32>
  %k = nn.linear %x, %wk : tensor<?bx4xf32>
  %v = nn.linear %x, %wv : tensor<?bx4xf32>
  return %q, %k, %v
}
"""
    module = PassManager.parse("fuse-qkv,fuse-mlp").run(parse(text))
    assert str(module) == text


def test_quantizing_a_run_time_weight_is_a_clear_error():
    text = """\
func @prefill(%x: tensor<?bx8xf32>, %w: tensor<4x8xf32>) -> (tensor<?bx4xf32>, tensor<?bx4xf32>) {
  %a = nn.linear %x, %w : tensor<?bx4xf32>
  %b = nn.silu %a : tensor<?bx4xf32>
  return %b, %b
}
"""
    with pytest.raises(CompileError, match=r"weight of nn.linear in @prefill is a run-time value \(tensor<4x8xf32>\)"):
        PassManager.parse("quantize-linear{group=8}").run(parse(text))
