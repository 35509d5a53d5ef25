"""The ``aielower`` command.

    aielower compile MODEL [--target ref] [--dump-ir DIR]
    aielower opt FILE.ir
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aielower.errors import AielowerError, ParseError


def _summary(compiled, total_seconds: float) -> str:
    from aielower.api import CompileStats

    module = compiled.ir
    lines = [f"aielower: compiled {module.name} for target {compiled.target}"]
    for fname, fn in module.functions.items():
        sig = ", ".join(str(a.type) for a in fn.args)
        lines.append(f"  function @{fname}({sig}) -> {', '.join(map(str, fn.result_types))}: {len(fn.ops)} ops")
    lines.append("  ops by kind:")
    for kind, n in sorted(CompileStats.ops_by_kind(module).items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"    {kind:<22} {n:>6}")
    n_params = 0
    for w in module.weights.values():
        size = 1
        for d in w.type.shape:
            size *= d
        n_params += size
    state = "with data" if module.has_weight_data else "shape only (meta device)"
    lines.append(
        f"  weights: {len(module.weights)} tensors, {n_params / 1e9:.3f} G elements, "
        f"{module.weight_bytes() / 2**30:.2f} GiB as stored, {state}"
    )
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in compiled.stats.seconds.items())
    lines.append(f"  time: {stages}; total {total_seconds:.2f} s")
    return "\n".join(lines)


def cmd_compile(args) -> int:
    import aielower

    t0 = time.perf_counter()
    compiled = aielower.compile(args.model, target=args.target, dump_ir=args.dump_ir)
    print(_summary(compiled, time.perf_counter() - t0))
    if args.dump_ir:
        print(f"  IR written to {Path(args.dump_ir) / '00-capture.ir'}")
    return 0


def cmd_opt(args) -> int:
    from aielower.ir import parse, verify

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    module = parse(text, "<stdin>" if args.file == "-" else args.file)
    verify(module)
    sys.stdout.write(str(module))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from aielower.frontend import bundled_configs

    p = argparse.ArgumentParser(prog="aielower", description="Compile Qwen2-family models for the Ryzen AI NPU (AIE).")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="capture a model and compile it for a target")
    c.add_argument("model", help=f"a bundled config ({', '.join(bundled_configs())}) or a local Hugging Face model directory")
    c.add_argument("--target", default="ref", help="ref (NumPy reference backend; default) or aie (not available yet)")
    c.add_argument("--dump-ir", metavar="DIR", help="write the IR text to DIR")
    c.set_defaults(run=cmd_compile)

    o = sub.add_parser("opt", help="parse, verify and print an IR file ('-' reads stdin)")
    o.add_argument("file")
    o.set_defaults(run=cmd_opt)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ParseError as e:
        print(e, file=sys.stderr)  # already "file:line:col: error: ..."
        return 1
    except AielowerError as e:
        print(f"aielower: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
