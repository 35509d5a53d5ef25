"""The tiling plan of one op: what ``plan-aie-tiling`` decides and stores in the op's ``aie.plan`` attribute.

An :class:`OpPlan` holds the op's padded shape and one :class:`LaunchPlan` per shape bucket: a launch is one run of one
MLIR-AIE design (one kernel, one shape) on ``columns x rows`` cores. A launch lists its buffers (per core in L1, per
memory tile in L2, with their double-buffering depth) and its streams (DDR <-> array data movement: which tensors,
split over the core rows or broadcast to them), so the budgets can be checked from the plan alone
(:mod:`aielower.backends.aie.budget`). The exact per-tile DMA access patterns follow from the plan by
:mod:`aielower.backends.aie.schedule`; the plan records the first tile's patterns so the printed IR shows them.

The ``aie.plan`` attribute holds the :class:`OpPlan` object (:class:`PlanAttr`, a registered attribute type); it is
printed as plain data (``to_attr``) and parsed back with ``from_attr``, so printing and parsing the IR keeps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aielower import names
from aielower.errors import IRError
from aielower.ir.attributes import AttrType, format_plain, register_discardable
from aielower.ir.types import SEQ_SYMBOL, Sym

PLAN_ATTR = "aie.plan"
PREFILL_BUCKETS = (128, 256, 512, 1024, 2048)
DECODE_BUCKETS = (1,) + PREFILL_BUCKETS
# An op that runs on one row per sequence (its activation has no sequence dim: the lm_head of ``decode``, on the last
# token) is planned for one row and for batches of up to this many rows (larger batches run in chunks of it).
SEQUENCE_ROWS_BUCKET_LIMIT = 128


def rows_follow_tokens(op) -> bool:
    """Whether the rows of ``op``'s activation (its first operand) grow with the tokens of a call: its type has the
    sequence dim ``?s``. The lm_head of ``decode`` reads ``[?b, 1, hidden]`` (the last token): one row per sequence."""
    shape = getattr(op.operands[0].type, "shape", ()) if op.operands else ()
    return any(isinstance(d, Sym) and d.name == SEQ_SYMBOL for d in shape)


def op_buckets(op, function_buckets: tuple[int, ...]) -> tuple[int, ...]:
    """The buckets ``op`` is planned for within a function planned for ``function_buckets``: all of them when its
    rows follow the tokens, else those of one row per sequence (up to :data:`SEQUENCE_ROWS_BUCKET_LIMIT`)."""
    if rows_follow_tokens(op):
        return function_buckets
    return tuple(b for b in function_buckets if b <= SEQUENCE_ROWS_BUCKET_LIMIT) or function_buckets[:1]

# What a plan may name: an aie.plan attribute read from IR text is data from outside, and these names become
# design file names, MLIR symbols and C++ kernel symbols. Anything else is refused when the plan is read.
KINDS = ("linear", "rms_norm", "add_rms_norm", "silu_mul", "attention")
ROLES = ("gemv", "gemm", "rms_norm", "add_rms_norm", "silu_mul", "rope", "attention")
KERNELS = ("linear_w4_gemv", "linear_w4_gemm", "rms_norm", "silu_mul", "rope", "attention")
DIRECTIONS = ("in", "out")
TO_CORES = ("split", "broadcast")
TIERS = ("L1", "L2")
MAX_PLAN_INT = 2**48  # no count, size or offset of a plan is larger (the DMA addresses far less, see device.py)


def _fail(what: str, value, expected: str):
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    raise IRError(f"malformed {PLAN_ATTR} attribute: {what} is {shown}, expected {expected}")


def _int(value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_PLAN_INT:
        _fail(what, value, f"an integer in [{minimum}, {MAX_PLAN_INT}]")
    return value


def _choice(value, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        _fail(what, value, f"one of {', '.join(choices)}")
    return value


def _name(value, what: str) -> str:
    if not names.is_valid("plan", value):
        _fail(what, value, f"a name of {names.describe('plan')}")
    return value


# The entries of a plan's shape and params whose values are names (a linear kernel's epilogue and architecture, the
# architecture of decode attention on a GEMV configuration); every other entry is a number or a boolean.
NAMED_ENTRIES = frozenset({"epilogue", "arch", "attn_arch"})


def _scalars(value, what: str) -> dict:
    """A dict of plan names to numbers and booleans, or plan names for :data:`NAMED_ENTRIES` (params, shape)."""
    if not isinstance(value, dict):
        _fail(what, value, "a dictionary")
    for k, v in value.items():
        _name(k, f"a key of {what}")
        if k in NAMED_ENTRIES:
            _name(v, f"{what}.{k}")
            continue
        if isinstance(v, float) and not math.isfinite(v):
            _fail(f"{what}.{k}", v, "a finite number")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_PLAN_INT:
            _fail(f"{what}.{k}", v, f"a number of magnitude at most {MAX_PLAN_INT}")
        if not isinstance(v, (bool, int, float)):
            _fail(f"{what}.{k}", v, "a number or a boolean")
    return dict(value)


def _list(value, what: str, length: int | None = None) -> list:
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        _fail(what, value, "a list" + (f" of {length}" if length is not None else ""))
    return list(value)


@dataclass(frozen=True)
class AccessPattern:
    """One DMA transfer, as ``aiex.npu_dma_memcpy_nd`` describes it: element ``offset`` into a tensor, then up to four
    ``sizes`` (outermost first) with their ``strides`` (in elements). Reading it in row-major order of the index
    gives the elements in stream order."""

    offset: int
    sizes: tuple[int, ...]
    strides: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.strides) or not 1 <= len(self.sizes) <= 4:
            raise IRError(f"an access pattern has 1 to 4 dims with one stride each, got {self.sizes} / {self.strides}")
        if min(self.sizes) <= 0 or self.offset < 0 or min(self.strides) < 0:  # min: millions per 7B design
            raise IRError(f"bad access pattern offset={self.offset} sizes={self.sizes} strides={self.strides}")

    @property
    def elements(self) -> int:
        n = 1
        for s in self.sizes:
            n *= s
        return n

    def to_attr(self) -> list:
        return [self.offset, list(self.sizes), list(self.strides)]

    @classmethod
    def from_attr(cls, value) -> "AccessPattern":
        offset, sizes, strides = _list(value, "an access pattern", 3)
        sizes, strides = _list(sizes, "access pattern sizes"), _list(strides, "access pattern strides")
        return cls(_int(offset, "an access pattern offset"), tuple(_int(x, "an access pattern size", 1) for x in sizes),
                   tuple(_int(x, "an access pattern stride") for x in strides))


@dataclass(frozen=True)
class Buffer:
    """A buffer in one core's data memory (``L1``) or in one memory tile (``L2``); ``depth`` 2 is double-buffered."""

    name: str
    tier: str
    bytes: int
    depth: int = 1

    @property
    def total(self) -> int:
        return self.bytes * self.depth


