"""SSA values, the op base class and the declarations ops are made of.

An op class declares its operands and attributes as class fields, in order::

    @op("nn.linear")
    class Linear(Op):
        '''y = x @ weight^T + bias'''
        x = operand()
        weight = operand()
        bias = operand(optional=True)

        def result_types(self):
            ...

Printing, parsing and the generic constructor work from these declarations.
"""

from __future__ import annotations

import re

import itertools
from typing import Any, Callable, Iterable

from aielower.errors import IRError
from aielower.ir.types import Dim, QTensorType, Sym, TensorType, Type, check_dtype

_field_order = itertools.count()


# --------------------------------------------------------------------------- values


class Value:
    """An SSA value. ``users`` lists the ops reading it (once per operand slot)."""

    def __init__(self, type: Type, name_hint: str | None = None):
        self.type = type
        self.name_hint = name_hint
        self.users: list[Op] = []

    @property
    def owner(self):
        return None

    def replace_all_uses_with(self, new: "Value") -> None:
        for user in list(dict.fromkeys(self.users)):
            user.replace_operand(self, new)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name_hint or '?'}: {self.type}>"


class Argument(Value):
    """A function argument, printed ``%name``."""


class OpResult(Value):
    def __init__(self, type: Type, op: "Op", index: int):
        super().__init__(type)
        self.op = op
        self.index = index

    @property
    def owner(self):
        return self.op


class Weight(Value):
    """A named module-level constant (a model parameter or buffer), printed ``@name``.

    ``data`` is the array (NumPy), or None for a shape-only weight (models on ``meta``).
    """

    def __init__(self, name: str, type: Type, data: Any = None):
        super().__init__(type, name)
        self.name = name
        self.data = data

    def __repr__(self) -> str:
        return f"<Weight @{self.name}: {self.type}>"


# --------------------------------------------------------------------------- declarations


class _Field:
    """A declared field of an op class; remembers its name and declaration order."""

    def __init__(self, doc: str = ""):
        self.doc = doc
        self.order = next(_field_order)
        self.name = ""

    def __set_name__(self, owner, name):
        self.name = name


class OperandField(_Field):
    def __init__(self, optional: bool = False, variadic: bool = False, doc: str = ""):
        super().__init__(doc)
        self.optional, self.variadic = optional, variadic

    def __get__(self, op, owner=None):
        if op is None:
            return self
        group = op._groups[self.name]
        if self.variadic:
            return list(group)
        return group[0] if group else None


class AttrField(_Field):
    """An attribute. ``kind`` says how it is checked, printed and parsed."""

    KINDS = ("int", "float", "number", "bool", "str", "dtype", "ints", "dims", "dim")

    def __init__(self, kind: str, default: Any = ..., doc: str = ""):
        if kind not in self.KINDS:
            raise IRError(f"unknown attribute kind {kind!r}")
        super().__init__(doc)
        self.kind, self.default = kind, default

    def __get__(self, op, owner=None):
        if op is None:
            return self
        return op.attributes[self.name]

    def coerce(self, value: Any, opname: str) -> Any:
        """Check ``value`` against the kind; return its canonical form."""

        def bad(expected):
            return IRError(f"{opname}: attribute '{self.name}' must be {expected}, got {value!r}")

        k = self.kind
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad("an int")
            return int(value)
        if k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad("a float")
            return float(value)
        if k == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad("a number")
            return value
        if k == "bool":
            if not isinstance(value, bool):
                raise bad("true or false")
            return value
        if k == "str":
            if not isinstance(value, str):
                raise bad("a string")
            return value
        if k == "dtype":
            if not isinstance(value, str):
                raise bad("a dtype")
            return check_dtype(value)
        if k == "ints":
            if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
                raise bad("a list of ints")
            return tuple(int(v) for v in value)
        if k == "dim":
            if isinstance(value, bool) or not isinstance(value, (int, Sym)):
                raise bad("an int or a symbol")
            return value
        if k == "dims":
            if not isinstance(value, (list, tuple)) or any(
                isinstance(v, bool) or not isinstance(v, (int, Sym)) for v in value
            ):
                raise bad("a list of ints and symbols")
            return tuple(value)
        raise AssertionError(k)


def operand(*, optional: bool = False, doc: str = "") -> Any:
    return OperandField(optional=optional, doc=doc)


def operands(*, doc: str = "") -> Any:
    """A variadic operand (a list of values, at least one)."""
    return OperandField(variadic=True, doc=doc)


def attr(kind: str, default: Any = ..., *, doc: str = "") -> Any:
    return AttrField(kind, default, doc)


# --------------------------------------------------------------------------- ops

OP_REGISTRY: dict[str, type["Op"]] = {}


def op(name: str) -> Callable[[type["Op"]], type["Op"]]:
    """Class decorator: register an op class under its IR name (``dialect.op``)."""

    def register(cls):
        if name in OP_REGISTRY and OP_REGISTRY[name] is not cls:
            raise IRError(f"op {name!r} is registered twice ({OP_REGISTRY[name].__name__} and {cls.__name__})")
        cls.name = name
        fields = [f for klass in reversed(cls.__mro__) for f in vars(klass).values()]
        cls.operand_fields = tuple(sorted((f for f in fields if isinstance(f, OperandField)), key=lambda f: f.order))
        cls.attr_fields = tuple(sorted((f for f in fields if isinstance(f, AttrField)), key=lambda f: f.order))
        variadic = [f for f in cls.operand_fields if f.variadic]
        optional_seen = False
        for f in cls.operand_fields:
            if optional_seen and not f.optional:
                raise IRError(f"{name}: optional operands must come last")
            optional_seen |= f.optional
        if variadic and len(cls.operand_fields) != 1:
            raise IRError(f"{name}: a variadic operand must be the only operand")
        OP_REGISTRY[name] = cls
        return cls

    return register


