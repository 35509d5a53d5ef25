"""The ``aielower`` command.

    aielower compile MODEL [--target ref|aie] [-o DIR] [--device npu2] [--quant w4g128] [--lm-head-group 32]
                           [--pipeline P] [--dump-ir DIR]
    aielower opt FILE.ir [--pipeline P]
    aielower run MODEL --prompt TEXT [--quant w4g128] [--max-new-tokens 60]
    aielower export-mlir MODEL -o FILE [--dialect torch|linalg] [--weights auto|inline|args]
    aielower passes
    aielower bench MODEL [--device npu2] [--quant w4g128] [--lm-head-group 32] [-o DIR] [--plot]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from aielower.errors import AielowerError, CompileError, ParseError


def _summary(compiled, total_seconds: float) -> str:
    from aielower.api import CompileStats

    module = compiled.ir
    lines = [f"aielower: compiled {module.name} for target {compiled.target}"]
    for fname, fn in module.functions.items():
        shown = [f"%{a.name_hint}: {a.type}" for a in fn.args[:3]]
        more = f", ... {len(fn.args) - 3} more" if len(fn.args) > 3 else ""
        result = str(fn.result_types[0]) + (f", ... {len(fn.results) - 1} more" if len(fn.results) > 1 else "")
        lines.append(f"  function @{fname}({', '.join(shown)}{more}) -> {result}: {len(fn.ops)} ops")
    names = list(module.functions)
    counts = {f: CompileStats.ops_by_kind_in(module.functions[f]) for f in names}
    kinds = sorted(set().union(*counts.values()), key=lambda k: (-sum(c[k] for c in counts.values()), k))
    lines.append("  ops by kind:" + " " * 10 + "".join(f"{f:>9}" for f in names))
    for kind in kinds:
        lines.append(f"    {kind:<20}" + "".join(f"{counts[f][kind]:>9}" for f in names))
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
    lines.append(f"  pipeline: {compiled.stats.pipeline}")
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in compiled.stats.seconds.items())
    lines.append(f"  time: {stages}; total {total_seconds:.2f} s")
    return "\n".join(lines)


_QUANT_RE = re.compile(r"w(\d+)g(\d+)")


def parse_quant(spec: str | None, lm_head_group: int | None):
    """``w4g128`` -> QuantConfig(bits=4, group_size=128); None -> fp32."""
    from aielower.api import QuantConfig

    if spec is None:
        if lm_head_group is not None:
            raise CompileError("--lm-head-group needs --quant (e.g. --quant w4g128 --lm-head-group 32)")
        return None
    m = _QUANT_RE.fullmatch(spec)
    if not m:
        raise CompileError(f"bad --quant {spec!r}: expected w<bits>g<group>, e.g. w4g128")
    return QuantConfig(bits=int(m.group(1)), group_size=int(m.group(2)), lm_head_group_size=lm_head_group)


def cmd_compile(args) -> int:
    import aielower

    t0 = time.perf_counter()
    quant = parse_quant(args.quant, args.lm_head_group)
    if args.target == "aie" and args.output is None:
        raise CompileError("--target aie writes kernels, designs, weights and a report: give -o DIR")
    if args.target != "aie" and (args.output is not None or args.device is not None):
        raise CompileError("-o and --device are options of --target aie")
    extra = {"out_dir": args.output, "device": args.device or "npu2"} if args.target == "aie" else {}
    compiled = aielower.compile(args.model, target=args.target, quant=quant, pipeline=args.pipeline,
                                dump_ir=args.dump_ir, **extra)
    print(_summary(compiled, time.perf_counter() - t0))
    if args.dump_ir:
        print(f"  IR after each pass written to {args.dump_ir}/")
    if args.target == "aie":
        from aielower.backends.aie.report import render_markdown

        m = compiled.manifest
        print(f"  wrote {args.output}/: {len(m['kernels'])} kernels, {len(m['designs'])} designs, "
              f"{'weights, ' if (Path(args.output) / 'weights').exists() else 'no weights (meta device), '}"
              "manifest.json, Makefile, module.ir, report.md, report.json")
        print()
        print(render_markdown(compiled.report))
    return 0


def cmd_opt(args) -> int:
    from aielower.ir import parse, verify
    from aielower.passes import PassManager

    manager = PassManager.parse(args.pipeline or "", dump_dir=args.dump_ir)  # bad pipelines fail before parsing
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except OSError as e:
        raise CompileError(f"cannot read {args.file}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise CompileError(f"cannot read {args.file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    module = parse(text, "<stdin>" if args.file == "-" else args.file)
    verify(module)
    manager.run(module)
    sys.stdout.write(str(module))
    return 0


def cmd_run(args) -> int:
    import aielower
    from aielower.eval.latency import LatencyRow, markdown_table

    quant = parse_quant(args.quant, args.lm_head_group)
    tokenizer = aielower.load_tokenizer(args.model)
    model = aielower.load_model(args.model)
    if args.chat:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True,
                                            return_tensors="np", return_dict=True)["input_ids"]
    else:
        ids = tokenizer(args.prompt, return_tensors="np").input_ids
    max_seq_len = args.max_seq_len or ids.shape[1] + args.max_new_tokens
    compiled = aielower.compile(model, quant=quant, max_seq_len=max_seq_len)
    tokens = compiled.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                               temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    print(tokenizer.decode(tokens[0, ids.shape[1]:], skip_special_tokens=True))
    print()
    label = f"w{quant.bits}g{quant.group_size}" if quant else "fp32"
    print(f"Latency: {compiled.ir.name}, {label}, measured on the ref backend (NumPy on this CPU; not NPU figures)")
    print(markdown_table([LatencyRow.from_stats(compiled.last_stats)]))
    return 0


def cmd_export_mlir(args) -> int:
    import aielower
    from aielower.frontend.mlir_export import write_mlir

    model = aielower.load_model(args.model)
    t0 = time.perf_counter()
    write_mlir(model, args.output, args.dialect, weights=args.weights)
    size = Path(args.output).stat().st_size
    print(f"aielower: wrote {args.output} ({args.dialect} dialect, {size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_passes(args) -> int:
    from aielower.api import default_pipeline
    from aielower.passes import available_passes

    print("passes:")
    print(available_passes())
    print(f"default pipeline (ref, fp32): {default_pipeline('ref')}")
    return 0


def cmd_bench(args) -> int:
    from aielower.api import default_pipeline
    from aielower.backends.aie.device import get_device
    from aielower.backends.aie.report import build_report, render_markdown, write_report
    from aielower.frontend import import_model, load_model
    from aielower.passes import PassManager

    device = get_device(args.device)
    quant = parse_quant(args.quant, args.lm_head_group or None)
    label = f"w{quant.bits}g{quant.group_size}" + (f" + lm_head g{quant.lm_head_group_size}"
                                                    if quant.lm_head_group_size else " (lm_head on the host)")
    plot = args.plot
    if plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            print("aielower: warning: --plot needs matplotlib (pip install 'aielower[plot]'); writing no figure",
                  file=sys.stderr)
            plot = False
    t0 = time.perf_counter()
    name = Path(args.model).name
    module = import_model(load_model(args.model), name, max_seq_len=args.max_seq_len)
    PassManager.parse(default_pipeline("aie", quant, device.name)).run(module)
    report = build_report(module, device, quant=label)
    written = write_report(report, args.output, plot=plot)
    print(render_markdown(report))
    print(f"aielower: modelled in {time.perf_counter() - t0:.1f} s; wrote {', '.join(str(p) for p in written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from aielower.frontend import bundled_configs

    p = argparse.ArgumentParser(prog="aielower", description="Compile Qwen2-family models for the Ryzen AI NPU (AIE).")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="capture a model and compile it for a target")
    c.add_argument("model", help=f"a bundled config ({', '.join(bundled_configs())}) or a local Hugging Face model directory")
    c.add_argument("--target", default="ref",
                   help="ref (NumPy reference backend; default) or aie (kernels, designs and weights for the NPU)")
    c.add_argument("-o", "--output", metavar="DIR", help="--target aie: the output directory")
    c.add_argument("--device", choices=("npu1", "npu2"), help="--target aie: the NPU to plan for (default npu2)")
    c.add_argument("--quant", metavar="wBgG", help="quantize weights, e.g. w4g128 (default: keep fp32)")
    c.add_argument("--lm-head-group", type=int, metavar="G", help="also quantize the lm_head with group G (e.g. 32)")
    c.add_argument("--pipeline", help="pass pipeline replacing the default (see 'aielower passes')")
    c.add_argument("--dump-ir", metavar="DIR", help="write the IR before and after every pass to DIR")
    c.set_defaults(run=cmd_compile)

    o = sub.add_parser("opt", help="parse, verify, run passes on and print an IR file ('-' reads stdin)")
    o.add_argument("file")
    o.add_argument("--pipeline", help='passes to run, e.g. "fuse-norm,quantize-linear{bits=4 group=128},dce"')
    o.add_argument("--dump-ir", metavar="DIR", help="write the IR before and after every pass to DIR")
    o.set_defaults(run=cmd_opt)

    r = sub.add_parser("run", help="generate text with the ref backend and print a latency table")
    r.add_argument("model", help="a local Hugging Face directory, a .gguf file, or a packaged checkpoint name")
    r.add_argument("--prompt", required=True)
    r.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    r.add_argument("--quant", metavar="wBgG", help="quantize weights, e.g. w4g128 (default: fp32)")
    r.add_argument("--lm-head-group", type=int, metavar="G", help="also quantize the lm_head with group G")
    r.add_argument("--max-new-tokens", type=int, default=60)
    r.add_argument("--max-seq-len", type=int, help="KV cache length (default: prompt + new tokens)")
    r.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    r.add_argument("--temperature", type=float, default=1.0)
    r.add_argument("--top-k", type=int, default=0)
    r.add_argument("--top-p", type=float, default=1.0)
    r.add_argument("--seed", type=int)
    r.set_defaults(run=cmd_run)

    e = sub.add_parser("export-mlir", help="write the captured prefill as MLIR through torch-mlir (extra 'mlir')")
    e.add_argument("model", help="a bundled config, a local HF directory, a .gguf file or a packaged checkpoint")
    e.add_argument("-o", "--output", required=True, metavar="FILE")
    e.add_argument("--dialect", default="torch", choices=("torch", "linalg"), help="torch (default) or linalg-on-tensors")
    e.add_argument("--weights", default="auto", choices=("auto", "inline", "args"),
                   help="auto: inline weights that have data, others (meta) become function arguments")
    e.set_defaults(run=cmd_export_mlir)

    b = sub.add_parser("bench", help="modelled NPU latency in the model card's format (report.md, report.json)")
    b.add_argument("model", help=f"a bundled config ({', '.join(bundled_configs())}) or a local Hugging Face directory")
    b.add_argument("--device", default="npu2", choices=("npu1", "npu2"), help="the NPU to model (default npu2)")
    b.add_argument("--quant", default="w4g128", metavar="wBgG", help="weight quantization (default w4g128)")
    b.add_argument("--lm-head-group", type=int, default=32, metavar="G",
                   help="quantize the lm_head with group G (default 32; 0 keeps it unquantized, on the host)")
    b.add_argument("--max-seq-len", type=int, help="KV cache length (default: 4096, or the model's limit)")
    b.add_argument("-o", "--output", default=".", metavar="DIR", help="where report.md and report.json go (default .)")
    b.add_argument("--plot", action="store_true", help="also write report.png (needs the 'plot' extra: matplotlib)")
    b.set_defaults(run=cmd_bench)

    ls = sub.add_parser("passes", help="list the registered passes, their options and the default pipeline")
    ls.set_defaults(run=cmd_passes)
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
