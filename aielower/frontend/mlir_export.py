"""Optional MLIR export of the captured prefill, through torch-mlir's FX importer.

For users with MLIR toolchains: :func:`export_mlir` takes the same ``torch.export`` capture
the compiler uses (:func:`aielower.frontend.capture.export_prefill`) and hands it to
torch-mlir, which prints it in the ``torch`` dialect (torch-mlir's backend contract:
``torch.aten.*`` ops on ``!torch.vtensor``) or lowered to ``linalg`` on tensors
(``linalg``/``tensor``/``arith``/``math`` ops). torch-mlir is an optional dependency
(the ``mlir`` extra); nothing else in aielower needs it.

The exported function is ``func.func @main``. Its first argument is ``input_ids``
(``[batch, seq]``, i64, both dims dynamic) and its result the logits
``[batch, seq, vocab]`` f32. Weights are placed by ``weights=``:

* ``"inline"``: every weight is a constant in the module (``torch.vtensor.literal`` /
  ``arith.constant`` of a ``dense_resource`` blob, printed hex-encoded at the end of the
  text). Needs a model with data; a meta model raises :class:`CompileError`.
* ``"args"``: every parameter and buffer is a function argument after ``input_ids``,
  tagged with its Hugging Face state-dict name (``{aielower.weight = "model.norm.weight"}``).
* ``"auto"`` (default): inline the tensors that have data, arguments for the ones on the
  ``meta`` device. A model with weights exports self-contained; a bundled config (built on
  ``meta``: shapes only) exports with every weight an argument, ``rotary_emb.inv_freq``
  included (on ``meta`` it has no data either).

torch-mlir decomposes the graph on the way in (its default decomposition table: the
attention comes out as matmul/softmax pieces, not as one op).
"""

from __future__ import annotations

from aielower.errors import CompileError

INSTALL_HINT = "export-mlir needs torch-mlir: pip install torch==2.13.0 -e '.[mlir]'"

# dialect name -> torch-mlir output type
DIALECTS = {"torch": "torch", "linalg": "linalg-on-tensors"}
WEIGHT_MODES = ("auto", "inline", "args")
FUNC_NAME = "main"
WEIGHT_NAME_ATTR = "aielower.weight"

# The pass pipelines torch_mlir.fx.export_and_import runs for these output types (its
# _module_lowering and compiler_utils.lower_mlir_module). We run them ourselves: torch-mlir's
# run_pipeline_with_repro_report first prints the whole module, inline weights included
# (for qwen2-0.5b: 4 GB of text, 25 s and 7 GB of memory, per pipeline), for an error report.
_TORCH_BACKEND = (
    "builtin.module(func.func(torch-match-quantized-custom-ops),"
    "torchdynamo-export-to-torch-backend-pipeline{ extra-library=})"
)
_LINALG_BACKEND = "builtin.module(torch-backend-to-linalg-on-tensors-backend-pipeline{allow-non-finites=true})"
PIPELINES = {"torch": [_TORCH_BACKEND], "linalg": [_TORCH_BACKEND, _LINALG_BACKEND]}


def _import_torch_mlir():
    try:
        import torch_mlir  # noqa: F401
        from torch_mlir import fx
    except ImportError as e:  # also when sys.modules["torch_mlir"] is None
        raise CompileError(f"{INSTALL_HINT} ({e})") from None
    return fx


def _has_data(t) -> bool:
    return t is not None and t.device.type != "meta"


def _strip(name: str) -> str:
    from aielower.frontend.capture import WRAPPER_PREFIX

    return name[len(WRAPPER_PREFIX) :] if name.startswith(WRAPPER_PREFIX) else name


