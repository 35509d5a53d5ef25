"""Capture by stamping: export a one-layer twin of the model, then repeat its decoder layer.

The decoder layers of a Qwen2 model are identical up to their weights (and, in ``decode``, their KV caches), so
``torch.export`` of all of them repeats the same work: for the 7B it is most of the ~40 s a capture takes. Here the
model is exported with ``num_hidden_layers = 1`` (a twin on the ``meta`` device: no weights are made), and the ops the
importer attributes to ``model.layers.0`` (from each fx node's ``nn_module_stack``) form the layer block, which is
cloned once per layer with the layer's weights (``model.layers.N.*``) and caches (``k_cache_N`` / ``v_cache_N``).
The weights then take the model's own arrays by name.

Stamping checks what it relies on and says so when it does not hold (:class:`StampError`): every layer of the model
instance is the same module tree as layer 0 (no per-instance ``forward``, one attention type), the lm_head is tied to
the embedding exactly when the config says so, the block is contiguous, reads the residual stream through exactly
one value and writes it through exactly one, and the weights it names exist in the model with the same shapes. ``import_model`` then captures the whole model instead. Tests compare stamped and
full captures op for op on tiny models (MHA, GQA, tied embeddings, odd sizes).
"""

from __future__ import annotations

import copy
import re

from aielower.errors import ModelError
from aielower.ir import Argument, Function, Module, Value, Weight
from aielower.ir.core import OpResult

_LAYER0 = re.compile(r"model\.layers\.0\.", re.ASCII)
_CACHE0 = re.compile(r"([kv])_cache_0", re.ASCII)


class StampError(ModelError):
    """The one-layer capture does not have the shape stamping needs (the caller captures every layer instead)."""


def check_stampable(model) -> None:
    """What stamping assumes of the model instance (not only of its config), or a StampError saying what differs:
    every decoder layer is the same module tree (same classes, no per-instance ``forward``), all of one attention
    type, and the lm_head shares the embedding's tensor exactly when the config says the embeddings are tied."""
    config = model.config
    layer_types = getattr(config, "layer_types", None) or []
    if len(set(layer_types)) > 1:
        raise StampError(f"the layers are of different types ({', '.join(sorted(set(layer_types)))})")
    try:
        layers = list(model.model.layers)
    except (AttributeError, TypeError):
        raise StampError("the model has no model.layers list") from None
    first = _tree(layers[0])
    for i, layer in enumerate(layers[1:], start=1):
        if _tree(layer) != first:
            raise StampError(f"model.layers.{i} differs from model.layers.0 ({type(layer).__name__} tree)")
    for name, sub in model.named_modules():
        if "forward" in vars(sub):
            raise StampError(f"{name or 'the model'} has a forward of its own instance")
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    tied = out is not None and emb is not None and out.weight is emb.weight
    if tied != bool(getattr(config, "tie_word_embeddings", False)):
        raise StampError(f"the lm_head {'shares' if tied else 'does not share'} the embedding's tensor, but the "
                         f"config says tie_word_embeddings={getattr(config, 'tie_word_embeddings', False)}")


def _tree(module) -> list[tuple[str, str, tuple]]:
    """The module tree of a layer: every submodule's path, class and parameter shapes (what its ops depend on)."""
    return [(name, f"{type(m).__module__}.{type(m).__qualname__}", repr(m.extra_repr()),
             tuple((p, tuple(t.shape)) for p, t in m.named_parameters(recurse=False)))
            for name, m in module.named_modules()]


def one_layer_twin(model):
    """The model's architecture with one decoder layer, on ``meta`` (no arrays): what is exported."""
    import torch

    check_stampable(model)
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = 1
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types[:1])
    dtype = next(model.parameters()).dtype
    with torch.device("meta"):
        twin = type(model)(config)
    twin = twin.to(dtype).eval()
    if getattr(config, "tie_word_embeddings", False):
        twin.tie_weights()  # as the model is: the lm_head reads the embedding's tensor
    return twin


