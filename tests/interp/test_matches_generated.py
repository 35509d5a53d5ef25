"""The interpreter computes what the generated module computes, bit for bit: both call the same ``@impl`` functions."""

from __future__ import annotations

import numpy as np
import pytest

import aielower
from aielower.interp import Interpreter
from tests.conftest import CONFIGS, tiny_qwen2


@pytest.mark.parametrize("quantized", [False, True], ids=["dense", "w4"])
@pytest.mark.parametrize("name", ["mha", "gqa-14x2"])
def test_prefill_and_decode_are_bit_identical(name, quantized):
    quant = aielower.QuantConfig(group_size=16, lm_head_group_size=16) if quantized else None
    cm = aielower.compile(tiny_qwen2(seed=3, **CONFIGS[name]), quant=quant, max_seq_len=24)
    ids = np.random.default_rng(0).integers(0, 128, (2, 11))
    np.testing.assert_array_equal(Interpreter(cm.ir)(ids)[0], cm(ids))

    decode = Interpreter(cm.ir, "decode")
    cache, ours = cm.new_cache(2), cm.new_cache(2)
    for position, step in ((0, ids[:, :7]), (7, ids[:, 7:8]), (8, ids[:, 8:])):
        logits, *ours = decode(step, np.array([position]), *ours)
        np.testing.assert_array_equal(logits, cm.decode(step, position, cache))
    for mine, theirs in zip(ours, cache):
        np.testing.assert_array_equal(mine, theirs)


def test_the_interpreter_does_not_write_into_the_callers_caches():
    cm = aielower.compile(tiny_qwen2(seed=3, num_hidden_layers=1), max_seq_len=16)
    caches = cm.new_cache(1)
    Interpreter(cm.ir, "decode")(np.array([[1, 2, 3]]), np.array([0]), *caches)
    assert not any(c.any() for c in caches)  # the generated module may; the interpreter's frames may be resumed
