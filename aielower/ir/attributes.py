"""Attribute types: each knows how to check, print and parse the values it describes.

An op declares its attributes with a type (``attr(IntAttr)``, ``attr(DimsAttr, default=...)``); the op stores the
plain Python value (an ``int``, a tuple of dims, ...), so ``op.group`` stays a number. Printing, parsing and checking
go through the declared type: there is no table of kinds to keep in step in the printer, parser and verifier.

Discardable attributes (``dialect.name``, set by passes, e.g. ``aie.plan``) hold plain data by default
(:class:`PlainData`); a dialect registers a richer type for a name with :func:`register_discardable` (the AIE
backend registers its plan type, so ``op.attributes["aie.plan"]`` is the plan object, parsed once).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, ClassVar

from aielower.errors import IRError
from aielower.ir.types import Sym, check_dtype

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


class AttrType:
    """Base class of attribute types. Subclasses implement :meth:`check` (value -> canonical value, or an
    IRError), :meth:`format` (value -> text) and :meth:`read` (a value the generic attribute parser produced ->
    canonical value). ``describe`` says what is expected, for messages."""

    describe: ClassVar[str] = "a value"

    @classmethod
    def check(cls, value: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def coerce(cls, value: Any, where: str) -> Any:
        try:
            return cls.check(value)
        except (TypeError, ValueError):
            raise IRError(f"{where} must be {cls.describe}, got {value!r}") from None

    @classmethod
    def coerce_parsed(cls, value: Any, where: str) -> Any:
        """A value as the generic attribute parser produced it -> this type's canonical value, or an IRError."""
        try:
            value = cls.read(value)
        except (TypeError, ValueError):
            raise IRError(f"{where} must be {cls.describe}, got {value!r}") from None
        return cls.coerce(value, where)

    @classmethod
    def format(cls, value: Any) -> str:
        return format_plain(value)

    @classmethod
    def read(cls, value: Any) -> Any:
        """A value parsed as plain data (numbers, strings, lists, dicts, symbols) -> this type's value."""
        return cls.check(value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _plain_number(value):
    """A NumPy scalar as the Python number it holds (np.float64 is a float subclass whose repr is not IR text)."""
    if type(value) not in (int, float, bool) and isinstance(value, (int, float)):
        return float(value) if isinstance(value, float) else int(value)
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == () and type(value).__module__ == "numpy":
        return item()
    return value


class IntAttr(AttrType):
    describe = "an int"

    @classmethod
    def check(cls, value):
        value = _plain_number(value)
        if not _is_int(value):
            raise TypeError
        return int(value)


class FloatAttr(AttrType):
    describe = "a float"

    @classmethod
    def check(cls, value):
        value = _plain_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)

    @classmethod
    def format(cls, value):
        return repr(float(value))


class NumberAttr(AttrType):
    describe = "a number"

    @classmethod
    def check(cls, value):
        value = _plain_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return value


class BoolAttr(AttrType):
    describe = "true or false"

    @classmethod
    def check(cls, value):
        if not isinstance(value, bool):
            raise TypeError
        return value


class StrAttr(AttrType):
    describe = "a string"

    @classmethod
    def check(cls, value):
        if not isinstance(value, str):
            raise TypeError
        return value


class DTypeAttr(AttrType):
    describe = "a dtype"

    @classmethod
    def check(cls, value):
        if not isinstance(value, str):
            raise TypeError
        return check_dtype(value)

    @classmethod
    def format(cls, value):
        return str(value)


class IntsAttr(AttrType):
    describe = "a list of ints"

    @classmethod
    def check(cls, value):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        value = [_plain_number(v) for v in value]
        if not all(_is_int(v) for v in value):
            raise TypeError
        return tuple(int(v) for v in value)


class DimAttr(AttrType):
    describe = "an int or a symbol"

    @classmethod
    def check(cls, value):
        value = _plain_number(value)
        if not (_is_int(value) or isinstance(value, Sym)):
            raise TypeError
        return value


class DimsAttr(AttrType):
    describe = "a list of ints and symbols"

    @classmethod
    def check(cls, value):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        value = tuple(_plain_number(v) for v in value)
        if not all(_is_int(v) or isinstance(v, Sym) for v in value):
            raise TypeError
        return value


