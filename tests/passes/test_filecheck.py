"""Runs every ``filecheck/*.ir`` test: the ``// RUN:`` line's pipeline through ``aielower opt``,
then FileCheck against the file's own ``// CHECK`` lines (as lit would)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aielower.cli import main

CASES = sorted((Path(__file__).parent / "filecheck").glob("*.ir"))
RUN_RE = re.compile(r'^// RUN: aielower opt %s --pipeline "?([^"|]+?)"? \| filecheck %s$', re.M)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_filecheck(path, capsys):
    m = RUN_RE.search(path.read_text())
    assert m, f"{path.name} needs a '// RUN: aielower opt %s --pipeline P | filecheck %s' line"
    assert main(["opt", str(path), "--pipeline", m.group(1)]) == 0, capsys.readouterr().err
    output = capsys.readouterr().out
    result = subprocess.run([sys.executable, "-m", "filecheck", str(path)], input=output, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + "\n--- output ---\n" + output
