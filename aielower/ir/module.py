"""Functions and the module that holds them together with the weight store."""

from __future__ import annotations

from typing import Any

from aielower import names
from aielower.errors import IRError
from aielower.ir.core import Argument, Value, Weight
from aielower.ir.oplist import OpList
from aielower.ir.types import Type


class Function:
    """A straight-line SSA function: arguments, ops in order (an :class:`~aielower.ir.oplist.OpList`: constant-time
    insert, erase and order queries for rewriting), returned values."""

    def __init__(self, name: str, args: list[Argument] | None = None):
        self.name = names.check("function", name)
        self.args: list[Argument] = list(args or [])
        self.ops: OpList = OpList()
        self.results: list[Value] = []

    def add_arg(self, name: str, type: Type) -> Argument:
        names.check("value", name, f"@{self.name}: argument name")
        if any(a.name_hint == name for a in self.args):
            raise IRError(f"@{self.name}: argument %{name} already exists")
        arg = Argument(type, name)
        self.args.append(arg)
        return arg

    def set_results(self, values: list[Value]) -> None:
        for v in self.results:
            v.users.remove(self)  # type: ignore[arg-type]
        self.results = list(values)
        for v in self.results:
            v.users.append(self)  # type: ignore[arg-type]

    def replace_result(self, old: Value, new: Value) -> None:
        self.set_results([new if v is old else v for v in self.results])

    # Functions are "users" of their returned values, so that dead-code analyses and
    # replace_all_uses_with see the return. They behave like an op for that purpose.
    def replace_operand(self, old: Value, new: Value) -> None:
        self.replace_result(old, new)

    @property
    def result_types(self) -> list[Type]:
        return [v.type for v in self.results]

    def __repr__(self) -> str:
        return f"<Function @{self.name}: {len(self.ops)} ops>"


class Module:
    """Functions by name (``prefill``, later ``decode``) and the weights they share.

    ``weights`` maps a weight name (the Hugging Face state-dict key) to a :class:`Weight`
    value, which carries its type and, unless the model was on ``meta``, its array.
    """

    def __init__(self, name: str = "module"):
        self.name = names.check("module", name)
        self.functions: dict[str, Function] = {}
        self.weights: dict[str, Weight] = {}
        self.metadata: dict[str, Any] = {}  # printed as the module's attributes: what passes may read
        self.timings: dict[str, float] = {}  # seconds spent making it (capture per function): not part of the IR
        # Weights that passes derived from others, by recipe (e.g. ("concat", 0, names)),
        # so that functions sharing the source weights also share the derived one.
        self.derived: dict[tuple, Weight] = {}

    def attribute(self, key: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
        """The module attribute ``key`` checked against ``kinds`` (``default`` when absent). Attributes come from IR
        text too, so a pass reads them through this and a wrong kind is an IRError naming the key, not a crash."""
        return _checked(self.metadata, key, kinds, default, "module attribute")

    def config_value(self, key: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
        """``key`` of the model config the module was captured from (the ``config`` attribute), checked likewise."""
        config = self.attribute("config", dict, {})
        return _checked(config, key, kinds, default, "config entry")

    def add_function(self, fn: Function) -> Function:
        if fn.name in self.functions:
            raise IRError(f"module already has a function @{fn.name}")
        self.functions[fn.name] = fn
        return fn

    def add_weight(self, name: str, type: Type, data: Any = None) -> Weight:
        names.check("weight", name)
        if name in self.weights:
            raise IRError(f"module already has a weight @{name}")
        w = Weight(name, type, data)
        self.weights[name] = w
        return w

    def remove_unused_weights(self) -> list[str]:
        dead = [n for n, w in self.weights.items() if not w.users]
        for n in dead:
            del self.weights[n]
        self.derived = {k: w for k, w in self.derived.items() if self.weights.get(w.name) is w}
        return dead

    @property
    def has_weight_data(self) -> bool:
        return all(w.data is not None for w in self.weights.values())

    def weight_bytes(self) -> int:
        """Bytes of all weights as their types store them (:attr:`QTensorType.nbytes`, ``TensorType.nbytes``)."""
        return sum(w.type.nbytes for w in self.weights.values())

    def __str__(self) -> str:
        from aielower.ir.printer import print_module

        return print_module(self)

    def __repr__(self) -> str:
        return f"<Module {self.name}: functions {list(self.functions)}, {len(self.weights)} weights>"


def _checked(table: dict, key: str, kinds, default, what: str):
    value = table.get(key, default)
    if value is default:
        return value
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise IRError(f"{what} '{key}' must be {expected}, got {str(value)[:60]!r}")
    return value
