"""Cost model: modelled time of the planned ops, from the device model and the kernels' cycle counts (never fitted to
a measured result).

One launch (one run of one design, :class:`~aielower.backends.aie.plan.LaunchPlan`) costs

    max(DMA time, compute time) + launch overhead

- DMA time = DDR bytes (``ddr_read + ddr_write``, plus ``ddr_read_per_kv x kv_len`` for attention over a KV cache)
  / the DDR rate of the launch (:func:`ddr_bytes_per_s`). Reads and writes share one rate: both cross the same DDR
  interface, and the practical figure is already a planning figure, not a channel-by-channel model.
- compute time = the busiest core's kernel cycles / clock: the calls it makes (:func:`calls_per_core`, from the plan
  the schedule follows) times each kernel function's cycles (:meth:`~aielower.backends.aie.kernels.KernelSpec.cycles`:
  the vector instructions the kernel issues, dequantization, exp and scalar work included; its per-instruction
  figures are stated in kernels.py, most of them ASSUMPTIONs).
- launch overhead = ``Device.launch_overhead_s`` per launch, or once per submitted function call, or none
  (:data:`OVERHEAD_MODES`; the default and the reason are at :data:`DEFAULT_OVERHEAD`).

The larger of DMA and compute: a design streams with double-buffered object FIFOs, so moving data and computing
overlap; whichever is slower sets the pace. Fill and drain of the pipeline are not modelled.

A launch is ``ddr``-bound, ``compute``-bound, or ``launch``-bound when the overhead alone exceeds both.

Ops without a plan run on the host; they are counted (:attr:`FunctionCost.host_ops`), never given a time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aielower.backends.aie.device import Device
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.kernels import KernelSpec
from aielower.backends.aie.plan import LaunchPlan, OpPlan, plan_of, rows_follow_tokens
from aielower.errors import CompileError
from aielower.ir import Function, Module, QTensorType, TensorType, Weight
from aielower.backends.aie.chains import CHAIN_BUCKET
from aielower.ir.core import LinearLike
from aielower.ir.dialects import fused

# Kernels built on ``aie::mmul`` (docs/aie-kernels.md): they run at the device's native bf16 mmul rate, because a
# w4abf16 kernel dequantizes its 4-bit weights to bf16 first (there is no bf16 x int4 mmul; see Device).
MMUL_KERNELS = {"linear_w4_gemm": "bf16"}

# How the per-launch overhead is charged.
#   "launch":     Device.launch_overhead_s for every launch (each design is one XRT run, waited on before the next),
#                 but a launch that runs in a chain after its first (one submission, chains.py) pays none.
#   "submission": once per function call (one token step, or one prompt chunk): every design of the step queued in
#                 one submission (an XRT runlist), the device chaining them without a host round trip.
#   "none":       no overhead: DMA and compute only.
OVERHEAD_MODES = ("launch", "submission", "none")
# The default is "launch". The only cited figure, [LAT] in device.py (about 45 us for an empty kernel through XRT
# run + wait), is the cost of exactly that way of issuing work, and the launches of one step depend on each other
# (each reads the previous one's output from DDR), so a host that submits them one by one pays it every time. One
# submission per step needs runlist support in the runtime and has a per-run device-side cost that no source we have
# gives; charging 45 us once per step is therefore the optimistic bound, reported beside the default, not instead.
DEFAULT_OVERHEAD = "launch"

BF16 = 2


def vector_macs_per_cycle(device: Device) -> int:
    """MACs per cycle per core of the element-wise / vector kernels (everything but the mmul kernels).

    Those kernels (GEMV, attention, norms, silu_mul, rope) multiply with ``aie::mul`` / ``aie::mac`` on vectors and
    keep their products in fp32 (docs/aie-kernels.md, "AIE numerics"). One vector instruction per cycle on one native
    vector register of fp32 lanes gives ``vector_bits / 32`` lane-MACs per cycle: 16 on both NPUs. (bf16 operands fit
    32 to a register, but every product lands in an fp32 lane, so the fp32 width is the limit; AIE-ML's pairwise
    ``mul_elem_16_2`` form would double it for dot products, which we do not assume.) The plan counts one MAC per
    element for the element-wise kernels and per weight for the GEMV; the extra vector work per element
    (dequantizing 4-bit codes, exp in silu and softmax) is not counted, so compute time is a lower bound there. It
    only matters if a launch comes out compute-bound; the report says which bound each launch hits.
    """
    return device.vector_bits // 32


def macs_per_cycle(kernel: str, device: Device) -> int:
    """Per-core MAC rate of ``kernel``: the native mmul rate for mmul kernels, else the vector rate."""
    dtype = MMUL_KERNELS.get(kernel)
    return device.macs_per_cycle[dtype] if dtype else vector_macs_per_cycle(device)


def ddr_bytes_per_s(device: Device, columns: int | None = None) -> float:
    """DDR rate of a launch on ``columns`` columns (default: all).

    On all columns this is ``Device.ddr_practical_bytes_per_s``. That figure is stated (device.py) as a fraction
    (one half) of the lower of two ceilings, DDR peak and the shim MM2S streams of all columns; a launch on fewer
    columns has fewer shim channels, so we apply the same fraction to the same two ceilings with the shim ceiling
    of its own columns. No new number enters: it is the device model's own rule, evaluated per launch.
    """
    columns = device.columns if columns is None else columns
    fraction = device.ddr_practical_bytes_per_s / min(device.ddr_peak_bytes_per_s, device.shim_read_bytes_per_s)
    shim = device.shim_read_bytes_per_s * min(columns, device.columns) / device.columns
    return fraction * min(device.ddr_peak_bytes_per_s, shim)


@dataclass(frozen=True)
class LaunchCost:
    """Modelled cost of one launch: bytes, MACs and the seconds each takes."""

    role: str
    kernel: str
    bucket: int
    cores: int
    ddr_bytes: int
    macs: int  # executed (padding included)
    useful_macs: int
    dma_s: float
    compute_s: float
    overhead_s: float

    @property
    def busy_s(self) -> float:
        return max(self.dma_s, self.compute_s)

    @property
    def seconds(self) -> float:
        return self.busy_s + self.overhead_s

    @property
    def bound(self) -> str:
        if self.overhead_s > self.busy_s:
            return "launch"
        return "ddr" if self.dma_s >= self.compute_s else "compute"


def calls_per_core(launch: LaunchPlan, shape: dict, kv_len: int = 0) -> dict[str, int]:
    """Kernel calls of the busiest core of ``launch`` by function suffix (``init`` / ``step`` / ``store``, or ``""``
    for single-function kernels), as the launch's kernel family schedules the work of an op planned with ``shape``
    (its :class:`~aielower.backends.aie.plan.OpPlan` shape)."""
    return KERNEL_FAMILIES.for_kernel(launch.kernel).calls_per_core(launch, shape, kv_len)


def launch_cost(launch: LaunchPlan, device: Device, kv_len: int = 0, overhead: bool = True,
                shape: dict | None = None, spec: KernelSpec | None = None) -> LaunchCost:
    """Cost of one launch reading ``kv_len`` cached positions (attention over a KV cache; ignored otherwise);
    ``shape`` is the op plan's shape (it sets the kernel call counts); ``spec`` the launch's kernel on ``device``,
    if the caller has it."""
    from aielower.backends.aie.binding import kernel_spec

    if kv_len < 0:
        raise CompileError(f"kv_len must be >= 0, got {kv_len}")
    ddr = launch.ddr_read + launch.ddr_write + launch.ddr_read_per_kv * kv_len
    macs = launch.padded_macs + launch.macs_per_kv * kv_len
    useful = launch.macs + launch.macs_per_kv * kv_len
    spec = spec or kernel_spec(launch, device)
    if shape is None:
        raise CompileError("the cost of a launch needs its op plan's shape (OpPlan.shape)")
    calls = calls_per_core(launch, shape, kv_len)
    cycles = sum(n * spec.cycles(spec.symbol + (f"_{fn}" if fn else "")) for fn, n in calls.items())
    return LaunchCost(
        role=launch.role or launch.kernel, kernel=launch.kernel, bucket=launch.bucket, cores=launch.cores,
        ddr_bytes=ddr, macs=macs, useful_macs=useful,
        dma_s=ddr / ddr_bytes_per_s(device, launch.columns), compute_s=cycles / device.clock_hz,
        overhead_s=device.launch_overhead_s if overhead else 0.0,
    )


# --------------------------------------------------------------------------- functions


_LAYER = re.compile(r"\.\d+(?=\.)")


def op_label(op) -> str:
    """A name shared by the same op in every layer: its weight's name with the layer index as ``*``
    (``model.layers.*.self_attn.qkv_proj``), or the op name for ops without a weight."""
    weight = getattr(op, "weight", None)
    if isinstance(weight, Weight):
        return _LAYER.sub(".*", weight.name).removesuffix(".weight")
    return op.name


@dataclass(frozen=True)
class PlannedOp:
    """``count`` ops of one function with the same label, op name and plan (e.g. one linear of all 32 layers)."""

    label: str
    op_name: str
    plan: OpPlan
    count: int
    per_token: bool = True  # rows grow with the call's tokens; else one row per sequence (the last-token lm_head)
    chained: bool = False  # its one-row launch runs in a chain after the chain's first: no submission of its own


@dataclass(frozen=True)
class FunctionPlan:
    """A function's planned ops (grouped) and host ops (counted), parsed once for repeated costing."""

    name: str
    ops: tuple[PlannedOp, ...]
    host_ops: Counter
    # caches of this plan's own (not carried over by dataclasses.replace): (launch id, device id) -> its KernelSpec;
    # function_cost's results, by its arguments
    specs: dict = field(default_factory=dict, init=False, compare=False, repr=False)
    costs: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def spec_for(self, launch: LaunchPlan, device: Device) -> KernelSpec:
        """The kernel of one of this plan's launches on ``device``, made once (its cycle table with it). The entry
        holds the launch and the device, so neither id is reused while it lives."""
        from aielower.backends.aie.binding import kernel_spec

        key = (id(launch), id(device))
        found = self.specs.get(key)
        if found is None:
            found = self.specs[key] = (launch, device, kernel_spec(launch, device))
        return found[2]

    @classmethod
    def of(cls, fn: Function, chained: Collection[int] = ()) -> "FunctionPlan":
        """The plan of ``fn``; ``chained``: the ids of its ops whose one-row launch runs in a chain after the
        chain's first (:meth:`aielower.backends.aie.catalog.Placement.chains`)."""
        groups: dict[tuple, list] = {}
        host: Counter = Counter()
        for op in fn.ops:
            plan = plan_of(op)
            if plan is None:
                host[op.name] += 1
                continue
            key = (op_label(op), op.name, plan, rows_follow_tokens(op), id(op) in chained)
            if key in groups:
                groups[key][1] += 1
            else:
                groups[key] = [plan, 1]
        ops = tuple(PlannedOp(label, name, plan, count, per_token, in_chain)
                    for (label, name, _, per_token, in_chain), (plan, count) in groups.items())
        return cls(fn.name, ops, host)

    @property
    def largest_bucket(self) -> int:
        return max((max(p.plan.buckets) for p in self.ops), default=1)


