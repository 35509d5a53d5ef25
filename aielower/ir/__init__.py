"""aielower's typed SSA IR: types, values, ops (by dialect), modules, text format, verifier."""

from aielower.ir import dialects
from aielower.ir.builder import Builder
from aielower.ir.core import OP_REGISTRY, Argument, Op, OpResult, Value, Weight, attr, op, operand, operands, require
from aielower.ir.graph import to_networkx
from aielower.ir.module import Function, Module
from aielower.ir.parser import parse, parse_file
from aielower.ir.printer import print_module
from aielower.ir.types import QTensorType, Sym, TensorType
from aielower.ir.verifier import verify

__all__ = [
    "Argument",
    "Builder",
    "Function",
    "Module",
    "OP_REGISTRY",
    "Op",
    "OpResult",
    "QTensorType",
    "Sym",
    "TensorType",
    "Value",
    "Weight",
    "attr",
    "dialects",
    "op",
    "operand",
    "operands",
    "parse",
    "parse_file",
    "print_module",
    "require",
    "to_networkx",
    "verify",
]
