"""Start-up time: ``python -c "import aielower.ir"`` and ``aielower opt`` on a 20-line IR file.

Each is run several times in a fresh interpreter (a subprocess: nothing is cached in this process); the figure is
the median wall time, with min and max. Targets (issue 13, item 5): ``import aielower.ir`` < 0.5 s, ``aielower opt``
on a 20-line file < 1 s. Also printed: whether torch / transformers got imported, and the slowest imports of the
``opt`` run (``python -X importtime``), to see where the time goes.

    python benchmarks/import_time.py [--runs 7] [--json FILE] [--python-m]

``--python-m`` runs ``python -m aielower opt`` in this checkout instead of the ``aielower`` console script (which
imports the installed package: use it to time another checkout, e.g. an older commit unpacked elsewhere).

Wall time includes the interpreter's own start-up (``python -c pass``, printed for reference). On a loaded machine
(other jobs on the same cores) every figure grows; compare runs made on an idle one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

IMPORT_TARGET_S = 0.5
OPT_TARGET_S = 1.0
PIPELINE = "canonicalize,cse,dce"

# tests/passes/filecheck/canonicalize-cse-dce.ir without its RUN and CHECK lines, and five more ops: 20 lines
TWENTY_LINES = """\
// aielower opt --pipeline canonicalize,cse,dce: a 20-line file for the start-up benchmark
weight @unused : tensor<4xf32>

func @prefill(%x: tensor<?bx?sx4x8xf32>) -> (tensor<?bx?sx32xf32>, tensor<?bx?sx32xf32>) {
  %one = nn.mul_scalar %x {value = 1.0} : tensor<?bx?sx4x8xf32>
  %zero = nn.add_scalar %one {value = 0} : tensor<?bx?sx4x8xf32>
  %t = tensor.transpose %zero {dim0 = 1, dim1 = 2} : tensor<?bx4x?sx8xf32>
  %tt = tensor.transpose %t {dim0 = 2, dim1 = 1} : tensor<?bx?sx4x8xf32>
  %r1 = tensor.reshape %tt {shape = [?b, ?s, 2, 16]} : tensor<?bx?sx2x16xf32>
  %r2 = tensor.reshape %r1 {shape = [?b, ?s, 32]} : tensor<?bx?sx32xf32>
  %a = nn.silu %r2 : tensor<?bx?sx32xf32>
  %b = nn.silu %r2 : tensor<?bx?sx32xf32>
  %dead = nn.exp %a : tensor<?bx?sx32xf32>
  %c = nn.add %a, %b : tensor<?bx?sx32xf32>
  %d = nn.mul %c, %c : tensor<?bx?sx32xf32>
  %e = nn.neg %d : tensor<?bx?sx32xf32>
  %f = nn.sub %e, %d : tensor<?bx?sx32xf32>
  %g = nn.exp %f : tensor<?bx?sx32xf32>
  return %a, %b
}
"""


def aielower_command() -> list[str]:
    """The ``aielower`` console script of this interpreter's environment, else ``python -m aielower``."""
    script = Path(sys.executable).parent / "aielower"
    if script.is_file():
        return [str(script)]
    found = shutil.which("aielower")
    return [found] if found else [sys.executable, "-m", "aielower"]


def time_runs(argv: list[str], runs: int) -> dict:
    """Median / min / max wall seconds of ``argv`` over ``runs`` runs, after one warm-up (page cache, .pyc)."""
    subprocess.run(argv, cwd=REPO, capture_output=True, check=True)
    seconds = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=REPO, capture_output=True, check=True)
        seconds.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds), "runs": runs}


def heavy_imports(code: str) -> list[str]:
    script = code + "\nimport sys\nprint(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return [m for m in last.split(",") if m]


def slowest_imports(argv: list[str], n: int = 8) -> list[tuple[str, float]]:
    """The imports with the largest cumulative time in one ``-X importtime`` run of ``argv``, among those at most
    three levels below the top (deeper ones are inside these)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=REPO, capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        depth = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2  # importtime indents two spaces per level
        if depth <= 3:
            rows.append(("  " * depth + parts[2].strip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (default 7; median reported)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--python-m", action="store_true",
                        help="time 'python -m aielower opt' in this checkout instead of the console script")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        ir_file = Path(tmp) / "twenty.ir"
        ir_file.write_text(TWENTY_LINES, encoding="utf-8")
        assert len(TWENTY_LINES.splitlines()) == 20
        command = [sys.executable, "-m", "aielower"] if args.python_m else aielower_command()
        opt = command + ["opt", str(ir_file), "--pipeline", PIPELINE]

        python = time_runs([sys.executable, "-c", "pass"], args.runs)
        import_ir = time_runs([sys.executable, "-c", "import aielower.ir"], args.runs)
        run_opt = time_runs(opt, args.runs)
        heavy_ir = heavy_imports("import aielower.ir")
        heavy_opt = heavy_imports("import contextlib, io\nfrom aielower.cli import main\n"
                                  "with contextlib.redirect_stdout(io.StringIO()):\n"
                                  f"    main(['opt', {str(ir_file)!r}, '--pipeline', {PIPELINE!r}])")
        slow = slowest_imports(["-m", "aielower", "opt", str(ir_file), "--pipeline", PIPELINE])

    def verdict(figure: dict, target: float) -> str:
        return f"{'PASS' if figure['median_s'] < target else 'FAIL'} (target < {target:g} s)"

    label = "python -m aielower" if args.python_m else "aielower"
    rows = [("python -c pass", python, "the interpreter alone"),
            ("python -c 'import aielower.ir'", import_ir, verdict(import_ir, IMPORT_TARGET_S)),
            (f"{label} opt FILE (20 lines, {PIPELINE})", run_opt, verdict(run_opt, OPT_TARGET_S))]
    width = max(len(r[0]) for r in rows)
    print(f"start-up times, median of {args.runs} runs in fresh interpreters ({sys.executable}, in {REPO})")
    for name, figure, note in rows:
        print(f"  {name:<{width}}  {figure['median_s']:6.3f} s  (min {figure['min_s']:.3f}, max "
              f"{figure['max_s']:.3f})  {note}")
    print(f"  torch/transformers imported: by 'import aielower.ir': {', '.join(heavy_ir) or 'none'}; "
          f"by 'aielower opt': {', '.join(heavy_opt) or 'none'}")
    print("  slowest imports of 'aielower opt' (cumulative, one -X importtime run):")
    for name, seconds in slow:
        print(f"    {seconds:6.3f} s  {name}")

    if args.json:
        payload = {"python_s": python, "import_aielower_ir_s": import_ir, "aielower_opt_s": run_opt,
                   "targets_s": {"import_aielower_ir": IMPORT_TARGET_S, "aielower_opt": OPT_TARGET_S},
                   "heavy_imports": {"import_aielower_ir": heavy_ir, "aielower_opt": heavy_opt},
                   "slowest_opt_imports": slow}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    ok = import_ir["median_s"] < IMPORT_TARGET_S and run_opt["median_s"] < OPT_TARGET_S
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
