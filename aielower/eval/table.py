"""The model card's accuracy table: one row per precision + config, perplexity and MMLU.

    | Precision + Config | Dev | Perplexity (8 samples) | Perplexity (All) | MMLU |

Rows: fp32 on torch eager (the baseline), fp32 on the ref backend, w4 g128 RTN, w4 g128
AWQ, and w4 g128 AWQ + lm_head g32, the last three on the ref backend (weights 4-bit,
activations fp32: NumPy on the CPU, not the NPU). The AWQ + lm_head row reuses the AWQ
module and quantizes its lm_head (AWQ never scales the lm_head), so it calibrates once.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from aielower.eval.mmlu import mmlu_accuracy
from aielower.eval.perplexity import PerplexityResult, perplexity, torch_logits_fn
from aielower.reporting import grid


@dataclass(frozen=True)
class TableSettings:
    seqlen: int = 2048
    samples: int = 8
    all_chunks: int | bool = True  # True: all chunks; an int: that many leading chunks; False: skip
    mmlu_rows: list = field(default_factory=list)
    bits: int = 4
    group: int = 128
    lm_head_group: int = 32
    calib: str | None = None
    calib_samples: int = 128
    calib_seqlen: int = 512
    clip: bool = False
    progress: bool = True


@dataclass
class TableRow:
    config: str
    dev: str
    ppl: PerplexityResult
    mmlu: float | None
    seconds: float  # compile + evaluation of this row
    notes: str = ""

    def as_dict(self) -> dict:
        return {"config": self.config, "dev": self.dev, "ppl_samples": self.ppl.ppl_samples,
                "ppl_all": self.ppl.ppl_all, "mmlu": self.mmlu, "seconds": self.seconds, "notes": self.notes,
                "perplexity": asdict(self.ppl)}


def run_table(model, tokenizer, tokens: np.ndarray, settings: TableSettings, *, source: str, data: str,
              on_row=None) -> list[TableRow]:
    """Evaluate the five configurations; ``on_row(row)`` is called as each finishes."""
    import aielower
    from aielower.backends.ref import RefCompiledModel, generate
    from aielower.passes import PassManager

    s = settings
    g = f"g:{s.group}"
    rows: list[TableRow] = []

    def evaluate(config, dev, logits_fn, backend, quant, t0, notes=""):
        ppl = perplexity(logits_fn, tokens, seqlen=s.seqlen, samples=s.samples, all_chunks=s.all_chunks,
                         backend=backend, quant=quant, data=data, progress=s.progress)
        mmlu = None
        if s.mmlu_rows:
            mmlu = mmlu_accuracy(logits_fn, tokenizer, s.mmlu_rows, backend=backend, quant=quant,
                                 progress=s.progress).accuracy
        row = TableRow(config, dev, ppl, mmlu, time.perf_counter() - t0, notes)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    t0 = time.perf_counter()
    evaluate("fp32", "CPU (torch)", torch_logits_fn(model), "torch", "fp32", t0)

    t0 = time.perf_counter()
    cm = aielower.compile(model, functions=("prefill",))
    evaluate("fp32", "CPU (ref)", cm, "ref", "fp32", t0)
    del cm

    base = aielower.QuantConfig(bits=s.bits, group_size=s.group)
    t0 = time.perf_counter()
    cm = aielower.compile(model, quant=base, functions=("prefill",))
    evaluate(f"w{s.bits} (RTN, {s.bits}-bit, {g})", "CPU (ref)", cm, "ref", f"w{s.bits}g{s.group} rtn", t0)
    del cm

    awq = replace(base, method="awq", calib=s.calib, tokenizer=source, samples=s.calib_samples,
                  seqlen=s.calib_seqlen, clip=s.clip, progress=s.progress)
    t0 = time.perf_counter()
    cm = aielower.compile(model, quant=awq, functions=("prefill",))
    summary = cm.ir.metadata["awq"]["summary"]
    evaluate(f"w{s.bits} (AWQ, {s.bits}-bit, {g})", "CPU (ref)", cm, "ref", f"w{s.bits}g{s.group} awq", t0, summary)

    t0 = time.perf_counter()
    module = cm.ir
    del cm
    PassManager.parse(f"quantize-lm-head{{bits={s.bits} group={s.lm_head_group}}},dce").run(module)
    cm = RefCompiledModel(module, generate(module))
    evaluate(f"w{s.bits} (AWQ, {s.bits}-bit, {g}) + lm_head(g:{s.lm_head_group})", "CPU (ref)", cm, "ref",
             f"w{s.bits}g{s.group} awq + lm_head g{s.lm_head_group}", t0)
    return rows


def markdown_table(rows: list[TableRow], mmlu_label: str = "MMLU") -> str:
    """The card's accuracy table (bold headers, as the card writes them)."""
    all_label = next((r.ppl.all_label for r in rows if r.ppl.ppl_all is not None), "All")
    samples = rows[0].ppl.samples if rows else 8
    header = ["Precision + Config", "Dev", f"Perplexity ({samples} samples)", f"Perplexity ({all_label})", mmlu_label]

    def fmt(x, digits):
        return "n/a" if x is None else f"{x:.{digits}f}"

    cells = [[r.config, r.dev, fmt(r.ppl.ppl_samples, 3), fmt(r.ppl.ppl_all, 3), fmt(r.mmlu, 2)] for r in rows]
    return grid([f"**{h}**" for h in header], cells, align="left")
