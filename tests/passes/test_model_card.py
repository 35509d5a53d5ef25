"""The 7B config after the default pipeline has the model card's module tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aielower
from aielower.api import CompileStats
from aielower.ir import QTensorType


def test_qwen15_7b_chat_matches_the_model_card(tmp_path):
    cm = aielower.compile("qwen1.5-7b-chat", quant=aielower.QuantConfig(bits=4, group_size=128, lm_head_group_size=32))
    ir = tmp_path / "final.ir"
    ir.write_text(str(cm.ir))
    check = Path(__file__).with_name("qwen1.5-7b-chat-card.check")
    result = subprocess.run([sys.executable, "-m", "filecheck", str(check), "--input-file", str(ir)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for fn in ("prefill", "decode"):  # the same tree in both functions, over one set of weights
        kinds = CompileStats.ops_by_kind_in(cm.ir.functions[fn])
        assert kinds["quant.linear"] == 4 * 32 + 1
        assert kinds["fused.attention"] == 32 and kinds["fused.silu_mul"] == 32
        assert kinds["fused.rms_norm"] + kinds["fused.add_rms_norm"] == 2 * 32 + 1
        assert "nn.linear" not in kinds and "nn.sdpa" not in kinds
    assert sum(isinstance(w.type, QTensorType) for w in cm.ir.weights.values()) == 4 * 32 + 1
