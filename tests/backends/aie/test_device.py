"""The NPU device models: sizes, mmul shapes, rates consistent with each other, immutability, cited numbers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from aielower.backends.aie import device as device_module
from aielower.backends.aie.device import DEVICES, NPU1, NPU2, Device, MMulShape, get_device
from aielower.errors import CompileError

KiB = 1024


def test_registry_and_lookup():
    assert set(DEVICES) == {"npu1", "npu2"}
    assert get_device("npu1") is NPU1 and get_device("npu2") is NPU2
    assert (NPU1.arch, NPU2.arch) == ("AIE-ML", "AIE2P")


@pytest.mark.parametrize("name", ["npu3", "NPU 2", ""])
def test_unknown_device_lists_the_valid_names(name):
    with pytest.raises(CompileError) as e:
        get_device(name)
    assert repr(name) in str(e.value) and "npu1" in str(e.value) and "npu2" in str(e.value)


def test_array_shapes():
    assert (NPU1.columns, NPU1.core_rows, NPU1.cores) == (4, 4, 16)
    assert (NPU2.columns, NPU2.core_rows, NPU2.cores) == (8, 4, 32)
    assert NPU1.physical_columns == 5 and NPU2.physical_columns == 8  # npu1's column 0 has no shim DMA
    assert NPU1.mem_tile_rows == NPU2.mem_tile_rows == 1


@pytest.mark.parametrize("dev", DEVICES.values(), ids=DEVICES.keys())
def test_memories_dmas_locks(dev: Device):
    assert dev.core_data_memory == 64 * KiB
    assert dev.mem_tile_memory == 512 * KiB
    assert (dev.core_dma_in, dev.core_dma_out) == (2, 2)
    assert (dev.mem_tile_dma_in, dev.mem_tile_dma_out) == (6, 6)
    assert (dev.shim_dma_in, dev.shim_dma_out) == (2, 2)
    assert (dev.dma_buffer_descriptors, dev.mem_tile_buffer_descriptors, dev.shim_buffer_descriptors) == (16, 48, 16)
    assert (dev.core_locks, dev.mem_tile_locks, dev.shim_locks) == (16, 64, 16)
    assert dev.vector_bits == 512


def test_mmul_shapes():
    assert NPU1.mmul["bf16"] == MMulShape(4, 8, 4)
    assert NPU2.mmul["bf16"] == MMulShape(4, 8, 8)
    assert NPU1.mmul["i8"] == MMulShape(4, 8, 8)  # AIE-ML: 8x8x8 exists in the AIE API but is two 4x8x8 MACs
    assert NPU2.mmul["i8"] == MMulShape(8, 8, 8)
    assert NPU1.mmul["i8xi4"] == MMulShape(4, 16, 8) and NPU2.mmul["i8xi4"] == MMulShape(4, 16, 16)
    assert "bfp16" not in NPU1.mmul and NPU2.mmul["bfp16"] == MMulShape(8, 8, 8)
    assert str(NPU2.mmul["i8"]) == "8x8x8" and NPU2.mmul["i8"].macs == 512


@pytest.mark.parametrize("dev", DEVICES.values(), ids=DEVICES.keys())
def test_macs_per_cycle_is_one_native_mmul_per_cycle(dev: Device):
    assert set(dev.macs_per_cycle) == set(dev.mmul) == set(dev.dtypes)
    for dtype, shape in dev.mmul.items():
        assert dev.macs_per_cycle[dtype] == shape.macs, dtype
    # AIE2P doubles AIE-ML's MAC rate for every dtype both have.
    if dev is NPU2:
        for dtype in NPU1.macs_per_cycle:
            assert NPU2.macs_per_cycle[dtype] == 2 * NPU1.macs_per_cycle[dtype]


@pytest.mark.parametrize("dev", DEVICES.values(), ids=DEVICES.keys())
def test_peak_rates(dev: Device):
    for dtype in dev.dtypes:
        assert dev.peak_macs_per_s(dtype) == dev.cores * dev.macs_per_cycle[dtype] * dev.clock_hz
    assert dev.peak_macs_per_s("i8") == 2 * dev.peak_macs_per_s("bf16")
    with pytest.raises(CompileError, match="choose one of bf16, i8"):
        dev.peak_macs_per_s("fp8")


def test_peak_rates_in_numbers():
    assert NPU1.peak_macs_per_s("bf16") == pytest.approx(16 * 128 * 1.6e9)  # 3.3 TMAC/s
    assert NPU2.peak_macs_per_s("bf16") == pytest.approx(32 * 256 * 1.8e9)  # 14.7 TMAC/s
    assert NPU2.peak_macs_per_s("i8") * 2 == pytest.approx(59.0e12, rel=1e-3)  # 59 TOPS on all 32 cores


@pytest.mark.parametrize("dev", DEVICES.values(), ids=DEVICES.keys())
def test_clock_agrees_with_the_marketed_tops(dev: Device):
    # The whole silicon at the driver's top H clock does the marketed int8 TOPS, or up to 25% more (npu2: 18%,
    # the marketing figure implies about 1.5 GHz). A wrong clock or MAC rate would miss by far more.
    physical_int8_ops = dev.physical_columns * dev.core_rows * dev.macs_per_cycle["i8"] * 2 * dev.clock_hz
    assert 1.0 <= physical_int8_ops / dev.marketed_int8_tops <= 1.25


@pytest.mark.parametrize("dev", DEVICES.values(), ids=DEVICES.keys())
def test_ddr_bandwidths(dev: Device):
    assert dev.ddr_peak_bytes_per_s == 7500e6 * 128 / 8 == 120e9  # LPDDR5X-7500, 128-bit bus
    assert dev.shim_read_bytes_per_s == dev.columns * dev.shim_dma_out * dev.stream_bytes_per_cycle * dev.clock_hz
    # The stated planning rule: half the lower of the DDR and shim-stream ceilings.
    ceiling = min(dev.ddr_peak_bytes_per_s, dev.shim_read_bytes_per_s)
    assert dev.ddr_practical_bytes_per_s == pytest.approx(0.5 * ceiling)
    assert 0 < dev.ddr_practical_bytes_per_s < dev.ddr_peak_bytes_per_s
    assert 0 < dev.launch_overhead_s < 1e-3


def test_npu2_streams_more_than_npu1():
    assert NPU1.shim_read_bytes_per_s == pytest.approx(51.2e9)
    assert NPU2.shim_read_bytes_per_s == pytest.approx(115.2e9)
    assert NPU2.ddr_practical_bytes_per_s > NPU1.ddr_practical_bytes_per_s


@pytest.mark.parametrize("dev", DEVICES.values(), ids=DEVICES.keys())
def test_immutable(dev: Device):
    with pytest.raises(dataclasses.FrozenInstanceError):
        dev.clock_hz = 3e9  # type: ignore[misc]
    with pytest.raises(TypeError):
        dev.mmul["bf16"] = MMulShape(1, 1, 1)  # type: ignore[index]
    with pytest.raises(TypeError):
        dev.macs_per_cycle["bf16"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        dev.mmul["bf16"].m = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        DEVICES["npu3"] = dev  # type: ignore[index]
    assert hash(dev) == hash(dev.name) and {dev: 1}[dev] == 1


def test_replace_makes_a_new_device():
    half = dataclasses.replace(NPU2, name="npu2_4col", columns=4)
    assert half.cores == 16 and NPU2.cores == 32
    assert half.mmul == NPU2.mmul and half.peak_macs_per_s("i8") == NPU2.peak_macs_per_s("i8") / 2


def test_mmul_and_macs_must_cover_the_same_dtypes():
    with pytest.raises(ValueError, match="same dtypes"):
        dataclasses.replace(NPU1, macs_per_cycle={"bf16": 128})


# --- every number keeps its source ---------------------------------------------------------------------------

SOURCE = Path(device_module.__file__).read_text()
KWARG = re.compile(r"^\s+(\w+)=(.*)$")
TAG = re.compile(r"\[([A-Z0-9]+)\]")
LEGEND = set(re.findall(r"^\s+\[([A-Z0-9]+)\]\s", device_module.__doc__, flags=re.M))


def device_blocks() -> list[list[str]]:
    """The lines of each ``NAME = Device(...)`` block."""
    blocks, current = [], None
    for line in SOURCE.splitlines():
        if re.match(r"^\w+ = Device\($", line):
            current = []
        elif current is not None and line == ")":
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def numeric_lines() -> list[tuple[int, list[str]]]:
    """(index, block) of every line of a device block with a number in its code (not in a string or comment)."""
    found = []
    for block in device_blocks():
        for i, line in enumerate(block):
            code = re.sub(r'"[^"]*"', "", line.split("#", 1)[0])
            if re.search(r"\d", code) and not code.strip().startswith(("mmul=", "macs_per_cycle=")):
                found.append((i, block))
    return found


def comment_for(block: list[str], i: int) -> str:
    """The line's own comment plus the comment lines directly above it."""
    parts = [block[i].split("#", 1)[1] if "#" in block[i] else ""]
    j = i - 1
    while j >= 0 and block[j].strip().startswith("#"):
        parts.append(block[j].strip()[1:])
        j -= 1
    return " ".join(parts)


