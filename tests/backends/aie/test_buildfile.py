"""The Makefile of an AIE artifact: every kernel and design named, and a clear failure without the toolchain."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from aielower.backends.aie.buildfile import render_build_file
from aielower.backends.aie.device import NPU1, NPU2
from aielower.errors import CompileError
from tests.backends.aie.test_design import case


def _build_inputs():
    names = ["gemv", "add_rms_norm", "attention"]
    kernels, designs = [], []
    for name in names:
        launch, plan, device, spec = case(name)
        kernels.append(spec)
        designs.append((name, spec.symbol))
    return kernels, designs


def test_build_file_names_every_kernel_and_design():
    kernels, designs = _build_inputs()
    text = render_build_file(kernels, designs, NPU2)
    assert text == render_build_file(list(reversed(kernels)), list(reversed(designs)), NPU2)
    for spec in kernels:
        assert f"KERNELS += {spec.symbol}\n" in text
    for name, symbol in designs:
        assert f"DESIGNS += {name}\n" in text
        assert f"$(BUILD)/{name}.xclbin: design/{name}.mlir $(BUILD)/{symbol}.o" in text
        assert f"--xclbin-name={name}.xclbin --aie-generate-npu-insts --npu-insts-name={name}.insts.bin" in text
    assert "--target=aie2p-none-unknown-elf" in text
    assert "--target=aie2-none-unknown-elf" in render_build_file(kernels[:1], designs[:1], NPU1)
    # A design with named runtime sequences (decode attention: one per KV tile count) gets one instruction binary
    # per sequence, named by aiecc's {1}; a name that is no Makefile target is refused.
    named = render_build_file(kernels, designs, NPU2, {"attention": ["kv_tiles_1", "kv_tiles_2"]})
    assert "--npu-insts-name=attention.{1}.insts.bin" in named
    assert "--npu-insts-name=gemv.insts.bin" in named
    with pytest.raises(CompileError):
        render_build_file(kernels, designs, NPU2, {"attention": ["kv tiles"]})
    with pytest.raises(CompileError, match="not among the kernels"):
        render_build_file(kernels[:1], designs, NPU2)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_makefile_fails_clearly_without_the_toolchain(tmp_path):
    kernels, designs = _build_inputs()
    (tmp_path / "Makefile").write_text(render_build_file(kernels, designs, NPU2))
    (tmp_path / "kernels").mkdir()
    (tmp_path / "design").mkdir()
    for spec in kernels:
        (tmp_path / "kernels" / spec.filename).write_text("")
    for name, _ in designs:
        (tmp_path / "design" / f"{name}.mlir").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("PEANO_INSTALL_DIR", "MLIR_AIE_DIR")}

    def make(*args):
        return subprocess.run(["make", "-n", *args], cwd=tmp_path, env=env, capture_output=True, text=True)

    missing = make()
    assert missing.returncode != 0 and "PEANO_INSTALL_DIR is not set" in missing.stderr
    missing = make("PEANO_INSTALL_DIR=/opt/peano")
    assert missing.returncode != 0 and "MLIR_AIE_DIR is not set" in missing.stderr
    assert make("clean").returncode == 0
    dry = make("PEANO_INSTALL_DIR=/opt/peano", "MLIR_AIE_DIR=/opt/mlir-aie")
    assert dry.returncode == 0, dry.stderr
    for spec in kernels:
        assert ("/opt/peano/bin/clang++ -O2 -std=c++20 --target=aie2p-none-unknown-elf" in dry.stdout
                and f"-I /opt/mlir-aie/include -c kernels/{spec.filename} -o build/{spec.symbol}.o" in dry.stdout)
    for name, _ in designs:
        assert "cd build && /opt/mlir-aie/bin/aiecc.py" in dry.stdout and f"--xclbin-name={name}.xclbin" in dry.stdout
