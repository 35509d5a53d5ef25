"""The host side of running a planned module: what the host does around every NPU launch, launch by launch.

Ops with an ``aie.plan`` run as launches of their designs; everything else runs on the host. A
:class:`HostProgram` is an :class:`aielower.interp.Interpreter` whose planned ops are overridden with launches, so
host ops compute exactly what their ``@impl`` says; a ``LinearLike`` op with an epilogue runs its planned linear on
the NPU and the epilogue on the host. Each launch goes to a :class:`Launcher`, the only part that differs between
the host emulator (:class:`aielower.backends.aie.emulator.DesignLauncher`: the design files run by
:class:`~aielower.backends.aie.designs.simulate.DesignRun` with the kernels built by g++) and the XRT host runtime
(:class:`aielower.backends.aie.runtime.XrtLauncher`: buffer objects, instruction streams and kernel runs through
``pyxrt`` or the emulated device).

What the host does around each launch, as the NPU host runtime must: it pads inputs to the launch's bucket into
DDR tensors at their padded sizes; for attention over the KV cache it writes the step header (the position of the
first query token and the valid KV length) into the ``step`` DDR buffer and submits the runtime sequence that reads
the valid KV tiles; it writes the rotated keys and the values of the step into the KV cache (blocked by KV tile) at
the step's position; it loops over the batch around the attention launches; layout ops (split, reshape, transpose)
are host copies. Tensors that live in DDR across launches (the pre-tiled weights, the KV caches of a
:class:`~aielower.backends.aie.kv_cache.BlockedKvCache`) are passed as :class:`Resident` so a launcher writes them
once, or only the rows a step changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aielower.backends.aie.designs.build import kv_sequence_for
from aielower.backends.aie.designs.model import Design
from aielower.backends.aie.device import Device
from aielower.backends.aie.kernels import STEP_HEADER
from aielower.backends.aie.kv_cache import BlockedKvCache
from aielower.backends.aie.launcher import Launcher, Resident
from aielower.backends.aie.plan import AccessPattern, LaunchPlan, OpPlan, plan_of
from aielower.backends.aie.planner import roundup
from aielower.errors import AielowerError, CompileError
from aielower.interp import Interpreter
from aielower.ir import Module, Weight
from aielower.ir.core import LinearLike
from aielower.quant.bf16 import bf16_bits, from_bf16_bits


def to_bf16(x: np.ndarray) -> np.ndarray:
    return bf16_bits(np.asarray(x, dtype=np.float32))


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return from_bf16_bits(bits)


def strided_view(flat: np.ndarray, ap: AccessPattern, tensor: str) -> np.ndarray:
    """The elements ``ap`` addresses in the 1-D array ``flat``, as a view shaped like ``ap.sizes``."""
    last = ap.offset + sum((size - 1) * stride for size, stride in zip(ap.sizes, ap.strides))
    if last >= flat.size:
        raise AielowerError(f"access pattern offset={ap.offset} sizes={list(ap.sizes)} strides={list(ap.strides)} "
                            f"reads element {last} of tensor '{tensor}', which has {flat.size}")
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[ap.offset :], shape=ap.sizes, strides=[s * item for s in ap.strides])


def _pad2(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros((rows, cols), x.dtype)
    out[: x.shape[0], : x.shape[1]] = x
    return out


class HostProgram:
    """Runs the functions of a planned module: NPU launches through ``launcher``, the rest on the host.

    ``blobs`` maps each quantized weight's name to its pre-tiled bytes (as read from ``weights/``);
    ``host_weights`` the arrays host ops read (bf16-rounded where the NPU build stores bf16); ``design_for`` gives
    a launch's design (parsed from the artifact's design files). Host ops run on their ``@impl``
    (:mod:`aielower.interp`), through the same interpreter as the reference backend and AWQ.
    """

    def __init__(self, module: Module, device: Device, blobs: dict[str, np.ndarray],
                 host_weights: dict[str, np.ndarray], design_for: Callable[[LaunchPlan, OpPlan], Design],
                 launcher: Launcher):
        self.module, self.device, self.launcher = module, device, launcher
        self.blobs, self.host_weights = blobs, host_weights
        self.design_for = design_for
        self.launches = 0
        self._interpreters: dict[str, _HostInterpreter] = {}

    @property
    def calls(self) -> int:
        """Kernel calls made by all launches so far (as the launcher counts them)."""
        return self.launcher.calls

    def _run(self, plan: OpPlan, launch: LaunchPlan, tensors: dict, kv_len: int | None = None) -> None:
        """One launch over ``tensors`` (DDR tensors by runtime-sequence argument name). For attention over a cache,
        the sequence that reads the ``kv_len`` valid KV rows."""
        design = self.design_for(launch, plan)
        sequence = kv_sequence_for(design, kv_len, launch.params["tkv"]) if kv_len is not None else None
        self.launcher.launch(design, sequence, tensors)

    # -- functions ----------------------------------------------------------------------------------------

    def run(self, function: str, *args: np.ndarray) -> list[np.ndarray]:
        if function not in self.module.functions:
            raise AielowerError(f"the module has no function @{function}; it has {', '.join(self.module.functions)}")
        interp = self._interpreters.get(function)
        if interp is None:
            interp = self._interpreters[function] = _HostInterpreter(self, function)
        return interp(*args)

    # -- NPU ops ----------------------------------------------------------------------------------------------

    def _npu(self, op, plan: OpPlan, operands):
        self.launches += 1
        if plan.kind == "linear":
            return self._linear(op, plan, *operands)
        if plan.kind in ("rms_norm", "add_rms_norm"):
            return self._norm(plan, *operands)
        if plan.kind == "silu_mul":
            return self._silu_mul(plan, *operands)
        if plan.kind == "attention":
            return self._attention(op, plan, *operands)
        raise CompileError(f"the host program cannot run plans of kind {plan.kind!r}")

    def _launch(self, plan: OpPlan, bucket: int, role: str | None = None) -> LaunchPlan:
        for launch in plan.launches_for(bucket):
            if role is None or launch.role == role:
                return launch
        raise CompileError(f"no {role or plan.kind} launch planned for bucket {bucket}")

    def _linear(self, op, plan: OpPlan, x, weight=None, bias=None):
        s = plan.shape
        n, k, n_pad, k_pad = s["n"], s["k"], s["n_pad"], s["k_pad"]
        weight_buffer = Resident(f"weight/{op.weight.name}", self.blobs[op.weight.name])
        lead = x.shape[:-1]
        rows = to_bf16(x.reshape(-1, k))
        out = np.empty((rows.shape[0], n), np.float32)
        largest = plan.buckets[-1]
        for m0 in range(0, rows.shape[0], largest):
            chunk = rows[m0 : m0 + largest]
            bucket = plan.bucket_for(chunk.shape[0])
            launch = self._launch(plan, bucket)
            if launch.role == "gemv":
                tensors = {"x": _pad2(chunk, 1, k_pad).reshape(-1), "w": weight_buffer,
                           "y": np.zeros(n_pad, np.uint16)}
                self._run(plan, launch, tensors)
                result = tensors["y"].reshape(1, n_pad)
            else:
                tensors = {"a": _pad2(chunk, bucket, k_pad).reshape(-1), "w": weight_buffer,
                           "c": np.zeros(bucket * n_pad, np.uint16)}
                self._run(plan, launch, tensors)
                result = tensors["c"].reshape(bucket, n_pad)
            out[m0 : m0 + chunk.shape[0]] = from_bf16(result[: chunk.shape[0], :n])
        return out.reshape(*lead, n)

    def _rows_launch(self, plan: OpPlan, m: int) -> tuple[LaunchPlan, int]:
        bucket = plan.bucket_for(m)
        if m > bucket:
            raise AielowerError(f"{m} rows exceed the largest planned bucket {bucket}")
        return self._launch(plan, bucket), bucket

    def _norm(self, plan: OpPlan, *operands):
        add = plan.kind == "add_rms_norm"
        x, weight = (operands[0], operands[2]) if add else operands
        d, d_pad = plan.shape["d"], plan.shape["d_pad"]
        lead = x.shape[:-1]
        m = int(np.prod(lead))
        launch, bucket = self._rows_launch(plan, m)
        m_pad = roundup(bucket, launch.params["tr"])
        tensors = {"w": _pad2(to_bf16(weight).reshape(1, d), 1, d_pad).reshape(-1),
                   "y": np.zeros(m_pad * d_pad, np.uint16)}
        names = ("a", "b") if add else ("x",)
        for name, value in zip(names, operands[:2] if add else operands[:1]):
            tensors[name] = _pad2(to_bf16(value.reshape(m, d)), m_pad, d_pad).reshape(-1)
        if add:
            tensors["sum"] = np.zeros(m_pad * d_pad, np.uint16)
        self._run(plan, launch, tensors)

        def crop(name):
            return from_bf16(tensors[name].reshape(m_pad, d_pad)[:m, :d]).reshape(*lead, d)

        return (crop("sum"), crop("y")) if add else crop("y")

    def _silu_mul(self, plan: OpPlan, x):
        i, i_pad = plan.shape["i"], plan.shape["i_pad"]
        lead = x.shape[:-1]
        m = int(np.prod(lead))
        launch, bucket = self._rows_launch(plan, m)
        flat = to_bf16(x.reshape(m, 2 * i))
        gu = np.zeros((bucket, 2 * i_pad), np.uint16)
        gu[:m, :i], gu[:m, i_pad : i_pad + i] = flat[:, :i], flat[:, i:]
        tensors = {"gu": gu.reshape(-1), "y": np.zeros(bucket * i_pad, np.uint16)}
        self._run(plan, launch, tensors)
        return from_bf16(tensors["y"].reshape(bucket, i_pad)[:m, :i]).reshape(*lead, i)

    def _attention(self, op, plan: OpPlan, q, k, v, cos, sin, k_cache=None, v_cache=None, position=None):
        b, heads, s, d = q.shape
        kv_heads, d_pad = plan.shape["kv_heads"], plan.shape["d_pad"]
        bucket = plan.bucket_for(s)
        if s > bucket:
            raise AielowerError(f"{s} query tokens exceed the largest planned attention bucket {bucket}")
        half = d // 2
        cos2, sin2 = np.asarray(cos).reshape(s, d), np.asarray(sin).reshape(s, d)
        if not (np.array_equal(cos2[:, :half], cos2[:, half:]) and np.array_equal(sin2[:, :half], sin2[:, half:])):
            raise CompileError(f"{op.name}: the rotary tables are not in rotate-half form (cos/sin halves differ)")
        cs = to_bf16(np.concatenate([cos2[:, :half], sin2[:, :half]], axis=1))
        rope_q, rope_k = self._launch(plan, bucket, "rope_q"), self._launch(plan, bucket, "rope_k")
        attn = self._launch(plan, bucket, "attention")
        tq, tkv = attn.params["tq"], attn.params["tkv"]
        cached = k_cache is not None
        resident = isinstance(k_cache, BlockedKvCache)
        if resident and v_cache is not k_cache:
            raise AielowerError(f"{op.name}: a blocked KV cache holds keys and values together; pass the same "
                                "BlockedKvCache as the key and the value cache")
        pos = int(np.asarray(position).reshape(-1)[0]) if cached else 0
        cache_len = (k_cache.rows if resident else k_cache.shape[2]) if cached else 0
        if cached and pos + s > cache_len:
            raise AielowerError(f"positions {pos}..{pos + s - 1} do not fit the KV cache of {cache_len}")
        out = np.empty((b, heads, s, d), np.float32)
        new_k = np.array(k_cache, copy=True) if cached and not resident else None
        new_v = np.array(v_cache, copy=True) if cached and not resident else None
        bucket_pad = roundup(bucket, tq)
        for bi in range(b):
            q_rot = self._rope(plan, rope_q, to_bf16(q[bi]), cs, bucket)
            k_rot = self._rope(plan, rope_k, to_bf16(k[bi]), cs, bucket)
            kv_len = pos + s if cached else None  # uncached: the design's constants (position 0, length bucket)
            if resident:
                # The host writes the step's rotated keys and values into the DDR cache at the step's position.
                kv = k_cache.write(bi, pos, k_rot[:, :s], to_bf16(v[bi]), kv_heads=kv_heads, d_pad=d_pad, tkv=tkv)
            elif cached:
                new_k[bi][:, pos : pos + s] = from_bf16(k_rot[:, :s])
                new_v[bi][:, pos : pos + s] = from_bf16(to_bf16(v[bi]))
                kv = kv_blocks(to_bf16(new_k[bi]), to_bf16(new_v[bi]), kv_heads, cache_len, d_pad, tkv)
            else:
                kv_rows = roundup(bucket, tkv)
                kv = kv_blocks(k_rot[:, :kv_rows], to_bf16(v[bi]), kv_heads, kv_rows, d_pad, tkv)
            tensors = {
                "q": _pad3(q_rot[:, :s], heads, bucket_pad, d_pad),
                "kv": kv,
                "out": np.zeros(heads * bucket_pad * d_pad, np.uint16),
            }
            if attn.params.get("header"):
                tensors["step"] = step_header(pos, pos + s)
            self._run(plan, attn, tensors, kv_len)
            out[bi] = from_bf16(tensors["out"].reshape(heads, bucket_pad, d_pad)[:, :s, :d])
        if resident:
            return out, k_cache, v_cache
        return (out, new_k, new_v) if cached else out

    def _rope(self, plan: OpPlan, launch: LaunchPlan, x_bits: np.ndarray, cs: np.ndarray, bucket: int) -> np.ndarray:
        """Rotate ``x_bits`` [heads, s, d] (padded to the bucket) into a new [heads, bucket_pad, d] array."""
        heads, s, d = x_bits.shape
        s_pad = roundup(bucket, launch.params["tr"])
        tensors = {"x": _pad3(x_bits, heads, s_pad, d), "cs": _pad2(cs, s_pad, d).reshape(-1),
                   "y": np.zeros(heads * s_pad * d, np.uint16)}
        self._run(plan, launch, tensors)
        return tensors["y"].reshape(heads, s_pad, d)


def step_header(position: int, kv_len: int) -> np.ndarray:
    """The attention designs' ``step`` DDR tensor (what the host writes each step): the position of the step's
    first query token and the valid KV length as two little-endian int32, in :data:`STEP_HEADER` bf16 slots."""
    words = np.zeros(STEP_HEADER // 2, "<i4")
    words[:2] = (position, kv_len)
    return words.view(np.uint16).copy()


def kv_blocks(keys: np.ndarray, values: np.ndarray, kv_heads: int, kv_rows: int, d: int, tkv: int) -> np.ndarray:
    """The attention designs' ``kv`` DDR tensor: ``keys`` and ``values`` [heads, rows, d'] padded to [kv_heads,
    kv_rows, d] and blocked by KV tile as [kv_heads][kv_rows / tkv][K|V][tkv][d] (flat)."""
    k = _pad3(keys, kv_heads, kv_rows, d).reshape(kv_heads, kv_rows // tkv, 1, tkv, d)
    v = _pad3(values, kv_heads, kv_rows, d).reshape(kv_heads, kv_rows // tkv, 1, tkv, d)
    return np.concatenate([k, v], axis=2).reshape(-1)


def _pad3(x: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
    out = np.zeros((a, b, c), x.dtype)
    out[: x.shape[0], : x.shape[1], : x.shape[2]] = x
    return out.reshape(-1)


class _HostInterpreter(Interpreter):
    """The interpreter with the host program's launches: ops that carry a plan run as launches (a planned
    LinearLike op: its linear; an epilogue, if any, then runs on the host); host ops read the weights from
    ``weights/``."""

    def __init__(self, program: HostProgram, function: str):
        self.program = program
        super().__init__(program.module, function)

    def weight(self, w: Weight):
        return self.program.host_weights.get(w.name)  # None for a 4-bit weight: only the NPU reads it (blobs)

    def linear(self, op: LinearLike):
        plan = plan_of(op)
        if plan is None:
            return super().linear(op)
        program = self.program

        def npu_linear(x, weight, bias):
            program.launches += 1
            return program._linear(op, plan, x, weight, bias)

        return npu_linear

    def evaluator(self, op):
        plan = plan_of(op)
        if plan is None or isinstance(op, LinearLike):
            return super().evaluator(op)
        program = self.program
        return lambda *operands, **attributes: program._npu(op, plan, operands)


__all__ = ["HostProgram", "kv_blocks", "step_header", "strided_view"]
