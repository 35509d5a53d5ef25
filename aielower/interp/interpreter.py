"""Running one IR function op by op on the registered implementations (``@impl``).

The reference backend's generated module runs a whole function in one call. What needs the values in between runs
this interpreter instead: AWQ calibration reads the input of every linear group and changes weights between two
groups; the AIE emulator runs the ops that carry an ``aie.plan`` on the emulated NPU and the rest here. It computes
what the generated module computes (fp32 numerics), bit for bit, over a :class:`Frame` that holds the live values of
one batch, and can stop at any op and resume later::

    interp = Interpreter(module, "prefill")
    frame = interp.start(input_ids)
    interp.run(frame, stop=index_of_some_op)      # ops [frame.pc, stop)
    x = frame[some_op.x]                          # a live value
    frame[some_op.x] = x / s                      # replace it (same shape and dtype)
    interp.run(frame)                             # to the end; frame.results

Weights are read when an op runs, so weights changed between two ``run`` calls take effect. Values are dropped
after their last use, as in generated code. Everything about an op that does not change between runs (its
callable, where its operands live, its attributes) is worked out once, when the interpreter is built, so a run
costs little more than the NumPy calls.

Changing how ops run: ``overrides={OpClass: fn}`` replaces the computation of every op of that class; ``fn``
receives what the op's step passes (:meth:`Interpreter.operands`): the operands in declaration order (a variadic
operand as a list; an absent optional operand left out), for a ``LinearLike`` op ``x, weight, bias or None`` and
then its epilogue operands, and the attributes as keywords. A subclass can instead override the hooks
:meth:`~Interpreter.evaluator` (the callable for one op), :meth:`~Interpreter.linear` (how a ``LinearLike`` op's
linear part runs) and :meth:`~Interpreter.weight` (the array a weight operand reads).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable, Mapping

import numpy as np

from aielower.errors import AielowerError, ModelError
from aielower.interp.ops import linear as dense_linear
from aielower.interp.ops import no_epilogue
from aielower.interp.registry import implementation_of
from aielower.ir import Module, QTensorType, Sym, Value, Weight
from aielower.ir.core import LinearLike, Op, WritesInPlace


class Frame:
    """The live values of one evaluation of a function (one batch): ``values`` maps ``id(value)`` to its array."""

    def __init__(self, values: dict[int, np.ndarray], symbols: dict[Sym, int]):
        self.values = values
        self.symbols = symbols
        self.pc = 0  # index of the next op to run
        self.results: list[np.ndarray] | None = None

    def __getitem__(self, value: Value) -> np.ndarray:
        try:
            return self.values[id(value)]
        except KeyError:
            raise AielowerError(f"{value!r} is not live at op {self.pc} of this frame") from None

    def __setitem__(self, value: Value, array: np.ndarray) -> None:
        old = self[value]
        if array.shape != old.shape or array.dtype != old.dtype:
            raise AielowerError(f"replacing {value!r}: {array.dtype} {array.shape} for {old.dtype} {old.shape}")
        self.values[id(value)] = array


class _Step:
    """One op, ready to run: ``fn(*[get(values) for get in getters], **kwargs)``, its results stored under
    ``results``, then the values in ``dead`` dropped. ``resolve`` (when attributes hold symbols) makes the keyword
    arguments for a frame's symbol sizes instead of ``kwargs``."""

    __slots__ = ("op", "fn", "getters", "kwargs", "resolve", "results", "dead")

    def __init__(self, op: Op, fn: Callable, getters: list[Callable], kwargs: dict[str, Any],
                 resolve: Callable[[dict], dict] | None, dead: list[int]):
        self.op, self.fn, self.getters, self.kwargs, self.resolve = op, fn, getters, kwargs, resolve
        self.results = [id(r) for r in op.results]
        self.dead = dead