def _weights_as_arguments(program, weights: str) -> list[str]:
    """Turn the parameter/buffer inputs of ``program`` that ``weights`` places as arguments
    into user inputs (``input_ids`` first, then those weights in signature order).

    A tensor bound to two names (tied ``lm_head.weight`` / ``model.embed_tokens.weight``)
    becomes one argument, named by its first name. Mutates ``program``'s graph and
    signature: call it on a program of our own. Returns the state-dict names of the new
    arguments, in order.
    """
    from torch.export.graph_signature import InputKind, InputSpec

    sig = program.graph_signature
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    user, as_args, kept = [], [], []
    names: list[str] = []
    first_arg_of: dict[int, str] = {}  # id(tensor) -> placeholder name of its argument
    for spec in sig.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            user.append(spec)
            continue
        if spec.kind == InputKind.PARAMETER or (spec.kind == InputKind.BUFFER and spec.persistent):
            value = program.state_dict.get(spec.target)
        else:  # non-persistent buffer, lifted constant
            value = program.constants.get(spec.target)
        weight_kind = spec.kind in (InputKind.PARAMETER, InputKind.BUFFER)
        if _has_data(value) and not (weights == "args" and weight_kind):
            kept.append(spec)
            continue
        if value is not None and id(value) in first_arg_of:
            node = placeholders[spec.arg.name]
            node.replace_all_uses_with(placeholders[first_arg_of[id(value)]])
            program.graph.erase_node(node)
            continue
        if value is not None:
            first_arg_of[id(value)] = spec.arg.name
        as_args.append(InputSpec(kind=InputKind.USER_INPUT, arg=spec.arg, target=None))
        names.append(_strip(spec.target or spec.arg.name))
    sig.input_specs[:] = user + as_args + kept
    return names


def _literal_hooks(program):
    """FxImporterHooks that inline a weight from its memory: torch-mlir's default turns each
    tensor into a Python list first (``np.array(t.tolist())``), which for qwen2-0.5b costs
    minutes and ~10 GB. The blob is named by the weight's state-dict name."""
    from torch_mlir import ir
    from torch_mlir.extras.fx_importer import FxImporterHooks, create_mlir_tensor_type

    class InlineWeights(FxImporterHooks):
        def __init__(self):
            self.attrs = {}  # id(tensor) -> (tensor, elements attr); tied weights share one blob
            self.names = {}  # id(tensor) -> its first name in the signature
            for name, t in [*program.state_dict.items(), *program.constants.items()]:
                self.names.setdefault(id(t), _strip(name))

        def resolve_literal(self, gni, literal, info):
            import torch

            if (
                info is None
                or not isinstance(literal, torch.Tensor)
                or not _has_data(literal)
                or literal.numel() <= 1  # the default makes a splat of those
                or literal.dtype not in (torch.float32, torch.float16)
                or type(literal) not in (torch.Tensor, torch.nn.Parameter)
            ):
                return None
            hit = self.attrs.get(id(literal))
            if hit is None:
                array = literal.detach().cpu().contiguous().numpy()
                tensor_type = create_mlir_tensor_type(literal)
                name = self.names.get(id(literal), info.node.name)
                hit = (literal, ir.DenseResourceElementsAttr.get_from_buffer(array, name, tensor_type))
                self.attrs[id(literal)] = hit
            op = ir.Operation.create("torch.vtensor.literal", results=[info.ir_type], attributes={"value": hit[1]})
            return op.result

    return InlineWeights()


def _meta_to_cpu(program) -> None:
    """Ops of a meta model's graph create tensors on ``device=meta`` (arange, empty, ...);
    torch-mlir's linalg lowering rejects that device. Say ``cpu``, as a real model would."""
    import torch

    meta, cpu = torch.device("meta"), torch.device("cpu")
    for node in program.graph.nodes:
        if node.op == "call_function" and node.kwargs.get("device") == meta:
            node.kwargs = {**node.kwargs, "device": cpu}


def _meta_weights(program) -> list[str]:
    names = [n for n, t in program.state_dict.items() if not _has_data(t)]
    names += [n for n, t in program.constants.items() if not _has_data(t)]
    return [_strip(n) for n in names]


def _run_pipeline(module, pipeline: str, dialect: str) -> None:
    from torch_mlir.passmanager import PassManager

    errors: list[str] = []

    def collect(diagnostic) -> bool:
        errors.append(f"{diagnostic.location}: {diagnostic.message}")
        return True  # handled: not printed to stderr

    with module.context as ctx:
        ctx.emit_error_diagnostics = True  # as torch-mlir does: some passes emit errors without failing
        handler = ctx.attach_diagnostic_handler(collect)
        try:
            PassManager.parse(pipeline).run(module.operation)
        except Exception as e:  # MLIRError, or a pipeline this torch-mlir lacks
            detail = "\n".join(errors[:5]) or str(e)
            raise CompileError(f"torch-mlir could not lower the prefill to the {dialect} dialect:\n{detail}") from None
        finally:
            handler.detach()


