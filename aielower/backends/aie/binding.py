"""Which kernel a launch runs: the :class:`~aielower.backends.aie.kernels.KernelSpec` for a planned launch, as the
launch's kernel family (:mod:`aielower.backends.aie.families`) binds it."""

from __future__ import annotations

from aielower.backends.aie.device import Device
from aielower.backends.aie.kernels import KernelSpec
from aielower.backends.aie.plan import LaunchPlan


def kernel_spec(launch: LaunchPlan, device: Device) -> KernelSpec:
    from aielower.backends.aie.families import KERNEL_FAMILIES  # the families plan with the binding's help

    return KERNEL_FAMILIES.for_kernel(launch.kernel).kernel_spec(launch, device)


__all__ = ["kernel_spec"]
