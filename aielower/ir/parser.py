"""Read IR text (see ``printer``) back into a :class:`Module`.

Errors are :class:`ParseError` naming ``file:line:col``, what was expected, the line and
a caret. Ops are built through their classes, so their type rules and ``verify()`` run
while parsing and a wrong printed result type is reported where it is written.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from aielower import names
from aielower.errors import IRError, ParseError
from aielower.ir.attributes import MAX_KEY_CHARS, PlainData, discardable_type
from aielower.ir.core import OP_REGISTRY, AttrField, Op, Value, is_discardable_name
from aielower.ir.module import Function, Module
from aielower.ir.types import DTYPES, QTensorType, Sym, TensorType, Type

# Every pattern is ASCII: a digit is 0-9 (never another script's digits), a letter A-Z / a-z.
_NAME = re.compile(r"[A-Za-z0-9_$.\-]+", re.ASCII)
_MODULE_NAME = re.compile(r"[A-Za-z0-9_$.+\-]+", re.ASCII)  # module names may hold '+' (names.GRAMMARS["module"])
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*", re.ASCII)
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+|[0-9]+)", re.ASCII)
_INT = re.compile(r"[0-9]+", re.ASCII)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_SYM = re.compile(r"[A-Za-wyz_][A-Za-wyz0-9_]*", re.ASCII)
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')

# Limits on what the parser accepts (IR text may come from anyone): digits of a number, nesting of attribute
# values, characters of a string attribute, size of a dim.
MAX_DIGITS = 20  # every int the IR holds fits in 64 bits
MAX_NUMBER_CHARS = 40  # a float literal with exponent
MAX_NESTING = 32  # lists and dictionaries inside attribute values
MAX_STRING_CHARS = 4096
MAX_DIM = 2**48  # 256 T elements: larger than any tensor a machine holds (backends check their own limits)
# Characters of attribute-alias definitions the uses of aliases may expand to, in all: this many, or 8 times the
# text if that is more (a small text whose aliases are used very often would otherwise build a huge module; the 7B's
# planned module.ir expands 12-fold to 2.9 MB).
MAX_ALIAS_EXPANSION = 16 * 2**20
ALIAS_EXPANSION_PER_CHAR = 8


class Parser:
    def __init__(self, text: str, filename: str = "<string>"):
        self.text, self.filename, self.pos = text, filename, 0
        self.depth = 0  # nesting of attribute values
        self.aliases: dict[str, tuple[Any, int]] = {}  # attribute alias -> (value, characters of its definition)
        self.alias_chars = 0  # characters the uses of aliases have expanded to so far
        self.alias_limit = max(MAX_ALIAS_EXPANSION, ALIAS_EXPANSION_PER_CHAR * len(text))  # what they may
        self.in_alias = False  # parsing an alias definition

    # -- low level -------------------------------------------------------------------

    def error(self, message: str, pos: int | None = None) -> ParseError:
        pos = self.pos if pos is None else pos
        line = self.text.count("\n", 0, pos) + 1
        start = self.text.rfind("\n", 0, pos) + 1
        end = self.text.find("\n", pos)
        source_line = self.text[start : end if end >= 0 else len(self.text)]
        return ParseError(message, filename=self.filename, line=line, col=pos - start + 1, source_line=source_line)

    def skip(self) -> None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif self.text.startswith("//", self.pos):
                nl = self.text.find("\n", self.pos)
                self.pos = len(self.text) if nl < 0 else nl
            else:
                return

    def peek(self, s: str) -> bool:
        self.skip()
        return self.text.startswith(s, self.pos)

    def accept(self, s: str) -> bool:
        if self.peek(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str, what: str | None = None) -> None:
        if not self.accept(s):
            raise self.error(f"expected {what or repr(s)}")

    def parse_int(self, what: str, limit: int = 2**63 - 1) -> int:
        """A non-negative decimal integer of at most MAX_DIGITS ASCII digits, no larger than ``limit``."""
        self.skip()
        pos = self.pos
        digits = self.match(_INT, what)
        if len(digits) > MAX_DIGITS or int(digits) > limit:
            raise self.error(f"{what} {digits[:24]}{'...' if len(digits) > 24 else ''} is too large (at most {limit:,})",
                             pos)
        return int(digits)

    def match(self, pattern: re.Pattern, what: str) -> str:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    # -- types -----------------------------------------------------------------------

    def parse_type(self) -> Type:
        self.skip()
        start = self.pos
        if self.accept("tensor<"):
            return self._tensor_body(start)
        if self.accept("qtensor<"):
            return self._qtensor_body(start)
        raise self.error("expected a type ('tensor<...>' or 'qtensor<...>')")

    def _dims_and_dtype(self) -> tuple[list, str]:
        dims: list = []
        while True:
            self.skip()
            if self.accept("?"):
                dims.append(Sym(self.match(_SYM, "a symbol name after '?'")))
            elif _INT.match(self.text, self.pos):
                dims.append(self.parse_int("a dim", limit=MAX_DIM))
            else:
                pos = self.pos
                dtype = self.match(_IDENT, "a dim or an element type")
                if dtype not in DTYPES:
                    raise self.error(f"unknown element type '{dtype}'; expected one of {', '.join(DTYPES)}", pos)
                return dims, dtype
            if not self.text.startswith("x", self.pos):
                raise self.error("expected 'x' after a dim")
            self.pos += 1

    def _tensor_body(self, start: int) -> TensorType:
        dims, dtype = self._dims_and_dtype()
        self.expect(">", "'>' closing the tensor type")
        return TensorType(tuple(dims), dtype)

    def _qtensor_body(self, start: int) -> QTensorType:
        dims, dtype = self._dims_and_dtype()
        if not dtype.startswith("u"):
            raise self.error("expected an unsigned storage type such as u4", start)
        fields: dict[str, object] = {}
        while self.accept(","):
            kpos = self.pos
            key = self.match(_IDENT, "a qtensor field (group, scale, zero)")
            if key not in ("group", "scale", "zero") or key in fields:
                raise self.error(f"qtensor field '{key}' is unknown or given twice (fields: group, scale, zero)", kpos)
            self.expect("=")
            fields[key] = self.parse_int("a group size") if key == "group" else self.match(_IDENT, f"a dtype for '{key}'")
        self.expect(">", "'>' closing the qtensor type")
        if not re.fullmatch(r"u[0-9]{1,2}", dtype, re.ASCII):
            raise self.error(f"bad qtensor storage type {dtype!r}: expected u2, u4 or u8", start)
        try:
            return QTensorType(tuple(dims), int(dtype[1:]), fields["group"], fields.get("scale", "bf16"),
                               fields.get("zero", "u4"))
        except KeyError:
            raise self.error("bad qtensor type: it needs group=N", start) from None
        except IRError as e:
            raise self.error(f"bad qtensor type: {e}", start) from None

    def parse_types(self) -> list[Type]:
        types = [self.parse_type()]
        while self.accept(","):
            types.append(self.parse_type())
        return types

    # -- attributes ------------------------------------------------------------------

    def parse_attr_value(self) -> Any:
        self.skip()
        c = self.text[self.pos : self.pos + 1]
        if c == "#":
            return self._alias_use()
        if c in "{[" and c:
            if self.depth >= MAX_NESTING:
                raise self.error(f"attribute value nested deeper than {MAX_NESTING} levels")
            self.depth += 1
            try:
                return self._parse_container(c)
            finally:
                self.depth -= 1
        return self._parse_scalar(c)

    def _parse_container(self, c: str) -> Any:
        if c == "{":
            self.pos += 1
            entries: dict = {}
            if not self.accept("}"):
                while True:
                    self.skip()
                    kpos = self.pos
                    if self.text.startswith('"', self.pos):
                        key = self._parse_scalar('"')
                        if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
                            raise self.error(f"a quoted dictionary key must be 1..{MAX_KEY_CHARS} printable characters",
                                             kpos)
                    else:
                        key = self.match(_KEY, "a dictionary key")
                    if key in entries:
                        raise self.error(f"key '{key}' given twice", kpos)
                    self.expect("=", "'=' after the dictionary key")
                    entries[key] = self.parse_attr_value()
                    if self.accept("}"):
                        break
                    self.expect(",", "',' or '}' in a dictionary")
            return entries
        if c == "[":
            self.pos += 1
            items: list = []
            if not self.accept("]"):
                items.append(self.parse_attr_value())
                while self.accept(","):
                    items.append(self.parse_attr_value())
                self.expect("]", "',' or ']' in a list")
            return items
        raise AssertionError(c)

    def _parse_scalar(self, c: str) -> Any:
        if c == '"':
            m = _STRING.match(self.text, self.pos)
            if not m:
                raise self.error("unterminated string (strings are one line; write a newline as \\n)")
            if len(m.group(0)) > MAX_STRING_CHARS:
                raise self.error(f"string of {len(m.group(0)):,} characters (at most {MAX_STRING_CHARS:,})")
            try:
                value = json.loads(m.group(0))
            except ValueError as e:
                raise self.error(f"bad string escape: {e}") from None
            self.pos = m.end()
            return value
        if c == "?":
            self.pos += 1
            return Sym(self.match(_SYM, "a symbol name after '?'"))
        special = re.compile(r"[-+]?(inf|nan)\b").match(self.text, self.pos)
        if special:
            self.pos = special.end()
            return float(special.group(0))
        m = _NUMBER.match(self.text, self.pos)
        if m:
            tok = m.group(0)
            if len(tok) > MAX_NUMBER_CHARS or (re.fullmatch(r"[-+]?[0-9]+", tok) and len(tok.lstrip("+-")) > MAX_DIGITS):
                raise self.error(f"number {tok[:24]}{'...' if len(tok) > 24 else ''} has too many digits "
                                 f"(integers have at most {MAX_DIGITS})")
            self.pos = m.end()
            if re.fullmatch(r"[-+]?[0-9]+", tok):
                return int(tok)
            value = float(tok)
            if value in (float("inf"), float("-inf")):
                raise self.error(f"number {tok} overflows a float; write inf explicitly if that is meant", m.start())
            return value
        word = self.match(_IDENT, "an attribute value")
        if word in ("true", "false"):
            return word == "true"
        if word == "none":
            return None
        return word  # a bare identifier, e.g. a dtype

    def parse_attrs(self, cls: type[Op]) -> dict[str, Any]:
        fields: dict[str, AttrField] = {f.name: f for f in cls.attr_fields}
        attrs: dict[str, Any] = {}
        if not self.accept("{"):
            return attrs
        if self.accept("}"):
            return attrs
        while True:
            pos = self.pos
            key = self.match(_IDENT, "an attribute name")
            if key not in fields and is_discardable_name(key):
                if key in attrs:
                    raise self.error(f"attribute '{key}' given twice", pos)
                self.expect("=", "'=' after the attribute name")
                self.skip()
                vpos = self.pos
                value = self.parse_attr_value()
                attr_type = discardable_type(key)
                try:
                    attrs[key] = attr_type.coerce_parsed(value, f"attribute '{key}'")
                except IRError as e:
                    raise self.error(str(e), vpos) from None
                if self.accept("}"):
                    return attrs
                self.expect(",", "',' or '}' in the attribute list")
                continue
            if key not in fields:
                valid = ", ".join(fields) or "none"
                raise self.error(f"{cls.name} has no attribute '{key}' (valid: {valid})", pos)
            if key in attrs:
                raise self.error(f"attribute '{key}' given twice", pos)
            self.expect("=", "'=' after the attribute name")
            self.skip()
            vpos = self.pos
            value = self.parse_attr_value()
            try:
                attrs[key] = fields[key].type.coerce_parsed(value, f"{cls.name}: attribute '{key}'")
            except IRError as e:
                raise self.error(str(e), vpos) from None
            if self.accept("}"):
                return attrs
            self.expect(",", "',' or '}' in the attribute list")

    def _alias_use(self) -> Any:
        """``#name``: a copy of the value of an alias defined above."""
        pos = self.pos
        if self.in_alias:
            raise self.error("an attribute alias definition cannot use another alias", pos)
        self.pos += 1
        name = self.match(_KEY, "an attribute alias name after '#'")
        if name not in self.aliases:
            raise self.error(f"attribute alias #{name} is not defined (aliases are defined before the weights)", pos)
        value, size = self.aliases[name]
        self.alias_chars += size
        if self.alias_chars > self.alias_limit:
            raise self.error(f"attribute aliases expand to more than {self.alias_limit:,} characters", pos)
        return copy.deepcopy(value)

    def parse_alias(self) -> None:
        """``#name = value``: an attribute alias (see the printer)."""
        pos = self.pos
        self.expect("#")
        name = self.match(_KEY, "an attribute alias name after '#'")
        if name in self.aliases:
            raise self.error(f"attribute alias #{name} is defined twice", pos)
        self.expect("=", "'=' after the alias name")
        self.skip()
        start, self.in_alias = self.pos, True
        try:
            value = self.parse_attr_value()
        finally:
            self.in_alias = False
        self.aliases[name] = (value, self.pos - start)

    # -- module ----------------------------------------------------------------------

    def parse_module(self) -> Module:
        module = Module()
        if self.peek("module"):
            self.parse_module_header(module)
        while self.peek("#"):
            self.parse_alias()
        while not self.at_end():
            if self.peek("weight"):
                self.parse_weight(module)
            elif self.peek("func"):
                self.parse_function(module)
            elif self.peek("#"):
                raise self.error("attribute aliases (#name = ...) come before the weights and functions")
            else:
                raise self.error("expected 'weight' or 'func' at top level ('module @name ...' comes first)")
        return module

    def parse_module_header(self, module: Module) -> None:
        """``module @name [attributes {...}]`` (see the printer)."""
        self.expect("module")
        self.expect("@", "'@' and the module name")
        pos = self.pos
        name = self.match(_MODULE_NAME, "a module name")
        if not names.is_valid("module", name):
            raise self.error(f"module name @{name} is not allowed: use {names.describe('module')}", pos)
        module.name = name
        if self.accept("attributes"):
            self.skip()
            vpos = self.pos
            if not self.peek("{"):
                raise self.error("expected '{' opening the module attributes")
            value = self.parse_attr_value()
            try:
                module.metadata = PlainData.coerce(value, "module attributes")
            except IRError as e:
                raise self.error(str(e), vpos) from None

    def parse_weight(self, module: Module) -> None:
        self.expect("weight")
        self.expect("@", "'@' and a weight name")
        pos = self.pos
        name = self.match(_NAME, "a weight name")
        if not names.is_valid("weight", name):
            raise self.error(f"weight name @{name} is not allowed: use {names.describe('weight')}", pos)
        self.expect(":", "':' and the weight's type")
        wtype = self.parse_type()
        if name in module.weights:
            raise self.error(f"weight @{name} is declared twice", pos)
        module.add_weight(name, wtype)

    def parse_function(self, module: Module) -> None:
        self.expect("func")
        self.expect("@", "'@' and a function name")
        pos = self.pos
        fname = self.match(_IDENT, "a function name")
        if not names.is_valid("function", fname):
            raise self.error(f"function name @{fname} is not allowed: use {names.describe('function')}", pos)
        if fname in module.functions:
            raise self.error(f"function @{fname} is defined twice", pos)
        fn = Function(fname)
        scope: dict[str, Value] = {}
        self.expect("(", "'(' opening the argument list")
        if not self.accept(")"):
            while True:
                self.expect("%", "'%' and an argument name")
                apos = self.pos
                aname = self.match(_NAME, "an argument name")
                if not names.is_valid("value", aname):
                    raise self.error(f"value name %{aname} is not allowed: use {names.describe('value')}", apos)
                if aname in scope:
                    raise self.error(f"argument %{aname} is defined twice", apos)
                self.expect(":", "':' and the argument's type")
                scope[aname] = fn.add_arg(aname, self.parse_type())
                if self.accept(")"):
                    break
                self.expect(",", "',' or ')' in the argument list")
        self.expect("->", "'->' and the result types")
        if self.accept("("):
            declared = self.parse_types()
            self.expect(")", "')' closing the result types")
        else:
            declared = [self.parse_type()]
        self.expect("{", "'{' opening the function body")
        while not self.peek("return"):
            if self.at_end() or self.peek("}"):
                raise self.error("expected an op or 'return' (every function ends with 'return')")
            fn.ops.append(self.parse_op(module, scope))
        self.expect("return")
        self.skip()
        rpos = self.pos
        results = [self.parse_operand(module, scope)]
        while self.accept(","):
            results.append(self.parse_operand(module, scope))
        got = [r.type for r in results]
        if got != declared:
            raise self.error(
                f"returned types ({', '.join(map(str, got))}) differ from the declared result types "
                f"({', '.join(map(str, declared))})",
                rpos,
            )
        fn.set_results(results)
        self.expect("}", "'}' closing the function body")
        module.add_function(fn)

    def parse_operand(self, module: Module, scope: dict[str, Value]) -> Value:
        self.skip()
        pos = self.pos
        if self.accept("%"):
            name = self.match(_NAME, "a value name")
            if name not in scope:
                raise self.error(f"use of undefined value %{name}", pos)
            return scope[name]
        if self.accept("@"):
            name = self.match(_NAME, "a weight name")
            if name not in module.weights:
                raise self.error(f"unknown weight @{name} (declare it with 'weight @{name} : <type>')", pos)
            return module.weights[name]
        raise self.error("expected an operand ('%value' or '@weight')")

    def parse_op(self, module: Module, scope: dict[str, Value]) -> Op:
        results: list[tuple[str, int]] = []
        while True:
            self.expect("%", "an op ('%result = dialect.op ...') or 'return'")
            pos = self.pos
            result = self.match(_NAME, "a result name")
            if not names.is_valid("value", result):
                raise self.error(f"value name %{result} is not allowed: use {names.describe('value')}", pos)
            results.append((result, pos))
            if not self.accept(","):
                break
        self.expect("=", "'=' after the result names")
        self.skip()
        opos = self.pos
        opname = self.match(_IDENT, "an op name")
        cls = OP_REGISTRY.get(opname)
        if cls is None:
            raise self.error(f"unknown op '{opname}'", opos)
        args: list[Value] = []
        self.skip()
        if self.text.startswith(("%", "@"), self.pos):
            args.append(self.parse_operand(module, scope))
            while self.accept(","):
                args.append(self.parse_operand(module, scope))
        attrs = self.parse_attrs(cls)
        self.expect(":", "':' and the result types after the operands")
        self.skip()
        tpos = self.pos
        types = self.parse_types()
        if len(cls.operand_fields) == 1 and cls.operand_fields[0].variadic:
            args = [args]  # type: ignore[list-item]
        try:
            new = cls(*args, **attrs)
            new.verify()
        except IRError as e:
            raise self.error(str(e), opos) from None
        computed = [r.type for r in new.results]
        if computed != types:
            new.drop_operands()
            raise self.error(
                f"{opname} computes result type(s) {', '.join(map(str, computed))}, "
                f"but {', '.join(map(str, types))} is written",
                tpos,
            )
        if len(results) != len(new.results):
            new.drop_operands()
            raise self.error(f"{opname} has {len(new.results)} result(s), {len(results)} name(s) given", results[0][1])
        for (name, pos), result in zip(results, new.results):
            if name in scope:
                raise self.error(f"value %{name} is defined twice", pos)
            result.name_hint = name
            scope[name] = result
        return new


def parse(text: str, filename: str = "<string>") -> Module:
    """Parse IR text into a Module (weights are shape-only)."""
    return Parser(text, filename).parse_module()


def parse_file(path) -> Module:
    with open(path, encoding="utf-8") as f:
        return parse(f.read(), str(path))
