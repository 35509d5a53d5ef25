"""The AIE latency report: the model card's latency tables with modelled figures beside the card's measured ones,
per-op breakdowns, DDR traffic per decode token against the minimum, and the targets of the cost model.

:func:`build_report` makes a plain dict (what ``report.json`` holds); :func:`render_markdown` renders it with the
jinja2 template ``templates/report/report.md.j2``; :func:`write_report` writes both (and a PNG with the ``plot``
extra). Every aielower figure is modelled by :mod:`aielower.backends.aie.cost`, and labelled so; the card's
figures are measurements of another flow (:mod:`aielower.reporting`, which also formats the tables; a backend does
not import :mod:`aielower.eval`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import jinja2
import markupsafe

from aielower import reporting
from aielower.backends.aie import cost, counted
from aielower.backends.aie.catalog import Placement
from aielower.backends.aie.device import Device
from aielower.backends.aie.templating import ENV
from aielower.errors import CompileError
from aielower.ir import Module
from aielower.output import replace_file, safe_path
from aielower.reporting import COLUMNS, LatencyRow, grid, markdown_table


NEW_TOKENS = 60
SHORT_PROMPTS = tuple(r.prompt_tokens for r in reporting.DECODE_SHORT_PROMPTS)
PROMPT_LENGTHS = tuple(r.prompt_tokens for r in reporting.BENCHMARK_EXACT)

# Targets of issue 6 (cost model and reports), for Qwen1.5-7B-Chat w4 g128 + lm_head g32 on npu2.
DDR_RATIO_LIMIT = 1.05  # DDR bytes per decode token / the minimum (weights + KV cache)
PADDING_LIMIT = 0.05  # executed MACs / useful MACs - 1
FLOOR_RATIO_LIMIT = 1.3  # modelled decode ms/token at short context / the DDR-bandwidth floor
COUNTED_CONTEXTS = (64, 2048)  # decode contexts (valid KV positions) the report counts the designs at

MODELLED_COLUMNS = tuple(
    c if c in ("Example#", "Prompt Length (tokens)", "New Tokens Generated") else f"{c}, modelled" for c in COLUMNS
)


def _row(latency: cost.ModelLatency) -> LatencyRow:
    return LatencyRow(latency.prompt_len, latency.new_tokens, latency.total_s, latency.prefill_ms,
                      latency.ms_per_token, latency.tokens_per_s)


def _ratio(card: float, ours: float) -> float | None:
    return card / ours if ours and math.isfinite(ours) and math.isfinite(card) else None


def _latency_rows(module, device, planned, card_rows, overhead, skipped) -> list[dict]:
    rows = []
    capacity = cost.kv_capacity(module)
    prompt_op = next((p for p in planned.ops if p.per_token), None)  # its bucket is the prompt's
    for card in card_rows:
        if card.prompt_tokens + card.new_tokens - 1 > capacity:
            skipped.append(card.prompt_tokens)
            continue
        latency = cost.model_latency(module, device, card.prompt_tokens, card.new_tokens, overhead, planned)
        ours = _row(latency)
        rows.append({
            **asdict(ours),
            "ddr_bytes_per_token": latency.ddr_bytes_per_token,
            "mean_kv_len": card.prompt_tokens + card.new_tokens / 2,
            "bucket": [prompt_op.plan.bucket_for(rows) if prompt_op else rows
                       for rows in cost.split_chunks(card.prompt_tokens, planned.largest_bucket)],
            "card": asdict(card),
            "card_over_modelled": {
                "prefill_ms": _ratio(card.prefill_ms, ours.prefill_ms),
                "ms_per_token": _ratio(card.ms_per_token, ours.ms_per_token),
            },
        })
    return rows


def op_rows(fc: cost.FunctionCost) -> list[dict]:
    """One row per planned op group and launch role (an attention op has three), then one per host op name."""
    total = fc.seconds
    rows = []
    for op in fc.ops:
        by_role: dict[str, list[cost.LaunchCost]] = {}
        for launch in op.launches:
            by_role.setdefault(launch.role, []).append(launch)
        for role, launches in by_role.items():
            seconds = op.count * sum(x.seconds for x in launches)
            busy = {b: sum(x.seconds for x in launches if x.bound == b) for b in ("ddr", "compute", "launch")}
            rows.append({
                "op": op.label, "op_name": op.op_name, "kind": op.kind, "launch": role, "count": op.count,
                "launches": op.count * len(launches), "bucket": launches[0].bucket, "cores": launches[0].cores,
                "ms": seconds * 1e3, "share": seconds / total if total else 0.0,
                "ddr_bytes": op.count * sum(x.ddr_bytes for x in launches),
                "macs": op.count * sum(x.macs for x in launches),
                "dma_ms": op.count * sum(x.dma_s for x in launches) * 1e3,
                "compute_ms": op.count * sum(x.compute_s for x in launches) * 1e3,
                "overhead_ms": op.count * sum(x.overhead_s for x in launches) * 1e3,
                "bound": max(busy, key=busy.get),
            })
    for name, count in sorted(fc.host_ops.items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append({"op": name, "op_name": name, "kind": "host (not modelled)", "launch": "", "count": count,
                     "launches": 0, "bucket": None, "cores": 0, "ms": None, "share": None, "ddr_bytes": None,
                     "macs": None, "dma_ms": None, "compute_ms": None, "overhead_ms": None, "bound": "host"})
    return rows


def build_report(module: Module, device: Device, *, quant: str, new_tokens: int = NEW_TOKENS,
                 short_prompts: tuple[int, ...] = SHORT_PROMPTS, prompt_lengths: tuple[int, ...] = PROMPT_LENGTHS,
                 overhead: str = cost.DEFAULT_OVERHEAD, built: dict | None = None,
                 placement: Placement | None = None) -> dict:
    """The report of a planned ``module`` (plan-aie-tiling for ``device`` has run). ``quant`` labels the weight
    format (e.g. ``w4g128 + lm_head g32``). Short prompts and prompt lengths default to the card's; rows whose
    prompt + new tokens exceed the module's KV cache are listed under ``skipped_prompt_lengths``. The decode step's
    designs it builds to count them are added to ``built`` (design name -> design), if given, for the artifact
    (:func:`~aielower.backends.aie.counted.decode_design_names` names them); ``placement``: where the module's
    launches run, if the caller has it."""
    planned_device = module.metadata.get("aie_device")
    if planned_device != device.name:
        raise CompileError(f"module {module.name} is planned for {planned_device or 'no device'}, not {device.name}: "
                                f"run plan-aie-tiling{{device={device.name}}} first")
    decode_fn = cost.decode_function(module)
    placement = Placement(module, device) if placement is None else placement
    # a launch that runs in a chain after its first is no submission of its own: the plan model charges no overhead
    chained = {id(op) for _, c in placement.chains(decode_fn) for op in c.ops[1:]}
    decode_plan = cost.FunctionPlan.of(decode_fn, chained)
    card_ok = reporting.card_applies(module.name, device.name)
    card_short = {r.prompt_tokens: r for r in reporting.DECODE_SHORT_PROMPTS}
    card_long = {r.prompt_tokens: r for r in reporting.BENCHMARK_EXACT}

    def card_rows(lengths, table, first):
        # the card's row for that length (with its own new-token count) if any, else an empty one
        nan = float("nan")
        if tuple(lengths) == tuple(r.prompt_tokens for r in first):
            return list(first)
        return [table.get(n) or LatencyRow(n, new_tokens, nan, nan, nan, nan) for n in lengths]

    skipped: list[int] = []
    short = _latency_rows(module, device, decode_plan,
                          card_rows(short_prompts, card_short, reporting.DECODE_SHORT_PROMPTS), overhead, skipped)
    long = _latency_rows(module, device, decode_plan,
                         card_rows(prompt_lengths, card_long, reporting.BENCHMARK_EXACT), overhead, skipped)
    if not short:
        raise CompileError(f"no short prompt fits the KV cache of {module.name} with {new_tokens} new tokens")

    # Decode at short context: the mean over the short-prompt rows, each the mean of its steps.
    decode_ms = sum(r["ms_per_token"] for r in short) / len(short)
    kv = sum(r["mean_kv_len"] for r in short) / len(short)
    kv_step = round(kv)
    by_overhead = {}
    for mode in cost.OVERHEAD_MODES:
        rows = [cost.model_latency(module, device, r["prompt_tokens"], r["new_tokens"], mode, decode_plan)
                for r in short]
        by_overhead[mode] = sum(x.ms_per_token for x in rows) / len(rows)
    planned_ddr_per_token = sum(r["ddr_bytes_per_token"] for r in short) / len(short)
    # What the generated designs move and issue in one decode step at the short context (counted from their
    # runtime sequences), and at the contexts of COUNTED_CONTEXTS that the cache holds.
    built = {} if built is None else built
    token = counted.decode_token_count(module, device, decode_fn, kv_step, built, placement)
    ddr_per_token = token.total.ddr_bytes
    weights_min = cost.min_weight_bytes_per_decode_token(module)
    kv_per_position = cost.kv_bytes_per_position(module)
    min_per_token = weights_min + kv * kv_per_position
    floor_ms = min_per_token / device.ddr_practical_bytes_per_s * 1e3
    counted_ms = counted.counted_decode_ms(token, device)
    counted_bounds = [counted.counted_decode_ms(token, device, s)["total"] for s in device.reconfiguration_bounds_s]
    by_context = {}
    for context in (c for c in COUNTED_CONTEXTS if c <= cost.kv_capacity(module)):
        at = counted.decode_token_count(module, device, decode_fn, context, built, placement)
        minimum = weights_min + context * kv_per_position
        by_context[str(context)] = {
            "ddr_bytes": at.total.ddr_bytes, "min_ddr_bytes": minimum, "ddr_vs_min": at.total.ddr_bytes / minimum,
            "ms_counted": counted.counted_decode_ms(at, device)["total"],
            "ddr_floor_ms": minimum / device.ddr_practical_bytes_per_s * 1e3}
    peak_floor_ms = min_per_token / device.ddr_peak_bytes_per_s * 1e3

    # Padding: the decode step (bucket 1) and every prompt bucket of the prefill function (the decode function's
    # prompt buckets count attention per cache position, which has no padding).
    waste = {"decode": cost.padding_waste(decode_plan, 1)}
    if "prefill" in module.functions:
        prefill_plan = cost.FunctionPlan.of(module.functions["prefill"])
        for bucket in sorted({b for p in prefill_plan.ops for b in p.plan.buckets}):
            waste[f"prefill {bucket}"] = cost.padding_waste(prefill_plan, bucket)
    else:
        prefill_plan = None

    step = cost.function_cost(decode_plan, device, 1, kv_len=kv_step, overhead=overhead)
    largest = max(long, key=lambda r: r["prompt_tokens"]) if long else max(short, key=lambda r: r["prompt_tokens"])
    prompt_cost = cost.function_cost(decode_plan, device, largest["prompt_tokens"], kv_len=largest["prompt_tokens"],
                                     overhead=overhead)
    prefill_fn_ms = {}
    if prefill_plan is not None:
        for n in sorted({r["prompt_tokens"] for r in short + long}):
            prefill_fn_ms[str(n)] = cost.function_cost(prefill_plan, device, n, 0, overhead).seconds * 1e3

    # The configuration loads of a prompt (its first launch's included), counted from where the artifact's schedule
    # places its launches (the plan cost model above does not charge them), charged at the assumed and at the
    # measured per-switch costs; for the prompts one call holds (at most the largest bucket's rows)
    prompts = [r for r in sorted(short + long, key=lambda r: r["prompt_tokens"])
               if r["prompt_tokens"] <= decode_plan.largest_bucket]
    prefill_orders = {str(r["prompt_tokens"]): counted.call_design_order(decode_fn, r["prompt_tokens"], placement)
                      for r in prompts}
    prefill_loads = {n: counted.reconfigurations(order, repeated=False) for n, order in prefill_orders.items()}
    switch_costs = (device.reconfiguration_s,) + tuple(device.reconfiguration_bounds_s)
    prefill_with_loads = {n: [r["prefill_ms"] + prefill_loads[n] * s * 1e3 for s in switch_costs]
                          for r in prompts for n in [str(r["prompt_tokens"])]}
    prefill_fn_loads = {n: counted.reconfigurations(counted.call_design_order(module.functions["prefill"], int(n),
                                                                              placement), repeated=False)
                        for n in prefill_fn_ms if int(n) <= prefill_plan.largest_bucket}

    # Each latency row's decode step as the designs issue it (counted at the row's mean context, with the array
    # reconfigurations and submissions charged), and its prefill with the prompt's configuration loads
    for r in short + long:
        at = counted.decode_token_count(module, device, decode_fn, round(r["mean_kv_len"]), built, placement)
        r["ms_per_token_counted"] = counted.counted_decode_ms(at, device)["total"]
        r["prefill_ms_with_configuration_loads"] = prefill_with_loads.get(str(r["prompt_tokens"]), [None])[0]
        r["card_over_counted"] = {"ms_per_token": _ratio(r["card"]["ms_per_token"], r["ms_per_token_counted"])}

    card_ms_rows = [r["card"]["ms_per_token"] for r in short if math.isfinite(r["card"]["ms_per_token"])]
    card_ms = sum(card_ms_rows) / len(card_ms_rows) if card_ms_rows else float("nan")
    targets = [
        _target("ddr_bytes_vs_min", "DDR bytes per decode token as the designs move them / minimum (weights + KV cache)",
                ddr_per_token / min_per_token, DDR_RATIO_LIMIT),
        _target("padding_waste", "padding waste (executed / useful MACs - 1), worst bucket",
                max(waste.values()), PADDING_LIMIT),
        _target("decode_vs_ddr_floor", "modelled decode ms/token at short context (plan cost model) / DDR-bandwidth "
                "floor", decode_ms / floor_ms, FLOOR_RATIO_LIMIT),
        _target("counted_decode_vs_ddr_floor", "decode ms/token counted from the designs (traffic, instructions, "
                "reconfigurations, submissions) at short context / DDR-bandwidth floor",
                counted_ms["total"] / floor_ms, FLOOR_RATIO_LIMIT),
    ]
    return {
        "modelled": True,
        "model": module.name,
        "device": device.name,
        "device_model": {
            "product": device.product, "arch": device.arch, "cores": device.cores, "clock_hz": device.clock_hz,
            "mmul_bf16_macs_per_cycle": device.macs_per_cycle["bf16"],
            "vector_macs_per_cycle": cost.vector_macs_per_cycle(device),
            "ddr_practical_bytes_per_s": device.ddr_practical_bytes_per_s,
            "ddr_peak_bytes_per_s": device.ddr_peak_bytes_per_s,
            "launch_overhead_s": device.launch_overhead_s,
            "reconfiguration_s": device.reconfiguration_s,
            "reconfiguration_bounds_s": list(device.reconfiguration_bounds_s),
        },
        "quant": quant,
        "max_seq_len": module.metadata.get("max_seq_len"),
        "new_tokens": new_tokens,
        "overhead": overhead,
        "card": {"file": reporting.CARD_FILE, "setup": reporting.CARD_SETUP, "applies": card_ok,
                 "decode_ms_per_token": card_ms, "tokens_per_s": 1e3 / card_ms},
        "decode_ms_per_token": decode_ms,
        "decode_ms_per_token_by_overhead": by_overhead,
        "decode_kv_len": kv,
        "launches_per_decode_token": step.launches,
        "submissions_per_decode_token": token.submissions,
        "device_configurations": token.device_configurations,
        "reconfigurations_per_decode_token": token.reconfigurations,
        "decode_token_counted": token.as_dict(),
        "decode_ms_per_token_counted": counted_ms,
        "decode_ms_per_token_counted_at_reconfiguration_bounds": counted_bounds,
        "decode_counted_by_context": by_context,
        "tokens_per_s": 1e3 / decode_ms,
        "ddr_bytes_per_decode_token": ddr_per_token,
        "ddr_bytes_per_decode_token_planned": planned_ddr_per_token,
        "min_ddr_bytes_per_decode_token": min_per_token,
        "min_weight_bytes_per_decode_token": weights_min,
        "kv_bytes_per_position": kv_per_position,
        "ddr_floor_ms_per_token": floor_ms,
        "ddr_peak_floor_ms_per_token": peak_floor_ms,
        "padding_waste": max(waste.values()),
        "padding_waste_by_bucket": waste,
        "prefill_ms": {str(r["prompt_tokens"]): r["prefill_ms"]
                       for r in sorted(short + long, key=lambda r: r["prompt_tokens"])},
        "prefill_function_ms": prefill_fn_ms,
        "prefill_submissions": {n: len(order) for n, order in prefill_orders.items()},
        "prefill_configuration_loads": prefill_loads,
        "prefill_ms_with_configuration_loads": {n: v[0] for n, v in prefill_with_loads.items()},
        "prefill_ms_with_configuration_loads_at_bounds": {n: v[1:] for n, v in prefill_with_loads.items()},
        "prefill_function_configuration_loads": prefill_fn_loads,
        "latency": {"decode": short, "benchmark_exact": long},
        "skipped_prompt_lengths": sorted(set(skipped)),
        "ops": op_rows(step),
        "ops_kv_len": kv_step,
        "prefill_ops": {"prompt_len": largest["prompt_tokens"], "rows": op_rows(prompt_cost)},
        "targets": targets,
    }


def _target(key: str, text: str, value: float, limit: float) -> dict:
    return {"key": key, "text": text, "value": value, "limit": limit, "pass": value <= limit}


# --------------------------------------------------------------------------- rendering


def _num(x, fmt: str = ".4g") -> str:
    if isinstance(x, jinja2.Undefined):
        str(x)  # StrictUndefined raises UndefinedError naming the missing key
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, fmt)


def _latency_table(rows: list[dict]) -> str:
    return _table(markdown_table([LatencyRow(r["prompt_tokens"], r["new_tokens"], r["total_s"], r["prefill_ms"],
                                      r["ms_per_token"], r["tokens_per_s"]) for r in rows], MODELLED_COLUMNS))


def _comparison_table(rows: list[dict]) -> str:
    columns = ("Example#", "Prompt Length (tokens)", "Prefill bucket(s)", "Prefill (ms), modelled",
               "Prefill (ms), modelled + counted loads", "Prefill (ms), card", "card / modelled",
               "Time/Token (ms), modelled", "Time/Token (ms), counted", "Time/Token (ms), card", "card / modelled",
               "card / counted", "Tokens/Sec, modelled", "Tokens/Sec, card")
    cells = []
    for i, r in enumerate(rows, start=1):
        c, q = r["card"], r["card_over_modelled"]
        cells.append([str(i), str(r["prompt_tokens"]), "+".join(map(str, r["bucket"])), _num(r["prefill_ms"], ".6g"),
                      _num(r.get("prefill_ms_with_configuration_loads"), ".6g"), _num(c["prefill_ms"], ".6g"),
                      _num(q["prefill_ms"], ".3g"), _num(r["ms_per_token"], ".6g"),
                      _num(r.get("ms_per_token_counted"), ".6g"), _num(c["ms_per_token"], ".6g"),
                      _num(q["ms_per_token"], ".3g"), _num(r.get("card_over_counted", {}).get("ms_per_token"), ".3g"),
                      _num(r["tokens_per_s"], ".6g"), _num(c["tokens_per_s"], ".6g")])
    return _table(grid(columns, cells))


def _ops_table(rows: list[dict]) -> str:
    columns = ("op", "kind", "launch", "count", "bucket", "cores", "ms, modelled", "share", "DDR MB", "GMAC",
               "DMA ms", "compute ms", "overhead ms", "bound")
    cells = []
    for r in rows:
        if r["ms"] is None:
            cells.append([r["op"], r["kind"], "", str(r["count"])] + ["-"] * 9 + ["host"])
            continue
        cells.append([r["op"], r["kind"], r["launch"], str(r["count"]), str(r["bucket"]), str(r["cores"]),
                      _num(r["ms"], ".4f"), f"{100 * r['share']:.1f}%", _num(r["ddr_bytes"] / 1e6, ".2f"),
                      _num(r["macs"] / 1e9, ".3f"), _num(r["dma_ms"], ".3f"), _num(r["compute_ms"], ".3f"),
                      _num(r["overhead_ms"], ".3f"), r["bound"]])
    return _table(grid(columns, cells))


def _runs_table(runs: list[dict]) -> str:
    columns = ("run", "timing", "device", "prompt tokens", "new tokens", "prefill ms", "ms/token", "tokens/s")
    cells = [[str(i), r["timing"], r["device"], str(r["prompt_tokens"]), str(r["new_tokens"]),
              _num(r["prefill_ms"], ".6g"), _num(r["ms_per_token"], ".6g"), _num(r["tokens_per_s"], ".6g")]
             for i, r in enumerate(runs, start=1)]
    return _table(grid(columns, cells))


def _table(text: str) -> markupsafe.Markup:
    """A multi-line markdown table made by our own code from numbers and checked names: the template's single-line
    guard lets it through."""
    return markupsafe.Markup(text)


def _size(n: float) -> str:
    """Bytes in decimal units, four significant digits."""
    if isinstance(n, jinja2.Undefined):
        str(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:.4g} B"


def render_markdown(report: dict) -> str:
    """report.md: the card's tables with modelled figures, comparisons, targets and per-op breakdowns."""
    template = ENV.get_template("report/report.md.j2")
    return template.render(
        r=report,
        tables={
            "decode": ("Decode with short prompts", report["latency"]["decode"]),
            "benchmark_exact": ("Prompts of 128 to 2048 tokens", report["latency"]["benchmark_exact"]),
        },
        latency_table=_latency_table, comparison_table=_comparison_table, ops_table=_ops_table, num=_num,
        size=_size, runs_table=_runs_table,
    )