def is_discardable_name(name: str) -> bool:
    """``dialect.key`` names an attribute an op does not declare (MLIR's discardable attributes): a pass
    annotates ops with them, e.g. ``aie.plan`` from plan-aie-tiling. Declared attributes never contain a dot."""
    return bool(re.fullmatch(r"[a-z_][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*", name))


def check_plain_data(value: Any, what: str) -> Any:
    """Discardable attribute values are plain data: bool, int, float, str, lists of them and dicts with
    identifier keys. Returns the canonical form (tuples become lists, dicts keep their order)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [check_plain_data(v, what) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                raise IRError(f"{what}: dictionary key {k!r} is not an identifier")
            out[k] = check_plain_data(v, what)
        return out
    raise IRError(f"{what}: {type(value).__name__} is not plain data (bool, int, float, str, list, dict)")


def require(cond: bool, message: str) -> None:
    """Use inside ``verify()`` / ``result_types()``: raise an IRError when ``cond`` is false."""
    if not cond:
        raise IRError(message)


class Op:
    """Base class of all ops. Subclasses declare fields and implement ``result_types``."""

    name: str = "<unregistered>"
    operand_fields: tuple[OperandField, ...] = ()
    attr_fields: tuple[AttrField, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any):
        if type(self).name == "<unregistered>":
            raise IRError(f"{type(self).__name__} is not registered with @op")
        fields = self.operand_fields
        if len(args) > len(fields):
            raise IRError(f"{self.name} takes {len(fields)} operands, got {len(args)}")
        self._groups: dict[str, list[Value]] = {}
        for i, field in enumerate(fields):
            if i < len(args):
                given = args[i]
            elif field.name in kwargs:
                given = kwargs.pop(field.name)
            elif field.optional:
                given = None
            else:
                raise IRError(f"{self.name}: missing operand '{field.name}'")
            if field.variadic:
                group = list(given)
                require(len(group) > 0, f"{self.name}: operand '{field.name}' needs at least one value")
            else:
                group = [] if given is None else [given]
            for v in group:
                if not isinstance(v, Value):
                    raise IRError(f"{self.name}: operand '{field.name}' must be a Value, got {type(v).__name__}")
            self._groups[field.name] = group
        self.attributes: dict[str, Any] = {}
        for field in self.attr_fields:
            if field.name in kwargs:
                value = kwargs.pop(field.name)
            elif field.default is not ...:
                value = field.default
            else:
                raise IRError(f"{self.name}: missing attribute '{field.name}'")
            self.attributes[field.name] = field.coerce(value, self.name)
        for key in [k for k in kwargs if is_discardable_name(k)]:
            self.attributes[key] = check_plain_data(kwargs.pop(key), f"{self.name}: attribute '{key}'")
        if kwargs:
            valid = ", ".join(f.name for f in self.attr_fields) or "none"
            raise IRError(f"{self.name}: unknown attribute(s) {', '.join(sorted(kwargs))}; valid: {valid}")
        for v in self.operands:
            v.users.append(self)
        self.results: list[OpResult] = [OpResult(t, self, i) for i, t in enumerate(self.result_types())]

    # -- structure -------------------------------------------------------------------

    @property
    def operands(self) -> list[Value]:
        return [v for f in self.operand_fields for v in self._groups[f.name]]

    @property
    def result(self) -> OpResult:
        if len(self.results) != 1:
            raise IRError(f"{self.name} has {len(self.results)} results; use .results")
        return self.results[0]

    def replace_operand(self, old: Value, new: Value) -> None:
        for group in self._groups.values():
            for i, v in enumerate(group):
                if v is old:
                    group[i] = new
                    old.users.remove(self)
                    new.users.append(self)

    def drop_operands(self) -> None:
        """Unlink this op from the values it reads (used when erasing it)."""
        for v in self.operands:
            v.users.remove(self)
        for group in self._groups.values():
            group.clear()

    # -- to be provided by subclasses -----------------------------------------------

    def result_types(self) -> list[Type]:
        raise NotImplementedError(f"{self.name} must define result_types()")

    def verify(self) -> None:
        """Extra checks beyond the result-type rule; raise IRError via ``require``."""

    def __repr__(self) -> str:
        return f"<{self.name} {self.attributes}>"


# --------------------------------------------------------------------------- helpers for type rules


def tensor_type(v: Value, opname: str, what: str) -> TensorType:
    require(isinstance(v.type, TensorType), f"{opname}: {what} must be a tensor, got {v.type}")
    return v.type


def same_dtype(op: "Op", *types) -> None:
    """Require one element type across ``types`` (the IR has no implicit casts)."""
    dtypes = {t.dtype for t in types}
    require(len(dtypes) == 1, f"{op.name}: operand dtypes differ ({', '.join(sorted(dtypes))}); insert a tensor.cast")


def normalize_axis(axis: int, rank: int, opname: str) -> int:
    require(-rank <= axis < rank, f"{opname}: dim {axis} out of range for rank {rank}")
    return axis % rank


def broadcast_shapes(a: Iterable[Dim], b: Iterable[Dim], opname: str) -> tuple[Dim, ...]:
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise IRError(f"{opname}: shapes {list(map(str, a))} and {list(map(str, b))} do not broadcast")
    return tuple(out)


__all__ = [
    "Argument",
    "AttrField",
    "OP_REGISTRY",
    "Op",
    "OpResult",
    "OperandField",
    "QTensorType",
    "Value",
    "Weight",
    "attr",
    "broadcast_shapes",
    "check_plain_data",
    "is_discardable_name",
    "normalize_axis",
    "op",
    "operand",
    "operands",
    "require",
    "same_dtype",
    "tensor_type",
]
