"""Frontend: Hugging Face Qwen2 model -> torch.export -> aielower IR."""

from __future__ import annotations

from aielower.frontend.aten_to_ir import Importer
from aielower.frontend.capture import BATCH_SYMBOL, SEQ_SYMBOL, export_prefill
from aielower.frontend.models import bundled_configs, check_model, load_model
from aielower.ir import Module, Sym


def rope_theta(config) -> float:
    """The rotary base of a config (transformers 5 keeps it in ``rope_parameters``)."""
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta") or getattr(config, "rope_theta", 0.0) or 0.0)


def import_model(model, name: str | None = None) -> Module:
    """Capture ``model`` (a Qwen2ForCausalLM) into a Module with a ``prefill`` function."""
    check_model(model)
    program = export_prefill(model)
    module = Module(name or getattr(model.config, "name_or_path", None) or "qwen2")
    module.metadata["config"] = model.config.to_dict()
    module.metadata["rope_theta"] = rope_theta(model.config)
    ids = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == "input_ids")
    batch, seq = ids.meta["val"].shape
    symbols = {str(batch.node.expr): Sym(BATCH_SYMBOL), str(seq.node.expr): Sym(SEQ_SYMBOL)}
    fn = Importer(program, module, "prefill", symbols).run()
    module.add_function(fn)
    return module


__all__ = ["bundled_configs", "import_model", "load_model"]
