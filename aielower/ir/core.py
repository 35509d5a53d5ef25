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
from typing import Any, Callable, ClassVar, Iterable

from aielower.errors import IRError
from aielower.ir.attributes import AttrType, attr_type_named, discardable_type
from aielower.ir.types import Dim, QTensorType, TensorType, Type

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
    """An attribute, declared with its type (an :class:`~aielower.ir.attributes.AttrType` subclass, or the name of
    a built-in one: ``"int"``, ``"float"``, ``"number"``, ``"bool"``, ``"str"``, ``"dtype"``, ``"ints"``, ``"dims"``,
    ``"dim"``). The type checks, prints and parses the value; the op stores the plain Python value."""

    def __init__(self, type: "type[AttrType] | str", default: Any = ..., doc: str = ""):
        super().__init__(doc)
        self.type = attr_type_named(type)
        self.default = default

    @property
    def kind(self) -> str:
        return self.type.describe

    def __get__(self, op, owner=None):
        if op is None:
            return self
        return op.attributes[self.name]

    def coerce(self, value: Any, opname: str) -> Any:
        """Check ``value`` against the type; return its canonical form."""
        return self.type.coerce(value, f"{opname}: attribute '{self.name}'")


def operand(*, optional: bool = False, doc: str = "") -> Any:
    return OperandField(optional=optional, doc=doc)


def operands(*, doc: str = "") -> Any:
    """A variadic operand (a list of values, at least one)."""
    return OperandField(variadic=True, doc=doc)


def attr(type: "type[AttrType] | str", default: Any = ..., *, doc: str = "") -> Any:
    """Declare an attribute of type ``type`` (``attr(IntAttr)``, or ``attr("int")`` for a built-in type)."""
    return AttrField(type, default, doc)


# --------------------------------------------------------------------------- traits and interfaces


class OpTrait:
    """A property an op class declares (``traits = (Commutative(),)``); passes and backends ask
    ``op.has_trait(Commutative)`` / ``op.get_trait(ViewOf)`` instead of matching op names."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Commutative(OpTrait):
    """The two operands of a binary op may be swapped (``lhs + rhs == rhs + lhs``)."""


class ViewOf(OpTrait):
    """Every result may share memory with operand ``operand`` (reshape, slices, broadcasts): it is never
    written into, and whoever writes into the operand must keep the view's readers in mind."""

    def __init__(self, operand: str = "x"):
        self.operand = operand

    def aliases(self, op: "Op") -> dict[int, str]:
        return {i: self.operand for i in range(len(op.results))}


class WritesInPlace(OpTrait):
    """Result ``i`` is operand ``results[i]`` written in place (a KV-cache update): an executor may write into the
    operand's memory when nothing reads the old contents afterwards, and must pass a copy otherwise."""

    def __init__(self, results: dict[int, str]):
        self.results = dict(results)

    def aliases(self, op: "Op") -> dict[int, str]:
        return {i: name for i, name in self.results.items()
                if i < len(op.results) and op.operand_group(name)}

    def written_operands(self, op: "Op") -> tuple[str, ...]:
        return tuple(self.aliases(op).values())


