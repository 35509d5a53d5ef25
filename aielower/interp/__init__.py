"""What ops compute, stated once, and the interpreter that runs IR functions with it.

Each op class gets its semantics from an ordinary NumPy function registered with ``@impl(OpClass)``
(:mod:`aielower.interp.ops` holds the built-in ones). Every executor uses that one statement: the reference
backend's generated module imports the functions, :class:`Interpreter` calls them op by op (AWQ calibration), and the
AIE emulator runs its host ops on an :class:`Interpreter` whose NPU ops are overridden. A new op needs its class,
the pass that introduces it and its ``@impl``; nothing here or in a backend lists ops by name.

This package is target-neutral: it imports NumPy and the IR, no backend.
"""

from aielower.interp import ops  # registers the built-in implementations
from aielower.interp.interpreter import Frame, Interpreter
from aielower.interp.registry import impl, implementation_of

__all__ = ["Frame", "Interpreter", "impl", "implementation_of", "ops"]
