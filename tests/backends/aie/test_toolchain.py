"""The real mlir-aie toolchain in the test loop: finding ``aie-opt``, the aiecc pass pipeline on hand-written and
generated designs, ``aielower check-aie``, and the Makefile's toolchain header and ``check-toolchain`` target.

Tests that run ``aie-opt`` are skipped, with the reason, when none is found (see ``find_aie_opt``); the others use
small shell scripts standing in for the tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import aielower
from aielower.backends.aie import toolchain
from aielower.backends.aie.artifact import MANIFEST_FORMAT
from aielower.backends.aie.buildfile import render_build_file
from aielower.backends.aie.device import get_device
from aielower.backends.aie.kernels import KernelSpec
from aielower.backends.aie.toolchain import (
    MLIR_AIE_COMMIT, PEANO_NIGHTLY_DATE, PIPELINE, check_artifact, check_designs, check_tool_version,
    count_npu_ops, find_aie_opt, parse_version,
)
from aielower.cli import main
from aielower.errors import CompileError
from tests.conftest import CONFIGS, TINY

# ----------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def aie_opt() -> Path:
    try:
        return find_aie_opt()
    except CompileError as e:
        pytest.skip(f"needs mlir-aie's aie-opt: {e}")


def fake_tool(path: Path, output: str = "aie-opt fake", status: int = 0) -> Path:
    """An executable shell script printing ``output`` (for discovery and version tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {status}\n")
    path.chmod(0o755)
    return path


def design(elements: int = 64, depth: int = 2, to_stream: str = "", device: str = "npu2") -> str:
    """One column: shim (0, 0) -> memory tile (0, 1) -> core (0, 2) and back through object FIFOs linked in the
    memory tile; the core copies ``elements`` i32 four times; the runtime sequence moves 4 * elements each way."""
    dims = f" dimensionsToStream [{to_stream}]" if to_stream else ""
    fifo = f"!aie.objectfifo<memref<{elements}xi32>>"
    total = 4 * elements
    return f"""\
// A copy through the memory tile (aielower tests).
module {{
  aie.device({device}) {{
    %shim = aie.tile(0, 0)
    %mem = aie.tile(0, 1)
    %core = aie.tile(0, 2)
    aie.objectfifo @in(%shim, {{%mem}}, {depth} : i32) : {fifo}
    aie.objectfifo @in_core(%mem{dims}, {{%core}}, {depth} : i32) : {fifo}
    aie.objectfifo.link [@in] -> [@in_core]([] [])
    aie.objectfifo @out_core(%core, {{%mem}}, {depth} : i32) : {fifo}
    aie.objectfifo @out(%mem, {{%shim}}, {depth} : i32) : {fifo}
    aie.objectfifo.link [@out_core] -> [@out]([] [])
    aie.core(%core) {{
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c4 = arith.constant 4 : index
      %n = arith.constant {elements} : index
      scf.for %step = %c0 to %c4 step %c1 {{
        %a_view = aie.objectfifo.acquire @in_core(Consume, 1) : !aie.objectfifosubview<memref<{elements}xi32>>
        %a = aie.objectfifo.subview.access %a_view[0] : !aie.objectfifosubview<memref<{elements}xi32>> -> memref<{elements}xi32>
        %b_view = aie.objectfifo.acquire @out_core(Produce, 1) : !aie.objectfifosubview<memref<{elements}xi32>>
        %b = aie.objectfifo.subview.access %b_view[0] : !aie.objectfifosubview<memref<{elements}xi32>> -> memref<{elements}xi32>
        scf.for %i = %c0 to %n step %c1 {{
          %x = memref.load %a[%i] : memref<{elements}xi32>
          memref.store %x, %b[%i] : memref<{elements}xi32>
        }}
        aie.objectfifo.release @in_core(Consume, 1)
        aie.objectfifo.release @out_core(Produce, 1)
      }}
      aie.end
    }}
    aie.runtime_sequence(%src: memref<{total}xi32>, %dst: memref<{total}xi32>) {{
      aiex.npu.dma_memcpy_nd(%src[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{id = 0 : i64, metadata = @in}} : memref<{total}xi32>
      aiex.npu.dma_memcpy_nd(%dst[0, 0, 0, 0][1, 1, 1, {total}][0, 0, 0, 1]) {{id = 1 : i64, metadata = @out}} : memref<{total}xi32>
      aiex.npu.dma_wait {{symbol = @out}}
    }}
  }}
}}
"""


# A memory-tile FIFO whose inner dimension (1024 words) is longer than a BD dimension may be (at most 1023).
TOO_LONG = dict(elements=2048, depth=1, to_stream="<size = 2, stride = 1024>, <size = 1024, stride = 1>")


def write_designs(directory: Path, **designs: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in designs.items():
        (directory / f"{name}.mlir").write_text(text)
        paths.append(directory / f"{name}.mlir")
    return paths


def fake_artifact(root: Path, **designs: str) -> Path:
    """An output directory with a manifest listing the given designs (what check-aie reads of an artifact)."""
    write_designs(root / "design", **designs)
    manifest = {"format": MANIFEST_FORMAT,
                "designs": [{"name": n, "file": f"design/{n}.mlir"} for n in designs]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


# ----------------------------------------------------------------------------------------------- finding aie-opt


def test_discovery_order_is_explicit_then_environment_then_path_then_shared(tmp_path):
    explicit = fake_tool(tmp_path / "explicit" / "aie-opt")
    from_env = fake_tool(tmp_path / "env" / "aie-opt")
    on_path = fake_tool(tmp_path / "bin" / "aie-opt")
    shared = fake_tool(tmp_path / "shared" / "tools" / "aie-opt" / "aie-opt")
    environ = {"AIELOWER_AIE_OPT": str(from_env), "PATH": str(on_path.parent)}
    locations = [tmp_path / "missing" / "aie-opt", shared]
    assert find_aie_opt(explicit, environ, locations) == explicit
    assert find_aie_opt(None, environ, locations) == from_env
    assert find_aie_opt(None, {"PATH": str(on_path.parent)}, locations) == on_path
    assert find_aie_opt(None, {"PATH": str(tmp_path / "empty")}, locations) == shared.resolve()


def test_the_shared_tool_is_found_beside_the_repository_and_the_current_directory(tmp_path):
    repo_side, cwd_side = toolchain.default_locations(cwd=tmp_path / "checkout")
    assert repo_side == Path(aielower.__file__).resolve().parents[1] / ".." / "shared/tools/aie-opt/aie-opt"
    assert cwd_side == tmp_path / "checkout" / ".." / "shared/tools/aie-opt/aie-opt"
    fake_tool(tmp_path / "shared" / "tools" / "aie-opt" / "aie-opt")
    (tmp_path / "checkout").mkdir()
    found = find_aie_opt(None, {"PATH": ""}, [tmp_path / "nowhere" / "aie-opt", cwd_side])
    assert found == (tmp_path / "shared" / "tools" / "aie-opt" / "aie-opt").resolve()


def test_nothing_found_says_where_it_looked_and_what_to_do(tmp_path):
    with pytest.raises(CompileError) as e:
        find_aie_opt(None, {"PATH": str(tmp_path)}, [tmp_path / "a" / "aie-opt"])
    message = str(e.value)
    assert "no aie-opt found" in message and str(tmp_path / "a" / "aie-opt") in message
    assert "$AIELOWER_AIE_OPT (not set)" in message and "aie-opt on $PATH" in message
    assert "pass --aie-opt PATH or set AIELOWER_AIE_OPT=PATH" in message and "\n" not in message


def test_a_bad_explicit_path_is_an_error_not_a_fallback(tmp_path):
    fallback = fake_tool(tmp_path / "bin" / "aie-opt")
    with pytest.raises(CompileError, match="--aie-opt .*missing: no such file"):
        find_aie_opt(tmp_path / "missing", {"PATH": str(fallback.parent)})
    (tmp_path / "plain").write_text("not a program")
    with pytest.raises(CompileError, match="AIELOWER_AIE_OPT=.*plain: not executable; point it at"):
        find_aie_opt(None, {"AIELOWER_AIE_OPT": str(tmp_path / "plain"), "PATH": str(fallback.parent)})


# ----------------------------------------------------------------------------------------------- versions


@pytest.mark.parametrize("output, commit", [
    ("LLVM (http://llvm.org/):\n  LLVM version 22.1.8\naie-opt (minimal AIE/AIEX build) mlir-aie " + MLIR_AIE_COMMIT,
     MLIR_AIE_COMMIT),
    ("LLVM version 22.0.0\naie-opt 1e400306479ef709a0f897e330cd51fc297f9a13",
     "1e400306479ef709a0f897e330cd51fc297f9a13"),
    ("aie-opt version unknown", None),
])
def test_versions_are_read_from_the_tool_line(output, commit):
    assert parse_version(output)[1] == commit


def test_another_commit_is_a_warning_and_a_broken_tool_an_error(tmp_path):
    same = check_tool_version(fake_tool(tmp_path / "same", f"aie-opt {MLIR_AIE_COMMIT[:12]}"))
    assert same.matches and same.warning is None
    other = check_tool_version(fake_tool(tmp_path / "other", "aie-opt 1e400306479ef709a0f897e330cd51fc297f9a13"))
    assert not other.matches
    assert "is mlir-aie 1e400306" in other.warning and f"targets mlir-aie {MLIR_AIE_COMMIT}" in other.warning
    broken = tmp_path / "broken"
    broken.write_bytes(b"\x7fELF garbage")
    broken.chmod(0o755)
    with pytest.raises(CompileError, match="cannot run .*broken --version"):
        check_tool_version(broken)


def test_the_targeted_versions_are_stated():
    assert MLIR_AIE_COMMIT == "5ff2ab97d2dcbb05cf0f08b46eb64064231538ca"
    assert toolchain.MLIR_AIE_DATE == PEANO_NIGHTLY_DATE == "2026-03-04"
    assert "llvm-aie nightly of 2026-03-04" in toolchain.PEANO_VERSION


def test_the_shared_tool_is_the_targeted_commit(aie_opt):
    version = check_tool_version(aie_opt)
    assert version.matches, version.text


# ----------------------------------------------------------------------------------------------- the pipeline


def test_pipeline_steps_are_data_in_aiecc_order():
    assert [s.name for s in PIPELINE] == ["verify", "addr", "route", "npu"]
    assert PIPELINE[0].pipeline is None
    assert "aie-objectFifo-stateful-transform" in PIPELINE[1].pipeline
    assert "aie-assign-buffer-addresses{alloc-scheme=basic-sequential}" in PIPELINE[1].pipeline
    assert PIPELINE[2].pipeline == "builtin.module(aie.device(aie-create-pathfinder-flows))"
    assert "aie-dma-to-npu" in PIPELINE[3].pipeline
    args = PIPELINE[1].args(Path("/t/aie-opt"), Path("in.mlir"), Path("out.mlir"))
    assert args[0] == "/t/aie-opt" and args[-3:] == ["in.mlir", "-o", "out.mlir"]


def test_npu_ops_are_counted():
    text = '  aiex.npu.write32 {address = 1 : ui32, value = 2 : ui32}\n  %0 = "aiex.npu.sync"() : () -> ()\n' \
           "  aie.end\n  // aiex.npu.blockwrite in a comment\n"
    assert count_npu_ops(text) == 2


def test_a_minimal_design_passes_every_step(aie_opt, tmp_path):
    [path] = write_designs(tmp_path, copy=design())
    report = check_designs([path], aie_opt)
    [result] = report.results
    assert result.passed and result.step is None and result.error is None, result
    assert result.npu_ops and result.npu_ops > 0
    assert report.ok and report.passed == report.total == 1 and not report.warnings
    assert "1 of 1 designs pass aie-opt (verify, addr, route, npu)" in report.summary()


def test_a_bd_dimension_over_1023_fails_at_addr_naming_the_design(aie_opt, tmp_path):
    [path] = write_designs(tmp_path, long_dims=design(**TOO_LONG))
    report = check_designs([path], aie_opt)
    [result] = report.results
    assert (result.status, result.step) == ("fail", "addr")
    assert "error: 'aie.dma_bd' op Size may not exceed 1023." in result.error
    assert result.file == str(path) and "aielower-check-aie." not in result.error
    row = next(line for line in report.summary().splitlines() if line.startswith("long_dims"))
    assert "FAIL" in row and "addr" in row and str(path) in row and "Size may not exceed 1023." in row
    assert not report.ok and report.as_dict()["designs"][0]["step"] == "addr"


def test_a_removed_device_name_fails_at_verify_with_the_design_location(aie_opt, tmp_path):
    [path] = write_designs(tmp_path, old_device=design(device="npu1_4col"))
    [result] = check_designs([path], aie_opt).results
    assert result.step == "verify"
    assert result.error.startswith(f"{path}:3:14: error: custom op 'aie.device' expected")
    assert "npu1_1col" in result.error


def test_results_keep_the_given_order_with_parallel_jobs(aie_opt, tmp_path):
    paths = write_designs(tmp_path, a=design(), b=design(device="npu1_4col"), c=design(elements=32))
    report = check_designs(paths, aie_opt, jobs=3)
    assert [(r.name, r.status) for r in report.results] == [("a", "pass"), ("b", "fail"), ("c", "pass")]
    assert report.as_dict()["passed"] == 2 and report.as_dict()["total"] == 3


def test_a_timeout_is_a_failure_of_that_step(tmp_path):
    slow = fake_tool(tmp_path / "aie-opt", f"aie-opt {MLIR_AIE_COMMIT}")
    slow.write_text(f"#!/bin/sh\ncase \"$1\" in --version) echo 'aie-opt {MLIR_AIE_COMMIT}';; *) sleep 5;; esac\n")
    [path] = write_designs(tmp_path, d=design())
    steps = toolchain.with_timeout(PIPELINE[:1], 0.2)
    [result] = check_designs([path], slow, steps=steps).results
    assert result.step == "verify" and "timed out after 0.2 s" in result.error
    with pytest.raises(CompileError, match="a step timeout must be a positive number"):
        toolchain.with_timeout(PIPELINE, 0)


def test_a_crash_without_an_error_line_is_reported_as_such(tmp_path):
    tool = fake_tool(tmp_path / "aie-opt")
    tool.write_text(f"#!/bin/sh\ncase \"$1\" in --version) echo 'aie-opt {MLIR_AIE_COMMIT}';; "
                    "*) echo 'Stack dump:' >&2; exit 3;; esac\n")
    [path] = write_designs(tmp_path, d=design())
    [result] = check_designs([path], tool).results
    assert result.step == "verify" and "exit status 3" in result.error and "Stack dump:" in result.error


# ----------------------------------------------------------------------------------------------- artifacts, CLI


def test_a_directory_without_a_manifest_is_refused(tmp_path, capsys):
    with pytest.raises(CompileError, match="holds no manifest.json, so it is not an aielower AIE artifact"):
        check_artifact(tmp_path, aie_opt="/nonexistent")
    assert main(["check-aie", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aielower: error: ") and "not an aielower AIE artifact" in err and err.count("\n") == 1
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else/1", "designs": []}))
    with pytest.raises(CompileError, match="is not an aielower AIE manifest"):
        check_artifact(tmp_path, aie_opt="/nonexistent")
    # an artifact of an older aielower: its decode designs expect another host program
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "aielower-aie-manifest/1", "designs": []}))
    with pytest.raises(CompileError, match="was compiled by another aielower \\(artifact format "
                                           "'aielower-aie-manifest/1'; this one reads 'aielower-aie-manifest/5'.*"
                                           "recompile the artifact"):
        check_artifact(tmp_path, aie_opt="/nonexistent")


def test_manifest_files_outside_the_artifact_are_refused(tmp_path):
    root = fake_artifact(tmp_path / "art", d=design())
    (root / "manifest.json").write_text(json.dumps(
        {"format": MANIFEST_FORMAT, "designs": [{"name": "x", "file": "../../etc/passwd"}]}))
    with pytest.raises(CompileError, match="lists the design file '../../etc/passwd', which is not a plain path "
                                           "inside the artifact: refusing to read it"):
        check_artifact(root, aie_opt="/nonexistent")


def test_hostile_design_names_in_a_manifest_are_refused(tmp_path):
    root = fake_artifact(tmp_path / "art", d=design())
    (root / "manifest.json").write_text(json.dumps(
        {"format": MANIFEST_FORMAT, "designs": [{"name": "../../x\x1b[2J", "file": "design/d.mlir"}]}))
    with pytest.raises(CompileError, match="which is not a design name") as e:
        check_artifact(root, aie_opt="/nonexistent")
    assert "\x1b" not in str(e.value)


def test_check_aie_without_a_tool_says_how_to_point_at_one(tmp_path, capsys):
    root = fake_artifact(tmp_path / "art", d=design())
    assert main(["check-aie", str(root), "--aie-opt", str(tmp_path / "none")]) == 1
    assert "--aie-opt" in capsys.readouterr().err


def test_check_aie_prints_the_table_and_fails_when_a_design_fails(aie_opt, tmp_path, capsys):
    root = fake_artifact(tmp_path / "art", copy=design(), long_dims=design(**TOO_LONG))
    assert main(["check-aie", str(root), "--aie-opt", str(aie_opt), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("copy ", "long_dims "))}
    assert rows["copy"].split()[1] == "pass"
    assert rows["long_dims"].split()[1:3] == ["FAIL", "addr"]
    assert "design/long_dims.mlir" in rows["long_dims"] and "Size may not exceed 1023." in rows["long_dims"]
    assert "1 of 2 designs pass aie-opt" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["passed"], data["total"]) == (1, 2) and data["tool"]["commit"] == MLIR_AIE_COMMIT
    root = fake_artifact(tmp_path / "good", copy=design())
    assert main(["check-aie", str(root), "--aie-opt", str(aie_opt), "--jobs", "1"]) == 0
    assert "1 of 1 designs pass aie-opt" in capsys.readouterr().out


# Tiny configs of tests/backends/aie/test_emulator.py, compiled on the meta device (no weights needed).
TINY_CONFIGS = {
    "mha": CONFIGS["mha"],
    "gqa": CONFIGS["gqa-14x2"],
    "odd": dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, intermediate_size=80),
}
QUANT = aielower.QuantConfig(group_size=16, lm_head_group_size=16)


