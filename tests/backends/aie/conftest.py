"""Fixtures shared by the AIE backend's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def planned():
    """The tiny MHA model captured, quantized (w4 g32, lm_head g32) and planned for npu2 (one per test module)."""
    from aielower.api import QuantConfig, default_pipeline
    from aielower.frontend import import_model
    from aielower.passes import PassManager
    from tests.conftest import tiny_qwen2

    module = import_model(tiny_qwen2(), "tiny", max_seq_len=128)
    quant = QuantConfig(bits=4, group_size=32, lm_head_group_size=32)
    PassManager.parse(default_pipeline("ref", quant) + ",plan-aie-tiling{device=npu2}").run(module)
    return module
