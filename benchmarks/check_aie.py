"""The main job's designs through mlir-aie's ``aie-opt``: how many pass, and how long the check takes.

Compiles the bundled ``qwen1.5-7b-chat`` config to ``aie`` on ``npu2`` with the model card's quantization (w4 g128 +
lm_head g32; the README's main job, on the meta device) into a temporary directory, unless ``--artifact DIR`` names
an existing artifact; then runs ``aielower.backends.aie.toolchain.check_artifact`` on its decode designs (names
holding ``_b1_``: what a decode token launches), or on every design with ``--all``. Prints the compile time, the
check time, the designs that pass per role, and every failure (step and the tool's first error).

    python benchmarks/check_aie.py [--artifact DIR] [--all] [--jobs 2] [--timeout 600] [--aie-opt PATH] [--json FILE]

``aie-opt`` is found as ``aielower check-aie`` finds it (``--aie-opt``, ``$AIELOWER_AIE_OPT``, ``$PATH``,
``../shared/tools/aie-opt/aie-opt``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

MODEL = "qwen1.5-7b-chat"


def role(name: str) -> str:
    """``attention`` of ``attention_b128_d5a310e7`` (design names are role, bucket, digest; a shared
    configuration's, ``gemv_b1_x3_7217f044`` or ``gemm_b128to2048_x5_1a155b8c``, also the count of its launches
    and the span of its buckets)."""
    match = re.fullmatch(r"(.+)_b\d+(?:to\d+)?(?:_x\d+)?_[0-9a-f]+", name)
    return match.group(1) if match else name


def progress(result) -> None:
    """One line per design as it finishes (checking every design of the 7B takes more than an hour)."""
    state = "pass" if result.passed else f"FAIL at {result.step}"
    print(f"  {result.name}: {state}, {result.seconds:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    import aielower
    from aielower.backends.aie.toolchain import PIPELINE, check_artifact, find_aie_opt, with_timeout

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", metavar="DIR", help="check this artifact instead of compiling the 7B config")
    p.add_argument("--all", action="store_true", help="every design, not only the decode ones (_b1_)")
    p.add_argument("--jobs", type=int, default=2, help="designs checked in parallel (default 2)")
    p.add_argument("--aie-opt", metavar="PATH", help="the aie-opt binary (default: as 'aielower check-aie')")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds per aie-opt step (default 600; 7B prompt-bucket attention designs need more)")
    p.add_argument("--json", metavar="FILE", help="also write the check report as JSON")
    args = p.parse_args(argv)

    tool = find_aie_opt(args.aie_opt, os.environ)  # before the long compile
    with tempfile.TemporaryDirectory(prefix="aielower-check-aie-bench.") as scratch:
        out = Path(args.artifact) if args.artifact else Path(scratch) / MODEL
        if not args.artifact:
            t0 = time.perf_counter()
            aielower.compile(MODEL, target="aie", quant=aielower.QuantConfig(lm_head_group_size=32), out_dir=out)
            print(f"{MODEL}, w4 g128 + lm_head g32, npu2: compiled on meta in {time.perf_counter() - t0:.1f} s")
        select = None if args.all else (lambda name: "_b1_" in name)
        steps = PIPELINE if args.timeout is None else with_timeout(PIPELINE, args.timeout)
        report = check_artifact(out, tool, jobs=args.jobs, select=select, steps=steps, on_result=progress)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    which = "every design" if args.all else "decode designs (_b1_)"
    print(f"{which} of {out.name}: {report.passed} of {report.total} pass aie-opt ({', '.join(report.steps)}) in "
          f"{report.seconds:.1f} s with {report.jobs} jobs ({cpu.ru_utime + cpu.ru_stime:.1f} s of aie-opt CPU time)")
    print(f"  aie-opt: {report.tool.path} ({report.tool.text})")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    roles = Counter(role(r.name) for r in report.results)
    passed = Counter(role(r.name) for r in report.results if r.passed)
    print("  per role: " + ", ".join(f"{role} {passed[role]}/{n}" for role, n in sorted(roles.items())))
    slowest = max(report.results, key=lambda r: r.seconds, default=None)
    if slowest is not None:
        print(f"  slowest design: {slowest.name}, {slowest.seconds:.1f} s")
    for r in report.failed:
        print(f"  FAIL {r.name}: {r.step}: {r.error}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=1) + "\n", encoding="utf-8")
        print(f"  wrote {args.json}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
