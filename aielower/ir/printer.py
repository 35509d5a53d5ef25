"""The IR text format (MLIR-like). ``parser.parse`` reads exactly what this writes.

```
weight @lm_head.weight : tensor<100x64xf32>

func @prefill(%input_ids: tensor<?bx?sxi64>) -> tensor<?bx?sx100xf32> {
  %0 = nn.embedding %input_ids, @model.embed_tokens.weight : tensor<?bx?sx64xf32>
  %1, %2 = tensor.split %0 {dim = -1, sizes = [32, 32]} : tensor<?bx?sx32xf32>, tensor<?bx?sx32xf32>
  return %1
}
```

The optional first line ``module @name attributes {...}`` carries the module's name and attributes
(``module.metadata``: the model config, rope_theta, ...). Values keep the names they were parsed with; unnamed
values are numbered in order.
Attributes equal to their declared default are left out.

With ``print_module(module, alias_attrs=True)`` a discardable attribute value that is long (at least
:data:`ALIAS_MIN_CHARS` printed) and used by more than one op is printed once, as an alias line ``#plan0 = {...}``
before the weights, and each use as ``#plan0`` (MLIR's attribute aliases; the 32 identical decoder layers of a
planned model share their ops' ``aie.plan``). The parser reads both forms.
"""

from __future__ import annotations

import re
from collections import Counter

from aielower import names as _names
from aielower.ir.attributes import PlainData, discardable_type, format_plain
from aielower.ir.core import AttrField, Op, Value, Weight
from aielower.ir.module import Function, Module


def format_attr(field: AttrField, value) -> str:
    return field.type.format(value)


ALIAS_MIN_CHARS = 256  # a discardable attribute value printed at least this long, used twice or more, is aliased


def _discardable(op: Op, memo: dict | None = None) -> list[tuple[str, str]]:
    """``(name, printed value)`` of ``op``'s discardable attributes, by name. ``memo`` (one printing's) keeps the
    text of each value object: the 32 decoder layers of a planned model share their plan objects."""
    memo = {} if memo is None else memo
    declared = {f.name for f in op.attr_fields}
    out = []
    for k, v in sorted(op.attributes.items()):
        if k in declared:
            continue
        text = memo.get((k, id(v)))
        if text is None:
            text = memo[(k, id(v))] = discardable_type(k).format(v)
        out.append((k, text))
    return out


def format_attrs(op: Op, aliases: dict[str, str] | None = None, memo: dict | None = None) -> str:
    """``{...}`` of ``op``'s attributes; a discardable value found in ``aliases`` (printed value -> alias name) is
    written as ``#name``."""
    parts = [
        f"{f.name} = {format_attr(f, op.attributes[f.name])}"
        for f in op.attr_fields
        if f.default is ... or op.attributes[f.name] != f.default
    ]
    aliases = aliases or {}
    parts += [f"{k} = #{aliases[text]}" if text in aliases else f"{k} = {text}" for k, text in _discardable(op, memo)]
    return "{" + ", ".join(parts) + "}" if parts else ""


def attribute_aliases(module: Module, memo: dict | None = None) -> dict[str, str]:
    """Printed value -> alias name of every discardable attribute value at least :data:`ALIAS_MIN_CHARS` long that
    more than one op of ``module`` carries, named after the attribute (``aie.plan`` -> ``plan0``, ``plan1``, ... in
    order of first use)."""
    uses: Counter = Counter()
    first: dict[str, str] = {}
    for fn in module.functions.values():
        for op in fn.ops:
            for key, text in _discardable(op, memo):
                if len(text) >= ALIAS_MIN_CHARS:
                    uses[text] += 1
                    first.setdefault(text, key)
    aliases: dict[str, str] = {}
    numbers: Counter = Counter()
    taken: set[str] = set()
    for text, key in first.items():
        if uses[text] > 1:
            stem = re.sub(r"[^A-Za-z0-9_]", "_", key.rsplit(".", 1)[-1])
            if not re.match(r"[A-Za-z_]", stem):  # an alias name starts with a letter or '_' (the parser's rule)
                stem = "attr_" + stem
            name = f"{stem}{numbers[stem]}"
            while name in taken:  # e.g. the 11th 'plan' (plan10) and the first 'plan1'
                numbers[stem] += 1
                name = f"{stem}{numbers[stem]}"
            numbers[stem] += 1
            taken.add(name)
            aliases[text] = name
    return aliases


