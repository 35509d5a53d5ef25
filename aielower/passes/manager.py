"""PassManager: runs passes in order; verifies, dumps and times each."""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aielower.errors import VerifyError
from aielower.ir import Module, verify
from aielower.passes.base import ModulePass, PipelineWarning
from aielower.passes.pipeline import parse_pipeline


def _fields(p) -> set[str]:
    return {f.name for f in dataclasses.fields(p)} if dataclasses.is_dataclass(p) else set()


@dataclass
class PassTiming:
    name: str
    seconds: float
    ops_after: int
    rewrites: int | None = None  # what the pass returned: ops it replaced, erased or annotated (None: not counted)

    def describe(self) -> str:
        counted = "" if self.rewrites is None else f", {self.rewrites} rewrite{'s' * (self.rewrites != 1)}"
        return f"{self.name}: {self.seconds:.3f} s{counted}, {self.ops_after} ops after"


@dataclass
class PassManager:
    """``PassManager(passes)`` or ``PassManager.parse("a,b{k=v}")``.

    ``verify_each`` runs the verifier after every pass; ``dump_dir`` writes the IR before
    the first pass (``00-input.ir``) and after each (``01-fuse-norm.ir`` ...);
    ``on_pass`` is called with each timing (progress reporting). A pass that rewrote nothing is not an error
    (cse on a module without duplicates), but the count is in every timing and in the first line of every dump
    (``// after pass fuse-norm: 0 rewrites``), so a pass placed where it cannot match is visible.
    """

    passes: list[ModulePass]
    verify_each: bool = True
    dump_dir: str | Path | None = None
    on_pass: Callable[[PassTiming], None] | None = None
    timings: list[PassTiming] = field(default_factory=list)

    @classmethod
    def parse(cls, pipeline: str, **kwargs) -> "PassManager":
        return cls(parse_pipeline(pipeline), **kwargs)

    def provide(self, **services) -> "PassManager":
        """Give passes the services they declare as (non-option) fields of these names, e.g.
        ``provide(tokenizer_loader=load_tokenizer)`` for AWQ: passes never import the frontend themselves."""
        self.passes = [dataclasses.replace(p, **{k: v for k, v in services.items() if k in _fields(p)})
                       for p in self.passes]
        return self

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
            rewrites = p.run(module)
            seconds = time.perf_counter() - t0
            if self.verify_each:
                try:
                    verify(module)
                except VerifyError as e:
                    raise VerifyError(f"after pass '{p.name}': {e}") from None
            timing = PassTiming(p.name, seconds, sum(len(f.ops) for f in module.functions.values()),
                                rewrites if isinstance(rewrites, int) and not isinstance(rewrites, bool) else None)
            self.timings.append(timing)
            if self.on_pass is not None:
                self.on_pass(timing)
            if dump is not None:
                fname = f"{i:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', p.name)}.ir"
                (dump / fname).write_text(f"// after pass {timing.describe()}\n{module}", encoding="utf-8")
        for p in self.passes:
            for message in p.leftovers(module):
                warnings.warn(f"{p.name}: {message}", PipelineWarning, stacklevel=2)
        return module