def stamp_function(fn: Function, op_layers: dict[int, int | None], module: Module, layers: int) -> Function:
    """``fn`` (captured from the one-layer twin) with its layer block repeated for ``layers`` layers."""
    ops = list(fn.ops)
    tagged = [i for i, op in enumerate(ops) if op_layers.get(id(op)) == 0]
    if not tagged:
        raise StampError(f"@{fn.name}: no op is attributed to model.layers.0")
    first, last = tagged[0], tagged[-1]
    if any(op_layers.get(id(op)) != 0 for op in ops[first:last + 1]):
        raise StampError(f"@{fn.name}: the ops of model.layers.0 are not contiguous")
    block = ops[first:last + 1]
    inside = {id(r) for op in block for r in op.results}
    after = {id(op) for op in ops[last + 1:]}
    hidden_out = [r for op in block for r in op.results if any(id(u) in after for u in r.users)]
    if len(hidden_out) != 1:
        raise StampError(f"@{fn.name}: the layer block passes {len(hidden_out)} values to what follows it, not one")
    hidden_out = hidden_out[0]
    inputs = []
    for op in block:
        for v in op.operands:
            if id(v) not in inside and v not in inputs:
                inputs.append(v)
    hidden_in = [v for v in inputs if not isinstance(v, (Weight, Argument)) and v.type == hidden_out.type]
    if len(hidden_in) != 1:
        raise StampError(f"@{fn.name}: the layer block reads the residual stream through {len(hidden_in)} values")
    hidden_in = hidden_in[0]

    new = Function(fn.name)
    per_layer_args: dict[str, list[Argument]] = {}
    mapping: dict[int, Value] = {}
    for a in fn.args:
        m = _CACHE0.fullmatch(a.name_hint or "")
        if m is None:
            mapping[id(a)] = new.add_arg(a.name_hint, a.type)
        else:
            per_layer_args[a.name_hint] = [Argument(a.type, f"{m.group(1)}_cache_{i}") for i in range(layers)]
    # caches in the order the full capture has them: every k_cache_i, then every v_cache_i
    for prefix in ("k", "v"):
        for arg in per_layer_args.get(f"{prefix}_cache_0", []):
            new.args.append(arg)

    def clone(op, remap) -> None:
        operands = [remap(v) for v in op.operands]
        groups, i = {}, 0
        for field, values in op.operands_by_field():
            groups[field.name] = operands[i:i + len(values)]
            i += len(values)
        kwargs = {f.name: (g if f.variadic else (g[0] if g else None)) for f in op.operand_fields
                  for g in [groups[f.name]]}
        copy_ = type(op)(**kwargs, **op.attributes)
        new.ops.append(copy_)
        for old, fresh in zip(op.results, copy_.results):
            fresh.name_hint = old.name_hint
            mapping[id(old)] = fresh

    def same(v: Value) -> Value:
        return v if isinstance(v, Weight) else mapping[id(v)]

    for op in ops[:first]:
        clone(op, same)
    stream = mapping[id(hidden_in)]
    layer_outputs: list[dict[int, Value]] = []
    for layer in range(layers):
        def remap(v: Value, layer=layer):
            if v is hidden_in:
                return stream
            if isinstance(v, Weight):
                return _layer_weight(module, v, layer)
            if isinstance(v, Argument) and v.name_hint in per_layer_args:
                return per_layer_args[v.name_hint][layer]
            return mapping[id(v)]

        for op in block:
            clone(op, remap)
        stream = mapping[id(hidden_out)]
        layer_outputs.append({id(r): mapping[id(r)] for op in block for r in op.results})
    mapping[id(hidden_out)] = stream
    for op in ops[last + 1:]:
        clone(op, same)

    results: list[Value] = []
    cache_results: dict[str, list[Value]] = {"k": [], "v": []}
    for v in fn.results:
        if isinstance(v, OpResult) and id(v) in inside:
            kind = _cache_kind(v, fn)
            if kind is None:
                raise StampError(f"@{fn.name}: the layer block returns a value that is no KV cache")
            cache_results[kind] = [outs[id(v)] for outs in layer_outputs]
            continue
        results.append(same(v) if not isinstance(v, Argument) else mapping[id(v)])
    new.set_results(results + cache_results["k"] + cache_results["v"])
    fn.set_results([])  # the twin's function is dropped: its ops must not stay readers of the shared weights
    for op in ops:
        op.drop_operands()
    return new


def _cache_kind(value: OpResult, fn: Function) -> str | None:
    """``k`` or ``v``: which cache argument the returned value is the new version of (its type and position among
    the results say it: the one-layer capture returns (logits, k_cache_0', v_cache_0'))."""
    index = next(i for i, r in enumerate(fn.results) if r is value)
    cache_args = [a for a in fn.args if _CACHE0.fullmatch(a.name_hint or "")]
    if len(cache_args) != 2 or index not in (len(fn.results) - 2, len(fn.results) - 1):
        return None
    return "k" if index == len(fn.results) - 2 else "v"


def _layer_weight(module: Module, weight: Weight, layer: int) -> Weight:
    if not _LAYER0.match(weight.name):
        return weight
    name = _LAYER0.sub(f"model.layers.{layer}.", weight.name, count=1)
    known = module.weights.get(name)
    if known is not None:
        if known.type != weight.type:
            raise StampError(f"weight @{name} is {known.type}, layer 0's twin {weight.type}")
        return known
    return module.add_weight(name, weight.type)


def finish(module: Module, model) -> None:
    """Keep the weights the functions read, in the model's parameter-then-buffer order (the order torch.export lists
    them, so a full capture's), and give every weight the model's own array (None when the model is on ``meta``)."""
    import torch

    arrays = {name: t for name, t in model.named_parameters(remove_duplicate=False)}
    arrays.update({name: t for name, t in model.named_buffers(remove_duplicate=False)})
    used: dict[str, Weight] = {}
    for fn in module.functions.values():
        for op in fn.ops:
            for v in op.operands:
                if isinstance(v, Weight):
                    used.setdefault(v.name, v)
        for v in fn.results:
            if isinstance(v, Weight):
                used.setdefault(v.name, v)
    rank = {name: i for i, name in enumerate(arrays)}  # torch.export lists parameters, then buffers, in this order
    order = {name: used[name] for name in sorted(used, key=lambda n: rank.get(n, len(rank)))}
    for name, w in order.items():
        t = arrays.get(name)
        if t is None:
            raise StampError(f"the model has no tensor {name!r} that its one-layer twin reads")
        if tuple(t.shape) != tuple(w.type.shape):
            raise StampError(f"{name}: the model's tensor is {tuple(t.shape)}, the twin's {w.type}")
        w.data = None if t.is_meta else t.detach().to(torch.device("cpu")).numpy()
    module.weights = order
    module.derived = {}


__all__ = ["StampError", "finish", "one_layer_twin", "stamp_function"]
