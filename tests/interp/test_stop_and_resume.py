"""The op-by-op interpreter computes what the generated code computes, and can stop and resume."""

from __future__ import annotations

import numpy as np
import pytest

import aielower
from aielower.interp import Interpreter
from aielower.errors import AielowerError
from aielower.ir.dialects import nn
from tests.conftest import CONFIGS, tiny_qwen2


@pytest.fixture(scope="module")
def compiled():
    return aielower.compile(tiny_qwen2(seed=4, **CONFIGS["gqa-14x2"]),
                            quant=aielower.QuantConfig(group_size=16), max_seq_len=32)


def test_prefill_and_decode_equal_the_generated_code(compiled):
    ids = np.random.default_rng(0).integers(0, 128, (2, 9))
    np.testing.assert_array_equal(Interpreter(compiled.ir)(ids)[0], compiled(ids))
    logits, *caches = Interpreter(compiled.ir, "decode")(ids, np.array([0]), *compiled.new_cache(2))
    cache = compiled.new_cache(2)
    np.testing.assert_array_equal(logits, compiled.decode(ids, 0, cache))
    for ours, theirs in zip(caches, cache):
        np.testing.assert_array_equal(ours, theirs)


def test_stop_inspect_replace_and_resume(compiled):
    interp = Interpreter(compiled.ir)
    fn = compiled.ir.functions["prefill"]
    first = next(i for i, op in enumerate(fn.ops) if op.name == "quant.linear")
    ids = np.random.default_rng(1).integers(0, 128, (1, 5))
    frame = interp.run(interp.start(ids), first)
    x = frame[fn.ops[first].x]
    assert frame.pc == first and x.shape == (1, 5, 112) and frame.results is None
    frame[fn.ops[first].x] = np.zeros_like(x)  # e.g. what a changed producer would compute
    changed = interp.run(frame).results[0]
    assert not np.allclose(changed, compiled(ids))
    with pytest.raises(AielowerError, match="replacing .*: float64"):
        interp.run(interp.start(ids), first)[fn.ops[first].x] = np.zeros((1, 5, 112))
    with pytest.raises(AielowerError, match="is not live at op"):
        interp.run(interp.start(ids))[fn.ops[first].x]
    with pytest.raises(AielowerError, match="cannot run @prefill from op 3 to op 1"):
        interp.run(interp.run(interp.start(ids), 3), 1)
    with pytest.raises(AielowerError, match="no function @nope; this module has prefill, decode"):
        Interpreter(compiled.ir, "nope")


def test_weights_changed_between_runs_take_effect():
    cm = aielower.compile(tiny_qwen2(seed=4, num_hidden_layers=1), functions=("prefill",))
    interp = Interpreter(cm.ir)
    ids = np.random.default_rng(2).integers(0, 128, (1, 4))
    before = interp(ids)[0]
    head = next(op for op in reversed(cm.ir.functions["prefill"].ops) if isinstance(op, nn.Linear))
    head.weight.data = head.weight.data * 2
    np.testing.assert_allclose(interp(ids)[0], 2 * before, rtol=1e-6)