def plot_latency(report: dict, path: Path) -> Path:
    """ms/token against prompt length: modelled (three overhead modes for the short prompts) and the card's."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["latency"]["decode"] + report["latency"]["benchmark_exact"], key=lambda r: r["prompt_tokens"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot([r["prompt_tokens"] for r in rows], [r["ms_per_token"] for r in rows], "o-",
            label=f"aielower on {report['device']} (modelled)")
    card = [r for r in rows if math.isfinite(r["card"]["ms_per_token"])]
    if card:
        ax.plot([r["prompt_tokens"] for r in card], [r["card"]["ms_per_token"] for r in card], "s--",
                label="model card, STX B0 (measured)")
    ax.axhline(report["ddr_floor_ms_per_token"], color="grey", linestyle=":",
               label="DDR-bandwidth floor at short context (modelled)")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("ms / token")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{report['model']} {report['quant']} on {report['device']}: ms/token vs prompt length",
                 fontsize="medium")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report_files(report: dict) -> dict[str, str]:
    """The report as files: ``report.md`` and ``report.json``."""
    return {"report.md": render_markdown(report),
            "report.json": json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"}


def write_report(report: dict, out_dir: str | Path, plot: bool = False) -> list[Path]:
    """Write report.md and report.json into ``out_dir`` (and report.png if ``plot``; needs matplotlib, the
    ``plot`` extra). ``aielower bench -o DIR``: the directory is the user's, so only these files are written."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CompileError(f"cannot create {out}: {e.strerror or e}") from None
    written = []
    for name, text in report_files(report).items():
        path = safe_path(out, name)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if plot:
        written.append(plot_latency(report, safe_path(out, "report.png")))
    return written