def meta_model(**overrides):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.device("meta"):
        return Qwen2ForCausalLM(Qwen2Config(**{**TINY, **overrides})).eval()


# Checking every design of the six artifacts takes about 730 s of aie-opt CPU time (600 s for the three npu2 ones;
# most of it the prompt-bucket attention designs: attention_b2048 alone takes ~80 s on npu2), too much for the
# default run on 2 cores. By default the test checks, per artifact, the decode designs and every role's smallest and
# largest prompt bucket (attention: its smallest only): 32 of 69 designs, about 180 s of CPU time for the six;
# AIELOWER_CHECK_ALL_DESIGNS=1 checks every design.
CHECK_ALL_DESIGNS = os.environ.get("AIELOWER_CHECK_ALL_DESIGNS") == "1"


def designs_to_check(out: Path) -> set[str]:
    designs = json.loads((out / "manifest.json").read_text())["designs"]
    if CHECK_ALL_DESIGNS:
        return {d["name"] for d in designs}
    prompt: dict[str, list[int]] = {}
    for d in designs:
        prompt.setdefault(d["role"], []).extend(b for b in d["buckets"] if b > 1)
    ends = {role: {min(b)} if role == "attention" else {min(b), max(b)} for role, b in prompt.items() if b}
    return {d["name"] for d in designs if {1, *ends.get(d["role"], ())} & set(d["buckets"])}


