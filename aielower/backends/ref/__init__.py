"""Reference backend: NumPy code generated from the IR, for correctness and accuracy checks."""

from aielower.backends.ref.codegen import generate
from aielower.backends.ref.numerics import NUMERICS, check_numerics
from aielower.backends.ref.runtime import RefCompiledModel

__all__ = ["NUMERICS", "RefCompiledModel", "check_numerics", "generate"]