MAX_KEY_CHARS = 256


class PlainData(AttrType):
    """bool, int, float, str, None, lists of them and dicts with string keys: the default type of discardable
    attributes and of module attributes (``module attributes {...}``). Tuples become lists; dicts keep their order.
    Keys that are identifiers print bare, others as JSON strings."""

    describe = "plain data (bool, int, float, str, none, list, dict with string keys)"

    @classmethod
    def check(cls, value):
        value = _plain_number(value)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [cls.check(v) for v in value]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str) or not k.isprintable() or not 0 < len(k) <= MAX_KEY_CHARS:
                    raise ValueError(f"dictionary key {str(k)[:40]!r} is not a printable string of 1..{MAX_KEY_CHARS} "
                                     "characters")
                out[k] = cls.check(v)
            return out
        raise TypeError

    @classmethod
    def coerce(cls, value, where):
        try:
            return cls.check(value)
        except ValueError as e:
            raise IRError(f"{where}: {e}") from None
        except TypeError:
            raise IRError(f"{where}: {type(value).__name__} is not {cls.describe}") from None


def format_plain(value) -> str:
    """``{key = value, ...}``, ``[...]``, numbers, strings (JSON-escaped, one line), booleans, ``none``, symbols."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_plain(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{format_key(k)} = {format_plain(v)}" for k, v in value.items()) + "}"
    return str(value)  # int, Sym


def format_key(key: str) -> str:
    """A dictionary key: bare when it is an identifier, else a JSON string."""
    return key if _KEY.fullmatch(key) else json.dumps(key)


# --------------------------------------------------------------------------- declared attribute types by name

BUILTIN_TYPES: dict[str, type[AttrType]] = {
    "int": IntAttr, "float": FloatAttr, "number": NumberAttr, "bool": BoolAttr, "str": StrAttr, "dtype": DTypeAttr,
    "ints": IntsAttr, "dims": DimsAttr, "dim": DimAttr,
}


def attr_type_named(spec) -> type[AttrType]:
    """``spec`` itself when it is an AttrType subclass; the built-in type of that name when it is a string."""
    if isinstance(spec, type) and issubclass(spec, AttrType):
        return spec
    if isinstance(spec, str) and spec in BUILTIN_TYPES:
        return BUILTIN_TYPES[spec]
    raise IRError(f"unknown attribute type {spec!r}: give an AttrType subclass or one of {', '.join(BUILTIN_TYPES)}")


# --------------------------------------------------------------------------- discardable attribute types

_DISCARDABLE: dict[str, type[AttrType]] = {}
# Dialects whose discardable attributes have types of their own, and the module registering them. The module is
# imported the first time an attribute of the dialect is set or parsed, so IR text holding ``aie.plan`` reads back
# as plan objects without the caller importing the AIE backend first.
DIALECT_ATTRIBUTE_MODULES = {"aie": "aielower.backends.aie.plan"}


def register_discardable(name: str, attr_type: type[AttrType]) -> None:
    """Give the discardable attribute ``name`` (``dialect.key``) a type: values set under that name are checked by
    it and stored as it returns them; the printer and parser use its format / read."""
    known = _DISCARDABLE.get(name)
    if known is not None and known is not attr_type:
        raise IRError(f"discardable attribute {name!r} already has the type {known.__name__}")
    _DISCARDABLE[name] = attr_type


def discardable_type(name: str) -> type[AttrType]:
    """The registered type of discardable attribute ``name``, :class:`PlainData` if none."""
    known = _DISCARDABLE.get(name)
    if known is not None:
        return known
    provider = DIALECT_ATTRIBUTE_MODULES.get(name.split(".", 1)[0])
    if provider is not None:
        import importlib

        importlib.import_module(provider)
    return _DISCARDABLE.get(name, PlainData)


__all__ = ["AttrType", "BUILTIN_TYPES", "BoolAttr", "attr_type_named", "format_key", "DTypeAttr", "DimAttr", "DimsAttr", "FloatAttr", "IntAttr", "IntsAttr", "NumberAttr",
           "PlainData", "StrAttr", "discardable_type", "format_plain", "register_discardable"]