@pytest.mark.parametrize("device", ["npu1", "npu2"])
@pytest.mark.parametrize("config", sorted(TINY_CONFIGS))
def test_every_design_of_the_tiny_configs_passes_aie_opt(aie_opt, tmp_path, config, device):
    out = tmp_path / "aie"
    aielower.compile(meta_model(**TINY_CONFIGS[config]), target="aie", quant=QUANT, max_seq_len=64, out_dir=out,
                     device=device)
    chosen = designs_to_check(out)
    report = check_artifact(out, aie_opt, jobs=2, select=chosen.__contains__)
    assert report.total == len(chosen) > 0
    assert report.ok, "\n" + "\n".join(f"{r.file}: {r.step}: {r.error}" for r in report.failed)


# ----------------------------------------------------------------------------------------------- the Makefile


def _makefile(tmp_path: Path, device: str = "npu2") -> Path:
    spec = KernelSpec("rope", (("d", 64), ("tr", 16)))
    (tmp_path / "Makefile").write_text(render_build_file([spec], [("rope_b1_x", spec.symbol)], get_device(device)))
    return tmp_path / "Makefile"


@pytest.mark.parametrize("device, triple", [("npu1", "aie2-none-unknown-elf"), ("npu2", "aie2p-none-unknown-elf")])
def test_the_makefile_names_the_targeted_toolchain_and_upstream_flags(tmp_path, device, triple):
    text = _makefile(tmp_path, device).read_text()
    header = text.split("\n\n")[0]
    assert f"mlir-aie {MLIR_AIE_COMMIT} (2026-03-04)" in header and "llvm-aie nightly of 2026-03-04" in header
    assert f"MLIR_AIE_COMMIT := {MLIR_AIE_COMMIT}\n" in text and "PEANO_NIGHTLY := 20260304\n" in text
    assert (f"PEANO_FLAGS ?= -O2 -std=c++20 --target={triple} $(WARNING_FLAGS) -DNDEBUG\n" in text
            and "-Wno-empty-body -Wno-missing-template-arg-list-after-template-kw" in text)
    assert "AIECC := $(firstword $(wildcard $(MLIR_AIE_DIR)/bin/aiecc) $(MLIR_AIE_DIR)/bin/aiecc.py)" in text
    assert "check-toolchain:" in text


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _make(tmp_path, *args, dry=False):
    env = {k: v for k, v in os.environ.items() if k not in ("PEANO_INSTALL_DIR", "MLIR_AIE_DIR", "AIECC", "AIE_OPT")}
    return subprocess.run(["make", *(["-n"] if dry else []), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True)


def _fake_install(root: Path, wheel: str = "21.0.0.2026030401+abcdef12", aiecc: str = "aiecc",
                  commit: str = MLIR_AIE_COMMIT) -> tuple[str, str]:
    peano = root / "site-packages" / "llvm-aie"
    fake_tool(peano / "bin" / "clang++", "clang version 21.0.0 (https://github.com/Xilinx/llvm-aie abcdef12)")
    if wheel:
        (root / "site-packages" / f"llvm_aie-{wheel}.dist-info").mkdir(parents=True)
    line = f"aiecc (C++ version) {commit}" if aiecc == "aiecc" else f"aiecc.py {commit}"
    fake_tool(root / "mlir-aie" / "bin" / aiecc, line)
    return f"PEANO_INSTALL_DIR={peano}", f"MLIR_AIE_DIR={root / 'mlir-aie'}"


@needs_make
def test_make_n_check_toolchain_shows_the_versions_it_compares(tmp_path):
    _makefile(tmp_path)
    dry = _make(tmp_path, "check-toolchain", "PEANO_INSTALL_DIR=/opt/peano", "MLIR_AIE_DIR=/opt/mlir-aie", dry=True)
    assert dry.returncode == 0, dry.stderr
    assert MLIR_AIE_COMMIT in dry.stdout and "20260304" in dry.stdout
    assert "/opt/peano/bin/clang++" in dry.stdout and "/opt/mlir-aie/bin/aiecc.py" in dry.stdout


@needs_make
def test_check_toolchain_passes_with_the_targeted_versions(tmp_path):
    _makefile(tmp_path)
    done = _make(tmp_path, "check-toolchain", *_fake_install(tmp_path / "t"))
    assert done.returncode == 0, done.stderr
    assert "clang version 21.0.0" in done.stdout and "the targeted nightly (20260304)" in done.stdout
    assert f"aiecc (C++ version) {MLIR_AIE_COMMIT}" in done.stdout
    assert "toolchain found, 0 warning(s)" in done.stdout and done.stderr == ""


@needs_make
def test_check_toolchain_warns_about_other_versions(tmp_path):
    _makefile(tmp_path)
    done = _make(tmp_path, "check-toolchain", *_fake_install(
        tmp_path / "t", wheel="21.0.0.2026050601+2c363cef", aiecc="aiecc.py",
        commit="1e400306479ef709a0f897e330cd51fc297f9a13"))
    assert done.returncode == 0, done.stderr
    assert "warning: Peano is llvm-aie 21.0.0.2026050601+2c363cef; this build targets the nightly of 20260304" \
        in done.stderr
    assert "bin/aiecc.py is not mlir-aie 5ff2ab97" in done.stderr
    assert "toolchain found, 2 warning(s)" in done.stdout


@needs_make
def test_check_toolchain_fails_clearly_when_tools_are_missing(tmp_path):
    _makefile(tmp_path)
    done = _make(tmp_path, "check-toolchain", f"PEANO_INSTALL_DIR={tmp_path / 'p'}", f"MLIR_AIE_DIR={tmp_path / 'm'}")
    assert done.returncode != 0
    assert f"error: no Peano clang++ at {tmp_path / 'p'}/bin/clang++: install llvm-aie" in done.stderr
    assert f"error: no aiecc at {tmp_path / 'm'}/bin/aiecc.py: install mlir-aie {MLIR_AIE_COMMIT}" in done.stderr
    assert "the toolchain is incomplete" in done.stderr
    unset = _make(tmp_path, "check-toolchain")
    assert unset.returncode != 0 and "PEANO_INSTALL_DIR is not set" in unset.stderr
