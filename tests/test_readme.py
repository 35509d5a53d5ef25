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
    assert 'pip install torch==2.13.0 -e ".[test]"' in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    assert tests in (ROOT / ".ci" / "run").read_text()
