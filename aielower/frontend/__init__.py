"""Frontend: Hugging Face Qwen2 model -> torch.export -> aielower IR.

Importing this package does not import torch or transformers: the capture machinery (``capture``, ``aten_to_ir``)
is loaded when :func:`import_model` first runs, or when one of its names is looked up here (PEP 562).
"""

from __future__ import annotations

import importlib
import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from aielower import names
from aielower.errors import ModelError
from aielower.frontend.config_checks import check_model
from aielower.frontend.config_checks import rope_theta as config_rope_theta
from aielower.frontend.models import bundled_configs, load_model, load_tokenizer

if TYPE_CHECKING:
    from aielower.ir import Module

# names defined by the torch-importing modules: loaded on first use
_LAZY = {
    "Importer": "aielower.frontend.aten_to_ir",
    "BATCH_SYMBOL": "aielower.frontend.capture",
    "SEQ_SYMBOL": "aielower.frontend.capture",
    "export_decode": "aielower.frontend.capture",
    "export_prefill": "aielower.frontend.capture",
}


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(target), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _lazy(name: str):
    """A lazy name as this module holds it now (so a test's monkeypatch of ``aielower.frontend.export_prefill``
    is what :func:`import_model` calls)."""
    return globals()[name] if name in globals() else __getattr__(name)


def rope_theta(config) -> float:
    """The rotary base of a config (transformers 5 keeps it in ``rope_parameters``); 0.0 when unknown."""
    return float(config_rope_theta(config) or 0.0)


FUNCTIONS = ("prefill", "decode")


def _symbols(program) -> dict:
    from aielower.ir import Sym

    BATCH_SYMBOL, SEQ_SYMBOL = _lazy("BATCH_SYMBOL"), _lazy("SEQ_SYMBOL")
    ids = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == "input_ids")
    batch, seq = ids.meta["val"].shape
    return {str(batch.node.expr): Sym(BATCH_SYMBOL), str(seq.node.expr): Sym(SEQ_SYMBOL)}


DEFAULT_MAX_SEQ_LEN = 4096


def _fresh_module(model, name: str, max_seq_len: int | None) -> Module:
    from aielower.ir import Module

    module = Module(names.check("module", name, "module name", ModelError))
    # As the config's JSON file holds it (string keys, no tuples): module attributes are printed with the IR.
    module.metadata["config"] = json.loads(model.config.to_json_string(use_diff=False))
    module.metadata["rope_theta"] = rope_theta(model.config)
    if max_seq_len is not None:
        module.metadata["max_seq_len"] = max_seq_len
    return module


def _capture(model, module: Module, functions, max_seq_len: int) -> list:
    """Export and import each function of ``model`` into ``module`` (weights added on the way); returns
    [(function, the importer's op -> layer map)] without adding the functions."""
    Importer, export_prefill, export_decode = _lazy("Importer"), _lazy("export_prefill"), _lazy("export_decode")
    out = []
    if "prefill" in functions:
        t0 = time.perf_counter()
        program = export_prefill(model)
        importer = Importer(program, module, "prefill", _symbols(program))
        out.append((importer.run(), importer.op_layers))
        module.timings["prefill"] = time.perf_counter() - t0
    if "decode" in functions:
        t0 = time.perf_counter()
        program = export_decode(model, max_seq_len)
        layers = model.config.num_hidden_layers
        cache_names = {f"keys_{i}": f"k_cache_{i}" for i in range(layers)} | {f"values_{i}": f"v_cache_{i}" for i in range(layers)}
        importer = Importer(program, module, "decode", _symbols(program), arg_names=cache_names)
        out.append((importer.run(), importer.op_layers))
        module.timings["decode"] = time.perf_counter() - t0
    return out


def import_model(model, name: str | None = None, *, functions=FUNCTIONS, max_seq_len: int | None = None,
                 stamp: bool = True) -> Module:
    """Capture ``model`` (a Qwen2ForCausalLM) into a Module.

    ``prefill(input_ids) -> logits``; ``decode(input_ids, position, k_cache_i.., v_cache_i..)
    -> (last-token logits, k_cache_i'.., v_cache_i'..)`` over a static cache of ``max_seq_len``
    positions (default: 4096, or the model's max_position_embeddings if smaller; see
    :mod:`aielower.frontend.capture`). Both share one weight store.

    With ``stamp`` (the default) a one-layer twin of the model is exported and its decoder layer repeated with each
    layer's weights and caches (:mod:`aielower.frontend.stamp`): the IR of a full capture in a fraction of the time.
    When the twin does not capture the way stamping needs, a warning says why and every layer is captured.
    """
    check_model(model)
    unknown = sorted(set(functions) - set(FUNCTIONS))
    if unknown or not functions:
        raise ModelError(f"unknown function(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(FUNCTIONS)}")
    limit = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_SEQ_LEN
    max_seq_len = min(DEFAULT_MAX_SEQ_LEN, limit) if max_seq_len is None else max_seq_len
    if "decode" in functions and not 1 <= max_seq_len <= limit:
        raise ModelError(f"max_seq_len must be in [1, {limit}] (the model's max_position_embeddings), got {max_seq_len}")
    if name is None:  # named after where the model came from: made to fit the module-name grammar
        name = names.derive_module_name(Path(str(getattr(model.config, "name_or_path", "") or "qwen2")).name, "qwen2")
    cache_len = max_seq_len if "decode" in functions else None
    module = _fresh_module(model, name, cache_len)
    layers = model.config.num_hidden_layers
    if stamp and layers > 1:
        from aielower.frontend.stamp import StampError, finish, one_layer_twin, stamp_function

        t0 = time.perf_counter()
        try:
            captured = _capture(one_layer_twin(model), module, functions, max_seq_len)
            for fn, op_layers in captured:
                module.add_function(stamp_function(fn, op_layers, module, layers))
            finish(module, model)
            module.timings["stamped"] = time.perf_counter() - t0
            return module
        except StampError as e:  # the model or its twin is not what stamping needs: capture every layer
            warnings.warn(f"capture: {e}; capturing every layer instead of stamping one", stacklevel=2)
            module = _fresh_module(model, name, cache_len)
        except Exception as e:  # noqa: BLE001 - the twin could not be built or exported: the full capture decides
            warnings.warn(f"capture: the one-layer twin failed ({type(e).__name__}: {str(e)[:200]}); capturing every "
                          "layer", stacklevel=2)
            module = _fresh_module(model, name, cache_len)
    for fn, _ in _capture(model, module, functions, max_seq_len):
        module.add_function(fn)
    return module


__all__ = ["bundled_configs", "import_model", "load_model", "load_tokenizer"]
