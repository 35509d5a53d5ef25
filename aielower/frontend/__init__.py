"""Frontend: Hugging Face Qwen2 model -> torch.export -> aielower IR."""

from __future__ import annotations

import time
from pathlib import Path

from aielower import names
from aielower.frontend.aten_to_ir import Importer
from aielower.errors import ModelError
from aielower.frontend.capture import BATCH_SYMBOL, SEQ_SYMBOL, export_decode, export_prefill
from aielower.frontend.config_checks import check_model
from aielower.frontend.config_checks import rope_theta as config_rope_theta
from aielower.frontend.models import bundled_configs, load_model, load_tokenizer
from aielower.ir import Module, Sym


def rope_theta(config) -> float:
    """The rotary base of a config (transformers 5 keeps it in ``rope_parameters``); 0.0 when unknown."""
    return float(config_rope_theta(config) or 0.0)


FUNCTIONS = ("prefill", "decode")


def _symbols(program) -> dict:
    ids = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == "input_ids")
    batch, seq = ids.meta["val"].shape
    return {str(batch.node.expr): Sym(BATCH_SYMBOL), str(seq.node.expr): Sym(SEQ_SYMBOL)}


DEFAULT_MAX_SEQ_LEN = 4096


def import_model(model, name: str | None = None, *, functions=FUNCTIONS, max_seq_len: int | None = None) -> Module:
    """Capture ``model`` (a Qwen2ForCausalLM) into a Module.

    ``prefill(input_ids) -> logits``; ``decode(input_ids, position, k_cache_i.., v_cache_i..)
    -> (logits, k_cache_i'.., v_cache_i'..)`` over a static cache of ``max_seq_len``
    positions (default: 4096, or the model's max_position_embeddings if smaller; see
    :mod:`aielower.frontend.capture`). Both share one weight store.
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
    module = Module(names.check("module", name, "module name", ModelError))
    module.metadata["config"] = model.config.to_dict()
    module.metadata["rope_theta"] = rope_theta(model.config)
    seconds = module.metadata["capture_seconds"] = {}
    if "prefill" in functions:
        t0 = time.perf_counter()
        program = export_prefill(model)
        module.add_function(Importer(program, module, "prefill", _symbols(program)).run())
        seconds["prefill"] = time.perf_counter() - t0
    if "decode" in functions:
        t0 = time.perf_counter()
        program = export_decode(model, max_seq_len)
        layers = model.config.num_hidden_layers
        cache_names = {f"keys_{i}": f"k_cache_{i}" for i in range(layers)} | {f"values_{i}": f"v_cache_{i}" for i in range(layers)}
        module.add_function(Importer(program, module, "decode", _symbols(program), arg_names=cache_names).run())
        module.metadata["max_seq_len"] = max_seq_len
        seconds["decode"] = time.perf_counter() - t0
    return module


__all__ = ["bundled_configs", "import_model", "load_model", "load_tokenizer"]