RUN_TIMINGS = ("measured", "emulated")


def record_run(out_dir: str | Path, stats, timing: str, device: str) -> dict:
    """Add a run of ``generate()`` (its ``GenerationStats``) to the artifact's report (``report.json`` and
    ``report.md`` in ``out_dir``), labelled ``timing``: ``"measured"`` on an NPU, ``"emulated"`` on the emulated
    device; ``device`` says which. Returns the row."""
    if timing not in RUN_TIMINGS:
        raise CompileError(f"a run's timing is 'measured' or 'emulated', not {timing!r}")
    path = safe_path(out_dir, "report.json")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CompileError(f"cannot read {path} to record the run: {e}; recompile the artifact") from None
    row = LatencyRow.from_stats(stats)
    entry = {"timing": timing, "device": device, "prompt_tokens": row.prompt_tokens, "new_tokens": row.new_tokens,
             "total_s": row.total_s, "prefill_ms": row.prefill_ms, "ms_per_token": row.ms_per_token,
             "tokens_per_s": row.tokens_per_s}
    report.setdefault("runs", []).append(_finite(entry))
    for name, text in report_files(report).items():
        replace_file(out_dir, name, text)
    return entry


def _finite(x):
    """``x`` with NaN / infinity (figures the card does not have) as None, which JSON can hold."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


__all__ = ["RUN_TIMINGS", "build_report", "op_rows", "plot_latency", "record_run", "render_markdown", "report_files",
           "write_report"]
