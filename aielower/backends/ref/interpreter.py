"""Evaluating one IR function op by op with the ref backend's kernels.

The generated code (:mod:`aielower.backends.ref.codegen`) runs a whole function in one
call. Analyses that need the values in between (AWQ calibration reads the input of every
linear, and changes weights between two layers) use this interpreter instead: it runs
the same kernels, op by op, over a :class:`Frame` that holds the live values of one
batch, and can stop at any op and resume later::

    interp = Interpreter(module, "prefill")
    frame = interp.start(input_ids)
    interp.run(frame, stop=index_of_some_op)      # ops [frame.pc, stop)
    x = frame[some_op.x]                          # a live value
    frame[some_op.x] = x / s                      # replace it (same shape and dtype)
    interp.run(frame)                              # to the end; frame.results

Weights are read from the module when an op runs, so weights changed between two
``run`` calls take effect. Values are dropped after their last use, as in generated code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aielower.backends.ref.codegen import IN_PLACE_OPERANDS, generate_kernels, kernel_name
from aielower.backends.ref.runtime import load_source
from aielower.errors import AielowerError, ModelError
from aielower.ir import Module, QTensorType, Sym, Value, Weight


class Frame:
    """The live values of one evaluation of a function (one batch)."""

    def __init__(self, values: dict[int, np.ndarray], symbols: dict[Sym, int]):
        self.values = values
        self.symbols = symbols
        self.pc = 0  # index of the next op to run
        self.results: list[np.ndarray] | None = None

    def __getitem__(self, value: Value) -> np.ndarray:
        try:
            return self.values[id(value)]
        except KeyError:
            raise AielowerError(f"{value!r} is not live at op {self.pc} of this frame") from None

    def __setitem__(self, value: Value, array: np.ndarray) -> None:
        old = self[value]
        if array.shape != old.shape or array.dtype != old.dtype:
            raise AielowerError(f"replacing {value!r}: {array.dtype} {array.shape} for {old.dtype} {old.shape}")
        self.values[id(value)] = array


class Interpreter:
    """Runs ``module.functions[function]`` op by op (see the module docs)."""

    def __init__(self, module: Module, function: str = "prefill"):
        if function not in module.functions:
            raise AielowerError(f"no function @{function}; this module has {', '.join(module.functions) or 'none'}")
        self.module = module
        self.fn = module.functions[function]
        self._kernels = load_source(generate_kernels(module), f"<aielower-ref kernels {module.name}>")
        last_use: dict[int, int] = {}
        for i, op in enumerate(self.fn.ops):
            for v in op.operands:
                last_use[id(v)] = i
        returned = {id(v) for v in self.fn.results}
        # Values to drop after op i: operands read for the last time there, and unused results.
        self._dead: list[list[int]] = [[] for _ in self.fn.ops]
        for i, op in enumerate(self.fn.ops):
            for v in dict.fromkeys(op.operands):  # a value may be read twice by one op
                if not isinstance(v, Weight) and last_use[id(v)] == i and id(v) not in returned:
                    self._dead[i].append(id(v))
            self._dead[i] += [id(r) for r in op.results if id(r) not in last_use and id(r) not in returned]
        self._dequantized: dict[str, tuple[Any, np.ndarray]] = {}

    def start(self, *args) -> Frame:
        """A frame holding the function's arguments, at op 0."""
        if len(args) != len(self.fn.args):
            raise AielowerError(f"@{self.fn.name} takes {len(self.fn.args)} arguments, got {len(args)}")
        values, symbols = {}, {}
        for a, x in zip(self.fn.args, args):
            x = np.asarray(x)
            if x.ndim != len(a.type.shape):
                raise AielowerError(f"argument %{a.name_hint} must have rank {len(a.type.shape)}, got shape {x.shape}")
            for d, n in zip(a.type.shape, x.shape):
                if isinstance(d, Sym):
                    symbols.setdefault(d, n)
            values[id(a)] = x
        return Frame(values, symbols)

    def run(self, frame: Frame, stop: int | None = None) -> Frame:
        """Run ops ``frame.pc .. stop - 1`` (to the end by default); at the end, fill ``frame.results``."""
        stop = len(self.fn.ops) if stop is None else stop
        if not frame.pc <= stop <= len(self.fn.ops):
            raise AielowerError(f"cannot run @{self.fn.name} from op {frame.pc} to op {stop}")
        for i in range(frame.pc, stop):
            op = self.fn.ops[i]
            out = self._kernels[kernel_name(op.name)](*self._operands(op, frame), **self._attributes(op, frame))
            outs = out if len(op.results) > 1 else (out,)
            for r, a in zip(op.results, outs):
                frame.values[id(r)] = a
            for key in self._dead[i]:
                del frame.values[key]
            frame.pc = i + 1
        if frame.pc == len(self.fn.ops) and frame.results is None:
            frame.results = [frame[v] for v in self.fn.results]
        return frame

    def __call__(self, *args) -> list[np.ndarray]:
        """The function's results for ``args``."""
        return self.run(self.start(*args)).results

    # -- helpers --------------------------------------------------------------------

    def _weight(self, w: Weight) -> np.ndarray:
        if w.data is None:
            raise ModelError(f"weight @{w.name} has no data (built on the meta device): nothing to run")
        if not isinstance(w.type, QTensorType):
            return w.data
        cached = self._dequantized.get(w.name)
        if cached is None or cached[0] is not w.data:
            cached = self._dequantized[w.name] = (w.data, w.data.dequantize())
        return cached[1]

    def _operands(self, op, frame: Frame) -> list:
        writes = IN_PLACE_OPERANDS.get(op.name, ())
        args = []
        for f in op.operand_fields:
            group = op._groups[f.name]
            if not group:
                continue
            arrays = [self._weight(v) if isinstance(v, Weight) else frame[v] for v in group]
            if f.variadic:
                args.append(arrays)
            else:
                args.append(np.copy(arrays[0]) if f.name in writes else arrays[0])
        return args

    def _attributes(self, op, frame: Frame) -> dict:
        def resolve(value):
            if isinstance(value, Sym):
                return frame.symbols[value]
            if isinstance(value, (tuple, list)):
                return tuple(resolve(v) for v in value)
            return value

        return {f.name: resolve(op.attributes[f.name]) for f in op.attr_fields}