def _name_arguments(module, names: list[str]) -> None:
    """Tag the weight arguments of @main (after ``input_ids``) with their state-dict names."""
    from torch_mlir import ir

    with module.context:
        for op in module.body.operations:
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == FUNC_NAME:
                attrs = [ir.DictAttr.get({})]  # input_ids
                attrs += [ir.DictAttr.get({WEIGHT_NAME_ATTR: ir.StringAttr.get(n)}) for n in names]
                op.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)
                return
    raise CompileError(f"torch-mlir produced no func.func @{FUNC_NAME}")  # pragma: no cover


def export_mlir(model, dialect: str = "torch", *, weights: str = "auto") -> str:
    """MLIR text of the prefill of ``model`` (a ``Qwen2ForCausalLM``), via torch-mlir.

    ``dialect`` is ``"torch"`` (torch-mlir's torch backend IR: ``torch.aten.*`` ops) or
    ``"linalg"`` (linalg on tensors). ``weights`` is ``"auto"``, ``"inline"`` or ``"args"``
    (see the module docstring). Raises :class:`CompileError` for an unknown dialect or
    weights mode, when torch-mlir is not installed, for ``weights="inline"`` on a meta
    model, and when torch-mlir fails; :class:`ModelError` for a model aielower does not
    capture.
    """
    return str(_export_module(model, dialect, weights))


def write_mlir(model, file, dialect: str = "torch", *, weights: str = "auto") -> None:
    """:func:`export_mlir` straight into ``file`` (a path or a text file object), without
    holding the whole text in memory: with inline weights the text is ~2 bytes per weight
    byte (hex), 4 GB for qwen2-0.5b."""
    module = _export_module(model, dialect, weights)
    if hasattr(file, "write"):
        module.operation.print(file=file)
    else:
        with open(file, "w", encoding="utf-8") as f:
            module.operation.print(file=f)


def _export_module(model, dialect: str, weights: str):
    """The lowered torch-mlir ``Module`` (see :func:`export_mlir`)."""
    if dialect not in DIALECTS:
        raise CompileError(f"unknown MLIR dialect {dialect!r}: choose one of {', '.join(DIALECTS)}")
    if weights not in WEIGHT_MODES:
        raise CompileError(f"unknown weights mode {weights!r}: choose one of {', '.join(WEIGHT_MODES)}")
    fx = _import_torch_mlir()
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    from aielower.frontend.capture import export_prefill
    from aielower.frontend.config_checks import check_model

    check_model(model)
    program = export_prefill(model)
    if weights == "inline":
        missing = _meta_weights(program)
        if missing:
            raise CompileError(
                f"MLIR export with weights='inline' needs a model with weights, but {len(missing)} tensors "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}) are on the meta device "
                "(a bundled config has shapes only): load a local Hugging Face model directory, or use "
                "weights='auto' or 'args' to take the weights as function arguments"
            )
    # Decompose here (torch-mlir's own table, as export_and_import would) so the
    # signature rewrite below works on the program that gets imported.
    program = program.run_decompositions(get_decomposition_table())
    arg_names = _weights_as_arguments(program, weights)
    _meta_to_cpu(program)

    # experimental_support_mutation selects FxImporter.import_program; the default,
    # import_frozen_program, looks non-persistent buffers (rotary_emb.inv_freq) up in the
    # state dict and fails. decomposition_table={}: decomposed above already.
    module = fx.export_and_import(
        program,
        output_type="raw",
        experimental_support_mutation=True,
        decomposition_table={},
        func_name=FUNC_NAME,
        hooks=_literal_hooks(program),
    )
    for pipeline in PIPELINES[dialect]:
        _run_pipeline(module, pipeline, dialect)
    if arg_names:
        _name_arguments(module, arg_names)
    return module


__all__ = ["DIALECTS", "INSTALL_HINT", "WEIGHT_MODES", "export_mlir", "write_mlir"]
