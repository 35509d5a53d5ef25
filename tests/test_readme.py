"""The README's commands are the ones CI and users run: keep them in sync."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_readme_has_install_and_test_commands():
    main_job, tests = readme_commands()
    assert "pip install torch==2.13.0 -e ." in main_job and "aielower compile qwen1.5-7b-chat" in main_job
    assert 'pip install torch==2.13.0 -e ".[test,gguf,mlir]"' in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    assert tests in (ROOT / ".ci" / "run").read_text()


FOLD_TEST_IR = """\
func @f(%x: tensor<?bx4xf32>) -> tensor<?bx4xf32> {
  %0 = nn.mul_scalar %x {value = 2.0} : tensor<?bx4xf32>
  %1 = nn.mul_scalar %0 {value = 3.0} : tensor<?bx4xf32>
  return %1
}
"""


def test_fusion_pass_example_runs():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Writing a fusion pass", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)\n```", section, re.S)[0]
    assert len(code.splitlines()) <= 40
    from aielower.ir import parse
    from aielower.passes import PassManager
    from aielower.passes.base import PASS_REGISTRY

    namespace: dict = {}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        assert namespace["pipeline"].endswith(",fold-scalar-muls,dce")
        module = PassManager.parse("fold-scalar-muls,dce").run(parse(FOLD_TEST_IR))
        ops = module.functions["f"].ops
        assert [(op.name, op.attributes["value"]) for op in ops] == [("nn.mul_scalar", 6.0)]
    finally:
        PASS_REGISTRY.pop("fold-scalar-muls", None)


def _readme_block(heading: str, index: int = 0) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)\n```", section, re.S)[index]


def test_new_op_example_is_quantized_planned_and_numerically_right(tmp_path):
    """The README's LinearAdd: a new op through LinearLike is quantized, planned for the NPU, and computes what torch
    computes (ref backend, fp32 and quantized, and the AIE emulator)."""
    import warnings

    import numpy as np

    import aielower
    from aielower.ir import QTensorType
    from tests.conftest import tiny_qwen2, torch_logits

    namespace = _import_readme_module(tmp_path)
    try:
        model = tiny_qwen2(num_hidden_layers=1)
        ids = np.random.default_rng(0).integers(0, 128, size=(1, 9))
        ref_pipeline = aielower.default_pipeline("ref").replace("canonicalize,", "canonicalize,fuse-linear-add,", 1)
        fused = aielower.compile(model, pipeline=ref_pipeline)
        ops = [op.name for fn in fused.ir.functions.values() for op in fn.ops]
        assert ops.count("my.linear_add") == 4  # o_proj + residual and down_proj + residual, in prefill and decode
        assert "fused.add_rms_norm" not in ops  # the adds it would have absorbed are fused into the linears
        np.testing.assert_allclose(fused(ids), torch_logits(model, ids), rtol=1e-4, atol=1e-4)

        quant = aielower.QuantConfig(group_size=32, lm_head_group_size=32)
        quantized = aielower.compile(model, pipeline=aielower.default_pipeline("ref", quant).replace(
            "canonicalize,", "canonicalize,fuse-linear-add,", 1))
        plain = aielower.compile(model, quant=quant)
        for fn in quantized.ir.functions.values():
            for op in fn.ops:
                if op.name == "my.linear_add":
                    assert isinstance(op.linear_weight.type, QTensorType)
        np.testing.assert_allclose(quantized(ids), plain(ids), rtol=1e-4, atol=1e-4)

        pipeline = namespace["pipeline"].replace("group=128", "group=32")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing left dense or unplanned
            art = aielower.compile(model, target="aie", pipeline=pipeline, max_seq_len=64, out_dir=tmp_path / "aie")
        linear_adds = [op for fn in art.ir.functions.values() for op in fn.ops if op.name == "my.linear_add"]
        assert len(linear_adds) == 4
        assert all(isinstance(op.linear_weight.type, QTensorType) and "aie.plan" in op.attributes
                   for op in linear_adds)
        ref_aie = aielower.compile(model, pipeline=pipeline.replace(",plan-aie-tiling{device=npu2}", ""),
                                   numerics="aie")
        np.testing.assert_allclose(art.emulate(ids), ref_aie(ids), rtol=0, atol=0.01 * np.abs(ref_aie(ids)).max())
    finally:
        _forget_readme_module()


def _import_readme_module(tmp_path) -> dict:
    """The README's new-op example as a user has it: a module file of their own (generated code imports the op's
    @impl from it)."""
    import importlib
    import sys

    (tmp_path / "readme_linear_add.py").write_text(_readme_block("### A pass that introduces a new op") + "\n")
    sys.path.insert(0, str(tmp_path))
    try:
        return vars(importlib.import_module("readme_linear_add"))
    finally:
        sys.path.remove(str(tmp_path))


def _forget_readme_module() -> None:
    import sys

    from aielower.ir import OP_REGISTRY
    from aielower.passes.base import PASS_REGISTRY

    PASS_REGISTRY.pop("fuse-linear-add", None)
    OP_REGISTRY.pop("my.linear_add", None)
    sys.modules.pop("readme_linear_add", None)


def test_a_pass_that_matches_nothing_says_so(tmp_path):
    """Placed after fuse-norm, fuse-linear-add finds no add to fuse: its count (0 rewrites) is in the dump."""
    import aielower
    from tests.conftest import tiny_qwen2

    _import_readme_module(tmp_path)
    try:
        late = aielower.default_pipeline("ref") + ",fuse-linear-add"
        cm = aielower.compile(tiny_qwen2(num_hidden_layers=1), pipeline=late, dump_ir=tmp_path)
        timing = [t for t in cm.stats.passes if t.name == "fuse-linear-add"][0]
        assert timing.rewrites == 0
        dump = sorted(tmp_path.glob("*fuse-linear-add.ir"))[0].read_text()
        assert dump.startswith("// after pass fuse-linear-add: ") and ", 0 rewrites," in dump.splitlines()[0]
    finally:
        _forget_readme_module()
