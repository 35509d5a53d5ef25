"""AWQ on the IR: find the linear groups, calibrate on @prefill, fold the scales, clip.

``quantize-linear{method=awq}`` calls :func:`apply_awq` before rounding the weights; the
result is an fp32 module computing the same function (up to float rounding; exactly so
with ``clip=False``) whose weights quantize better. Rounding is then plain RTN, so the
program stays ordinary ``quant.linear`` ops and no backend needs anything new.

Groups. Linears reading one value ``x`` form a group (fused qkv, fused gate/up, o_proj,
down_proj). ``1/s`` is folded into what produces ``x``:

- a fused RMSNorm (``fused.rms_norm``, the normed result of ``fused.add_rms_norm``): its
  weight is divided by ``s`` (qkv after input_layernorm, gate/up after
  post_attention_layernorm);
- ``fused.silu_mul``: the up rows of the fused gate/up weight are divided by ``s``, since
  ``silu(g) * (u / s) = (silu(g) * u) / s`` (down_proj);
- ``fused.attention`` (o_proj): the value rows of the qkv weight and bias. Attention is
  linear in v per head, so scaling v channel ``(kv, j)`` scales output channel ``(h, j)``
  of every query head ``h`` that reads kv head ``kv``. With grouped-query attention the
  ``heads / kv_heads`` query heads of one kv head must share one scale: the search runs
  over tied scales (one per value channel), so the fold is exact there too.

A group whose ``x`` has another reader, or whose producer is none of these, keeps
``s = 1`` (it is still clipped). Weights are shared by @prefill and @decode; a fold is
applied only if every function has the same group and the weights have no other reader.

Dead ops (fusions leave the ops they replaced until ``dce``) are erased first, so that
only live readers count. Calibration runs @prefill op by op (:class:`~aielower.interp.Interpreter`)
over all calibration batches and stops before each group: its input is collected after
every earlier group has been scaled and clipped, in fp32 (not rounded), as in AutoAWQ. The
live input of the group is then divided by ``s`` in every batch, which is what the changed
producer would have computed, so the forward pass never runs twice.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

import numpy as np

from aielower.interp import Interpreter
from aielower.errors import CompileError
from aielower.ir import Function, Module, Value, Weight
from aielower.ir.core import LinearLike
from aielower.ir.dialects import fused, nn, tensor
from aielower.quant.awq import apply_clip, search_clip, search_scale
from aielower.quant.calibration import ActivationSample, pick_rows
from aielower.passes.dce import DeadCodeElimination
from aielower.passes.quantize_linear import is_lm_head
from aielower.passes.rewriter import op_users, producer, single_user


@dataclass(frozen=True)
class AWQOptions:
    """``bits``/``group``: the quantization the search measures; ``n_grid``: alpha values;
    ``clip``: also search the clipping range; ``search_tokens``: calibration tokens on which
    the output error is measured (``mean|x|`` uses all); ``batch_tokens``: tokens per batch
    of the calibration forward pass; ``progress``: show a progress bar (tqdm, on stderr)."""

    bits: int = 4
    group: int = 128
    n_grid: int = 20
    clip: bool = False
    search_tokens: int = 4096
    batch_tokens: int = 4096
    progress: bool = True
    seed: int = 0


@dataclass
class Fold:
    """How ``1/s`` reaches the producer of a group's input.

    ``kind == "norm"``: divide the RMSNorm ``weight`` by ``s``. ``kind == "rows"``: divide
    rows ``rows[p]`` of ``weight`` (and ``bias``) by the scale parameter ``p``."""

    kind: str
    weight: Weight
    bias: Weight | None = None
    rows: np.ndarray | None = None

    def signature(self) -> tuple:
        rows = None if self.rows is None else self.rows.tobytes()
        return (self.kind, self.weight.name, None if self.bias is None else self.bias.name, rows)

    def describe(self) -> str:
        if self.kind == "norm":
            return f"@{self.weight.name}"
        return f"rows {int(self.rows.min())}..{int(self.rows.max())} of @{self.weight.name}"


@dataclass
class LinearGroup:
    """Linears reading one value ``x``; ``tie[c]`` is the scale parameter of input channel ``c``."""

    x: Value
    linears: list[LinearLike]  # any op carrying a linear (nn.linear, or a fused op with an epilogue)
    fold: Fold | None = None
    why_not: str = ""
    tie: np.ndarray | None = None
    no_clip: dict[str, np.ndarray] = field(default_factory=dict)  # weight name -> rows never clipped (q, k)

    @property
    def weights(self) -> tuple[str, ...]:
        return tuple(op.linear_weight.name for op in self.linears)

    @property
    def name(self) -> str:
        names = [n[: -len(".weight")] if n.endswith(".weight") else n for n in self.weights]
        if len(names) == 1:
            return names[0]
        prefix = os.path.commonprefix(names)
        prefix = prefix[: prefix.rfind(".") + 1]
        return prefix + "{" + ",".join(n[len(prefix):] for n in names) + "}"

    def signature(self) -> tuple:
        tie = None if self.tie is None else self.tie.tobytes()
        return (self.weights, None if self.fold is None else self.fold.signature(), tie)


# --------------------------------------------------------------------------- finding groups


def _transposes_1_2(op) -> bool:
    return isinstance(op, tensor.Transpose) and {op.dim0 % 4, op.dim1 % 4} == {1, 2} and len(op.x.type.shape) == 4


def _value_rows(v: Value) -> tuple[nn.LinearBase, int] | None:
    """The linear (and first row) whose output rows are ``v`` [b, kv, s, d] (via reshape, transpose, split).
    Only a plain linear (no epilogue) qualifies: scaling its weight rows scales exactly its output rows."""
    t = producer(v, tensor.Transpose)
    if t is None or not _transposes_1_2(t) or not single_user(v):
        return None
    r = producer(t.x, tensor.Reshape)
    if r is None or not single_user(t.x) or not single_user(r.x):
        return None
    heads, dim = t.x.type.shape[2:]
    if r.x.type.shape[-1] != heads * dim or r.x.type.shape[:-1] != t.x.type.shape[:2]:
        return None
    source = r.x
    split = producer(source, tensor.Split)
    offset = 0
    if split is not None:
        if split.dim % len(split.x.type.shape) != len(split.x.type.shape) - 1 or not single_user(split.x):
            return None
        index = split.results.index(source)
        offset = sum(split.sizes[:index])
        source = split.x
    linear = producer(source, nn.LinearBase)
    if linear is None or not isinstance(linear.weight, Weight) or (split is None and not single_user(source)):
        return None
    return linear, offset


def _attention_fold(x: Value) -> tuple[Fold | None, np.ndarray | None, str]:
    """o_proj: x = reshape(transpose(attention output)); fold into the value rows of the qkv weight."""
    r = producer(x, tensor.Reshape)
    t = producer(r.x, tensor.Transpose) if r is not None else None
    attn = producer(t.x, fused.Attention) if t is not None else None
    if attn is None or not _transposes_1_2(t) or t.x is not attn.results[0]:
        return None, None, ""
    if not (single_user(r.x) and single_user(t.x)):
        return None, None, "the attention output has other readers"
    heads, kv_heads, dim = attn.heads, attn.kv_heads, attn.head_dim
    if x.type.shape[-1] != heads * dim or t.result.type.shape[2:] != (heads, dim):
        return None, None, "the attention output is not laid out as [.., heads * head_dim]"
    found = _value_rows(attn.v)
    if found is None:
        return None, None, "the attention values do not come straight from rows of a linear"
    linear, offset = found
    channel = np.arange(heads * dim)
    tie = (channel // dim) // (heads // kv_heads) * dim + channel % dim  # (h, j) -> (h // n_rep, j)
    rows = offset + np.arange(kv_heads * dim)
    return Fold("rows", linear.weight, linear.bias, rows), tie, ""


def _find_fold(fn: Function, x: Value, linears: list) -> tuple[Fold | None, np.ndarray | None, str]:
    if any(u not in linears for u in op_users(x)) or any(v is x for v in fn.results):
        return None, None, "its input has readers other than the group"
    p = producer(x)
    if isinstance(p, (fused.RMSNorm, fused.AddRMSNorm)) and x is p.results[-1]:
        if isinstance(p.weight, Weight):
            return Fold("norm", p.weight), None, ""
        return None, None, "the RMSNorm weight is a run-time value"
    if isinstance(p, fused.SiluMul):
        gate_up = producer(p.x, nn.LinearBase)
        if gate_up is None or not single_user(p.x) or not isinstance(gate_up.weight, Weight):
            return None, None, "fused.silu_mul does not read a linear of its own"
        n = gate_up.out_features // 2
        return Fold("rows", gate_up.weight, gate_up.bias, n + np.arange(n)), None, ""
    if isinstance(p, tensor.Reshape):
        fold, tie, why = _attention_fold(x)
        if fold is not None or why:
            return fold, tie, why
    kind = p.name if p is not None else "a function argument"
    return None, None, f"its input comes from {kind}, which has no weight to fold 1/s into"


def find_groups(fn: Function) -> list[LinearGroup]:
    """The linear groups of ``fn`` (lm_head excluded) in order of their first linear."""
    groups, seen = [], set()
    no_clip: dict[str, list[np.ndarray]] = {}
    for op in fn.ops:
        if isinstance(op, fused.Attention):
            for v in (op.q, op.k):  # AutoAWQ never clips q and k: the error of q k^T is not the error of q
                found = _value_rows(v)
                if found is not None:
                    linear, offset = found
                    no_clip.setdefault(linear.weight.name, []).append(offset + np.arange(v.type.shape[1] * v.type.shape[3]))
    for op in fn.ops:
        if not isinstance(op, LinearLike) or is_lm_head(fn, op) or id(op.linear_input) in seen:
            continue
        x = op.linear_input
        seen.add(id(x))
        linears = [u for u in op_users(x) if isinstance(u, LinearLike) and u.linear_input is x and not is_lm_head(fn, u)]
        if not all(isinstance(u.linear_weight, Weight) for u in linears):
            continue  # quantize-linear reports run-time weights
        group = LinearGroup(x, linears)
        group.fold, group.tie, group.why_not = _find_fold(fn, x, linears)
        group.no_clip = {w: np.concatenate(no_clip[w]) for w in group.weights if w in no_clip}
        groups.append(group)
    return groups


def module_groups(module: Module, function: str = "prefill") -> list[LinearGroup]:
    """Groups of ``function`` whose folds are safe in the whole module (see the module docs)."""
    groups = find_groups(module.functions[function])
    twins = {name: {g.weights: g for g in find_groups(fn)} for name, fn in module.functions.items()}
    owner = {id(op): name for name, fn in module.functions.items() for op in fn.ops}
    for g in groups:
        if g.fold is None:
            continue
        targets = [op.linear_weight for op in g.linears] + [g.fold.weight] + ([g.fold.bias] if g.fold.bias else [])
        readers = {owner.get(id(u)) for w in targets for u in w.users}
        for name in sorted(readers - {function}, key=str):
            twin = twins.get(name, {}).get(g.weights)
            if twin is None or twin.signature() != g.signature():
                g.fold, g.why_not = None, f"@{name} reads these weights differently"
                break
        else:
            if any(len(w.users) != len(readers) for w in targets):
                g.fold, g.why_not = None, "a weight it would change has other readers"
    return groups


# --------------------------------------------------------------------------- folding


def fold_scale(group: LinearGroup, scale: np.ndarray, param: np.ndarray) -> None:
    """Multiply the group's weight columns by ``scale`` and fold ``1/param`` into the producer.

    Arrays are replaced, never written into (weights may share memory with the torch model)."""
    for op in group.linears:
        w = op.linear_weight
        w.data = w.data * scale[None, :].astype(w.data.dtype)
    f = group.fold
    if f.kind == "norm":
        f.weight.data = f.weight.data / param.astype(f.weight.data.dtype)
        return
    w = f.weight.data.copy()
    w[f.rows] /= param[:, None]
    f.weight.data = w
    if f.bias is not None:
        b = f.bias.data.copy()
        b[f.rows] /= param
        f.bias.data = b


# --------------------------------------------------------------------------- the driver


@dataclass
class GroupReport:
    name: str
    fold: str
    alpha: float | None
    scale_error: float | None  # output error with AWQ scales / with RTN, on the sample rows
    clip_error: float | None  # after / before clipping


@dataclass
class AWQReport:
    """What :func:`apply_awq` did: per group, and the cost."""

    samples: int
    seqlen: int
    groups: list[GroupReport]
    seconds: float
    phases: dict[str, float]  # seconds in the calibration forward pass, the scale search, the clip search
    peak_state_mb: float  # the most the calibration held at once: live values of all batches + sampled rows
    peak_rss_mb: float  # of the whole process so far

    def summary(self) -> str:
        folded = sum(g.alpha is not None for g in self.groups)
        scaled = sum(bool(g.alpha) for g in self.groups)
        ratios = [g.scale_error for g in self.groups if g.scale_error is not None]
        mean = f"{np.mean(ratios):.3f}" if ratios else "n/a"
        return (f"awq: {self.samples} x {self.seqlen} calibration tokens, {folded}/{len(self.groups)} groups "
                f"foldable, {scaled} scaled (alpha > 0; mean output error vs RTN {mean}), {self.seconds:.1f} s ("
                + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())
                + f"), calibration state {self.peak_state_mb:.0f} MB at most, peak RSS {self.peak_rss_mb:.0f} MB")

    def as_dict(self) -> dict:
        return {"samples": self.samples, "seqlen": self.seqlen, "seconds": self.seconds, "phases": self.phases,
                "peak_state_mb": self.peak_state_mb, "peak_rss_mb": self.peak_rss_mb,
                "groups": [vars(g) for g in self.groups]}


def apply_awq(module: Module, tokens: np.ndarray, options: AWQOptions = AWQOptions(),
              function: str = "prefill") -> AWQReport:
    """Scale (and clip) every linear group of ``module`` from calibration ``tokens`` [n, seqlen]."""
    if function not in module.functions:
        raise CompileError(f"AWQ calibrates by running @{function}, which this module does not have; "
                           f"compile with functions including {function!r}")
    missing = [n for n, w in module.weights.items() if w.data is None]
    if missing:
        raise CompileError(f"AWQ needs weights to calibrate, but @{missing[0]} (and {len(missing) - 1} more) are "
                           "shape-only (meta device); load a checkpoint")
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 2 or tokens.size == 0:
        raise CompileError(f"calibration tokens must be a non-empty [samples, seqlen] array, got {tokens.shape}")
    vocab = module.config_value("vocab_size", int)
    if vocab is not None and (tokens.min() < 0 or tokens.max() >= vocab):
        raise CompileError(f"calibration tokens out of range [0, {vocab}): is the tokenizer the model's?")
    t0 = time.perf_counter()
    phases = {"forward": 0.0, "scale search": 0.0, "clip search": 0.0}
    reports, peak_state = _run(module, tokens, options, function, phases)
    return AWQReport(tokens.shape[0], tokens.shape[1], reports, time.perf_counter() - t0, phases, peak_state / 2**20,
                     resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _run(module: Module, tokens: np.ndarray, options: AWQOptions, function: str,
         phases: dict[str, float]) -> tuple[list[GroupReport], int]:
    DeadCodeElimination().run(module)  # readers of a value that nobody reads would block folds
    fn = module.functions[function]
    groups = module_groups(module, function)
    for g in groups:
        if g.x.type.shape[-1] % options.group:
            raise CompileError(f"AWQ: {g.name} has {g.x.type.shape[-1]} input features, not a multiple of group "
                               f"{options.group}; choose a group size that divides it")
    interp = Interpreter(module, function)
    per_batch = max(1, options.batch_tokens // tokens.shape[1])
    batches = [tokens[i:i + per_batch] for i in range(0, len(tokens), per_batch)]
    frames = [interp.start(b) for b in batches]
    pick = pick_rows([b.size for b in batches], options.search_tokens, options.seed)
    position = {id(op): i for i, op in enumerate(fn.ops)}
    reports, peak_state = [], 0
    bar = _progress(len(groups) * len(frames), options.progress)
    try:
        for group in groups:
            bar.set_description(f"awq {group.name}")
            stop = min(position[id(op)] for op in group.linears)
            sample = ActivationSample(group.x.type.shape[-1], pick)
            t0 = time.perf_counter()
            for frame in frames:
                interp.run(frame, stop)
                sample.add(frame[group.x])
                bar.update(1)
            phases["forward"] += time.perf_counter() - t0
            state = sum(a.nbytes for frame in frames for a in frame.values.values()) + sample.rows_nbytes
            peak_state = max(peak_state, state)
            reports.append(_scale_and_clip(group, sample, frames, options, phases))
    finally:
        bar.close()
    return reports, peak_state


def _scale_and_clip(group: LinearGroup, sample: ActivationSample, frames, options: AWQOptions,
                    phases: dict[str, float]) -> GroupReport:
    rows = sample.rows
    alpha = scale_error = clip_error = None
    t0 = time.perf_counter()
    if group.fold is not None:
        w = np.concatenate([op.linear_weight.data for op in group.linears], axis=0)
        found = search_scale(w, rows, sample.mean_abs, bits=options.bits, group=options.group,
                             n_grid=options.n_grid, tie=group.tie)
        alpha = found.alpha
        scale_error = found.loss / found.rtn_loss if found.rtn_loss > 0 else 1.0
        if found.alpha != 0.0:
            fold_scale(group, found.scale, found.param_scale)
            inverse = (1 / found.scale).astype(np.float32)
            for frame in frames:  # what the changed producer computes now
                frame[group.x] = frame[group.x] * inverse
            rows = rows * inverse
    t1 = time.perf_counter()
    phases["scale search"] += t1 - t0
    if options.clip:
        before = after = 0.0
        for op in group.linears:
            weight = op.linear_weight
            w = weight.data
            keep = np.ones(w.shape[0], dtype=bool)
            keep[group.no_clip.get(weight.name, [])] = False
            if not keep.any():
                continue
            found = search_clip(w[keep], rows, bits=options.bits, group=options.group, n_grid=options.n_grid)
            clipped = w.copy()
            clipped[keep] = apply_clip(w[keep], found.max_val, options.group)
            weight.data = clipped
            before, after = before + found.rtn_error, after + found.error
        clip_error = after / before if before > 0 else None
    phases["clip search"] += time.perf_counter() - t1
    fold = group.fold.describe() if group.fold is not None else f"none: {group.why_not}"
    return GroupReport(group.name, fold, alpha, scale_error, clip_error)


class _NoBar:
    def update(self, n=1):
        pass

    def set_description(self, text):
        pass

    def close(self):
        pass


def _progress(total: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="batch", leave=False)
