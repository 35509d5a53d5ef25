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
