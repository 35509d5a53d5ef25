"""The ``aielower`` command.

    aielower compile MODEL [--target ref|aie] [-o DIR] [--device npu2] [--quant w4g128] [--method rtn|awq]
                           [--lm-head-group 32] [--pipeline P] [--dump-ir DIR]
    aielower opt FILE.ir [--pipeline P] [--load FILE.py|module ...]
    aielower run MODEL --prompt TEXT [--quant w4g128] [--max-new-tokens 60] [--target aie -o DIR [--emulate]]
    aielower build OUT_DIR [--emulate | --peano DIR --mlir-aie DIR] [--jobs N]
    aielower export-mlir MODEL -o FILE [--dialect torch|linalg] [--weights auto|inline|args]
    aielower eval perplexity MODEL [--quant w4g128 --method rtn|awq --lm-head-group 32] [--data FILE] [--seqlen 2048] [--samples 8] [--all]
    aielower eval mmlu MODEL [--subject "abstract algebra"] [--n 30]
    aielower eval table MODEL
    aielower passes [--load FILE.py|module ...]
    aielower bench MODEL [--device npu2] [--quant w4g128] [--lm-head-group 32] [-o DIR] [--plot]
    aielower check-aie OUT_DIR [--aie-opt PATH] [--jobs N] [--json FILE]

Each command imports what it needs when it runs: ``aielower opt``, ``aielower passes`` and ``aielower --help`` do
not import torch or transformers.
"""

from __future__ import annotations

import argparse
import os
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


def parse_quant(spec: str | None, lm_head_group: int | None, method: str | None = None, **awq):
    """``w4g128`` -> QuantConfig(bits=4, group_size=128); None -> fp32. ``awq``: QuantConfig's
    calibration fields (calib, tokenizer, samples, seqlen, clip), used with method awq."""
    from aielower.api import QuantConfig

    if spec is None:
        if lm_head_group is not None:
            raise CompileError("--lm-head-group needs --quant (e.g. --quant w4g128 --lm-head-group 32)")
        if method is not None:
            raise CompileError(f"--method {method} needs --quant (e.g. --quant w4g128 --method {method})")
        return None
    m = _QUANT_RE.fullmatch(spec)
    if not m:
        raise CompileError(f"bad --quant {spec!r}: expected w<bits>g<group>, e.g. w4g128")
    method = method or "rtn"
    given = {k: v for k, v in awq.items() if v is not None}
    if method != "awq" and any(k != "tokenizer" for k in given):
        raise CompileError("--calib, --calib-samples, --calib-seqlen and --clip apply to --method awq only")
    extra = given if method == "awq" else {}
    return QuantConfig(bits=int(m.group(1)), group_size=int(m.group(2)), method=method,
                       lm_head_group_size=lm_head_group, **extra)


def quant_label(quant) -> str:
    if quant is None:
        return "fp32"
    text = f"w{quant.bits}g{quant.group_size} {quant.method}"
    return text + (f" + lm_head g{quant.lm_head_group_size}" if quant.lm_head_group_size is not None else "")


def cmd_compile(args) -> int:
    import aielower

    t0 = time.perf_counter()
    quant = parse_quant(args.quant, args.lm_head_group, args.method, tokenizer=args.model)
    if args.target == "aie" and args.output is None:
        raise CompileError("--target aie writes kernels, designs, weights and a report: give -o DIR")
    if args.target != "aie" and (args.output is not None or args.device is not None):
        raise CompileError("-o and --device are options of --target aie")
    extra = {"out_dir": args.output, "device": args.device or "npu2"} if args.target == "aie" else {}
    if args.target == "aie" and sys.stderr.isatty():
        def progress(done, total, design):  # on a terminal: one line, rewritten as designs are built
            print(f"\raielower: built {done} of {total} designs", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)

        extra["progress"] = progress
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


