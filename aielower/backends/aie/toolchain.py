"""Checking generated MLIR-AIE designs with the real mlir-aie toolchain: ``aie-opt`` runs the passes ``aiecc.py``
runs before it compiles cores, design by design, and says which designs get through and where the others stop.

What the artifact targets (every number with its source):

- **mlir-aie** commit :data:`MLIR_AIE_COMMIT` (:data:`MLIR_AIE_DATE`), the build in ``../shared/tools/aie-opt``
  (its README, "mlir-aie version"; ``aie-opt --version`` prints the commit). It is the last commit before
  c668d2cb "Update LLVM version"; ``aiecc.py`` is still the full Python driver there (dde51cb0, the next day, made
  it a wrapper of the C++ ``aiecc``, which already exists at 5ff2ab97 and takes the same flags).
- **Peano** (llvm-aie): :data:`PEANO_VERSION`. mlir-aie pins no Peano version at that commit: ``utils/quick_setup.sh``
  line 65, ``utils/env_setup.sh`` line 52 and ``.github/workflows/buildAndTestRyzenAI.yml`` line 97 install the
  latest nightly wheel from :data:`PEANO_WHEEL_INDEX`. The pin ``llvm_aie-19.0.0.2025071101+b3cd09d3`` was
  dropped the same day by 23bfe79c "Use Peano nightly (#2920)", 2026-03-04. So the Peano the commit was tested
  with is the nightly of :data:`PEANO_NIGHTLY_DATE`; its wheel version is ``<llvm>.<YYYYMMDDHH>+<llvm-aie commit>``
  (llvm-aie ``.github/workflows/amd_aie_releases/setup.py``).

The check, per design, is :data:`PIPELINE`: the passes of ``python/compiler/aiecc/main.py`` at that commit with
the generated Makefile's flags (``--alloc-scheme=basic-sequential``), as listed in ``../shared/tools/aie-opt/README.md``
("Pass pipeline mirroring aiecc.py"):

====== ==============================================================================================
verify parse and verify every op (``aie-opt design.mlir``)
addr   resources, objectFifo lowering, buffer addresses (aiecc's INPUT_WITH_ADDRESSES_PIPELINE; aiecc first runs
       ``convert-vector-to-aievec``, absent from our build and a no-op when cores hold no vector ops)
route  switchbox routing (pathfinder flows)
npu    runtime sequences lowered to NPU instructions (``aiex.npu.*``)
====== ==============================================================================================

Each step is one ``aie-opt`` process (argument list, no shell, stdin closed, a timeout) in a temporary directory;
step k's output file is step k+1's input, printed with its source locations so that an error in a later step still
names a line of the design. A design passes when every step does; otherwise the report gives the step, the tool's
first ``error:`` line and the design file. Steps 4 on (core code to LLVM, Peano, xclbin packaging) need Peano and
the parts of mlir-aie our ``aie-opt`` build leaves out; the Makefile runs them (``make``, see ``buildfile``).

Finding ``aie-opt`` (:func:`find_aie_opt`) is the one place that looks at the environment; the command line and
``AieArtifact.check_aie`` call it and pass the path on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from aielower import names
from aielower.errors import CompileError
from aielower.output import json_text

# ----------------------------------------------------------------------------------------------- targeted versions

MLIR_AIE_COMMIT = "5ff2ab97d2dcbb05cf0f08b46eb64064231538ca"
"""mlir-aie commit the designs and the Makefile target: "Disable ci for event trace programming example on strix
(#2923)". Source: Xilinx/mlir-aie history; ``../shared/tools/aie-opt/README.md`` ("mlir-aie version")."""
MLIR_AIE_DATE = "2026-03-04"
"""Commit date of :data:`MLIR_AIE_COMMIT` (2026-03-04 17:20 -0700, i.e. 2026-03-05 00:20 UTC)."""
MLIR_AIE_REPOSITORY = "https://github.com/Xilinx/mlir-aie"

PEANO_NIGHTLY_DATE = "2026-03-04"
"""Date of the llvm-aie nightly current at :data:`MLIR_AIE_COMMIT`, which installs the latest nightly unpinned
(mlir-aie 5ff2ab97 ``utils/quick_setup.sh``:65; pin dropped by 23bfe79c, #2920, 2026-03-04)."""
PEANO_VERSION = f"llvm-aie nightly of {PEANO_NIGHTLY_DATE} (wheel llvm_aie-<llvm>.{PEANO_NIGHTLY_DATE.replace('-', '')}HH+<commit>)"
PEANO_WHEEL_INDEX = "https://github.com/Xilinx/llvm-aie/releases/expanded_assets/nightly"
PEANO_PREVIOUS_PIN = "llvm_aie-19.0.0.2025071101+b3cd09d3"
"""The last Peano pin of mlir-aie (``utils/quick_setup.sh`` before 23bfe79c): a known-good older Peano."""

# ----------------------------------------------------------------------------------------------- finding aie-opt

ENV_VAR = "AIELOWER_AIE_OPT"
_REPO_ROOT = Path(__file__).resolve().parents[3]  # aielower/backends/aie/toolchain.py -> the repository
SHARED_TOOL = Path("..") / "shared" / "tools" / "aie-opt" / "aie-opt"
"""Where the prebuilt ``aie-opt`` sits relative to a checkout (the repository and ``shared/`` are siblings)."""


def default_locations(cwd: Path | None = None) -> tuple[Path, ...]:
    """The last places :func:`find_aie_opt` looks: :data:`SHARED_TOOL` relative to the repository root of this
    package, then relative to ``cwd`` (default: the current directory)."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    return _REPO_ROOT / SHARED_TOOL, cwd / SHARED_TOOL


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_aie_opt(explicit: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None,
                 locations: Sequence[Path] | None = None) -> Path:
    """The ``aie-opt`` to run: ``explicit`` (``--aie-opt``), else ``$AIELOWER_AIE_OPT``, else ``aie-opt`` on
    ``$PATH``, else :func:`default_locations` (``../shared/tools/aie-opt/aie-opt`` beside the repository, then
    beside the current directory). ``environ`` defaults to ``os.environ``; tests pass their own. A path given
    explicitly (argument or variable) that is not an executable file is an error, never skipped; nothing found is
    a :class:`CompileError` listing where it looked."""
    environ = os.environ if environ is None else environ
    if explicit is not None and str(explicit) != "":
        path = Path(explicit)
        if not _is_executable(path):
            raise CompileError(f"--aie-opt {path}: {'not executable' if path.is_file() else 'no such file'}; "
                               "give the path of mlir-aie's aie-opt binary")
        return path.absolute()
    from_env = environ.get(ENV_VAR, "")
    if from_env:
        path = Path(from_env)
        if not _is_executable(path):
            raise CompileError(f"{ENV_VAR}={from_env}: {'not executable' if path.is_file() else 'no such file'}; "
                               f"point it at mlir-aie's aie-opt binary or unset it")
        return path.absolute()
    on_path = shutil.which("aie-opt", path=environ.get("PATH", os.defpath))
    if on_path:
        return Path(on_path).absolute()
    candidates = tuple(default_locations() if locations is None else locations)
    for path in candidates:
        if _is_executable(path):
            return path.resolve()
    looked = ", ".join(["--aie-opt (not given)", f"${ENV_VAR} (not set)", "aie-opt on $PATH",
                        *(str(p) for p in candidates)])
    raise CompileError(f"no aie-opt found (looked at: {looked}); build mlir-aie {MLIR_AIE_COMMIT[:8]} or use "
                       f"../shared/tools/aie-opt, then pass --aie-opt PATH or set {ENV_VAR}=PATH")


def _require_tool(aie_opt: str | os.PathLike) -> Path:
    path = Path(aie_opt)
    if not _is_executable(path):
        raise CompileError(f"aie-opt {path} is not an executable file; find one with find_aie_opt() "
                           "or give the path of mlir-aie's aie-opt binary")
    return path.absolute()


# ----------------------------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class ToolVersion:
    """What ``<tool> --version`` said, and whether it is the targeted mlir-aie commit."""

    path: str
    text: str  # the line naming the tool and its commit (or the whole output, cut)
    commit: str | None
    matches: bool

    @property
    def warning(self) -> str | None:
        if self.matches:
            return None
        found = f"mlir-aie {self.commit}" if self.commit else f"an unknown version ({self.text!r})"
        return (f"{self.path} is {found}; the artifact targets mlir-aie {MLIR_AIE_COMMIT} ({MLIR_AIE_DATE}): "
                "results may differ from the targeted toolchain")

    def as_dict(self) -> dict:
        return {"path": self.path, "text": self.text, "commit": self.commit, "matches": self.matches,
                "target": MLIR_AIE_COMMIT}


_COMMIT = re.compile(r"\b[0-9a-f]{7,40}\b")


def parse_version(output: str, tool: str = "aie-opt") -> tuple[str, str | None]:
    """(the line naming ``tool``, the mlir-aie commit on it) from ``--version`` output: upstream prints
    ``aie-opt <commit>`` after LLVM's lines, our build ``aie-opt (minimal AIE/AIEX build) mlir-aie <commit>``,
    ``aiecc --version`` ``aiecc (C++ version) <commit>``, ``aiecc.py --version`` ``aiecc.py <commit>``."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    line = next((ln for ln in lines if ln.startswith(tool)), lines[-1] if lines else "")
    found = _COMMIT.findall(line)
    return _printable(line, 200), (found[-1] if found else None)


def commit_matches(commit: str | None, target: str = MLIR_AIE_COMMIT) -> bool:
    """True when ``commit`` (full or abbreviated, at least 7 hex digits) names ``target``."""
    return bool(commit) and len(commit) >= 7 and (target.startswith(commit) or commit.startswith(target))


def check_tool_version(aie_opt: str | os.PathLike, timeout: float = 60) -> ToolVersion:
    """Run ``aie-opt --version``; a commit other than :data:`MLIR_AIE_COMMIT` is a warning of the report, not an
    error. A tool that does not run at all is a :class:`CompileError`."""
    path = _require_tool(aie_opt)
    try:
        done = subprocess.run([str(path), "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError(f"cannot run {path} --version: {_describe_failure(e)}; check that it is mlir-aie's "
                           "aie-opt built for this machine") from None
    line, commit = parse_version(done.stdout + "\n" + done.stderr)
    return ToolVersion(str(path), line, commit, commit_matches(commit))


# ----------------------------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Step:
    """One ``aie-opt`` run. ``pipeline`` None: parse and verify only (the output is not kept and the next step reads
    the same input); otherwise ``--pass-pipeline=<pipeline>`` and the output feeds the next step."""

    name: str
    pipeline: str | None
    timeout: float = 600.0

    def args(self, tool: Path, source: Path, output: Path | None) -> list[str]:
        args = [str(tool), str(source), "-o", os.devnull if output is None else str(output)]
        if self.pipeline is not None:
            args[1:1] = [f"--pass-pipeline={self.pipeline}", "--mlir-print-debuginfo"]
        return args


def _pipeline(*passes: str, device: Sequence[str] = (), after: Sequence[str] = ()) -> str:
    inner = [*passes, *([f"aie.device({','.join(device)})"] if device else []), *after]
    return f"builtin.module({','.join(inner)})"


PIPELINE: tuple[Step, ...] = (
    Step("verify", None, timeout=300.0),
    Step("addr", _pipeline(
        "lower-affine", "aie-canonicalize-device",
        device=("aie-trace-to-config", "aie-trace-pack-reg-writes", "aie-inline-trace-config", "aie-assign-lock-ids",
                "aie-register-objectFifos",
                "aie-objectFifo-stateful-transform{dynamic-objFifos=false packet-sw-objFifos=false}",
                "aie-assign-bd-ids", "aie-lower-cascade-flows", "aie-lower-broadcast-packet", "aie-lower-multicast",
                "aie-assign-tile-controller-ids", "aie-generate-column-control-overlay{route-shim-to-tile-ctrl=false}",
                "aie-assign-buffer-addresses{alloc-scheme=basic-sequential}",
                "aie-vector-transfer-lowering{max-transfer-rank=1}"),
        after=("convert-scf-to-cf",))),
    Step("route", _pipeline(device=("aie-create-pathfinder-flows",))),
    Step("npu", _pipeline(
        "aie-materialize-runtime-sequences",
        device=("aie-materialize-bd-chains", "aie-substitute-shim-dma-allocations",
                "aie-assign-runtime-sequence-bd-ids", "aie-dma-tasks-to-npu", "aie-dma-to-npu",
                "aie-lower-set-lock"))),
)
"""The steps every design goes through, in order (see the module docs)."""


def with_timeout(steps: Sequence[Step], seconds: float) -> tuple[Step, ...]:
    """``steps`` with every step's timeout set to ``seconds`` (the prompt-bucket attention designs of a 7B model
    take longer than the default 600 s in ``addr``)."""
    if not seconds > 0:
        raise CompileError(f"a step timeout must be a positive number of seconds, not {seconds!r}")
    return tuple(dataclasses.replace(step, timeout=float(seconds)) for step in steps)

_NPU_OP = re.compile(r'^\s*(?:%[^=]*=\s*)?"?aiex\.npu\.', re.MULTILINE)


def count_npu_ops(text: str) -> int:
    """The number of ``aiex.npu.*`` ops in lowered MLIR: the NPU instructions of the runtime sequences."""
    return len(_NPU_OP.findall(text))


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DesignResult:
    """One design through the pipeline. ``step`` is the first step that failed and ``error`` the tool's first
    ``error:`` line there (temporary paths removed: locations name the design file), both None when it passed."""

    name: str
    file: str
    step: str | None
    error: str | None
    seconds: float
    npu_ops: int | None = None

    @property
    def passed(self) -> bool:
        return self.step is None

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"

    def as_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "status": self.status, "step": self.step,
                "error": self.error, "seconds": round(self.seconds, 3), "npu_ops": self.npu_ops}


@dataclass
class CheckReport:
    """Every design's result (in the order given), the tool and its version, and the totals."""

    results: list[DesignResult]
    tool: ToolVersion
    seconds: float
    jobs: int
    steps: tuple[str, ...] = tuple(s.name for s in PIPELINE)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[DesignResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        return self.passed == self.total

    def summary_line(self) -> str:
        return (f"{self.passed} of {self.total} designs pass aie-opt ({', '.join(self.steps)}) in "
                f"{self.seconds:.1f} s ({self.jobs} job{'s' if self.jobs != 1 else ''})")

    def summary(self) -> str:
        """A text table, one row per design (pass, or the failing step and the first error with the design
        file), then the tool, any warning and the totals."""
        width = max([len("design"), *(len(r.name) for r in self.results)])
        lines = [f"{'design':<{width}}  result  step    seconds  npu ops / first error"]
        for r in self.results:
            if r.passed:
                detail = "" if r.npu_ops is None else str(r.npu_ops)
                lines.append(f"{r.name:<{width}}  pass    {'-':<6}  {r.seconds:7.2f}  {detail}")
            else:
                where = "" if (r.error or "").startswith(f"{r.file}:") else f"{r.file}: "  # the file, once
                lines.append(f"{r.name:<{width}}  FAIL    {r.step:<6}  {r.seconds:7.2f}  {where}{r.error}")
        state = "the targeted commit" if self.tool.matches else "NOT the targeted commit"
        lines.append(f"aie-opt: {self.tool.path} ({self.tool.text}; {state})")
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.append(self.summary_line())
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"tool": self.tool.as_dict(),
                "target": {"mlir_aie_commit": MLIR_AIE_COMMIT, "mlir_aie_date": MLIR_AIE_DATE,
                           "peano": PEANO_VERSION},
                "steps": list(self.steps), "jobs": self.jobs, "seconds": round(self.seconds, 3),
                "passed": self.passed, "total": self.total, "warnings": list(self.warnings),
                "designs": [r.as_dict() for r in self.results]}


# ----------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class _Design:
    name: str
    path: Path  # absolute
    shown: str  # how reports name the file


def _printable(text: str, limit: int = 400) -> str:
    """Tool output made safe for one terminal line: non-printable characters become '?'."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_error(stderr: str, replace: Sequence[tuple[str, str]]) -> str | None:
    line = next((ln for ln in stderr.splitlines() if "error:" in ln), None)
    if line is None:
        return None
    for old, new in replace:
        line = line.replace(old, new)
    return _printable(line.strip())


def _describe_failure(e: BaseException) -> str:
    if isinstance(e, subprocess.TimeoutExpired):
        return f"timed out after {e.timeout:g} s"
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return str(e)


def _run_design(design: _Design, tool: Path, steps: Sequence[Step], scratch: Path) -> DesignResult:
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="design.", dir=scratch))  # never named after the design: names come from outside
    # Messages name the design as it is shown, and no temporary path; the longer prefixes go first.
    replace = [(f"{work}{os.sep}", ""), (str(design.path), design.shown), (str(work), "")]
    source, npu_ops = design.path, None
    try:
        for step in steps:
            output = None if step.pipeline is None else work / f"{step.name}.mlir"
            try:
                done = subprocess.run(step.args(tool, source, output), stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, errors="replace", timeout=step.timeout, cwd=work)
            except (OSError, subprocess.TimeoutExpired) as e:
                return DesignResult(design.name, design.shown, step.name, f"error: aie-opt {_describe_failure(e)}",
                                    time.perf_counter() - t0)
            if done.returncode != 0:
                error = _first_error(done.stderr, replace)
                if error is None:
                    last = [ln for ln in done.stderr.splitlines() if ln.strip()]
                    why = f"exit status {done.returncode}" if done.returncode > 0 else f"signal {-done.returncode}"
                    error = f"error: aie-opt stopped ({why}) without an error line" + (
                        f"; last output: {_printable(last[-1], 200)}" if last else "")
                return DesignResult(design.name, design.shown, step.name, error, time.perf_counter() - t0)
            if output is not None:
                source = output
        if source != design.path:
            npu_ops = count_npu_ops(source.read_text(encoding="utf-8", errors="replace"))
        return DesignResult(design.name, design.shown, None, None, time.perf_counter() - t0, npu_ops)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(designs: Sequence[_Design], aie_opt: str | os.PathLike, jobs: int, steps: Sequence[Step],
           on_result: Callable[[DesignResult], None] | None) -> CheckReport:
    if not isinstance(jobs, int) or jobs < 1:
        raise CompileError(f"jobs must be a positive number of parallel aie-opt runs, not {jobs!r}")
    tool = _require_tool(aie_opt)
    version = check_tool_version(tool)
    t0 = time.perf_counter()
    results: list[DesignResult | None] = [None] * len(designs)
    with tempfile.TemporaryDirectory(prefix="aielower-check-aie.") as scratch, \
            ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_run_design, d, tool, steps, Path(scratch)): i for i, d in enumerate(designs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_result is not None:
                on_result(future.result())
    report = CheckReport([r for r in results if r is not None], version, time.perf_counter() - t0, jobs,
                         tuple(s.name for s in steps))
    if version.warning:
        report.warnings.append(version.warning)
    return report


def check_designs(paths: Iterable[str | os.PathLike], aie_opt: str | os.PathLike, jobs: int = 2,
                  steps: Sequence[Step] = PIPELINE,
                  on_result: Callable[[DesignResult], None] | None = None) -> CheckReport:
    """Run :data:`PIPELINE` on every design file, ``jobs`` designs at a time; a design is named after its file
    (without ``.mlir``); the report lists them in the order given. ``on_result`` is called with each result as
    soon as it is known (in the order the designs finish)."""
    designs = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise CompileError(f"design file {path} does not exist: give the .mlir files of an aielower artifact")
        designs.append(_Design(path.stem, path.absolute(), str(p)))
    return _check(designs, aie_opt, jobs, steps, on_result)


MANIFEST = "manifest.json"
MANIFEST_FORMAT_PREFIX = "aielower-aie-manifest/"


def manifest_text(manifest: dict) -> str:
    """``manifest.json`` as the compile writes it (and a build rewrites it): indented, one line per schedule step."""
    return json_text(manifest, one_line_items_of="schedule")


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """The manifest of the AIE artifact in ``out_dir``. A directory without an aielower AIE manifest is a
    :class:`CompileError` that says what to give instead."""
    root = Path(out_dir)
    if not root.is_dir():
        raise CompileError(f"{root} is not a directory: give the output directory of "
                           "compile(target='aie', out_dir=...) or 'aielower compile --target aie -o DIR'")
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompileError(f"{root} holds no {MANIFEST}, so it is not an aielower AIE artifact: give the output "
                           "directory of compile(target='aie', out_dir=...) or 'aielower compile --target aie -o DIR'"
                           ) from None
    except (OSError, ValueError) as e:
        raise CompileError(f"cannot read {root / MANIFEST}: {_describe_failure(e) if isinstance(e, OSError) else e}; "
                           "recompile the artifact") from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith(MANIFEST_FORMAT_PREFIX):
        raise CompileError(f"{root / MANIFEST} is not an aielower AIE manifest (its format is not "
                           f"{MANIFEST_FORMAT_PREFIX}...): give the output directory of compile(target='aie')")
    from aielower.backends.aie.artifact import MANIFEST_FORMAT

    if data["format"] != MANIFEST_FORMAT:
        raise CompileError(f"{root} was compiled by another aielower (artifact format {data['format']!r}; this one "
                           f"reads {MANIFEST_FORMAT!r}, and its host program would not match those designs): "
                           "recompile the artifact")
    return data


def artifact_designs(out_dir: str | os.PathLike) -> list[tuple[str, Path, str]]:
    """``(name, path, file)`` of every design in ``out_dir/manifest.json`` (``file`` relative to ``out_dir``).
    A directory without an aielower AIE manifest, or a manifest naming a file outside ``out_dir`` or missing,
    is a :class:`CompileError`."""
    from aielower.output import safe_path

    root = Path(out_dir)
    data = read_manifest(root)
    entries = data.get("designs")
    if not isinstance(entries, list):
        raise CompileError(f"{root / MANIFEST} has no list of designs: recompile the artifact")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not isinstance(entry.get("file"), str):
            raise CompileError(f"{root / MANIFEST}: a design entry without a name and a file: recompile the artifact")
        if not names.is_valid("module", entry["name"]):
            raise CompileError(f"{root / MANIFEST} names a design {_printable(repr(entry['name']), 80)}, which is not "
                               f"a design name ({names.describe('module')}): recompile the artifact")
        try:
            path = safe_path(root, entry["file"])
        except CompileError:
            raise CompileError(f"{root / MANIFEST} lists the design file {entry['file']!r}, which is not a plain "
                               "path inside the artifact: refusing to read it; recompile the artifact") from None
        if not path.is_file():
            raise CompileError(f"{root / MANIFEST} lists {entry['file']}, which is missing: recompile the artifact")
        out.append((entry["name"], path, entry["file"]))
    return out


def check_artifact(out_dir: str | os.PathLike, aie_opt: str | os.PathLike | None = None, jobs: int = 2,
                   select: Callable[[str], bool] | None = None, steps: Sequence[Step] = PIPELINE,
                   on_result: Callable[[DesignResult], None] | None = None) -> CheckReport:
    """Check every design listed in ``out_dir/manifest.json`` (or those whose name ``select`` accepts), as
    :func:`check_designs` does. ``aie_opt`` None: :func:`find_aie_opt` with the process environment."""
    designs = [_Design(name, path, shown) for name, path, shown in artifact_designs(out_dir)
               if select is None or select(name)]
    tool = find_aie_opt() if aie_opt is None else aie_opt
    return _check(designs, tool, jobs, steps, on_result)


__all__ = [
    "CheckReport", "DesignResult", "ENV_VAR", "MLIR_AIE_COMMIT", "MLIR_AIE_DATE", "PEANO_NIGHTLY_DATE",
    "PEANO_PREVIOUS_PIN", "PEANO_VERSION", "PEANO_WHEEL_INDEX", "PIPELINE", "SHARED_TOOL", "Step", "ToolVersion",
    "artifact_designs", "check_artifact", "check_designs", "check_tool_version", "commit_matches",
    "count_npu_ops", "default_locations", "find_aie_opt", "manifest_text", "parse_version", "read_manifest",
    "with_timeout",
]