class Namer:
    """Gives every value of a function a unique printed name."""

    def __init__(self, fn: Function):
        self.names: dict[int, str] = {}
        taken: set[str] = set()
        values: list[Value] = list(fn.args) + [r for o in fn.ops for r in o.results]
        for v in values:
            hint = v.name_hint
            if hint and _names.is_valid("value", hint) and hint not in taken:
                self.names[id(v)] = hint
                taken.add(hint)
        counter = 0
        for v in values:
            if id(v) in self.names:
                continue
            while str(counter) in taken:
                counter += 1
            self.names[id(v)] = str(counter)
            taken.add(str(counter))
            counter += 1

    def __call__(self, v: Value) -> str:
        if isinstance(v, Weight):
            return f"@{v.name}"
        try:
            return f"%{self.names[id(v)]}"
        except KeyError:
            return f"%<undefined {v.type}>"


def print_op(op: Op, name: Namer, aliases: dict[str, str] | None = None, memo: dict | None = None) -> str:
    results = ", ".join(name(r) for r in op.results)
    text = f"{results} = {op.name}"
    if op.operands:
        text += " " + ", ".join(name(v) for v in op.operands)
    attrs = format_attrs(op, aliases, memo)
    if attrs:
        text += " " + attrs
    text += " : " + ", ".join(str(r.type) for r in op.results)
    return text


def print_function(fn: Function, aliases: dict[str, str] | None = None, memo: dict | None = None) -> str:
    name = Namer(fn)
    args = ", ".join(f"{name(a)}: {a.type}" for a in fn.args)
    types = [str(t) for t in fn.result_types]
    ret = types[0] if len(types) == 1 else "(" + ", ".join(types) + ")"
    lines = [f"func @{fn.name}({args}) -> {ret} {{"]
    lines += [f"  {print_op(o, name, aliases, memo)}" for o in fn.ops]
    lines.append("  return " + ", ".join(name(v) for v in fn.results))
    lines.append("}")
    return "\n".join(lines)


def print_module_header(module: Module) -> str:
    """``module @name attributes {...}``: the module's name and attributes (``module.metadata``), so that a dump
    parsed back runs the passes that read them (fuse-attention's rope_theta, the AIE planner's max_seq_len) the same
    way. Left out for an unnamed module without attributes."""
    if module.name == "module" and not module.metadata:
        return ""
    text = f"module @{module.name}"
    if module.metadata:
        text += " attributes " + format_plain(PlainData.coerce(module.metadata, "module attributes"))
    return text


def print_module(module: Module, *, alias_attrs: bool = False) -> str:
    """The module's text; with ``alias_attrs``, long discardable attribute values used more than once are printed
    once as aliases (module docstring)."""
    blocks = []
    header = print_module_header(module)
    if header:
        blocks.append(header)
    memo: dict = {}  # (attribute, id(value)) -> text, for this printing (the values stay alive in the module)
    aliases = attribute_aliases(module, memo) if alias_attrs else {}
    if aliases:
        blocks.append("\n".join(f"#{name} = {text}" for text, name in aliases.items()))
    if module.weights:
        blocks.append("\n".join(f"weight @{w.name} : {w.type}" for w in module.weights.values()))
    blocks += [print_function(f, aliases, memo) for f in module.functions.values()]
    return "\n\n".join(blocks) + "\n"


__all__ = ["ALIAS_MIN_CHARS", "attribute_aliases", "format_attr", "format_plain", "print_function", "print_module",
           "print_module_header", "print_op"]