@dataclass(frozen=True)
class Stream:
    """DDR <-> array data movement of one operand or result, per column.

    ``tensors`` names what one shim DMA channel walks (several names: buffer descriptors that alternate between
    tensors, which the memory tile joins into one tile);
    ``direction`` is ``in`` (DDR -> cores) or ``out``; ``to_cores`` is ``split`` (each core row gets its own tiles:
    one memory-tile channel per row) or ``broadcast`` (one channel feeds every row); ``tile_bytes`` is one
    element of the core's object FIFO; ``first`` holds the access pattern of core (0, 0)'s first tile, one per
    tensor."""

    name: str
    direction: str
    tensors: tuple[str, ...]
    to_cores: str
    tile_bytes: int
    depth: int
    first: tuple[AccessPattern, ...] = ()

    def to_attr(self) -> dict:
        return {
            "name": self.name,
            "direction": self.direction,
            "tensors": list(self.tensors),
            "to_cores": self.to_cores,
            "tile_bytes": self.tile_bytes,
            "depth": self.depth,
            "first": [ap.to_attr() for ap in self.first],
        }

    @classmethod
    def from_attr(cls, d: dict) -> "Stream":
        return cls(
            _name(d["name"], "a stream name"), _choice(d["direction"], "a stream direction", DIRECTIONS),
            tuple(_name(t, "a stream tensor") for t in _list(d["tensors"], "stream tensors")),
            _choice(d["to_cores"], "a stream's to_cores", TO_CORES), _int(d["tile_bytes"], "a stream's tile_bytes", 1),
            _int(d["depth"], "a stream's depth", 1),
            tuple(AccessPattern.from_attr(a) for a in _list(d["first"], "a stream's first patterns")),
        )


