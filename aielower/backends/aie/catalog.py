"""The designs a planned module needs: one per distinct launch (kernel, shape, bucket), named so that equal launches
share one design (one xclbin). The artifact writes them; :mod:`.counted` counts what they move and issue."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.device import Device
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.kernels import KernelSpec
from aielower.backends.aie.plan import LaunchPlan, OpPlan, plan_of
from aielower.ir import Module


@dataclass(frozen=True)
class Design:
    name: str
    launch: LaunchPlan
    plan: OpPlan
    spec: KernelSpec

    @property
    def file(self) -> str:
        return f"design/{self.name}.mlir"


def design_name(launch: LaunchPlan, plan: OpPlan) -> str:
    """Readable and unique: the role, the bucket and a digest of everything the design depends on (the launch and
    the part of the op's shape its kernel family says it reads, :meth:`KernelFamily.design_shape
    <aielower.backends.aie.families.base.KernelFamily.design_shape>`)."""
    shape = KERNEL_FAMILIES.for_kernel(launch.kernel).design_shape(launch, plan)
    key = json.dumps([plan.kind, shape, launch.to_attr()], sort_keys=True)
    return f"{launch.role}_b{launch.bucket}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def collect(module: Module, device: Device) -> tuple[dict[str, KernelSpec], dict[str, Design]]:
    """Every kernel and every design the module's plans need, each once, in a deterministic order."""
    kernels: dict[str, KernelSpec] = {}
    designs: dict[str, Design] = {}
    for fn in module.functions.values():
        for op in fn.ops:
            plan = plan_of(op)
            if plan is None:
                continue
            for launch in plan.launches:
                spec = kernel_spec(launch, device)
                kernels.setdefault(spec.symbol, spec)
                name = design_name(launch, plan)
                designs.setdefault(name, Design(name, launch, plan, spec))
    return dict(sorted(kernels.items())), dict(sorted(designs.items()))


__all__ = ["Design", "collect", "design_name"]
