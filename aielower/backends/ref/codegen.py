"""IR module -> Python source using NumPy, rendered from a jinja2 template.

The generated module imports what each op kind computes (its ``@impl``, :mod:`aielower.interp`; see
:mod:`aielower.backends.ref.imports`) and holds one Python function per IR function, with one call per op (two for a
``LinearLike`` op with an epilogue: the linear, then the epilogue). Values are deleted after their last use so that
peak memory stays near torch's, and operands an op writes into are copied only when still read
(:mod:`aielower.backends.ref.in_place`). With ``numerics="aie"`` (see :mod:`aielower.backends.ref.numerics`) the calls
of the ops the NPU runs as kernels round their operands and results to bf16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aielower import names as _names
from aielower.backends.ref.imports import Kernels, is_identifier, kernel_name
from aielower.backends.ref.in_place import InPlacePlanner, written_operands
from aielower.backends.ref.numerics import (
    AIE_KERNEL_KEYWORDS,
    AIE_KERNEL_OPS,
    DEVICE_EPILOGUE_OPS,
    VALUE_PRESERVING_OPS,
    bf16_weight_names,
    check_numerics,
    is_float,
    runs_as_kernel,
)
from aielower.errors import CompileError
from aielower.ir import Function, Module, Sym, Value, Weight
from aielower.ir.core import LinearLike
from aielower.ir.types import DTYPES

from aielower.templating import environment

_ENV = environment("aielower.backends.ref")


def sym_var(sym: Sym) -> str:
    return f"sym_{sym.name}"


def py_literal(value) -> str:
    """Python source for an attribute value (symbols become their run-time variables)."""
    if isinstance(value, Sym):
        return sym_var(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(py_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else f"float({str(value)!r})"
    if isinstance(value, str):
        return _names.python_string(value)
    if isinstance(value, (bool, int)) or value is None:
        return repr(value)
    raise CompileError(f"internal: no Python literal for attribute value {value!r} ({type(value).__name__})")


@dataclass
class Arg:
    """One argument of a call: a variable, ``W['name']``, a list of them, or ``keyword=literal``."""

    value: str
    keyword: str | None = None  # rendered as ``keyword=value``
    copy: bool = False  # pass a copy: the kernel writes into it
    bf16: bool = False  # pass it rounded to bf16 (numerics="aie")


@dataclass
class Line:
    results: list[str]
    kernel: str
    args: list[Arg]
    dead: list[str] = field(default_factory=list)
    rounded: list[str] = field(default_factory=list)  # results rounded to bf16 after the call


@dataclass
class FunctionCode:
    name: str  # the IR name (the key of FUNCTIONS in the generated module)
    pyname: str  # the Python identifier of its def
    signature: str
    args: list[str]
    symbols: list[dict]
    body: list[Line]
    results: list[str]


class _Names:
    def __init__(self):
        self.names: dict[int, str] = {}

    def define(self, v: Value, name: str) -> str:
        self.names[id(v)] = name
        return name

    def __call__(self, v: Value) -> str:
        if isinstance(v, Weight):
            return f"W[{_names.python_string(v.name)}]"
        return self.names[id(v)]


class _FunctionWriter:
    """One IR function -> its :class:`FunctionCode` (the lines of its body, one or two per op)."""

    def __init__(self, fn: Function, numerics: str, bf16_weights: set[str], kernels: Kernels):
        self.fn, self.kernels, self.bf16_weights = fn, kernels, bf16_weights
        self.aie = numerics == "aie"
        self.names = _Names()
        self.exact: set[int] = set()  # values already bf16 (aie numerics): rounded kernel results and copies of them
        self.counter = 0
        self.last_use: dict[int, int] = {}
        for i, op in enumerate(fn.ops):
            for v in op.operands:
                if not isinstance(v, Weight):
                    self.last_use[id(v)] = i
        self.returned = {id(v) for v in fn.results}
        self.in_place = InPlacePlanner(fn) if any(written_operands(op) for op in fn.ops) else None

    def is_bf16(self, v: Value) -> bool:
        return v.name in self.bf16_weights if isinstance(v, Weight) else id(v) in self.exact

    def fresh(self) -> str:
        name = f"v{self.counter}"
        self.counter += 1
        return name

    def write(self, pyname: str) -> FunctionCode:
        fn, names = self.fn, self.names
        # Argument names are the IR's where Python allows them as they are; others are mangled (arg_lambda,
        # arg_bf16), and names the generated module defines or imports are never shadowed (see aielower.names).
        taken: set[str] = set(self.kernels.names)
        args = [names.define(a, _names.python_identifier(a.name_hint, "arg", taken)
                             if _names.is_valid("value", a.name_hint) and not a.name_hint[0].isdigit()
                             else _names.python_identifier(f"arg_{i}", "arg", taken))
                for i, a in enumerate(fn.args)]
        symbols, seen = [], set()
        for a, var in zip(fn.args, args):
            for axis, d in enumerate(a.type.shape):
                if isinstance(d, Sym) and d not in seen:
                    seen.add(d)
                    symbols.append({"var": sym_var(d), "source": var, "axis": axis})
        body: list[Line] = []
        for i, op in enumerate(fn.ops):
            body += self.linear_like(i, op) if isinstance(op, LinearLike) else [self.op_line(i, op)]
        signature = f"@{fn.name}({', '.join(str(a.type) for a in fn.args)}) -> {', '.join(str(t) for t in fn.result_types)}"
        return FunctionCode(fn.name, pyname, signature, args, symbols, body, [names(v) for v in fn.results])

    # -- lines ----------------------------------------------------------------------------------------------

    def op_line(self, i: int, op) -> Line:
        """``results = kernel(operands..., attributes...)`` for an op that is one call."""
        kernel = self.aie and op.name in AIE_KERNEL_OPS
        results = [self.names.define(r, self.fresh()) for r in op.results]
        writes = written_operands(op)
        args = []
        for f, group in op.operands_by_field():
            if f.variadic:
                args.append(Arg("[" + ", ".join(self.names(v) for v in group) + "]"))
            elif group:
                v = group[0]
                copy = f.name in writes and not self.in_place.safe(op, i, v)
                # AIE numerics: a kernel reads and writes bf16 memory, so operands not known to be bf16 are
                # rounded. The KV caches are not (that would copy the whole cache per layer): they start at zero
                # and only ever receive bf16 values.
                args.append(Arg(self.names(v), copy=copy, bf16=self.rounds(kernel, v) and f.name not in writes))
        args += self.attributes(op, kernel)
        aliased = op.aliased_results()
        dead = self.dead(i, op.operands, op.results)
        rounded = [results[k] for k, r in enumerate(op.results)
                   if kernel and k not in aliased and is_float(r) and results[k] not in dead]
        if kernel or (self.aie and op.name in VALUE_PRESERVING_OPS
                      and all(self.is_bf16(v) for v in op.operands if is_float(v))):
            self.exact.update(id(r) for r in op.results)
        return Line(results, self.kernels.call(op), args, dead, rounded)

    def linear_like(self, i: int, op: LinearLike) -> list[Line]:
        """``y = linear(x, W, bias)``, then ``results = epilogue(y, other operands..., attributes...)`` unless the
        op is a plain linear (then ``y`` is its result). With AIE numerics the linear is a kernel (bf16 in and out),
        the epilogue a host op, or part of the kernel (``DEVICE_EPILOGUE_OPS``: its results are bf16 too)."""
        kernel = self.aie and runs_as_kernel(op)
        plain = self.kernels.plain_linear(op)
        linear_operands = [v for v in (op.linear_input, op.linear_weight, op.linear_bias) if v is not None]
        rest = op.epilogue_operands()
        args = [Arg(self.names(v), bf16=self.rounds(kernel, v)) for v in linear_operands]
        if plain:
            y = self.names.define(op.result, self.fresh())
            dead = self.dead(i, op.operands, op.results)
        else:
            y = self.fresh()
            dead = self.dead(i, [v for v in linear_operands if v not in rest], ())
        rounded = [y] if kernel and y not in dead else []
        if kernel and plain:
            self.exact.add(id(op.result))
        line = Line([y], self.kernels.linear(op), args, dead, rounded)
        if plain:
            return [line]
        results = [self.names.define(r, self.fresh()) for r in op.results]
        writes = written_operands(op)
        epilogue = [Arg(self.names(v), copy=f.name in writes and not self.in_place.safe(op, i, v))
                    for f, group in op.operands_by_field() if f.name not in set(op.linear_fields) for v in group]
        args = [Arg(y)] + epilogue + self.attributes(op, False)
        on_device = kernel and op.name in DEVICE_EPILOGUE_OPS  # the kernel stores the epilogue's result in bf16
        dead = self.dead(i, rest, op.results)
        rounded = [results[k] for k, r in enumerate(op.results) if on_device and is_float(r) and results[k] not in dead]
        if on_device:
            self.exact.update(id(r) for r in op.results)
        return [line, Line(results, self.kernels.call(op), args, [y] + dead, rounded)]

    # -- pieces ---------------------------------------------------------------------------------------------

    def rounds(self, kernel: bool, v: Value) -> bool:
        return kernel and is_float(v) and not self.is_bf16(v)

    def attributes(self, op, kernel: bool) -> list[Arg]:
        args = []
        for f in op.attr_fields:
            if not is_identifier(f.name):
                raise CompileError(f"{op.name}: attribute name {f.name!r} cannot be a Python keyword argument")
            args.append(Arg(py_literal(op.attributes[f.name]), keyword=f.name))
        if kernel:
            args += [Arg(expr, keyword=k) for k, expr in AIE_KERNEL_KEYWORDS.get(op.name, {}).items()]
        return args

    def dead(self, i: int, operands, results) -> list[str]:
        """Variables to delete after op ``i``: ``operands`` read for the last time, ``results`` nobody reads."""
        names = self.names
        out = {names(v) for v in operands
               if not isinstance(v, Weight) and self.last_use.get(id(v)) == i and id(v) not in self.returned}
        return sorted(out) + [names(r) for r in results if id(r) not in self.last_use and id(r) not in self.returned]


def _python_function_names(module: Module, taken: set[str]) -> dict[str, str]:
    """IR function name -> the identifier of its def: the name itself unless Python or the generated module uses
    it (``@lambda`` -> ``fn_lambda``, ``@np`` -> ``fn_np``)."""
    taken = set(taken)
    return {name: _names.python_identifier(_names.check("function", name), "fn", taken) for name in module.functions}


def generate(module: Module, numerics: str = "fp32") -> str:
    """Python source of the module: ``def <function>(*args, W)`` per IR function.

    ``numerics`` is ``"fp32"`` or ``"aie"`` (see :mod:`aielower.backends.ref.numerics`);
    an ``"aie"`` source expects the weights rounded as ``RefCompiledModel(numerics="aie")`` loads them.
    An op without an implementation is an IRError that says how to register one (``@aielower.interp.impl``).
    """
    check_numerics(numerics)
    kernels = Kernels()
    bf16_weights = bf16_weight_names(module) if numerics == "aie" else set()
    for fn in module.functions.values():  # bind every kernel first: argument names must not shadow them
        for op in fn.ops:
            if isinstance(op, LinearLike):
                kernels.linear(op)
            if not Kernels.plain_linear(op):
                kernels.call(op)
    pynames = _python_function_names(module, kernels.names)
    functions = [_FunctionWriter(fn, numerics, bf16_weights, kernels).write(pynames[fn.name])
                 for fn in module.functions.values()]
    return _ENV.get_template("module.py.j2").render(
        module_name=module.name,
        dtypes={k: v for k, v in DTYPES.items() if v is not None},
        imports=kernels.grouped(),
        functions=functions,
        numerics=numerics,
        aie_kernels=sorted(AIE_KERNEL_OPS),
    )


__all__ = ["generate", "kernel_name", "py_literal"]