@dataclass(frozen=True)
class LaunchPlan:
    """One design: ``kernel`` (a family of docs/aie-kernels.md) with ``params`` at one ``bucket`` on ``columns x
    rows`` cores.

    ``bucket`` is the padded row count M (linears, norms, silu_mul, rope) or query tokens (attention; 1 = a decode
    step). Work figures are for one launch at the bucket size: ``macs`` useful multiply-accumulates, ``padded_macs``
    what the cores execute (padding included), ``ddr_read`` / ``ddr_write`` bytes. Attention adds
    ``ddr_read_per_kv`` / ``macs_per_kv`` per cached position (decode reads the whole valid cache)."""

    bucket: int
    kernel: str
    params: dict
    columns: int
    rows: int
    buffers: tuple[Buffer, ...]
    streams: tuple[Stream, ...]
    macs: int
    padded_macs: int
    ddr_read: int
    ddr_write: int
    ddr_read_per_kv: int = 0
    macs_per_kv: int = 0
    role: str = ""

    @property
    def cores(self) -> int:
        return self.columns * self.rows

    def l1_bytes(self) -> int:
        return sum(b.total for b in self.buffers if b.tier == "L1")

    def l2_bytes(self) -> int:
        return sum(b.total for b in self.buffers if b.tier == "L2")

    def to_attr(self) -> dict:
        d = {
            "bucket": self.bucket,
            "role": self.role,
            "kernel": self.kernel,
            "params": dict(self.params),
            "cores": [self.columns, self.rows],
            "l1_bytes": self.l1_bytes(),
            "l2_bytes": self.l2_bytes(),
            "buffers": [[b.name, b.tier, b.bytes, b.depth] for b in self.buffers],
            "streams": [s.to_attr() for s in self.streams],
            "macs": self.macs,
            "padded_macs": self.padded_macs,
            "ddr_read": self.ddr_read,
            "ddr_write": self.ddr_write,
        }
        if self.ddr_read_per_kv or self.macs_per_kv:
            d["ddr_read_per_kv"] = self.ddr_read_per_kv
            d["macs_per_kv"] = self.macs_per_kv
        return d

    @classmethod
    def from_attr(cls, d: dict) -> "LaunchPlan":
        columns, rows = (_int(x, "a core count", 1) for x in _list(d["cores"], "cores", 2))
        buffers = []
        for b in _list(d["buffers"], "buffers"):
            name, tier, size, depth = _list(b, "a buffer", 4)
            buffers.append(Buffer(_name(name, "a buffer name"), _choice(tier, "a buffer tier", TIERS),
                                  _int(size, "buffer bytes"), _int(depth, "a buffer depth", 1)))
        return cls(
            bucket=_int(d["bucket"], "a bucket", 1), kernel=_choice(d["kernel"], "a kernel family", KERNELS),
            params=_scalars(d["params"], "params"), columns=columns, rows=rows, buffers=tuple(buffers),
            streams=tuple(Stream.from_attr(s) for s in _list(d["streams"], "streams")),
            macs=_int(d["macs"], "macs"), padded_macs=_int(d["padded_macs"], "padded_macs"),
            ddr_read=_int(d["ddr_read"], "ddr_read"), ddr_write=_int(d["ddr_write"], "ddr_write"),
            ddr_read_per_kv=_int(d.get("ddr_read_per_kv", 0), "ddr_read_per_kv"),
            macs_per_kv=_int(d.get("macs_per_kv", 0), "macs_per_kv"), role=_choice(d["role"], "a launch role", ROLES),
        )


