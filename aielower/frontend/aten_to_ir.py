"""Conversion of an exported torch program (aten ops) into an IR function.

Each aten op the frontend understands has one short rule here, registered with
``@rule(aten.op.overload, ...)``. A rule gets the :class:`Importer` (to look up operands)
and the fx node, and returns an IR value (or a dim for shape arithmetic, or None for
nodes with no data result). To support a new aten op, add a rule.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import torch

from aielower.errors import ConversionError, IRError
from aielower.frontend.capture import WRAPPER_PREFIX
from aielower.ir import Builder, Function, Module, Sym, TensorType, Value
from aielower.ir.dialects import nn, tensor

aten = torch.ops.aten

TORCH_DTYPES = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.float64: "f64",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.int8: "i8",
    torch.uint8: "u8",
    torch.bool: "i1",
}

_LAYER_PATH = re.compile(r"(?:^|\.)model\.layers\.([0-9]+)(?:\.|$)", re.ASCII)

Rule = Callable[["Importer", torch.fx.Node], Any]
RULES: dict[Any, Rule] = {}
IDENTITY = object()  # marker: the node's value is its first argument


def rule(*targets) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for t in targets:
            RULES[t] = fn
        return fn

    return register


class Importer:
    """Walks one exported graph and builds the IR function, one rule per node."""

    def __init__(self, program: torch.export.ExportedProgram, module: Module, fn_name: str, symbols: dict,
                 arg_names: dict[str, str] | None = None):
        self.program = program
        self.module = module
        self.fn = Function(fn_name)
        self.builder = Builder(self.fn)
        self.env: dict[torch.fx.Node, Any] = {}
        self.symbols = symbols  # sympy symbol name -> Sym
        sig = program.graph_signature
        self.param_names = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
        self.state = {**program.state_dict, **program.constants}
        self.node: torch.fx.Node | None = None
        self.arg_names = arg_names or {}
        # id(op) -> the decoder layer whose module emitted it (from the node's nn_module_stack), None outside layers:
        # what capture-by-stamping (frontend/stamp.py) reads to find the layer block.
        self.op_layers: dict[int, int | None] = {}

    # -- lookups used by rules ----------------------------------------------------------

    def value(self, arg) -> Value:
        if not isinstance(arg, torch.fx.Node):
            raise self.error(f"expected a tensor operand, got the constant {arg!r}")
        v = self.env[arg]
        if not isinstance(v, Value):
            raise self.error(f"expected a tensor operand, got {v!r}")
        return v

    def dim(self, arg):
        """An int or a Sym from a literal, a SymInt node or a SymInt value."""
        if isinstance(arg, torch.fx.Node):
            return self.env[arg]
        if isinstance(arg, torch.SymInt):
            return self.sym_to_dim(arg)
        return arg

    def sym_to_dim(self, s) -> int | Sym:
        if isinstance(s, int):
            return s
        expr = s.node.expr
        if expr.is_Integer:
            return int(expr)
        if expr.is_Symbol and str(expr) in self.symbols:
            return self.symbols[str(expr)]
        raise self.error(
            f"shape expression {expr} is not supported: only the batch and sequence symbols may appear in shapes"
        )

    def meta_type(self, node: torch.fx.Node) -> TensorType:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise self.error("node has no tensor metadata")
        if val.dtype not in TORCH_DTYPES:
            raise self.error(f"dtype {val.dtype} is not supported")
        return TensorType(tuple(self.sym_to_dim(d) for d in val.shape), TORCH_DTYPES[val.dtype])

    def meta_shape(self, node: torch.fx.Node) -> tuple:
        return self.meta_type(node).shape

    def emit(self, op) -> Value:
        self.op_layers[id(op)] = self.layer(self.node) if self.node is not None else None
        return self.builder.add(op)

    @staticmethod
    def layer(node: torch.fx.Node) -> int | None:
        """The index of the decoder layer (``model.layers.N``) whose forward ran ``node``, if any."""
        for path, _ in (node.meta.get("nn_module_stack") or {}).values():
            m = _LAYER_PATH.search(str(path))
            if m:
                return int(m.group(1))
        return None

    # -- errors -----------------------------------------------------------------------

    def where(self, node: torch.fx.Node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        path, cls = "", ""
        if stack:
            path, cls = list(stack.values())[-1]
            cls = cls.rsplit(".", 1)[-1] if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            path = path[len(WRAPPER_PREFIX) :] if path.startswith(WRAPPER_PREFIX) else path
        module = f"{path or '<top level>'} ({cls})" if cls else path or "<top level>"
        return f"at {module}, node %{node.name}"

    def error(self, message: str, hint: str = "") -> ConversionError:
        node = self.node
        where = f"\n  {self.where(node)}" if node is not None else ""
        return ConversionError(f"{message}{where}" + (f"\n  {hint}" if hint else ""))

    # -- driver -------------------------------------------------------------------------

    def weight(self, node: torch.fx.Node) -> Value:
        name = self.param_names[node.name]
        name = name[len(WRAPPER_PREFIX) :] if name.startswith(WRAPPER_PREFIX) else name
        if name in self.module.weights:
            return self.module.weights[name]
        t = self.state[self.param_names[node.name]]
        data = None if t.is_meta else t.detach().cpu().numpy()
        return self.module.add_weight(name, self.meta_type(node), data)

    def run(self) -> Function:
        graph = self.program.graph_module.graph
        graph.eliminate_dead_code()
        for node in graph.nodes:
            self.node = node
            if node.op == "placeholder":
                if node.name in self.param_names:
                    if node.users:
                        self.env[node] = self.weight(node)
                else:
                    self.env[node] = self.fn.add_arg(self.arg_names.get(node.name, node.name), self.meta_type(node))
            elif node.op == "call_function":
                self.env[node] = self.convert(node)
            elif node.op == "output":
                outs = node.args[0]
                self.fn.set_results([self.value(o) for o in outs])
            else:
                raise self.error(f"unexpected fx node kind {node.op!r}")
        self.node = None
        return self.fn

    def convert(self, node: torch.fx.Node):
        fn = RULES.get(node.target)
        if fn is None:
            raise self.error(f"no conversion for {node.target}", "add a rule in aielower/frontend/aten_to_ir.py")
        try:
            out = fn(self, node)
        except ConversionError:
            raise
        except IRError as e:
            raise self.error(f"{node.target}: {e}") from None
        if out is IDENTITY:
            return self.env[node.args[0]]
        if isinstance(out, Value) and isinstance(node.meta.get("val"), torch.Tensor):
            expected = self.meta_type(node)
            if out.type != expected:
                raise self.error(f"{node.target} became {out.type}, but torch says {expected} (a bug in its rule)")
        return out


# =========================================================================== rules


@rule(aten.sym_size.int)
def _sym_size(im: Importer, node):
    return im.sym_to_dim(node.meta["val"])


@rule(aten._assert_tensor_metadata.default)
def _assert(im: Importer, node):
    return None


@rule(aten.clone.default, aten.alias.default, aten.detach.default, aten.contiguous.default, aten.lift_fresh_copy.default)
def _identity(im: Importer, node):
    return IDENTITY


@rule(aten._to_copy.default, aten.to.dtype, aten.to.device, aten.to.dtype_layout, aten.type_as.default)
def _to_copy(im: Importer, node):
    x = im.value(node.args[0])
    dtype = im.meta_type(node).dtype
    return IDENTITY if dtype == x.type.dtype else im.emit(tensor.Cast(x, dtype=dtype))


@rule(aten.embedding.default)
def _embedding(im: Importer, node):
    return im.emit(nn.Embedding(im.value(node.args[1]), im.value(node.args[0])))


@rule(aten.linear.default)
def _linear(im: Importer, node):
    x, w = im.value(node.args[0]), im.value(node.args[1])
    b = im.value(node.args[2]) if len(node.args) > 2 and node.args[2] is not None else None
    return im.emit(nn.Linear(x, w, b))


@rule(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(im: Importer, node):
    args = [im.dim(a) for a in node.args]
    start, end, step = (0, args[0], 1) if len(args) == 1 else (args + [1])[:3]
    return im.emit(tensor.Arange(end=end, start=start, step=step, dtype=im.meta_type(node).dtype))


def _binary(op_cls, scalar_cls, *, negate_scalar: bool = False, reverse_scalar: Callable | None = None):
    def convert(im: Importer, node):
        if node.kwargs.get("alpha", 1) != 1:
            raise im.error(f"{node.target} with alpha != 1 is not supported")
        a, b = node.args[:2]
        if isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node):
            return im.emit(op_cls(im.value(a), im.value(b)))
        if isinstance(a, torch.fx.Node):
            if scalar_cls is None:
                raise im.error(f"{node.target} with a constant operand is not supported")
            return im.emit(scalar_cls(im.value(a), value=-b if negate_scalar else b))
        if reverse_scalar is None:
            raise im.error(f"{node.target} with a constant left operand is not supported")
        return reverse_scalar(im, a, im.value(b))

    return convert


def _scalar_minus(im: Importer, c, x):
    return im.emit(nn.AddScalar(im.emit(nn.Neg(x)), value=c))


RULES[aten.add.Tensor] = _binary(nn.Add, nn.AddScalar, reverse_scalar=lambda im, c, x: im.emit(nn.AddScalar(x, value=c)))
RULES[aten.sub.Tensor] = _binary(nn.Sub, nn.AddScalar, negate_scalar=True, reverse_scalar=_scalar_minus)
RULES[aten.mul.Tensor] = _binary(nn.Mul, nn.MulScalar, reverse_scalar=lambda im, c, x: im.emit(nn.MulScalar(x, value=c)))
RULES[aten.div.Tensor] = _binary(nn.Div, nn.DivScalar)
RULES[aten.le.Tensor] = _binary(nn.Le, None)
RULES[aten.add.Scalar] = RULES[aten.add.Tensor]
RULES[aten.mul.Scalar] = RULES[aten.mul.Tensor]


@rule(aten.pow.Tensor_Scalar)
def _pow(im: Importer, node):
    return im.emit(nn.PowScalar(im.value(node.args[0]), value=node.args[1]))


_UNARY = {
    aten.neg.default: nn.Neg,
    aten.rsqrt.default: nn.Rsqrt,
    aten.sqrt.default: nn.Sqrt,
    aten.exp.default: nn.Exp,
    aten.cos.default: nn.Cos,
    aten.sin.default: nn.Sin,
    aten.silu.default: nn.Silu,
}
for _target, _cls in _UNARY.items():
    RULES[_target] = (lambda cls: lambda im, node: im.emit(cls(im.value(node.args[0]))))(_cls)


@rule(aten.mean.dim)
def _mean(im: Importer, node):
    x = im.value(node.args[0])
    dims = node.args[1] if len(node.args) > 1 and node.args[1] is not None else list(range(x.type.rank))
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return im.emit(nn.Mean(x, dims=list(dims), keepdim=bool(keepdim)))


@rule(aten._softmax.default, aten.softmax.int)
def _softmax(im: Importer, node):
    return im.emit(nn.Softmax(im.value(node.args[0]), dim=node.args[1]))


def _to_shape(op_cls):
    """A view-like op whose target shape is read off torch's metadata (no-op views vanish)."""

    def convert(im: Importer, node):
        x = im.value(node.args[0])
        shape = im.meta_shape(node)
        return IDENTITY if shape == x.type.shape else im.emit(op_cls(x, shape=shape))

    return convert


