"""Runs every ``filecheck/*.ir`` test as lit would: each ``// RUN:`` line of a file is one test case.

    // RUN: aielower opt %s --pipeline P | filecheck %s
    // RUN: aielower opt %s --pipeline P | filecheck %s --check-prefix=NAME
    // RUN: not aielower opt %s --pipeline P 2>&1 | filecheck %s --check-prefix=NAME

``%s`` is the file itself: its IR is the input and its ``// CHECK`` (or ``// NAME``) lines the
checks, so positive and negative cases can share a file under different prefixes. ``not``
expects ``aielower opt`` to fail (exit status not 0); ``2>&1`` checks its stderr (the error
line, and the warnings it gives as ``Category: message`` lines) after its stdout. The pipeline may be quoted (``"quantize-linear{group=32}"``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

from aielower.cli import main

FILES = sorted((Path(__file__).parent / "filecheck").glob("*.ir"))
RUN_RE = re.compile(
    r'(?P<not>not )?aielower opt %s --pipeline (?:"(?P<quoted>[^"]+)"|(?P<bare>[^\s"|]+))(?P<stderr> 2>&1)?'
    r" \| filecheck %s(?: --check-prefix[= ](?P<prefix>[A-Za-z][\w-]*))?"
)


class Run(NamedTuple):
    path: Path
    line: str
    pipeline: str = ""
    fails: bool = False
    stderr: bool = False
    prefix: str = "CHECK"
    bad: str = ""  # why the line is not a RUN line this runner understands


def parse_runs(path: Path) -> list[Run]:
    runs = []
    for line in path.read_text().splitlines():
        if not line.startswith("// RUN:"):
            continue
        m = RUN_RE.fullmatch(line[len("// RUN:"):].strip())
        if m is None:
            runs.append(Run(path, line, bad="not of the form '// RUN: [not] aielower opt %s --pipeline P [2>&1] | "
                                            "filecheck %s [--check-prefix=NAME]'"))
            continue
        runs.append(Run(path, line, m["quoted"] or m["bare"], bool(m["not"]), bool(m["stderr"]), m["prefix"] or "CHECK"))
    return runs or [Run(path, "", bad="has no '// RUN:' line")]


def cases():
    for path in FILES:
        runs = parse_runs(path)
        for run in runs:
            name = path.stem if len(runs) == 1 and run.prefix == "CHECK" else f"{path.stem}-{run.prefix}"
            yield pytest.param(run, id=name)


@pytest.mark.parametrize("run", list(cases()))
def test_filecheck(run: Run, capsys):
    assert not run.bad, f"{run.path.name}: {run.line!r} {run.bad}"
    with warnings.catch_warnings(record=True) as caught:  # as a separate process would print them: on stderr
        warnings.simplefilter("always")
        status = main(["opt", str(run.path), "--pipeline", run.pipeline])
    out, err = capsys.readouterr()
    err = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught) + err
    if run.fails:
        assert status != 0, f"expected '{run.line}' to fail; it printed:\n{out}"
    else:
        assert status == 0, err
    output = out + err if run.stderr else out
    result = subprocess.run([sys.executable, "-m", "filecheck", str(run.path), "--check-prefix", run.prefix],
                            input=output, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + "\n--- output ---\n" + output
