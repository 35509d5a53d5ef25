"""Every bundled config compiles to the AIE target end to end on ``meta`` (no weights): capture, the default
pipeline with 4-bit weights, plan-aie-tiling, every design built and checked against mlir-aie's rules
(``designs/check.py``; a violation fails the compile) and the report. Full-size models reach sizes the tiny test
models do not: Qwen2-7B's 3584-wide norms filled a core's data memory to the byte before their shared
configuration added its header words."""

from __future__ import annotations

import json

import pytest

import aielower
from aielower.frontend import bundled_configs


# The device configurations of each bundled model (issue 14 counts them): one per kind of op for every bucket, 10 for
# the 7B models (decode's norms, the qkv GEMV, its bias in bias tiles, and decode attention run on the configuration
# of the decode GEMVs without bias); the 0.5B models' decode qkv and gate/up GEMVs take other tiles than their other
# GEMVs and have one each, and their 2 KV heads do not fill a column of 4 cores, so decode attention keeps its own.
# Qwen2-7B's prompt norms fill a core to the byte without the room their plan keeps for the header
# (rms_norm.HEADER_RESERVE).
CONFIGURATIONS = {"qwen1.5-7b-chat": 10, "qwen2-7b": 10, "qwen2-0.5b": 13, "qwen2.5-0.5b": 13}


def test_every_bundled_config_is_listed():
    assert set(bundled_configs()) == set(CONFIGURATIONS)


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_every_bundled_config_compiles_for_the_npu(name, tmp_path):
    quant = aielower.QuantConfig(bits=4, group_size=128, lm_head_group_size=32)
    aielower.compile(name, target="aie", quant=quant, out_dir=tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["device_configurations"] == len(manifest["designs"]) == CONFIGURATIONS[name]
    assert all((tmp_path / d["file"]).is_file() for d in manifest["designs"])
