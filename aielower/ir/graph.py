"""A read-only networkx view of a function's dataflow, for analyses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aielower.ir.core import Weight
from aielower.ir.module import Function, Module

if TYPE_CHECKING:
    import networkx as nx


def to_networkx(target: Function | Module) -> nx.MultiDiGraph:
    """Nodes are ops (key: ``"fn:index"``), arguments (``"fn:%name"``), weights (``"@name"``)
    and returns (``"fn:return"``); an edge runs from producer to consumer per use and
    carries the value's type. The graph is frozen: mutate the IR, not the view."""
    import networkx as nx  # here, not at import: networkx costs more than the rest of aielower.ir

    g = nx.MultiDiGraph()
    fns = target.functions.values() if isinstance(target, Module) else [target]
    for fn in fns:
        keys: dict[int, str] = {}
        for a in fn.args:
            keys[id(a)] = f"{fn.name}:%{a.name_hint}"
            g.add_node(keys[id(a)], kind="arg", type=str(a.type))

        def key(v):
            if isinstance(v, Weight):
                g.add_node(f"@{v.name}", kind="weight", type=str(v.type))
                return f"@{v.name}"
            return keys[id(v)]

        for i, op in enumerate(fn.ops):
            node = f"{fn.name}:{i}"
            g.add_node(node, kind="op", op=op.name, attributes=dict(op.attributes), function=fn.name)
            for v in op.operands:
                g.add_edge(key(v), node, type=str(v.type))
            for r in op.results:
                keys[id(r)] = node
        ret = f"{fn.name}:return"
        g.add_node(ret, kind="return", function=fn.name)
        for v in fn.results:
            g.add_edge(key(v), ret, type=str(v.type))
    return nx.freeze(g)