@dataclass(frozen=True)
class OpCost:
    """One planned op group over one function call: its launches (every chunk's), times ``count``."""

    label: str
    op_name: str
    kind: str
    count: int
    launches: tuple[LaunchCost, ...]  # one op's launches, every chunk

    @property
    def seconds(self) -> float:
        return self.count * sum(launch.seconds for launch in self.launches)

    @property
    def ddr_bytes(self) -> int:
        return self.count * sum(launch.ddr_bytes for launch in self.launches)

    @property
    def macs(self) -> int:
        return self.count * sum(launch.macs for launch in self.launches)

    @property
    def useful_macs(self) -> int:
        return self.count * sum(launch.useful_macs for launch in self.launches)


@dataclass(frozen=True)
class FunctionCost:
    """Modelled cost of one call of a function on ``tokens`` rows (batch 1) with ``kv_len`` valid cache positions."""

    function: str
    tokens: int
    kv_len: int
    chunks: tuple[int, ...]  # rows per chunk (one chunk unless tokens exceed the largest bucket)
    overhead: str
    ops: tuple[OpCost, ...]
    host_ops: Mapping[str, int]  # read-only: one result may be shared by callers (function_cost's cache)
    submission_overhead_s: float = 0.0  # "submission" mode: one overhead per chunk

    @property
    def seconds(self) -> float:
        return sum(op.seconds for op in self.ops) + self.submission_overhead_s

    @property
    def ddr_bytes(self) -> int:
        return sum(op.ddr_bytes for op in self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def useful_macs(self) -> int:
        return sum(op.useful_macs for op in self.ops)

    @property
    def launches(self) -> int:
        return sum(op.count * len(op.launches) for op in self.ops)


def split_chunks(tokens: int, largest: int) -> tuple[int, ...]:
    """``tokens`` rows as chunks of at most ``largest`` (the largest bucket): full chunks, then the rest."""
    if tokens < 1:
        raise CompileError(f"tokens must be >= 1, got {tokens}")
    full, rest = divmod(tokens, largest)
    return (largest,) * full + ((rest,) if rest else ())


def function_cost(fn: Function | FunctionPlan, device: Device, tokens: int, kv_len: int = 0,
                  overhead: str = DEFAULT_OVERHEAD) -> FunctionCost:
    """Cost of one call of ``fn`` on ``tokens`` rows of one sequence; ``kv_len`` is the number of valid KV cache
    positions after the call (cache functions; 0 for ``prefill``, whose attention has no cache).

    Each op runs at ``plan.bucket_for(rows)``. Above the largest bucket the call is split into chunks of the
    largest bucket, run one after the other; chunk ``i`` sees the cache up to its own last row. An op on one row per
    sequence (the last-token lm_head of ``decode``) runs on one row per chunk.
    """
    if overhead not in OVERHEAD_MODES:
        raise CompileError(f"unknown overhead mode {overhead!r}: choose one of {', '.join(OVERHEAD_MODES)}")
    planned = fn if isinstance(fn, FunctionPlan) else FunctionPlan.of(fn)
    # a FunctionPlan keeps what it costed (a report costs the steps of many prompts, whose contexts overlap); the
    # entry holds the device, so its id is not reused while it lives
    key = (id(device), tokens, kv_len, overhead)
    found = planned.costs.get(key)
    if found is None:
        found = planned.costs[key] = (device, _function_cost(planned, device, tokens, kv_len, overhead))
    return found[1]


def _function_cost(planned: FunctionPlan, device: Device, tokens: int, kv_len: int, overhead: str) -> FunctionCost:
    chunks = split_chunks(tokens, planned.largest_bucket)
    start = kv_len - tokens  # cache positions before this call
    per_launch = overhead == "launch"
    costs = []
    for p in planned.ops:
        launches = []
        done = 0
        for rows in chunks:
            done += rows
            chunk_kv = max(start + done, 0) if kv_len else 0
            for launch in p.plan.launches_for(p.plan.bucket_for(rows if p.per_token else 1)):
                submitted = per_launch and not (p.chained and launch.bucket == CHAIN_BUCKET)
                launches.append(launch_cost(launch, device, chunk_kv, overhead=submitted, shape=p.plan.shape,
                                            spec=planned.spec_for(launch, device)))
        costs.append(OpCost(p.label, p.op_name, p.plan.kind, p.count, tuple(launches)))
    submission = device.launch_overhead_s * len(chunks) if overhead == "submission" else 0.0
    return FunctionCost(planned.name, tokens, kv_len, chunks, overhead, tuple(costs),
                        MappingProxyType(Counter(planned.host_ops)), submission)


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class ModelLatency:
    """Modelled generation of ``new_tokens`` after a ``prompt_len`` prompt, as ``generate`` runs it: the prompt
    through ``decode`` in one call (it yields the first new token), then one ``decode`` step per further token."""

    prompt_len: int
    new_tokens: int
    prefill: FunctionCost
    steps: tuple[FunctionCost, ...]

    @property
    def prefill_ms(self) -> float:
        return self.prefill.seconds * 1e3

    @property
    def ms_per_token(self) -> float:
        """Mean decode step (the card's Time/Token); NaN with a single new token."""
        return 1e3 * sum(s.seconds for s in self.steps) / len(self.steps) if self.steps else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return 1e3 / self.ms_per_token if self.steps else float("nan")

    @property
    def total_s(self) -> float:
        return self.prefill.seconds + sum(s.seconds for s in self.steps)

    @property
    def ddr_bytes_per_token(self) -> float:
        return sum(s.ddr_bytes for s in self.steps) / len(self.steps) if self.steps else float("nan")


def decode_function(module: Module) -> Function:
    if "decode" not in module.functions:
        raise CompileError(f"module {module.name} has no decode function: import it with functions including 'decode'")
    return module.functions["decode"]


def kv_capacity(module: Module) -> int:
    """Positions the decode function's static KV cache holds."""
    fn = decode_function(module)
    return module.attribute("max_seq_len", int) or fn.args[2].type.shape[2]


def model_latency(module: Module, device: Device, prompt_len: int, new_tokens: int,
                  overhead: str = DEFAULT_OVERHEAD, planned: FunctionPlan | None = None) -> ModelLatency:
    """Prefill, then ``new_tokens - 1`` decode steps whose context grows by one each (batch 1), as
    :meth:`~aielower.backends.ref.runtime.RefCompiledModel.generate` runs them. ``planned`` (the decode function's
    :class:`FunctionPlan`) saves re-reading the plans when costing many prompt lengths."""
    if new_tokens < 1:
        raise CompileError(f"new_tokens must be >= 1, got {new_tokens}")
    fn = decode_function(module)
    max_len = kv_capacity(module)
    if prompt_len + new_tokens - 1 > max_len:
        raise CompileError(f"{prompt_len} prompt + {new_tokens} new tokens do not fit the KV cache of {max_len} "
                           "(import with a larger max_seq_len)")
    planned = planned or FunctionPlan.of(fn)
    prefill = function_cost(planned, device, prompt_len, kv_len=prompt_len, overhead=overhead)
    steps = tuple(function_cost(planned, device, 1, kv_len=prompt_len + i, overhead=overhead)
                  for i in range(1, new_tokens))
    return ModelLatency(prompt_len, new_tokens, prefill, steps)


# --------------------------------------------------------------------------- minimum traffic


def weight_read_bytes(weight: Weight) -> float:
    """Bytes the NPU reads for ``weight``: a qtensor as its type says (packed codes, one scale and one zero point
    per group, each in its own dtype); any other tensor in bf16 (AIE numerics: every DDR tensor is bf16)."""
    t = weight.type
    if isinstance(t, QTensorType):
        return t.nbytes
    if isinstance(t, TensorType):
        n = 1
        for d in t.shape:
            n *= d
        return n * BF16
    raise CompileError(f"weight @{weight.name} has an unknown type {t}")


def min_weight_bytes_per_decode_token(module: Module) -> int:
    """Bytes of the weights one decode step must read: the weight and bias of every linear-like op (packed codes +
    scales + zeros, biases) and the weight of every norm, each counted once. Not counted: the embedding table (the
    host looks up one row per token) and the rotary frequencies (the host builds the cos/sin tables)."""
    seen: dict[str, float] = {}
    for op in decode_function(module).ops:
        if isinstance(op, LinearLike):
            values = [op.linear_weight, op.linear_bias]
        elif isinstance(op, (fused.RMSNorm, fused.AddRMSNorm)):
            values = [op.weight]
        else:
            continue
        for value in values:
            if isinstance(value, Weight) and value.name not in seen:
                seen[value.name] = weight_read_bytes(value)
    return int(round(sum(seen.values())))


def kv_bytes_per_position(module: Module) -> int:
    """bf16 K and V of one cached position, all layers (the cache is bf16 on the NPU whatever the IR's dtype)."""
    return sum(2 * op.kv_heads * op.head_dim * BF16 for op in decode_function(module).ops
               if isinstance(op, fused.Attention) and op.k_cache is not None)


def min_ddr_bytes_per_decode_token(module: Module, kv_len: int) -> int:
    """The least DDR traffic of one decode step with ``kv_len`` valid cache positions.

    Convention: weights read once (:func:`min_weight_bytes_per_decode_token`) + the bf16 KV cache read once at
    ``kv_len`` positions. Activations, the new K/V row written and the logits are not counted (a few hundred KB
    against GB for a 7B model), so the modelled traffic can only be above this.
    """
    return min_weight_bytes_per_decode_token(module) + kv_len * kv_bytes_per_position(module)


def padding_waste(fn: Function | FunctionPlan, bucket: int) -> float:
    """Executed over useful MACs, minus one, of every planned op of ``fn`` at ``bucket`` (each op counted as often as
    it occurs, an op on one row per sequence at one row; per-KV work has no padding and is left out)."""
    planned = fn if isinstance(fn, FunctionPlan) else FunctionPlan.of(fn)
    useful = padded = 0
    for p in planned.ops:
        for launch in p.plan.launches_for(p.plan.bucket_for(bucket if p.per_token else 1)):
            useful += p.count * launch.macs
            padded += p.count * launch.padded_macs
    return padded / useful - 1 if useful else 0.0


__all__ = [
    "DEFAULT_OVERHEAD",
    "FunctionCost",
    "FunctionPlan",
    "LaunchCost",
    "ModelLatency",
    "OVERHEAD_MODES",
    "OpCost",
    "ddr_bytes_per_s",
    "function_cost",
    "kv_bytes_per_position",
    "kv_capacity",
    "calls_per_core",
    "launch_cost",
    "macs_per_cycle",
    "min_ddr_bytes_per_decode_token",
    "min_weight_bytes_per_decode_token",
    "model_latency",
    "padding_waste",
    "vector_macs_per_cycle",
]