_IDENTIFIER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def load_extension(spec: str):
    """Import ``spec`` for its registrations (``@register_pass``, ``@op``, ``@impl``): a Python file (a path, or a
    name ending in ``.py``), or a module on the Python path (``pkg.passes``). Returns the module.

    A file is imported under a generated module name (``_aielower_load_<stem>_<hash of its path>``), so it cannot
    shadow a module of the same name; loading the same file twice imports it once. Whatever the import raises
    becomes one CompileError line naming the type and the message (the cause is chained, for ``--traceback``)."""
    import hashlib
    import importlib
    import importlib.util

    is_file = spec.endswith(".py") or "/" in spec or "\\" in spec or Path(spec).is_file()
    if is_file:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise CompileError(f"--load {spec}: no such file" if not path.exists() else f"--load {spec}: not a file")
        path = path.resolve()
        stem = re.sub(r"\W", "_", path.stem)
        name = f"_aielower_load_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise CompileError(f"--load {spec}: not a Python file (give a .py file or a module name)")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses, pickling and the file's own relative lookups need it there
        try:
            module_spec.loader.exec_module(module)
        except BaseException as e:
            sys.modules.pop(name, None)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise CompileError(f"--load {spec}: {_exception_line(e)}") from e
        return module
    if not _IDENTIFIER_PATH.fullmatch(spec):
        raise CompileError(f"--load {spec}: neither a Python file nor a module name (e.g. mypkg.passes)")
    try:
        return importlib.import_module(spec)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        if isinstance(e, ModuleNotFoundError) and e.name is not None and spec.startswith(e.name):
            raise CompileError(f"--load {spec}: no module named {e.name!r} on the Python path (give a path to "
                               "load a .py file)") from e
        raise CompileError(f"--load {spec}: {_exception_line(e)}") from e


