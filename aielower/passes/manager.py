"""PassManager: runs passes in order; verifies, dumps and times each."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aielower.errors import VerifyError
from aielower.ir import Module, verify
from aielower.passes.base import ModulePass
from aielower.passes.pipeline import parse_pipeline


@dataclass
class PassTiming:
    name: str
    seconds: float
    ops_after: int


@dataclass
class PassManager:
    """``PassManager(passes)`` or ``PassManager.parse("a,b{k=v}")``.

    ``verify_each`` runs the verifier after every pass; ``dump_dir`` writes the IR before
    the first pass (``00-input.ir``) and after each (``01-fuse-norm.ir`` ...);
    ``on_pass`` is called with each timing (progress reporting).
    """

    passes: list[ModulePass]
    verify_each: bool = True
    dump_dir: str | Path | None = None
    on_pass: Callable[[PassTiming], None] | None = None
    timings: list[PassTiming] = field(default_factory=list)

    @classmethod
    def parse(cls, pipeline: str, **kwargs) -> "PassManager":
        return cls(parse_pipeline(pipeline), **kwargs)

    @property
    def pipeline(self) -> str:
        return ",".join(p.spec() for p in self.passes)

    def run(self, module: Module) -> Module:
        dump = Path(self.dump_dir) if self.dump_dir is not None else None
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            (dump / "00-input.ir").write_text(str(module), encoding="utf-8")
        for i, p in enumerate(self.passes, start=1):
            t0 = time.perf_counter()
            p.run(module)
            seconds = time.perf_counter() - t0
            if self.verify_each:
                try:
                    verify(module)
                except VerifyError as e:
                    raise VerifyError(f"after pass '{p.name}': {e}") from None
            timing = PassTiming(p.name, seconds, sum(len(f.ops) for f in module.functions.values()))
            self.timings.append(timing)
            if self.on_pass is not None:
                self.on_pass(timing)
            if dump is not None:
                fname = f"{i:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', p.name)}.ir"
                (dump / fname).write_text(str(module), encoding="utf-8")
        return module
