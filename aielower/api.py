"""``aielower.compile``: frontend -> (passes) -> backend."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aielower.errors import CompileError
from aielower.frontend import import_model, load_model
from aielower.ir import Module, verify

TARGETS = ("ref", "aie")


@dataclass
class CompileStats:
    """What a compile did and how long each stage took (seconds)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def ops_by_kind(module: Module) -> Counter:
        return Counter(op.name for fn in module.functions.values() for op in fn.ops)


def compile(model, target: str = "ref", *, dump_ir: str | Path | None = None, name: str | None = None):
    """Compile a Qwen2ForCausalLM (or a bundled config name / local HF directory).

    ``target="ref"`` returns a :class:`~aielower.backends.ref.RefCompiledModel`: call it
    with ``input_ids`` [batch, seq] to get logits. ``dump_ir`` names a directory that
    receives the IR text after capture (``00-capture.ir``).
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if target == "aie":
        raise CompileError("target 'aie' is not available yet: the AIE backend is not implemented; use target='ref'")
    stats = CompileStats()
    t0 = time.perf_counter()
    if isinstance(model, (str, Path)):
        name = name or Path(model).name
        model = load_model(model)
    module = import_model(model, name)
    verify(module)
    stats.seconds["capture"] = time.perf_counter() - t0
    if dump_ir is not None:
        out = Path(dump_ir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "00-capture.ir").write_text(str(module), encoding="utf-8")

    from aielower.backends.ref import RefCompiledModel, generate

    t0 = time.perf_counter()
    compiled = RefCompiledModel(module, generate(module))
    stats.seconds["codegen"] = time.perf_counter() - t0
    compiled.stats = stats
    return compiled