for _target in (aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.unsqueeze.default,
                aten.squeeze.dim, aten.flatten.using_ints):
    RULES[_target] = _to_shape(tensor.Reshape)
RULES[aten.expand.default] = _to_shape(tensor.Expand)


@rule(aten.transpose.int)
def _transpose(im: Importer, node):
    return im.emit(tensor.Transpose(im.value(node.args[0]), dim0=node.args[1], dim1=node.args[2]))


@rule(aten.permute.default)
def _permute(im: Importer, node):
    return im.emit(tensor.Permute(im.value(node.args[0]), perm=list(node.args[1])))


@rule(aten.slice.Tensor)
def _slice(im: Importer, node):
    x = im.value(node.args[0])
    args = list(node.args) + [None] * (5 - len(node.args))
    dim = args[1] if args[1] is not None else 0
    start = im.dim(args[2]) if args[2] is not None else 0
    end = im.dim(args[3]) if args[3] is not None else None
    step = args[4] if args[4] is not None else 1
    size = x.type.shape[dim]
    if end is None or (isinstance(end, int) and (isinstance(size, Sym) and end >= 2**62 or isinstance(size, int) and end >= size)):
        end = size
    if not isinstance(start, int) or (isinstance(end, int) and end < 0) or (start < 0 and end != size):
        raise im.error(f"slice start {start}, end {end} not supported (need constant bounds: non-negative, or a "
                       "negative start with the slice running to the end)")
    if start == 0 and end == size and step == 1:
        return IDENTITY
    return im.emit(tensor.Slice(x, dim=dim, start=start, end=end, step=step))