@dataclass(frozen=True)
class OpPlan:
    """Everything planned for one op: its kind (``linear``, ``rms_norm``, ``add_rms_norm``, ``silu_mul``,
    ``attention``), the device, the op-level choices in ``shape`` (padded sizes, weight tiling) and its launches.
    An attention op has two launches per prompt bucket (rope of q and k, attention), told apart by ``role``; a
    decode step over a KV cache has one (attention rotates q and the step's key itself)."""

    kind: str
    device: str
    shape: dict
    launches: tuple[LaunchPlan, ...] = field(default_factory=tuple)

    def launches_for(self, bucket: int) -> tuple[LaunchPlan, ...]:
        return tuple(launch for launch in self.launches if launch.bucket == bucket)

    @property
    def buckets(self) -> tuple[int, ...]:
        found = self.__dict__.get("_buckets")  # made once: the plan is immutable, and costing asks it often
        if found is None:
            found = tuple(sorted({launch.bucket for launch in self.launches}))
            object.__setattr__(self, "_buckets", found)
        return found

    def bucket_for(self, m: int) -> int:
        """The smallest planned bucket holding ``m`` rows (the largest when none does: the caller chunks)."""
        for b in self.buckets:
            if m <= b:
                return b
        return self.buckets[-1]

    def __hash__(self) -> int:  # shape and params are dicts: hash the printed form, once (the plan is immutable)
        found = self.__dict__.get("_hash")
        if found is None:
            found = hash(format_plain(self.to_attr()))
            object.__setattr__(self, "_hash", found)
        return found

    def __getstate__(self) -> dict:  # the cached hash stays behind: string hashes differ between processes
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def to_attr(self) -> dict:
        return {
            "kind": self.kind,
            "device": self.device,
            "shape": dict(self.shape),
            "launches": [launch.to_attr() for launch in self.launches],
        }

    @classmethod
    def from_attr(cls, d: dict) -> "OpPlan":
        try:
            if not isinstance(d, dict):
                _fail("the plan", d, "a dictionary")
            return cls(_choice(d["kind"], "the plan kind", KINDS), _name(d["device"], "the device"),
                       _scalars(d["shape"], "shape"),
                       tuple(LaunchPlan.from_attr(x) for x in _list(d["launches"], "launches")))
        except KeyError as e:
            raise IRError(f"malformed {PLAN_ATTR} attribute: it has no {e.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise IRError(f"malformed {PLAN_ATTR} attribute: {type(e).__name__}: {e}") from None


class PlanAttr(AttrType):
    """The type of the ``aie.plan`` attribute: the value is an :class:`OpPlan`; printed as its plain-data form
    (``to_attr``) and parsed back with ``from_attr`` (which checks every name and number, since IR text comes from
    anyone). Registered for ``aie.plan``, so the plan is parsed once, where the IR is read."""

    describe = "an aie.plan (see aielower.backends.aie.plan)"

    @classmethod
    def check(cls, value):
        if isinstance(value, OpPlan):
            return value
        raise TypeError

    @classmethod
    def coerce(cls, value, where):
        if isinstance(value, dict):  # plain data from a pass or the parser
            return OpPlan.from_attr(value)
        return super().coerce(value, where)

    @classmethod
    def read(cls, value):
        return OpPlan.from_attr(value)

    @classmethod
    def format(cls, value):
        return format_plain(value.to_attr())


register_discardable(PLAN_ATTR, PlanAttr)


def plan_of(op) -> OpPlan | None:
    """The plan stored on ``op`` by plan-aie-tiling, or None if the op runs on the host."""
    return op.attributes.get(PLAN_ATTR)


def largest_bucket(ops) -> int:
    """The largest row bucket the plans of ``ops`` (a function's) have, 1 when none is planned: the most rows one
    call of the function runs."""
    return max((b for op in ops if (plan := plan_of(op)) is not None for b in plan.buckets), default=1)


__all__ = [
    "AccessPattern",
    "Buffer",
    "DECODE_BUCKETS",
    "LaunchPlan",
    "OpPlan",
    "PLAN_ATTR",
    "PREFILL_BUCKETS",
    "PlanAttr",
    "SEQUENCE_ROWS_BUCKET_LIMIT",
    "Stream",
    "largest_bucket",
    "op_buckets",
    "plan_of",
    "rows_follow_tokens",
]
