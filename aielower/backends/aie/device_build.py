"""Building an AIE artifact for the device that runs it, and recording what was built in its manifest.

Two builds, each recorded under ``manifest["builds"][target]`` with the xclbin of every design and the instruction
file of each of its runtime sequences (paths relative to the artifact); the host runtime
(:mod:`aielower.backends.aie.runtime`) reads them from there:

- ``npu`` (:func:`build_for_npu`): the artifact's Makefile with the user's Peano and mlir-aie: ``make
  check-toolchain`` first (a missing tool stops the build with the Makefile's message, which names the versions the
  artifact targets), then ``make``; every xclbin and instruction file the manifest names must exist afterwards.
- ``emulator`` (:func:`build_for_emulator`): what the emulated XRT device (:mod:`.emulated_xrt`) loads, in
  ``emulated/``: the kernels compiled for this CPU with g++ (one shared library), one emulated xclbin per design
  (its MLIR text) and one emulated instruction file per runtime sequence (the sequence's name).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from aielower.backends.aie import toolchain
from aielower.errors import AielowerError, CompileError
from aielower.output import replace_file, safe_path

TARGETS = ("npu", "emulator")
EMULATED_DIR = "emulated"


def _module_and_device(out_dir: Path):
    from aielower.backends.aie.device import get_device
    from aielower.ir import parse_file

    manifest = toolchain.read_manifest(out_dir)
    device = get_device(manifest.get("device", {}).get("name"))
    return manifest, parse_file(safe_path(out_dir, "module.ir")), device


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    """Replace ``manifest.json`` in one step (a reader never sees half of it), formatted as the compile writes it."""
    replace_file(out_dir, toolchain.MANIFEST, toolchain.manifest_text(manifest))


def _design_files(manifest: dict, directory: str) -> dict[str, dict]:
    """Per design of the manifest: its xclbin and instruction files under ``directory`` (the names the Makefile
    gives them: ``<design>.xclbin``, ``<design>[.<sequence>].insts.bin``)."""
    from aielower import names

    out = {}
    for entry in manifest["designs"]:
        name = names.check("module", entry["name"], "design", CompileError)
        sequences = {seq: f"{directory}/{Path(path).name}" for seq, path in entry["instructions"].items()}
        out[name] = {"xclbin": f"{directory}/{names.file_name(name + '.xclbin')}", "instructions": sequences}
    return out


def build_for_emulator(out_dir: str | os.PathLike, cxx: str = "g++",
                       progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Build the artifact in ``out_dir`` for the emulated XRT device; returns the build record. ``progress(done,
    total, design)``, if given, is called after each design."""
    from aielower.backends.aie.artifact import collect
    from aielower.backends.aie.emulated_xrt import instruction_words, xclbin_text
    from aielower.backends.aie.kernels import build_library

    root = Path(out_dir)
    manifest, module, device = _module_and_device(root)
    kernels, _ = collect(module, device)
    build_dir = safe_path(root, EMULATED_DIR)
    library = build_library(list(kernels.values()), build_dir, cxx)
    files = _design_files(manifest, EMULATED_DIR)
    for done, entry in enumerate(manifest["designs"], 1):
        name = entry["name"]
        text = safe_path(root, entry["file"]).read_text(encoding="utf-8")
        safe_path(root, files[name]["xclbin"]).write_text(xclbin_text(name, text, device.name), encoding="utf-8")
        for sequence, path in files[name]["instructions"].items():
            instruction_words(name, sequence).astype("<u4").tofile(safe_path(root, path))
        if progress is not None:
            progress(done, len(manifest["designs"]), name)
    record = {"device": device.name, "kernels": f"{EMULATED_DIR}/{Path(library).name}", "designs": files,
              "note": "emulated: runs on the host emulator (the designs' text, kernels built with g++), not an NPU"}
    manifest.setdefault("builds", {})["emulator"] = record
    _write_manifest(root, manifest)
    return record


def build_for_npu(out_dir: str | os.PathLike, peano: str | os.PathLike | None, mlir_aie: str | os.PathLike | None,
                  jobs: int = 2, make: str = "make", environ: Mapping[str, str] | None = None) -> dict:
    """Build the artifact in ``out_dir`` with its Makefile, Peano in ``peano`` and mlir-aie in ``mlir_aie``; returns
    the build record. A missing or incomplete toolchain is an error that quotes ``make check-toolchain``."""
    root = Path(out_dir)
    manifest, _, device = _module_and_device(root)
    missing = [what for what, value in (("Peano (llvm-aie) directory", peano), ("mlir-aie install", mlir_aie))
               if not value]
    if missing:
        raise AielowerError(
            f"building for the NPU needs the {' and the '.join(missing)}: pass --peano DIR and --mlir-aie DIR (or set "
            f"PEANO_INSTALL_DIR and MLIR_AIE_DIR). The artifact targets mlir-aie {toolchain.MLIR_AIE_COMMIT} "
            f"({toolchain.MLIR_AIE_DATE}) and Peano {toolchain.PEANO_VERSION}; without an NPU toolchain, "
            "'aielower build --emulate' builds for the emulated device")
    variables = [f"PEANO_INSTALL_DIR={Path(peano).absolute()}", f"MLIR_AIE_DIR={Path(mlir_aie).absolute()}"]
    env = dict(environ if environ is not None else os.environ)
    check = _make(make, root, ["check-toolchain", *variables], env)
    if check.returncode != 0:
        raise AielowerError(f"the toolchain check failed (make check-toolchain in {root}):\n"
                            f"{check.stdout.strip()}")
    result = _make(make, root, [f"-j{max(1, jobs)}", *variables], env)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-20:])
        raise AielowerError(f"make failed in {root} (exit {result.returncode}); its last lines:\n{tail}")
    files = _design_files(manifest, "build")
    absent = [path for f in files.values() for path in (f["xclbin"], *f["instructions"].values())
              if not (root / path).is_file()]
    if absent:
        raise AielowerError(f"make succeeded but {len(absent)} file(s) the manifest names are missing, e.g. "
                            f"{absent[0]}: the toolchain did not produce what the Makefile asks for")
    record = {"device": device.name, "designs": files, "toolchain": check.stdout.strip().splitlines()}
    manifest.setdefault("builds", {})["npu"] = record
    _write_manifest(root, manifest)
    return record


def _make(make: str, root: Path, args: list[str], env: dict) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([make, "--no-print-directory", "-C", str(root), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
    except FileNotFoundError:
        raise AielowerError(f"'{make}' was not found: building for the NPU runs the artifact's Makefile") from None


def build_record(manifest: dict, target: str, out_dir: Path) -> dict:
    """The record of the ``target`` build of an artifact, or an error that says how to make it."""
    if target not in TARGETS:
        raise AielowerError(f"unknown build target {target!r}: choose one of {', '.join(TARGETS)}")
    record = manifest.get("builds", {}).get(target)
    if record is None:
        how = f"aielower build {out_dir}" + (" --emulate" if target == "emulator" else " --peano DIR --mlir-aie DIR")
        raise AielowerError(f"{out_dir} has not been built for the {'emulated device' if target == 'emulator' else 'NPU'}"
                            f": run '{how}' first")
    return record


__all__ = ["EMULATED_DIR", "TARGETS", "build_for_emulator", "build_for_npu", "build_record"]
