"""What the tiling plans of every kernel family share: the search for the first candidate whose every launch holds
the device's budgets, the budget check of one launch, core grids and padding.

Each family plans its own ops (``plan_*`` in :mod:`aielower.backends.aie.families`). Shapes: ``M`` is the number of
activation rows (batch x tokens), padded to a bucket (1 for a decode step, 128 ... 2048 for prompts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from aielower.backends.aie.budget import violations
from aielower.backends.aie.device import Device
from aielower.backends.aie.plan import Buffer, LaunchPlan, OpPlan
from aielower.errors import CompileError

BF16 = 2
F32 = 4
VECTOR = 16  # bf16 lanes the element-wise kernels work on (docs/aie-kernels.md)


def roundup(x: int, m: int) -> int:
    return -(-x // m) * m


def core_grid(items: int, device: Device, max_rows: int | None = None) -> tuple[int, int]:
    """Columns x rows for ``items`` independent work items: all cores when there is enough work, otherwise as
    many rows as there are items (up to ``max_rows``), then columns."""
    rows = min(device.core_rows if max_rows is None else max_rows, max(items, 1))
    columns = min(device.columns, -(-max(items, 1) // rows))
    return columns, rows


class Unplannable(Exception):
    """A candidate that breaks a budget (internal: the search moves on to the next candidate)."""


def checked(launch: LaunchPlan, device: Device) -> LaunchPlan:
    """``launch`` if it holds every budget and its kernel accepts its constants (docs/aie-kernels.md). The core
    stack the kernel needs (``KernelSpec.stack_bytes``; designs set ``stack_size`` to it) and the kernel's static
    arrays (``KernelSpec.static_bytes``) are L1 buffers of the launch like any other."""
    from aielower.backends.aie.binding import kernel_spec  # binding looks up the families, which plan with this

    broken = []
    try:
        spec = kernel_spec(launch, device)
    except CompileError as e:
        broken.append(str(e))
    else:
        if not any(b.name == "stack" for b in launch.buffers):
            extra = (Buffer("stack", "L1", spec.stack_bytes),)
            if spec.static_bytes:
                extra += (Buffer("kernel_static", "L1", spec.static_bytes),)
            launch = dataclasses.replace(launch, buffers=launch.buffers + extra)
    broken = violations(launch, device) + broken
    if broken:
        raise Unplannable(f"{launch.role or launch.kernel} at bucket {launch.bucket}: " + "; ".join(broken))
    return launch


def first_fitting(label: str, device: Device, candidates: Iterable, build) -> OpPlan:
    """Build a plan from the first candidate whose launches all fit; otherwise a CompileError naming ``label`` and
    the budgets the smallest candidate broke."""
    last = None
    for candidate in candidates:
        try:
            return build(candidate)
        except Unplannable as e:
            last = e
    detail = f": {last}" if last else ": no tile size satisfies the kernel's divisibility rules"
    raise CompileError(f"cannot tile {label} on {device.name}{detail}")


# --------------------------------------------------------------------------- bookkeeping


def padding_waste(plans: Iterable[OpPlan], bucket: int) -> float:
    """Executed MACs over useful MACs, minus one, over the launches at ``bucket`` (those that count MACs)."""
    useful = padded = 0
    for plan in plans:
        for launch in plan.launches_for(bucket):
            useful += launch.macs
            padded += launch.padded_macs
    return padded / useful - 1 if useful else 0.0


__all__ = ["BF16", "F32", "VECTOR", "Unplannable", "checked", "core_grid", "first_fitting", "padding_waste", "roundup"]