def test_the_scan_sees_both_devices_and_every_field():
    blocks = device_blocks()
    assert len(blocks) == len(DEVICES) == 2
    numeric_fields = {f.name for f in dataclasses.fields(Device)} - {"name", "arch", "product", "mmul", "macs_per_cycle"}
    for block in blocks:
        assigned = {m.group(1) for line in block if (m := KWARG.match(line))}
        assert numeric_fields <= assigned
    assert len(numeric_lines()) >= 2 * (len(numeric_fields) + 3 + 3)  # fields plus the mmul / macs entries


def test_every_number_cites_a_source():
    missing = []
    for i, block in numeric_lines():
        comment = comment_for(block, i)
        tags = TAG.findall(comment)
        if not tags and "ASSUMPTION" not in comment and "DERIVED" not in comment:
            missing.append(block[i].strip())
    assert not missing, "numbers without a [SOURCE] tag, DERIVED or ASSUMPTION comment:\n" + "\n".join(missing)


def test_every_tag_is_in_the_legend():
    used = set(TAG.findall(SOURCE.split('"""', 2)[2]))  # tags after the module docstring
    assert used, "no tags found"
    assert used <= LEGEND, f"tags used but not listed in the module docstring: {sorted(used - LEGEND)}"
    assert LEGEND <= used, f"legend entries never used: {sorted(LEGEND - used)}"
