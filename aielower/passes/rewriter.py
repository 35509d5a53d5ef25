"""Pattern rewriting: a pattern matches at a root op and replaces it through a Rewriter.

    class FuseSiluMul(RewritePattern):
        root = nn.Mul

        def match_and_rewrite(self, op, rw):
            gate = producer(op.lhs, nn.Silu)
            ...
            rw.replace_op(op, rw.insert(fused.SiluMul(x)).results)

The rewriter is the only thing that mutates functions in a pattern pass, so use lists
stay right; ops made dead by a rewrite are erased by the ``dce`` pass.

The driver is a worklist (as MLIR's greedy driver and xDSL's ``PatternRewriteWalker``): every op is visited once in
program order, and an op is visited again only when a rewrite may have given it a new match (it was inserted, its
operands were replaced, or one of its users was erased). Inserting and erasing are constant time (the function's
ops are an :class:`~aielower.ir.oplist.OpList`), so a pass costs time linear in the number of ops and rewrites.
There is no round limit: a set of patterns that keeps rewriting forever (two patterns undoing each other) is stopped
with a CompileError naming the pattern, after far more rewrites than any terminating set makes.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar, Sequence

from aielower.errors import CompileError, IRError
from aielower.ir import Function, Module, Op, TensorType, Value, Weight
from aielower.ir.core import Commutative, OpResult
from aielower.passes.base import ModulePass


def producer(value: Value, *classes: type[Op]) -> Op | None:
    """The op defining ``value`` if it is an instance of one of ``classes`` (any op if none given)."""
    owner = value.owner if isinstance(value, OpResult) else None
    if owner is None or (classes and not isinstance(owner, classes)):
        return None
    return owner


def match_commutative(op: Op) -> tuple[tuple[Value, Value], ...]:
    """The operand orders a pattern should try on a :class:`~aielower.ir.core.Commutative` binary op:
    ``(lhs, rhs)`` and ``(rhs, lhs)`` (once when both are the same value)::

        for gate, up in match_commutative(op): ...
    """
    if not op.has_trait(Commutative) or len(op.operands) != 2:
        raise IRError(f"match_commutative needs a binary op with the Commutative trait, got {op.name}")
    a, b = op.operands
    return ((a, b),) if a is b else ((a, b), (b, a))


def single_user(value: Value) -> bool:
    return len(value.users) == 1


def op_users(value: Value, *classes: type[Op]) -> list[Op]:
    """Distinct ops reading ``value`` (in first-use order), filtered by class if given."""
    users = [u for u in dict.fromkeys(value.users) if isinstance(u, Op)]
    return [u for u in users if not classes or isinstance(u, classes)]


def defined_before(fn: Function, values: Sequence[Value], anchor: Op) -> bool:
    """True when every value is available at ``anchor`` (an argument, a weight, or made earlier)."""
    return all(not isinstance(v, OpResult) or (v.op in fn.ops and fn.ops.before(v.op, anchor)) for v in values)


class Rewriter:
    """Inserts, replaces and erases ops of one function; adds weights to the module.

    ``changed`` says whether anything changed since it was last reset; ``on_insert`` / ``on_touch`` (set by the
    worklist driver) hear about new ops and about ops that may match anew."""

    def __init__(self, module: Module, fn: Function):
        self.module, self.fn = module, fn
        self.anchor: Op | None = None
        self.changed = False
        self.on_touch = None  # callable(op): op may have a new match

    def _touch(self, op) -> None:
        if self.on_touch is not None and isinstance(op, Op):
            self.on_touch(op)

    def insert(self, op: Op, before: Op | None = None) -> Op:
        """Insert ``op`` before ``before`` (default: the op being rewritten; the end when there is none)."""
        self.fn.ops.insert_before(before or self.anchor, op)
        self.changed = True
        self._touch(op)
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
            for user in old.users:
                self._touch(user)
            old.replace_all_uses_with(new)
        self.erase(op)

    def erase(self, op: Op) -> None:
        if any(r.users for r in op.results):
            raise IRError(f"cannot erase {op.name}: its results are still used")
        for v in op.operands:  # their producers lose a user: single-user patterns may match now
            if isinstance(v, OpResult):
                self._touch(v.op)
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
        if any(d is None for d in datas):
            data = None
        else:
            import numpy as np

            data = np.concatenate(datas, axis=axis)
        return TensorType(tuple(shape), types[0].dtype), data


class RewritePattern:
    """Subclass with ``root`` (the op class it starts from) and ``match_and_rewrite``."""

    root: ClassVar[type[Op]] = Op

    def match_and_rewrite(self, op: Op, rw: Rewriter) -> None:
        raise NotImplementedError


class PatternPass(ModulePass):
    """Applies ``patterns`` to the ops of every function with the worklist driver (see the module docs); returns
    the number of rewrites. ``patterns_for(module)`` may build patterns from the module (its attributes)."""

    patterns: ClassVar[tuple[RewritePattern, ...]] = ()
    # Rewrites allowed per op of the function before the driver calls the patterns non-terminating.
    rewrites_per_op_limit: ClassVar[int] = 64

    def patterns_for(self, module: Module) -> Sequence[RewritePattern]:
        return self.patterns

    def run(self, module: Module) -> int:
        patterns = tuple(self.patterns_for(module))
        total = sum(self.rewrite_function(module, fn, patterns) for fn in module.functions.values())
        module.remove_unused_weights()
        return total

    def rewrite_function(self, module: Module, fn: Function, patterns: Sequence[RewritePattern]) -> int:
        by_class: dict[type, tuple[RewritePattern, ...]] = {}
        queued: set[int] = set()
        worklist: deque[Op] = deque()

        def push(op: Op) -> None:
            if id(op) not in queued:
                queued.add(id(op))
                worklist.append(op)

        for op in fn.ops:
            push(op)
        rw = Rewriter(module, fn)
        rw.on_touch = push
        limit = self.rewrites_per_op_limit * (len(fn.ops) + 16)
        rewrites = 0
        while worklist:
            op = worklist.popleft()
            queued.discard(id(op))
            if op not in fn.ops:  # erased by an earlier rewrite
                continue
            matching = by_class.get(type(op))
            if matching is None:
                matching = by_class[type(op)] = tuple(p for p in patterns if isinstance(op, p.root))
            for pattern in matching:
                rw.anchor, rw.changed = op, False
                pattern.match_and_rewrite(op, rw)
                if not rw.changed:
                    continue
                rewrites += 1
                if rewrites > limit:
                    raise CompileError(f"pass '{self.name}': more than {limit:,} rewrites on @{fn.name} "
                                       f"({len(fn.ops):,} ops); the patterns do not terminate (last: "
                                       f"{type(pattern).__name__} on {op.name})")
                if op in fn.ops:
                    push(op)  # changed in place or still there: look at it again
                break
        return rewrites
