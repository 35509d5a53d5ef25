"""IR module -> Python source using NumPy, rendered from jinja2 templates.

The module template lays out one kernel function per op kind used (each from
``templates/kernels/<op name>.py.j2``) and one Python function per IR function, with
one kernel call per op. Values are deleted after their last use so that peak memory
stays near torch's. With ``numerics="aie"`` (see :mod:`aielower.backends.ref.numerics`) the
calls of the ops the NPU runs as kernels round their operands and results to bf16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aielower import names as _names
from aielower.backends.ref.numerics import (
    AIE_KERNEL_OPS,
    VALUE_PRESERVING_OPS,
    bf16_weight_names,
    check_numerics,
    is_float,
)
from aielower.errors import CompileError
from aielower.ir import Function, Module, Sym, Value, Weight
from aielower.ir.types import DTYPES

from aielower.templating import environment

_ENV = environment("aielower.backends.ref")


# Operands a kernel writes into (its result aliases them); code generation passes a copy
# unless the write is safe (see ``InPlacePlanner``).
IN_PLACE_OPERANDS = {
    "tensor.index_copy": ("x",),
    "fused.attention": ("k_cache", "v_cache"),
}
# Results that may share memory with an operand: result index -> operand name. Views
# (VIEW_OPS) may also be read-only (broadcasts), so they are never written into.
VIEW_OPS = frozenset({"tensor.reshape", "tensor.transpose", "tensor.permute", "tensor.expand", "tensor.slice",
                      "tensor.split"})
WRITTEN_RESULTS = {"tensor.index_copy": {0: "x"}, "fused.attention": {1: "k_cache", 2: "v_cache"}}


def aliased_results(op) -> dict[int, str]:
    if op.name in VIEW_OPS:
        return {i: "x" for i in range(len(op.results))}
    return WRITTEN_RESULTS.get(op.name, {})


class InPlacePlanner:
    """Decides where a kernel may write into an operand without a copy.

    Values that may share memory (views, and results of in-place writes) have one root
    buffer. Writing into ``v`` at op ``i`` is safe when ``v`` is no view (a function
    argument, or the result of a kernel that returns fresh or written-in-place memory)
    and no other value of the same buffer is read after op ``i`` or returned. Function
    arguments may be written: ``decode`` updates the caches it is given (the runtime
    passes caches it owns).
    """

    def __init__(self, fn: Function):
        self.root: dict[int, int] = {id(a): id(a) for a in fn.args}
        self.views: set[int] = set()
        for op in fn.ops:
            for i, r in enumerate(op.results):
                source = aliased_results(op).get(i)
                base = op._groups[source][0] if source else r
                self.root[id(r)] = self.root.get(id(base), id(base))
                if op.name in VIEW_OPS:
                    self.views.add(id(r))
        self.members: dict[int, list[Value]] = {}
        for v in list(fn.args) + [r for op in fn.ops for r in op.results]:
            self.members.setdefault(self.root[id(v)], []).append(v)
        self.last_read: dict[int, float] = {}
        for i, op in enumerate(fn.ops):
            for v in op.operands:
                self.last_read[id(v)] = i
        for v in fn.results:
            self.last_read[id(v)] = float("inf")

    def safe(self, op, index: int, v: Value) -> bool:
        if isinstance(v, Weight) or id(v) in self.views or op.operands.count(v) > 1:
            return False
        own = {id(r) for r in op.results}
        return all(id(w) in own or self.last_read.get(id(w), -1) <= index for w in self.members[self.root[id(v)]])


# Kernels that call other kernels.
KERNEL_DEPENDENCIES = {
    "fused.add_rms_norm": ("fused.rms_norm",),
    "fused.attention": ("nn.sdpa",),
    "fused.silu_mul": ("nn.silu",),
    "quant.linear": ("nn.linear",),
}


def kernel_name(op_name: str) -> str:
    return op_name.replace(".", "_")


def supported_ops() -> set[str]:
    return {name[len("kernels/") : -len(".py.j2")] for name in _ENV.list_templates() if name.startswith("kernels/")}


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
    """One argument of a kernel call: a variable, ``W['name']``, a list of them or ``name=literal``."""

    value: str
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


def _function_code(fn: Function, numerics: str, bf16_weights: set[str], pyname: str) -> FunctionCode:
    names = _Names()
    aie = numerics == "aie"
    exact: set[int] = set()  # values already bf16 (aie numerics): rounded kernel results and copies of them

    def is_bf16(v: Value) -> bool:
        return v.name in bf16_weights if isinstance(v, Weight) else id(v) in exact

    # Argument names are the IR's where Python allows them as they are; others are mangled (arg_lambda, arg_bf16),
    # and names the generated module defines are never shadowed (see aielower.names).
    taken: set[str] = set()
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
    last_use: dict[int, int] = {}
    for i, op in enumerate(fn.ops):
        for v in op.operands:
            if not isinstance(v, Weight):
                last_use[id(v)] = i
    returned = {id(v) for v in fn.results}
    body: list[Line] = []
    counter = 0
    in_place = InPlacePlanner(fn) if any(op.name in IN_PLACE_OPERANDS for op in fn.ops) else None
    for i, op in enumerate(fn.ops):
        results = []
        for r in op.results:
            results.append(names.define(r, f"v{counter}"))
            counter += 1
        writes = IN_PLACE_OPERANDS.get(op.name, ())
        # AIE numerics: a kernel reads and writes bf16 memory, so operands not known to be bf16
        # are rounded. The KV caches are not (that would copy the whole cache per layer): they
        # start at zero and only ever receive bf16 values.
        kernel = aie and op.name in AIE_KERNEL_OPS
        call_args = []
        for f in op.operand_fields:
            group = op._groups[f.name]
            if not group:
                continue
            if f.variadic:
                call_args.append(Arg("[" + ", ".join(names(v) for v in group) + "]"))
                continue
            v = group[0]
            copy = f.name in writes and not in_place.safe(op, i, v)
            to_bf16 = kernel and f.name not in writes and is_float(v) and not is_bf16(v)
            call_args.append(Arg(names(v), copy=copy, bf16=to_bf16))
        call_args += [Arg(f"{f.name}={py_literal(op.attributes[f.name])}") for f in op.attr_fields]
        dead = sorted(
            {names(v) for v in op.operands if not isinstance(v, Weight) and last_use.get(id(v)) == i and id(v) not in returned}
        )
        dead += [names(r) for r in op.results if id(r) not in last_use and id(r) not in returned]
        rounded = [names(r) for k, r in enumerate(op.results)
                   if kernel and k not in aliased_results(op) and is_float(r) and names(r) not in dead]
        if kernel or (aie and op.name in VALUE_PRESERVING_OPS and all(is_bf16(v) for v in op.operands if is_float(v))):
            exact.update(id(r) for r in op.results)
        body.append(Line(results, kernel_name(op.name), call_args, dead, rounded))
    signature = f"@{fn.name}({', '.join(str(a.type) for a in fn.args)}) -> {', '.join(str(t) for t in fn.result_types)}"
    return FunctionCode(fn.name, pyname, signature, args, symbols, body, [names(v) for v in fn.results])


def _python_function_names(module: Module) -> dict[str, str]:
    """IR function name -> the identifier of its def: the name itself unless Python or the generated module uses
    it (``@lambda`` -> ``fn_lambda``, ``@np`` -> ``fn_np``)."""
    taken = {kernel_name(op.name) for fn in module.functions.values() for op in fn.ops}
    return {name: _names.python_identifier(_names.check("function", name), "fn", taken) for name in module.functions}


def _kernels_for(used: set[str]) -> list[str]:
    """The kernels ops named ``used`` need (with the kernels they call), or a CompileError."""
    available = supported_ops()
    missing = sorted(name for name in used if name not in available)
    if missing:
        raise CompileError(
            f"the ref backend has no kernel for {', '.join(missing)}; "
            f"add aielower/backends/ref/templates/kernels/<op>.py.j2 (or run a pipeline that lowers them)"
        )
    return sorted(used | {dep for name in used for dep in KERNEL_DEPENDENCIES.get(name, ())})


def generate(module: Module, numerics: str = "fp32") -> str:
    """Python source of the module: ``def <function>(*args, W)`` per IR function.

    ``numerics`` is ``"fp32"`` or ``"aie"`` (see :mod:`aielower.backends.ref.numerics`);
    an ``"aie"`` source expects the weights rounded as ``RefCompiledModel(numerics="aie")`` loads them.
    """
    check_numerics(numerics)
    used = {op.name for fn in module.functions.values() for op in fn.ops}
    pynames = _python_function_names(module)
    return _ENV.get_template("module.py.j2").render(
        module_name=module.name,
        dtypes={k: v for k, v in DTYPES.items() if v is not None},
        kernels=_kernels_for(used),
        functions=[_function_code(fn, numerics, bf16_weight_names(module) if numerics == "aie" else set(),
                                  pynames[fn.name])
                   for fn in module.functions.values()],
        numerics=numerics,
        aie_kernels=sorted(AIE_KERNEL_OPS),
    )


def generate_kernels(module: Module) -> str:
    """Python source of only the kernels ``module`` uses (no functions), for the interpreter."""
    used = {op.name for fn in module.functions.values() for op in fn.ops}
    return _ENV.get_template("module.py.j2").render(
        module_name=module.name,
        dtypes={k: v for k, v in DTYPES.items() if v is not None},
        kernels=_kernels_for(used),
        functions=[],
        numerics="fp32",
        aie_kernels=sorted(AIE_KERNEL_OPS),
    )