class Interpreter:
    """Runs ``module.functions[function]`` op by op (see the module docs).

    ``overrides`` maps op classes to callables that replace their computation (same arguments as the op's step).
    """

    def __init__(self, module: Module, function: str = "prefill", *,
                 overrides: Mapping[type, Callable] | None = None):
        if function not in module.functions:
            raise AielowerError(f"no function @{function}; this module has {', '.join(module.functions) or 'none'}")
        self.module = module
        self.fn = module.functions[function]
        self.overrides = dict(overrides or {})
        self._dequantized: dict[str, tuple[Any, np.ndarray]] = {}
        dead = _dead_after(self.fn)
        self._steps = [self._step(op, dead[i]) for i, op in enumerate(self.fn.ops)]

    # -- running ------------------------------------------------------------------------------------------

    def start(self, *args) -> Frame:
        """A frame holding the function's arguments, at op 0."""
        if len(args) != len(self.fn.args):
            raise AielowerError(f"@{self.fn.name} takes {len(self.fn.args)} arguments, got {len(args)}")
        values, symbols = {}, {}
        for a, x in zip(self.fn.args, args):
            if not getattr(x, "device_resident", False):  # a value kept on a device (a KV cache) passes as it is
                x = np.asarray(x)
            if x.ndim != len(a.type.shape):
                raise AielowerError(f"argument %{a.name_hint} must have rank {len(a.type.shape)}, got shape {x.shape}")
            for d, n in zip(a.type.shape, x.shape):
                if isinstance(d, Sym):
                    symbols.setdefault(d, n)
            values[id(a)] = x
        return Frame(values, symbols)

    def run(self, frame: Frame, stop: int | None = None) -> Frame:
        """Run ops ``frame.pc .. stop - 1`` (to the end by default); at the end, fill ``frame.results``."""
        steps = self._steps
        stop = len(steps) if stop is None else stop
        if not frame.pc <= stop <= len(steps):
            raise AielowerError(f"cannot run @{self.fn.name} from op {frame.pc} to op {stop}")
        values, symbols = frame.values, frame.symbols
        i = frame.pc
        try:
            while i < stop:
                step = steps[i]
                kwargs = step.kwargs if step.resolve is None else step.resolve(symbols)
                out = step.fn(*[get(values) for get in step.getters], **kwargs)
                results = step.results
                if len(results) == 1:
                    values[results[0]] = out
                else:
                    for key, array in zip(results, out):
                        values[key] = array
                for key in step.dead:
                    del values[key]
                i += 1
        except Exception as error:
            error.add_note(f"while running op {i} ({steps[i].op.name}) of @{self.fn.name} in the interpreter")
            raise
        finally:
            frame.pc = i  # on an error: the op that raised
        if frame.pc == len(steps) and frame.results is None:
            frame.results = [self.weight(v) if isinstance(v, Weight) else frame[v] for v in self.fn.results]
        return frame

    def __call__(self, *args) -> list[np.ndarray]:
        """The function's results for ``args``."""
        return self.run(self.start(*args)).results

    # -- hooks ----------------------------------------------------------------------------------------------

    def weight(self, w: Weight) -> np.ndarray:
        """The array a weight operand reads: the module's data (a qtensor dequantized, cached while its data is
        the same object), read at run time so that changed weights take effect."""
        if w.data is None:
            raise ModelError(f"weight @{w.name} has no data (built on the meta device): nothing to run")
        if not isinstance(w.type, QTensorType):
            return w.data
        cached = self._dequantized.get(w.name)
        if cached is None or cached[0] is not w.data:
            cached = self._dequantized[w.name] = (w.data, w.data.dequantize())
        return cached[1]

    def linear(self, op: LinearLike) -> Callable:
        """``f(x, weight, bias) -> y``: the linear part of ``op`` (dense, on the array :meth:`weight` gives)."""
        return dense_linear

    def evaluator(self, op: Op) -> Callable:
        """The callable computing ``op`` from what its step passes (see :meth:`operands`): an override for its
        class, else its ``@impl`` (for a ``LinearLike`` op: :meth:`linear`, then the epilogue)."""
        for cls in type(op).__mro__:
            if cls in self.overrides:
                return self.overrides[cls]
        epilogue = implementation_of(op)
        if not isinstance(op, LinearLike):
            return epilogue
        linear = self.linear(op)
        if epilogue is no_epilogue:
            return lambda x, weight, bias, **attributes: linear(x, weight, bias)

        def linear_then_epilogue(x, weight, bias, *rest, **attributes):
            return epilogue(linear(x, weight, bias), *rest, **attributes)

        return linear_then_epilogue

    def operands(self, op: Op) -> list[tuple[str, list[Value | None], bool]]:
        """What the step of ``op`` passes positionally, as (operand name, values, variadic): the operand fields in
        declaration order, an absent optional one left out; for a ``LinearLike`` op its linear input, weight and
        bias (``[None]`` when absent) first, then the epilogue operands."""
        if isinstance(op, LinearLike):
            x_name, w_name, b_name = op.linear_fields
            bias = op.operand_group(b_name) if b_name else []
            head = [(x_name, [op.linear_input], False), (w_name, [op.linear_weight], False),
                    (b_name or "bias", bias or [None], False)]
            linear = {x_name, w_name, b_name}
            return head + [(f.name, group, f.variadic) for f, group in op.operands_by_field()
                           if f.name not in linear and (group or f.variadic)]
        return [(f.name, group, f.variadic) for f, group in op.operands_by_field() if group or f.variadic]

    # -- preparing ------------------------------------------------------------------------------------------

    def _step(self, op: Op, dead: list[int]) -> _Step:
        trait = op.get_trait(WritesInPlace)
        written = set(trait.written_operands(op)) if trait else set()
        getters = []
        for name, group, variadic in self.operands(op):
            gets = [self._getter(v, name in written) for v in group]
            if variadic:
                getters.append(lambda values, gets=gets: [get(values) for get in gets])
            else:
                getters.append(gets[0])
        static, symbolic = {}, {}
        for f in op.attr_fields:
            value = op.attributes[f.name]
            if _has_symbol(value):
                symbolic[f.name] = _resolver(value)
            else:
                static[f.name] = _resolve(value, {})  # lists as tuples, as generated code writes them
        return _Step(op, self.evaluator(op), getters, static, _kwargs_resolver(static, symbolic), dead)

    def _getter(self, v: Value | None, copy: bool) -> Callable:
        """values -> the array ``v`` holds now (a copy when the op writes into it: the caller may still read it;
        a device-resident value, such as the AIE runtime's KV cache, is not an array and is updated where it is)."""
        if v is None:
            return lambda values: None
        if isinstance(v, Weight):
            return lambda values: self.weight(v)
        get = itemgetter(id(v))
        return (lambda values: _copy_array(get(values))) if copy else get