@rule(aten.index_copy.default)
def _index_copy(im: Importer, node):
    x, dim, index, src = node.args
    return im.emit(tensor.IndexCopy(im.value(x), im.value(index), im.value(src), dim=dim))


@rule(aten.cat.default)
def _cat(im: Importer, node):
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return im.emit(tensor.Concat([im.value(v) for v in node.args[0]], dim=dim))


@rule(aten.scaled_dot_product_attention.default)
def _sdpa(im: Importer, node):
    q, k, v = (im.value(a) for a in node.args[:3])
    names = ["attn_mask", "dropout_p", "is_causal"]
    opts = dict(zip(names, node.args[3:]))
    opts.update({n: node.kwargs[n] for n in names + ["scale", "enable_gqa"] if n in node.kwargs})
    mask = opts.get("attn_mask")
    if mask is not None and opts.get("is_causal", False):
        raise im.error("scaled_dot_product_attention with both a mask and is_causal is not supported")
    if opts.get("dropout_p", 0.0) != 0.0:
        raise im.error("scaled_dot_product_attention with dropout is not supported (export in eval mode)")
    if opts.get("enable_gqa", False):
        raise im.error("scaled_dot_product_attention with enable_gqa is not supported (repeat kv heads first)")
    scale = opts.get("scale")
    if scale is None:
        scale = 1.0 / math.sqrt(q.type.shape[-1])
    mask = im.value(mask) if mask is not None else None
    return im.emit(nn.ScaledDotProductAttention(q, k, v, mask, scale=float(scale), causal=bool(opts.get("is_causal", False))))