class LinearLike:
    """Interface of every op that carries a linear: ``result = epilogue(x @ W^T + bias, other operands)``.

    Mix it into an op class that declares the operand fields named in ``linear_fields`` (default ``x``,
    ``weight``, ``bias``; the bias may be absent). ``W`` is ``[out, in]``, dense or a ``qtensor``. Quantization,
    AWQ and AIE tiling work on the interface, so an op that absorbs a linear (a fused linear + residual add, say)
    is quantized and planned like ``nn.linear``. The op's ``@impl`` (aielower.interp) computes the *epilogue*: it
    receives the linear's output first, then the other operands, then the attributes; executors compute the
    linear themselves (dense, dequantized or on the NPU).
    """

    linear_fields: ClassVar[tuple[str, str, str | None]] = ("x", "weight", "bias")
    has_epilogue: ClassVar[bool] = True  # False: the op's result is the linear's (nn.linear, quant.linear)

    @property
    def linear_input(self) -> Value:
        return getattr(self, self.linear_fields[0])

    @property
    def linear_weight(self) -> Value:
        return getattr(self, self.linear_fields[1])

    @property
    def linear_bias(self) -> "Value | None":
        return getattr(self, self.linear_fields[2]) if self.linear_fields[2] else None

    @property
    def in_features(self) -> int:
        return self.linear_weight.type.shape[1]

    @property
    def out_features(self) -> int:
        return self.linear_weight.type.shape[0]

    def epilogue_operands(self) -> list[Value]:
        """The operands besides x, weight and bias, in declaration order (what the ``@impl`` receives after y)."""
        linear = {n for n in self.linear_fields if n}
        return [v for f in self.operand_fields if f.name not in linear for v in self.operand_group(f.name)]

    def linear_result_type(self) -> TensorType:
        """Type check of the linear part; returns the type of ``x @ W^T + bias``."""
        name = self.name
        x = tensor_type(self.linear_input, name, self.linear_fields[0])
        w = self.linear_weight.type
        require(isinstance(w, (TensorType, QTensorType)), f"{name}: weight must be a tensor or qtensor, got {w}")
        if isinstance(w, TensorType):
            same_dtype(self, x, w)
        require(w.rank == 2, f"{name}: weight must be 2-D [out, in], got {w}")
        require(x.rank >= 1 and x.shape[-1] == w.shape[1],
                f"{name}: x {x} does not match weight {w} (in features {w.shape[1]})")
        bias = self.linear_bias
        if bias is not None:
            b = tensor_type(bias, name, "bias")
            require(b.shape == (w.shape[0],), f"{name}: bias {b} must be [{w.shape[0]}]")
            same_dtype(self, x, b)
        return x.with_shape(x.shape[:-1] + (w.shape[0],))

    def with_linear_weight(self, weight: Value) -> "Op":
        """A new op like this one reading ``weight`` (e.g. the quantized weight) instead; attributes kept.
        ``nn.linear`` overrides this to become ``quant.linear`` for a qtensor weight."""
        groups = {f.name: self.operand_group(f.name) for f in self.operand_fields}
        groups[self.linear_fields[1]] = [weight]
        kwargs = {name: (group if f.variadic else (group[0] if group else None))
                  for f in self.operand_fields for name, group in [(f.name, groups[f.name])]}
        return type(self)(**kwargs, **self.attributes)


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


def require(cond: bool, message: str) -> None:
    """Use inside ``verify()`` / ``result_types()``: raise an IRError when ``cond`` is false."""
    if not cond:
        raise IRError(message)


class Op:
    """Base class of all ops. Subclasses declare fields and implement ``result_types``."""

    name: str = "<unregistered>"
    operand_fields: tuple[OperandField, ...] = ()
    attr_fields: tuple[AttrField, ...] = ()
    traits: ClassVar[tuple[OpTrait, ...]] = ()

    @classmethod
    def has_trait(cls, trait: type[OpTrait]) -> bool:
        return any(isinstance(t, trait) for t in cls.traits)

    @classmethod
    def get_trait(cls, trait: type[OpTrait]) -> "OpTrait | None":
        return next((t for t in cls.traits if isinstance(t, trait)), None)

    def aliased_results(self) -> dict[int, str]:
        """Result index -> name of the operand whose memory it may share (views and in-place writes)."""
        out: dict[int, str] = {}
        for t in self.traits:
            if isinstance(t, (ViewOf, WritesInPlace)):
                out.update(t.aliases(self))
        return out

    def __init__(self, *args: Any, **kwargs: Any):
        if type(self).name == "<unregistered>":
            raise IRError(f"{type(self).__name__} is not registered with @op")
        self.parent = None  # the OpList holding this op (set by the list)
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
            self.attributes[key] = discardable_type(key).coerce(kwargs.pop(key), f"{self.name}: attribute '{key}'")
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

    def set_attr(self, name: str, value: Any) -> None:
        """Set a declared attribute or a discardable one (``dialect.key``), checked by its type."""
        declared = {f.name: f for f in self.attr_fields}
        if name in declared:
            self.attributes[name] = declared[name].coerce(value, self.name)
        elif is_discardable_name(name):
            self.attributes[name] = discardable_type(name).coerce(value, f"{self.name}: attribute '{name}'")
        else:
            valid = ", ".join(declared) or "none"
            raise IRError(f"{self.name}: no attribute '{name}' (declared: {valid}; discardable ones are dialect.key)")

    def operand_group(self, name: str) -> list[Value]:
        """The values of operand field ``name`` (empty when an optional operand is absent; a copy)."""
        try:
            return list(self._groups[name])
        except KeyError:
            raise IRError(f"{self.name} has no operand '{name}'") from None

    def operands_by_field(self) -> list[tuple[OperandField, list[Value]]]:
        """(field, its values) in declaration order: what executors pass positionally (a variadic one as a list)."""
        return [(f, list(self._groups[f.name])) for f in self.operand_fields]

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
    "Commutative",
    "LinearLike",
    "OpTrait",
    "ViewOf",
    "WritesInPlace",
    "OP_REGISTRY",
    "Op",
    "OpResult",
    "OperandField",
    "QTensorType",
    "Value",
    "Weight",
    "attr",
    "broadcast_shapes",
    "is_discardable_name",
    "normalize_axis",
    "op",
    "operand",
    "operands",
    "require",
    "same_dtype",
    "tensor_type",
]