def _copy_array(x):
    return np.copy(x) if isinstance(x, np.ndarray) else x


def _dead_after(fn) -> list[list[int]]:
    """Per op: the values to drop after it (operands read for the last time there, and unused results)."""
    last_use: dict[int, int] = {}
    for i, op in enumerate(fn.ops):
        for v in op.operands:
            last_use[id(v)] = i
    returned = {id(v) for v in fn.results}
    dead: list[list[int]] = [[] for _ in fn.ops]
    for i, op in enumerate(fn.ops):
        for v in dict.fromkeys(op.operands):  # a value may be read twice by one op
            if not isinstance(v, Weight) and last_use[id(v)] == i and id(v) not in returned:
                dead[i].append(id(v))
        dead[i] += [id(r) for r in op.results if id(r) not in last_use and id(r) not in returned]
    return dead


def _has_symbol(value) -> bool:
    if isinstance(value, Sym):
        return True
    return isinstance(value, (tuple, list)) and any(_has_symbol(v) for v in value)


def _kwargs_resolver(static: dict, symbolic: dict[str, Callable]) -> Callable[[dict], dict] | None:
    """symbols -> the keyword arguments of a step whose attributes hold symbols; None when none do."""
    if not symbolic:
        return None
    items = tuple(symbolic.items())

    def resolve(symbols):
        kwargs = dict(static)
        for name, value_for in items:
            kwargs[name] = value_for(symbols)
        return kwargs

    return resolve


def _resolver(value) -> Callable[[dict], Any]:
    """symbols -> ``value`` with its symbols replaced by their sizes (a flat tuple of dims, the common case, without
    walking it)."""
    if isinstance(value, Sym):
        return itemgetter(value)
    if isinstance(value, (tuple, list)) and not any(isinstance(v, (tuple, list)) for v in value):
        template = list(value)
        slots = [(i, v) for i, v in enumerate(value) if isinstance(v, Sym)]

        def resolve(symbols):
            out = template.copy()
            for i, sym in slots:
                out[i] = symbols[sym]
            return tuple(out)

        return resolve
    return lambda symbols: _resolve(value, symbols)


def _resolve(value, symbols: dict[Sym, int]):
    if isinstance(value, Sym):
        return symbols[value]
    if isinstance(value, (tuple, list)):
        return tuple(_resolve(v, symbols) for v in value)
    return value


__all__ = ["Frame", "Interpreter"]
