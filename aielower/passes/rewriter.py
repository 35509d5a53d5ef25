"""Pattern rewriting: a pattern matches at a root op and replaces it through a Rewriter.

    class FuseSiluMul(RewritePattern):
        root = nn.Mul

        def match_and_rewrite(self, op, rw):
            gate = producer(op.lhs, nn.Silu)
            ...
            rw.replace_op(op, rw.insert(fused.SiluMul(x)).results)

The rewriter is the only thing that mutates functions in a pattern pass, so use lists
stay right; ops made dead by a rewrite are erased by the ``dce`` pass.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from aielower.errors import IRError
from aielower.ir import Function, Module, Op, TensorType, Value, Weight
from aielower.ir.core import OpResult
from aielower.passes.base import ModulePass


def producer(value: Value, *classes: type[Op]) -> Op | None:
    """The op defining ``value`` if it is an instance of one of ``classes`` (any op if none given)."""
    owner = value.owner if isinstance(value, OpResult) else None
    if owner is None or (classes and not isinstance(owner, classes)):
        return None
    return owner


def single_user(value: Value) -> bool:
    return len(value.users) == 1


def op_users(value: Value, *classes: type[Op]) -> list[Op]:
    """Distinct ops reading ``value`` (in first-use order), filtered by class if given."""
    users = [u for u in dict.fromkeys(value.users) if isinstance(u, Op)]
    return [u for u in users if not classes or isinstance(u, classes)]


def defined_before(fn: Function, values: Sequence[Value], anchor: Op) -> bool:
    """True when every value is available at ``anchor`` (an argument, a weight, or made earlier)."""
    position = {id(op): i for i, op in enumerate(fn.ops)}
    limit = position[id(anchor)]
    return all(not isinstance(v, OpResult) or position.get(id(v.op), limit) < limit for v in values)


class Rewriter:
    """Inserts, replaces and erases ops of one function; adds weights to the module."""

    def __init__(self, module: Module, fn: Function):
        self.module, self.fn = module, fn
        self.anchor: Op | None = None
        self.changed = False

    def insert(self, op: Op, before: Op | None = None) -> Op:
        """Insert ``op`` before ``before`` (default: the op being rewritten)."""
        anchor = before or self.anchor
        index = self.fn.ops.index(anchor) if anchor is not None else len(self.fn.ops)
        self.fn.ops.insert(index, op)
        self.changed = True
        return op

    def add(self, op: Op, before: Op | None = None) -> Value:
        return self.insert(op, before).result

    def replace_op(self, op: Op, new_values: Sequence[Value]) -> None:
        """Replace every use of ``op``'s results with ``new_values`` and erase ``op``."""
        if len(new_values) != len(op.results):
            raise IRError(f"replacing {op.name}: {len(op.results)} results, {len(new_values)} replacements")
        for old, new in zip(op.results, new_values):
            if old.type != new.type:
                raise IRError(f"replacing {op.name}: type {old.type} replaced by {new.type}")
            old.replace_all_uses_with(new)
        self.erase(op)

    def erase(self, op: Op) -> None:
        if any(r.users for r in op.results):
            raise IRError(f"cannot erase {op.name}: its results are still used")
        op.drop_operands()
        self.fn.ops.remove(op)
        self.changed = True

    def add_weight(self, name: str, type: Any, data: Any = None) -> Weight:
        """A new module weight; the name is made unique if taken."""
        base, n = name, 1
        while name in self.module.weights:
            n += 1
            name = f"{base}.{n}"
        return self.module.add_weight(name, type, data)

    def derived_weight(self, recipe: tuple, name: str, make) -> Weight:
        """The weight made by ``recipe`` (a hashable description of how it derives from
        others): reused if an earlier rewrite made it, else ``make()`` -> (type, data)."""
        known = self.module.derived.get(recipe)
        if known is not None and self.module.weights.get(known.name) is known:
            return known
        wtype, data = make()
        weight = self.add_weight(name, wtype, data)
        self.module.derived[recipe] = weight
        return weight

    def concat_weights(self, weights: Sequence[Value], name: str, axis: int = 0) -> Weight:
        """One weight holding ``weights`` concatenated along ``axis`` (shape-only if any is).
        Concatenating the same weights again (e.g. in another function) returns the same weight."""
        if not all(isinstance(w, Weight) for w in weights):
            raise IRError("concat_weights needs module weights")
        return self.derived_weight(("concat", axis, tuple(w.name for w in weights)), name,
                                   lambda: self._concat(weights, axis))

    @staticmethod
    def _concat(weights: Sequence[Weight], axis: int):
        types = [w.type for w in weights]
        if not all(isinstance(t, TensorType) for t in types):
            raise IRError("concat_weights needs dense weights")
        shape = list(types[0].shape)
        shape[axis] = sum(t.shape[axis] for t in types)
        datas = [w.data for w in weights]
        data = None if any(d is None for d in datas) else np.concatenate(datas, axis=axis)
        return TensorType(tuple(shape), types[0].dtype), data


class RewritePattern:
    """Subclass with ``root`` (the op class it starts from) and ``match_and_rewrite``."""

    root: ClassVar[type[Op]] = Op

    def match_and_rewrite(self, op: Op, rw: Rewriter) -> None:
        raise NotImplementedError


class PatternPass(ModulePass):
    """Applies ``patterns`` to every op of every function until nothing changes."""

    patterns: ClassVar[tuple[RewritePattern, ...]] = ()
    max_rounds: ClassVar[int] = 10

    def patterns_for(self, module: Module) -> Sequence[RewritePattern]:
        return self.patterns

    def run(self, module: Module) -> None:
        patterns = self.patterns_for(module)
        for fn in module.functions.values():
            for _ in range(self.max_rounds):
                rw = Rewriter(module, fn)
                for op in list(fn.ops):
                    if op not in fn.ops:  # erased by an earlier rewrite in this round
                        continue
                    for pattern in patterns:
                        if isinstance(op, pattern.root):
                            rw.anchor = op
                            pattern.match_and_rewrite(op, rw)
                            if op not in fn.ops:
                                break
                if not rw.changed:
                    break
        module.remove_unused_weights()