def _exception_line(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def _load_all(specs) -> None:
    for spec in specs or ():
        load_extension(spec)


def _load_tokenizer(source: str):
    """The frontend's tokenizer loader, imported only when AWQ calibrates (it needs transformers)."""
    from aielower.frontend import load_tokenizer

    return load_tokenizer(source)


def cmd_opt(args) -> int:
    _load_all(args.load)  # before the pipeline and the IR are parsed: they may name what these register
    from aielower.ir import parse, verify
    from aielower.passes import PassManager

    manager = PassManager.parse(args.pipeline or "", dump_dir=args.dump_ir)  # bad pipelines fail before parsing
    manager.provide(tokenizer_loader=_load_tokenizer)
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
    from aielower.reporting import LatencyRow, markdown_table

    if args.target not in ("ref", "aie"):
        raise AielowerError(f"unknown target {args.target!r}: choose ref or aie")
    if args.target == "aie" and args.output is None:
        raise AielowerError("run --target aie compiles the model into an artifact directory first: give -o DIR")
    if args.target != "aie" and (args.output is not None or args.emulate):
        raise AielowerError("-o and --emulate are options of --target aie")
    device = "emulator" if args.emulate else "npu"
    if args.target == "aie" and device == "npu":
        _require_npu_runtime(args)  # before the compile: say what is missing at once
    quant = parse_quant(args.quant, args.lm_head_group, args.method, tokenizer=args.model)
    tokenizer = aielower.load_tokenizer(args.model)
    model = aielower.load_model(args.model)
    if args.chat:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True,
                                            return_tensors="np", return_dict=True)["input_ids"]
    else:
        ids = tokenizer(args.prompt, return_tensors="np").input_ids
    max_seq_len = args.max_seq_len or ids.shape[1] + args.max_new_tokens
    if args.target == "aie" and not args.max_seq_len:  # the KV cache is read in whole KV tiles (of up to 64 rows)
        max_seq_len = -(-max_seq_len // 64) * 64
    options = dict(do_sample=args.sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   seed=args.seed)
    if args.target == "aie":
        from aielower.api import AIE_QUANT

        label = quant_label(quant or AIE_QUANT)  # target aie quantizes as the model card does unless told otherwise
        compiled = aielower.compile(model, target="aie", quant=quant, max_seq_len=max_seq_len, out_dir=args.output,
                                    device=args.device or "npu2")
        if args.emulate:
            compiled.build(emulate=True)
        else:
            compiled.build(peano=args.peano, mlir_aie=args.mlir_aie, jobs=args.jobs)
        tokens = compiled.generate(ids, max_new_tokens=args.max_new_tokens, device=device, **options)
        timing = compiled.record_run(device)["timing"]
        where = ("emulated: the XRT host runtime on the emulated device, i.e. this CPU running the design files; "
                 "not NPU figures" if timing == "emulated" else f"measured on the NPU ({compiled.device.product})")
        title = f"Latency: {compiled.ir.name}, {label}, {where}"
    else:
        label = f"w{quant.bits}g{quant.group_size}" if quant else "fp32"
        compiled = aielower.compile(model, quant=quant, max_seq_len=max_seq_len)
        tokens = compiled.generate(ids, max_new_tokens=args.max_new_tokens, **options)
        title = f"Latency: {compiled.ir.name}, {label}, measured on the ref backend (NumPy on this CPU; not NPU figures)"
    print(tokenizer.decode(tokens[0, ids.shape[1]:], skip_special_tokens=True))
    print()
    print(title)
    print(markdown_table([LatencyRow.from_stats(compiled.last_stats)]))
    if args.target == "aie":
        print(f"(recorded in {args.output}/report.md, 'Runs of this artifact')")
    return 0


def _require_npu_runtime(args) -> None:
    """``run --target aie`` without ``--emulate``: XRT's Python bindings and an NPU toolchain must be there."""
    import importlib.util

    missing = []
    if importlib.util.find_spec("pyxrt") is None:
        missing.append("XRT's Python bindings (pyxrt: install the Ryzen AI NPU driver and XRT)")
    if not args.peano:
        missing.append("Peano (--peano DIR or PEANO_INSTALL_DIR)")
    if not args.mlir_aie:
        missing.append("mlir-aie (--mlir-aie DIR or MLIR_AIE_DIR)")
    if missing:
        raise AielowerError("run --target aie runs on a Ryzen AI NPU and needs " + "; ".join(missing) + ". Without an "
                            "NPU, --emulate runs the same host runtime on the emulated device (README: 'Running on a "
                            "Ryzen AI laptop')")


def cmd_build(args) -> int:
    """Build an AIE artifact for the NPU (its Makefile, Peano, mlir-aie) or for the emulated device."""
    from aielower.backends.aie.device_build import build_for_emulator, build_for_npu

    t0 = time.perf_counter()
    if args.emulate:  # with g++: --peano / --mlir-aie (or their environment variables) do not apply
        record = build_for_emulator(args.out_dir)
        what = "for the emulated device (kernels built with g++; emulated xclbins and instruction files)"
    else:
        record = build_for_npu(args.out_dir, args.peano, args.mlir_aie, jobs=args.jobs)
        what = "for the NPU"
        for line in record["toolchain"]:  # another Peano / mlir-aie version than the artifact targets
            if line.startswith("warning:"):
                print(f"aielower: {line}", file=sys.stderr)
    files = sum(1 + len(f["instructions"]) for f in record["designs"].values())
    target = "emulator" if args.emulate else "npu"
    print(f"built {args.out_dir} {what}: {len(record['designs'])} designs, {files} files, "
          f"in {time.perf_counter() - t0:.1f} s; recorded in manifest.json (builds.{target})")
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


def _eval_quant(args):
    quant = parse_quant(args.quant, args.lm_head_group, args.method, calib=args.calib, samples=args.calib_samples,
                        seqlen=args.calib_seqlen, clip=True if args.clip else None, tokenizer=args.model)
    if args.backend == "torch" and quant is not None:
        raise CompileError("--backend torch runs the fp32 model (the baseline); quantized programs run on "
                           "--backend ref")
    return quant


def _logits_fn(args, model, quant):
    """What scores a chunk for the eval commands: torch eager, or the ref-compiled program."""
    import aielower

    if args.backend == "torch":
        from aielower.eval.perplexity import torch_logits_fn

        return torch_logits_fn(model)
    t0 = time.perf_counter()
    compiled = aielower.compile(model, quant=quant, functions=("prefill",))
    awq = compiled.ir.metadata.get("awq")
    print(f"aielower: compiled {compiled.ir.name} ({quant_label(quant)}) in {time.perf_counter() - t0:.1f} s"
          + (f"; {awq['summary']}" if awq else ""), file=sys.stderr)
    return compiled


def _check_calibration_is_not_evaluation(quant, data) -> None:
    from aielower.data import WIKITEXT_TEST, check_disjoint, default_calibration_file
    from aielower.eval.perplexity import HF_DATA

    if quant is None or quant.method != "awq" or str(data) == HF_DATA:
        return
    check_disjoint(quant.calib or default_calibration_file(), data or WIKITEXT_TEST)


def _write_json(path, payload) -> None:
    import json

    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"aielower: wrote {path}", file=sys.stderr)


