"""Capture by stamping one decoder layer gives exactly the IR (and weights) of capturing every layer."""

from __future__ import annotations

import numpy as np
import pytest

from aielower.frontend import import_model
from aielower.frontend import stamp as stamp_module
from tests.conftest import CONFIGS, tiny_qwen2


def _renumbered(module) -> str:
    """The printed module with numbered values renumbered (both captures number them in order)."""
    for fn in module.functions.values():
        for op in fn.ops:
            for r in op.results:
                if r.name_hint is not None and r.name_hint.isdigit():
                    r.name_hint = None
    return str(module)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_stamped_capture_is_the_full_capture(config):
    model = tiny_qwen2(num_hidden_layers=3 if config == "mha" else 2, **CONFIGS[config])
    full = import_model(model, "t", max_seq_len=32, stamp=False)
    stamped = import_model(model, "t", max_seq_len=32)
    assert "stamped" in stamped.timings and "stamped" not in full.timings
    assert _renumbered(stamped) == _renumbered(full)
    assert list(stamped.weights) == list(full.weights)
    for name, w in full.weights.items():
        np.testing.assert_array_equal(stamped.weights[name].data, w.data, err_msg=name)
        # the twin's own functions are dropped: none of their ops stays a reader (AWQ and dead-weight removal
        # count readers)
        assert len(stamped.weights[name].users) == len(w.users), name


def test_prefill_only_and_one_layer_models_capture_too():
    model = tiny_qwen2(num_hidden_layers=2)
    a = import_model(model, "t", functions=("prefill",), stamp=False)
    b = import_model(model, "t", functions=("prefill",))
    assert _renumbered(a) == _renumbered(b) and "max_seq_len" not in b.metadata
    one = import_model(tiny_qwen2(num_hidden_layers=1), "t", max_seq_len=16)
    assert "stamped" not in one.timings  # nothing to repeat


def test_a_twin_stamping_cannot_use_falls_back_to_the_full_capture(monkeypatch):
    """When the layer block is not what stamping needs, it says why and captures every layer."""
    real = stamp_module.stamp_function

    def scrambled(fn, op_layers, module, layers):
        ops = list(fn.ops)
        op_layers = dict(op_layers)
        middle = [op for op in ops if op_layers.get(id(op)) == 0][len(ops) // 8]
        op_layers[id(middle)] = None  # a hole in the block
        return real(fn, op_layers, module, layers)

    monkeypatch.setattr(stamp_module, "stamp_function", scrambled)
    model = tiny_qwen2(num_hidden_layers=2)
    with pytest.warns(UserWarning, match="the ops of model.layers.0 are not contiguous; capturing every layer"):
        module = import_model(model, "t", max_seq_len=16)
    assert "stamped" not in module.timings
    monkeypatch.undo()
    assert _renumbered(module) == _renumbered(import_model(model, "t", max_seq_len=16, stamp=False))


def test_an_instance_that_differs_from_its_config_is_captured_whole():
    """Stamping builds the twin from the config: a model whose lm_head was untied after loading, or whose layer was
    changed in place, is not what the config says, so every layer is captured (and computes what torch does)."""
    import torch

    from tests.conftest import torch_logits

    untied = tiny_qwen2(num_hidden_layers=2, tie_word_embeddings=True)
    untied.lm_head.weight = torch.nn.Parameter(torch.randn_like(untied.lm_head.weight))
    changed = tiny_qwen2(num_hidden_layers=2)
    changed.model.layers[1].mlp.act_fn = torch.nn.Identity()
    ids = np.arange(6).reshape(1, 6)
    for model, reason in ((untied, "the lm_head does not share the embedding's tensor"),
                          (changed, "model.layers.1 differs from model.layers.0")):
        with pytest.warns(UserWarning, match=reason):
            module = import_model(model, "t", functions=("prefill",))
        assert "stamped" not in module.timings
        import aielower

        np.testing.assert_allclose(aielower.compile(module)(ids), torch_logits(model, ids), rtol=1e-4, atol=1e-4)
