"""The interface of a kernel family: everything the AIE backend knows about one kind of planned op.

A family runs the ops of one or more plan kinds (``OpPlan.kind``) with one or more kernels (``LaunchPlan.kernel``:
the C++ kernel a launch's cores call). The generic drivers ask the family of an op or a launch
(:class:`~aielower.backends.aie.families.FamilyRegistry`) instead of matching kinds themselves:

- ``plan-aie-tiling`` (:mod:`aielower.backends.aie.tiling`): :meth:`KernelFamily.plan_key`, which ops the family
  runs and how they are planned, then :meth:`KernelFamily.offers` and :meth:`KernelFamily.joined`: launches
  re-planned to join another family's device configuration (decode's norms and decode attention in the GEMVs',
  :mod:`.gemv_norm`, :mod:`.gemv_attention`);
- kernel binding (:mod:`aielower.backends.aie.binding`): :meth:`KernelFamily.kernel_spec`;
- the design generator (:mod:`aielower.backends.aie.designs.build`): :meth:`KernelFamily.schedule` (what every core
  calls, tile by tile), :meth:`KernelFamily.array_work` (linears: the same as arrays) and
  :meth:`KernelFamily.reads_valid_tiles` (a per-KV-tile-count runtime sequence, :meth:`KernelFamily.kv_tile_rows`
  rows a tile);
- the design catalog (:mod:`aielower.backends.aie.catalog`): :meth:`KernelFamily.configuration_key` and
  :meth:`KernelFamily.shared_spec` (launches that share one device configuration, :mod:`.designs.shared`);
- the cost model (:mod:`aielower.backends.aie.cost`): :meth:`KernelFamily.calls_per_core`;
- the host program (:mod:`aielower.backends.aie.host_program`): :meth:`KernelFamily.run`, the host side of an op's
  launches (padding inputs into DDR tensors, the launches, cropping the outputs).

A family also defines its kernels (:attr:`KernelFamily.kernel_defs`: functions, contract rules, symbol, signatures,
cycle model; the C++ templates are ``templates/kernels/<kernel>.cc.j2``) and their ``*_spec`` constructors; the
kernel catalog (:mod:`aielower.backends.aie.kernels`) holds what all kernels share: the spec, the cycle model's
vocabulary, the host build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from aielower.errors import CompileError

if TYPE_CHECKING:
    from aielower.backends.aie.device import Device
    from aielower.backends.aie.kernels import KernelDef, KernelSpec
    from aielower.backends.aie.plan import LaunchPlan, OpPlan
    from aielower.backends.aie.schedule import CoreProgram, LinearWork


@dataclass(frozen=True)
class Offer:
    """A device configuration launches of other families may join (:meth:`KernelFamily.offers`): its
    :meth:`~KernelFamily.configuration_key`, a launch that runs on it with its op plan, and the tile format a
    joining launch must take (entries the offering family defines: for a decode GEMV ``tn``, ``tk``, ``group``,
    ``ys``, ``tile_bytes``)."""

    key: object
    launch: LaunchPlan
    plan: OpPlan
    format: dict = field(default_factory=dict)


class KernelFamily:
    """One kernel family. Subclasses set ``name``, ``kinds`` and ``kernel_defs`` and implement the hooks."""

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()  # the plan kinds of the ops it runs
    kernel_defs: ClassVar[dict[str, KernelDef]] = {}  # the kernels its launches run, by name
    array_scheduled: ClassVar[bool] = False  # its launches' work comes as arrays (array_work), checked on arrays

    @property
    def kernels(self) -> tuple[str, ...]:
        """The kernels its launches run."""
        return tuple(self.kernel_defs)

    def plan_key(self, op, buckets: tuple[int, ...], linear_buckets: tuple[int, ...]):
        """For an op this family runs: (a hashable description of what its plan depends on, ``make(label,
        device) -> OpPlan``); None for any other op. ``buckets`` are the op's row buckets, ``linear_buckets`` those
        of every function (a weight tiling shared by the functions)."""
        raise NotImplementedError

    def kernel_spec(self, launch: LaunchPlan, device: Device) -> KernelSpec:
        """The kernel ``launch``'s cores call."""
        raise NotImplementedError

    def schedule(self, launch: LaunchPlan, op_plan: OpPlan,
                 kv_tiles: int | None = None) -> tuple[list[CoreProgram], tuple[int, ...]]:
        """What every core of ``launch`` does at its bucket, and the run-time parameter defaults it was made with.
        ``kv_tiles``: attention over a cache scheduled for that many cache tiles (default: the whole cache)."""
        raise NotImplementedError

    def array_work(self, launch: LaunchPlan, op_plan: OpPlan) -> LinearWork | None:
        """The schedule as arrays, for families whose launches make too many calls for per-call objects (the
        design generator then builds and checks the cores from the arrays); None: use :meth:`schedule`."""
        return None

    def design_shape(self, launch: LaunchPlan, op_plan: OpPlan) -> dict:
        """The entries of the op plan's shape that ``launch``'s design depends on (default: all of them). Launches
        of ops whose plans differ only elsewhere share one design, one xclbin and one device configuration."""
        return op_plan.shape

    def configuration_key(self, launch: LaunchPlan, op_plan: OpPlan):
        """A hashable description of the device configuration ``launch`` needs, for launches that can share one
        design with others (:mod:`aielower.backends.aie.designs.shared`): launches with equal keys run on one
        design, one sequence each. None (the default): the launch has a design of its own."""
        return None

    def shared_spec(self, members: list[tuple[LaunchPlan, OpPlan]], device: Device) -> KernelSpec:
        """The kernel of a shared configuration of ``members`` (launches with one :meth:`configuration_key`)."""
        raise NotImplementedError

    def offers(self, plan: OpPlan) -> tuple[Offer, ...]:
        """The device configurations of ``plan``'s launches that launches of other families may join (planned in
        their format by :meth:`joined`); none by default."""
        return ()

    def joined(self, plan: OpPlan, offers: list[Offer], device: Device) -> OpPlan:
        """``plan`` with launches re-planned to join the configuration of one of ``offers`` (one per configuration,
        the most offered first), where they can; ``plan`` itself by default. Called by ``plan-aie-tiling`` once
        every op is planned, which keeps a joined launch only if its configuration key is its offer's and the
        configuration's kernel can run it with the launches already there."""
        return plan

    def scheduled_as_arrays(self, launch: LaunchPlan) -> bool:
        """Whether ``launch``'s work comes as arrays (:meth:`array_work`); the family's ``array_scheduled`` by
        default."""
        return self.array_scheduled

    def max_shared(self, launch: LaunchPlan) -> int:
        """The most launches like ``launch`` one shared configuration can run (its header's capacity)."""
        return 1

    def max_shared_buckets(self, launch: LaunchPlan) -> int | None:
        """The most row buckets one shared configuration of launches like ``launch`` serves (a design holds each
        member's core body and runtime sequence, so its text grows with them); None: no limit."""
        return None

    def reads_valid_tiles(self, launch: LaunchPlan, op_plan: OpPlan) -> bool:
        """Whether ``launch``'s design has one runtime sequence per count of cache tiles it reads before the step."""
        return False

    def kv_tile_counts(self, launch: LaunchPlan, tiles: int) -> tuple[int, ...]:
        """The cache tile counts a design that :meth:`reads_valid_tiles` of a cache of ``tiles`` tiles has a runtime
        sequence for, ascending from 0 (the first step: no cache row before it) to ``tiles``; the host submits the
        first that covers the cache rows before the step (default: every count)."""
        return tuple(range(tiles + 1))

    def kv_tile_rows(self, launch: LaunchPlan) -> int:
        """KV rows per cache tile of a launch that :meth:`reads_valid_tiles` (default: its ``tkv``)."""
        return launch.params["tkv"]

    def kv_tail_bytes(self, launch: LaunchPlan) -> int:
        """Bytes ``launch`` reads past a KV cache row's last KV row, which the cache's DDR tensor must have after
        it (default: none)."""
        return 0

    def scheduled_kv_len(self, launch: LaunchPlan, op_plan: OpPlan) -> int:
        """The cached positions the design generator schedules ``launch``'s cores for (:meth:`schedule` with its
        default ``kv_tiles``): what its kernel calls are counted at when the designs are dealt to build workers.
        0 (the default): the launch reads no cache."""
        return 0

    def calls_per_core(self, launch: LaunchPlan, shape: dict, kv_len: int = 0) -> dict[str, int]:
        """Kernel calls of the busiest core by function suffix (``init`` / ``step`` / ``store``, or ``""``), as the
        schedule deals the work of an op planned with ``shape`` (its OpPlan's shape) to the launch's cores."""
        raise NotImplementedError

    def computes_epilogue(self, plan: OpPlan) -> bool:
        """For a linear-like op (:class:`~aielower.ir.core.LinearLike`) with an epilogue: whether the launches of
        ``plan`` compute the epilogue too. False (the default): they compute the linear and the host applies the
        epilogue to their result."""
        return False

    def run(self, host, op, plan: OpPlan, operands: tuple):
        """The op's results, computed by its launches through ``host`` (a
        :class:`~aielower.backends.aie.host_program.HostProgram`)."""
        raise NotImplementedError

    def ddr_results(self, op, launch: LaunchPlan, op_plan: OpPlan) -> tuple[tuple[str, int, int] | None, ...]:
        """Per result of ``op``: (runtime-sequence argument, first element, elements) when ``launch`` writes the
        result into DDR exactly as it is, its elements in order in one run of that argument (bf16), so that the next
        launch can read it there (a chain, :mod:`aielower.backends.aie.chains`); None when the host reshapes, crops
        or splits it. The default: () (no result is)."""
        return ()

    def ddr_operand(self, op, launch: LaunchPlan, op_plan: OpPlan) -> tuple[str, int] | None:
        """(runtime-sequence argument, elements) when ``launch`` (of ``op``) reads the op's first operand from DDR
        exactly as the operand is (bf16, in order, not padded, from the argument's first element), so that it can
        read an earlier launch's result there; None (the default) when the host pads it or lays it out otherwise."""
        return None

    def __repr__(self) -> str:
        return f"<kernel family {self.name}: kinds {', '.join(self.kinds)}; kernels {', '.join(self.kernels)}>"


def fifo_shape(launch: LaunchPlan) -> tuple:
    """What a launch's object FIFOs and buffers depend on: its core grid, its buffers, and per stream everything but
    the DDR access patterns (which differ with the bucket). Launches of one family with equal shapes and kernel
    constants move the same tiles: part of a :meth:`KernelFamily.configuration_key`."""
    streams = tuple((s.name, s.direction, s.tensors, s.to_cores, s.tile_bytes, s.depth) for s in launch.streams)
    return launch.columns, launch.rows, launch.buffers, streams


def per_core(items: int, launch: LaunchPlan) -> int:
    """Work items of the busiest core when ``items`` are dealt evenly over ``launch``'s cores."""
    return -(-items // max(1, launch.cores))


def unknown(what: str, value, registered) -> CompileError:
    """The error for a kind or kernel no family claims, naming those that are claimed."""
    return CompileError(f"no kernel family {what} {value!r} (registered: {', '.join(sorted(registered))})")


__all__ = ["KernelFamily", "Offer", "fifo_shape", "per_core"]