def _max_positions(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def cmd_eval_perplexity(args) -> int:
    from aielower.eval.perplexity import check_seqlen, eval_tokens, perplexity

    import aielower

    quant = _eval_quant(args)  # bad options and data fail before anything is compiled
    _check_calibration_is_not_evaluation(quant, args.data)
    tokens, source = eval_tokens(aielower.load_tokenizer(args.model), args.data)
    model = aielower.load_model(args.model)
    check_seqlen(args.seqlen, _max_positions(model))
    logits_fn = _logits_fn(args, model, quant)
    all_chunks = args.all_chunks if args.all_chunks is not None else args.all
    result = perplexity(logits_fn, tokens, seqlen=args.seqlen, samples=args.samples, all_chunks=all_chunks,
                        backend=args.backend, quant=quant_label(quant), data=source, progress=not args.no_progress)
    print(f"perplexity ({result.samples} samples of {result.seqlen} tokens): {result.ppl_samples:.4f}")
    if result.ppl_all is not None:
        print(f"perplexity ({result.all_label}, {result.chunks_all * result.seqlen} tokens): {result.ppl_all:.4f}")
    print(f"  {args.model}, {result.quant}, backend {result.backend}, {result.data}: {result.n_tokens} tokens, "
          f"{result.n_chunks} chunks; {result.seconds:.1f} s")
    _write_json(args.json, result.as_dict())
    return 0


def cmd_eval_mmlu(args) -> int:
    from aielower.eval.mmlu import load_mmlu, mmlu_accuracy

    import aielower

    quant = _eval_quant(args)
    rows = load_mmlu(args.subject, args.n, args.data)  # bad subject or file fails before loading the model
    tokenizer = aielower.load_tokenizer(args.model)
    logits_fn = _logits_fn(args, aielower.load_model(args.model), quant)
    result = mmlu_accuracy(logits_fn, tokenizer, rows, backend=args.backend, quant=quant_label(quant),
                           progress=not args.no_progress)
    print(f"MMLU {result.subject}: {result.correct}/{result.n} = {result.accuracy:.2f}%  "
          f"({args.model}, {result.quant}, backend {result.backend}; {result.seconds:.1f} s)")
    _write_json(args.json, result.as_dict())
    return 0


def cmd_eval_table(args) -> int:
    import aielower
    from aielower.data import WIKITEXT_TEST, check_disjoint, default_calibration_file
    from aielower.eval.mmlu import load_mmlu
    from aielower.eval.perplexity import HF_DATA, check_seqlen, eval_tokens
    from aielower.eval.table import TableSettings, markdown_table, run_table

    t0 = time.perf_counter()
    if str(args.data) != HF_DATA:
        check_disjoint(args.calib or default_calibration_file(), args.data or WIKITEXT_TEST)
    rows = load_mmlu(args.subject, args.n, args.mmlu_data) if args.n else []
    all_chunks = args.all_chunks if args.all_chunks is not None else not args.no_all
    settings = TableSettings(seqlen=args.seqlen, samples=args.samples, all_chunks=all_chunks, mmlu_rows=rows,
                             group=args.group, lm_head_group=args.lm_head_group, calib=args.calib,
                             calib_samples=128 if args.calib_samples is None else args.calib_samples,
                             calib_seqlen=512 if args.calib_seqlen is None else args.calib_seqlen, clip=args.clip,
                             progress=not args.no_progress)
    tokenizer = aielower.load_tokenizer(args.model)
    model = aielower.load_model(args.model)
    check_seqlen(args.seqlen, _max_positions(model))
    tokens, source = eval_tokens(tokenizer, args.data)

    def progress(row):
        print(f"aielower: {row.config} | {row.dev}: {row.ppl.ppl_samples:.3f}"
              + (f" / {row.ppl.ppl_all:.3f}" if row.ppl.ppl_all is not None else "")
              + (f", MMLU {row.mmlu:.2f}" if row.mmlu is not None else "") + f" ({row.seconds:.0f} s)"
              + (f"; {row.notes}" if row.notes else ""), file=sys.stderr)

    table = run_table(model, tokenizer, tokens, settings, source=args.model, data=source, on_row=progress)
    mmlu_label = f"MMLU ({rows[0]['topic']}, {len(rows)})" if rows else "MMLU"
    total = time.perf_counter() - t0
    print(markdown_table(table, mmlu_label))
    print()
    print(f"{args.model}; perplexity on {source} ({table[0].ppl.n_tokens} tokens, {table[0].ppl.n_chunks} chunks "
          f"of {args.seqlen}); weights quantized, activations fp32; ref = aielower's NumPy backend on this CPU.")
    print("time per row: " + ", ".join(f"{r.config} {r.dev} {r.seconds:.0f} s" for r in table)
          + f"; total {total:.0f} s")
    _write_json(args.json, {"model": args.model, "data": source, "seconds": total, "rows": [r.as_dict() for r in table]})
    return 0


def cmd_passes(args) -> int:
    _load_all(args.load)
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


def cmd_check_aie(args) -> int:
    """Every design of an AIE artifact through aie-opt (verify, addr, route, npu); exit 1 when one fails."""
    from aielower.backends.aie.toolchain import artifact_designs, check_artifact, find_aie_opt

    artifact_designs(args.out_dir)  # a directory that is not an artifact fails before the tool is looked for
    tool = find_aie_opt(args.aie_opt, os.environ)
    done = []

    def progress(result):  # on a terminal: one line, rewritten as designs finish
        done.append(result)
        print(f"\raielower: checked {len(done)} designs ({sum(not r.passed for r in done)} failing)",
              end="", file=sys.stderr, flush=True)

    report = check_artifact(args.out_dir, tool, jobs=args.jobs, on_result=progress if sys.stderr.isatty() else None)
    if done:
        print(file=sys.stderr)
    print(report.summary())
    _write_json(args.json, report.as_dict())
    return 0 if report.ok else 1


LOAD_HELP = ("import FILE.py (by path) or a module (dotted name on the Python path) first, for the passes, ops and "
             "op implementations it registers (@register_pass, @op, @impl); repeatable")


def build_parser() -> argparse.ArgumentParser:
    from aielower.frontend.models import bundled_configs

    p = argparse.ArgumentParser(prog="aielower", description="Compile Qwen2-family models for the Ryzen AI NPU (AIE).",
                                epilog="--traceback (anywhere on the command line): show the Python traceback of an "
                                       "error instead of one line")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="capture a model and compile it for a target")
    c.add_argument("model", help=f"a bundled config ({', '.join(bundled_configs())}) or a local Hugging Face model directory")
    c.add_argument("--target", default="ref",
                   help="ref (NumPy reference backend; default) or aie (kernels, designs and weights for the NPU)")
    c.add_argument("-o", "--output", metavar="DIR", help="--target aie: the output directory")
    c.add_argument("--device", choices=("npu1", "npu2"), help="--target aie: the NPU to plan for (default npu2)")
    c.add_argument("--quant", metavar="wBgG", help="quantize weights, e.g. w4g128 (default: keep fp32)")
    c.add_argument("--lm-head-group", type=int, metavar="G", help="also quantize the lm_head with group G (e.g. 32)")
    c.add_argument("--method", choices=("rtn", "awq"), help="rtn (default) or awq (calibrates on the default text)")
    c.add_argument("--pipeline", help="pass pipeline replacing the default (see 'aielower passes')")
    c.add_argument("--dump-ir", metavar="DIR", help="write the IR before and after every pass to DIR")
    c.set_defaults(run=cmd_compile)

    o = sub.add_parser("opt", help="parse, verify, run passes on and print an IR file ('-' reads stdin)",
                       description="Parse and verify an IR file ('-' reads stdin), run a pass pipeline on it and "
                                   "print the result.",
                       epilog="Out-of-tree passes: --load my_passes.py imports that file (under a generated module "
                              "name) before the pipeline and the IR are parsed, so a pass it defines with "
                              "@register_pass(\"my-pass\") can be named in --pipeline, and ops it defines with @op "
                              "can appear in the IR; --load mypkg.passes imports a module instead. Errors while "
                              "loading are one line; --traceback shows the full traceback.")
    o.add_argument("file")
    o.add_argument("--pipeline", help='passes to run, e.g. "fuse-norm,quantize-linear{bits=4 group=128},dce"')
    o.add_argument("--dump-ir", metavar="DIR", help="write the IR before and after every pass to DIR")
    o.add_argument("--load", action="append", metavar="FILE.py|MODULE", help=LOAD_HELP)
    o.set_defaults(run=cmd_opt)

    def toolchain_options(parser):
        parser.add_argument("--peano", metavar="DIR", default=os.environ.get("PEANO_INSTALL_DIR"),
                            help="the Peano (llvm-aie) install (default: $PEANO_INSTALL_DIR)")
        parser.add_argument("--mlir-aie", metavar="DIR", default=os.environ.get("MLIR_AIE_DIR"),
                            help="the mlir-aie install (default: $MLIR_AIE_DIR)")
        parser.add_argument("--jobs", type=int, default=2, help="parallel make jobs of the NPU build")

    r = sub.add_parser("run", help="generate text (ref backend, or --target aie: the XRT host runtime) and print a "
                                   "latency table")
    r.add_argument("model", help="a local Hugging Face directory, a .gguf file, or a packaged checkpoint name")
    r.add_argument("--prompt", required=True)
    r.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    r.add_argument("--quant", metavar="wBgG", help="quantize weights, e.g. w4g128 (default: fp32)")
    r.add_argument("--lm-head-group", type=int, metavar="G", help="also quantize the lm_head with group G")
    r.add_argument("--method", choices=("rtn", "awq"), help="rtn (default) or awq (calibrates on the default text)")
    r.add_argument("--max-new-tokens", type=int, default=60)
    r.add_argument("--max-seq-len", type=int, help="KV cache length (default: prompt + new tokens; --target aie: "
                                                   "rounded up to a multiple of 64)")
    r.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    r.add_argument("--temperature", type=float, default=1.0)
    r.add_argument("--top-k", type=int, default=0)
    r.add_argument("--top-p", type=float, default=1.0)
    r.add_argument("--seed", type=int)
    r.add_argument("--target", default="ref", help="ref (NumPy reference backend; default) or aie (the XRT host "
                                                   "runtime on a Ryzen AI NPU, or with --emulate the emulated device)")
    r.add_argument("-o", "--output", metavar="DIR", help="--target aie: the artifact directory to compile into")
    r.add_argument("--device", choices=("npu1", "npu2"), help="--target aie: the NPU (default npu2, Strix)")
    r.add_argument("--emulate", action="store_true", help="--target aie: run on the emulated XRT device")
    toolchain_options(r)
    r.set_defaults(run=cmd_run)

    bd = sub.add_parser("build", help="build an AIE artifact for the NPU (Makefile: Peano, mlir-aie) or, with "
                                      "--emulate, for the emulated device")
    bd.add_argument("out_dir", help="the output directory of 'aielower compile --target aie -o DIR'")
    bd.add_argument("--emulate", action="store_true", help="build for the emulated XRT device (g++), not the NPU")
    toolchain_options(bd)
    bd.set_defaults(run=cmd_build)

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
    ca = sub.add_parser("check-aie", help="run every design of an AIE artifact through mlir-aie's aie-opt "
                                         "(verify, buffer addresses, routing, NPU instructions)")
    ca.add_argument("out_dir", metavar="OUT_DIR", help="the output directory of 'aielower compile --target aie -o'")
    ca.add_argument("--aie-opt", metavar="PATH", help="the aie-opt binary (default: $AIELOWER_AIE_OPT, aie-opt on "
                    "$PATH, then ../shared/tools/aie-opt/aie-opt beside the repository or the current directory)")
    ca.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="designs checked in parallel (default 2)")
    ca.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ca.set_defaults(run=cmd_check_aie)

    ev = sub.add_parser("eval", help="accuracy: perplexity, MMLU, the model card's accuracy table")
    evs = ev.add_subparsers(dest="eval_command", required=True)
    model_help = "a local Hugging Face directory, a .gguf file, or a packaged checkpoint name"

    def quant_options(parser):
        parser.add_argument("--quant", metavar="wBgG", help="quantize weights, e.g. w4g128 (default: fp32)")
        parser.add_argument("--method", choices=("rtn", "awq"), help="rtn (default) or awq (calibrates first)")
        parser.add_argument("--lm-head-group", type=int, metavar="G", help="also quantize the lm_head with group G")
        parser.add_argument("--backend", choices=("ref", "torch"), default="ref",
                            help="ref (default): aielower's NumPy backend; torch: eager fp32, the baseline")
        calib_options(parser)
        parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def calib_options(parser):
        parser.add_argument("--calib", metavar="FILE", help="awq calibration text (default: ../shared/data/calibration/)")
        parser.add_argument("--calib-samples", type=int, metavar="N", help="awq calibration chunks (default 128)")
        parser.add_argument("--calib-seqlen", type=int, metavar="N", help="tokens per calibration chunk (default 512)")
        parser.add_argument("--clip", action="store_true", help="awq: also search the clipping range (off by default)")

    def all_options(parser, default_all: bool):
        if default_all:
            parser.add_argument("--no-all", action="store_true", help="skip the figure over all chunks")
        else:
            parser.add_argument("--all", action="store_true", help="also the perplexity over all chunks")
        parser.add_argument("--all-chunks", type=int, metavar="N",
                            help="the larger figure over the first N chunks instead of all (labelled so)")

    pe = evs.add_parser("perplexity", help="perplexity on WikiText-2 raw (test), non-overlapping chunks")
    pe.add_argument("model", help=model_help)
    pe.add_argument("--data", metavar="FILE", help="text file, or 'hf' for the Hugging Face split "
                    "(default: ../shared/data/wikitext-2-raw/wiki.test.raw)")
    pe.add_argument("--seqlen", type=int, default=2048, help="tokens per chunk (default 2048)")
    pe.add_argument("--samples", type=int, default=8, help="chunks in the first figure (default 8)")
    all_options(pe, default_all=False)
    quant_options(pe)
    pe.set_defaults(run=cmd_eval_perplexity)

    mm = evs.add_parser("mmlu", help="zero-shot MMLU accuracy on one subject")
    mm.add_argument("model", help=model_help)
    mm.add_argument("--subject", default="abstract algebra", help='e.g. "abstract algebra" (default)')
    mm.add_argument("--n", type=int, default=30, help="first N questions of the subject (default 30)")
    mm.add_argument("--data", metavar="FILE", help="MMLU jsonl (default: ../shared/data/mmlu/mmlu.jsonl)")
    quant_options(mm)
    mm.set_defaults(run=cmd_eval_mmlu)

    tb = evs.add_parser("table", help="the model card's accuracy table: fp32 torch/ref, w4 RTN, w4 AWQ, + lm_head g32")
    tb.add_argument("model", help=model_help)
    tb.add_argument("--data", metavar="FILE", help="perplexity text (default: WikiText-2 raw test), or 'hf'")
    tb.add_argument("--seqlen", type=int, default=2048)
    tb.add_argument("--samples", type=int, default=8)
    all_options(tb, default_all=True)
    tb.add_argument("--subject", default="abstract algebra")
    tb.add_argument("--n", type=int, default=30, help="MMLU questions (0: no MMLU column)")
    tb.add_argument("--mmlu-data", metavar="FILE", help="MMLU jsonl (default: ../shared/data/mmlu/mmlu.jsonl)")
    tb.add_argument("--group", type=int, default=128, help="weight group size (default 128)")
    tb.add_argument("--lm-head-group", type=int, default=32, help="lm_head group size of the last row (default 32)")
    calib_options(tb)
    tb.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    tb.add_argument("--no-progress", action="store_true", help="no progress bars")
    tb.set_defaults(run=cmd_eval_table)

    ls = sub.add_parser("passes", help="list the registered passes, their options and the default pipeline")
    ls.add_argument("--load", action="append", metavar="FILE.py|MODULE", help=LOAD_HELP)
    ls.set_defaults(run=cmd_passes)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. aielower's own errors, and the OS / value errors a command can foresee (a path that is
    not a file, a disk that is full, text that is not UTF-8), print one ``aielower: error: ...`` line and exit 1;
    ``--traceback`` shows the Python traceback instead (for developers)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in argv
    argv = [a for a in argv if a != "--traceback"]
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ParseError as e:
        if show_traceback:
            raise
        print(e, file=sys.stderr)  # already "file:line:col: error: ..."
        return 1
    except (AielowerError, OSError, ValueError, RecursionError, MemoryError, UnicodeError) as e:
        if show_traceback:
            raise
        print(f"aielower: error: {_describe(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aielower: interrupted", file=sys.stderr)
        return 130


def _describe(e: BaseException) -> str:
    """One line for an error: aielower's message, or what the OS / Python said and about what."""
    if isinstance(e, AielowerError):
        return str(e)
    if isinstance(e, OSError):
        where = f" {e.filename}" if e.filename else ""
        return f"{e.strerror or type(e).__name__}:{where}" if e.strerror else f"{type(e).__name__}: {e}"
    if isinstance(e, RecursionError):
        return "input nested too deeply to process (RecursionError); rerun with --traceback to see where"
    if isinstance(e, MemoryError):
        return "out of memory; rerun with --traceback to see where"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:300]} (rerun with --traceback to see where)"


if __name__ == "__main__":
    raise SystemExit(main())
