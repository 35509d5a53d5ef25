"""Which kernel a launch runs: the :class:`~aielower.backends.aie.kernels.KernelSpec` for a planned launch."""

from __future__ import annotations

from aielower.backends.aie.device import Device
from aielower.backends.aie.kernels import (
    KernelSpec,
    arch_of,
    attention_spec,
    gemm_spec,
    gemv_spec,
    rms_norm_spec,
    rope_spec,
    silu_mul_spec,
)
from aielower.backends.aie.plan import LaunchPlan
from aielower.errors import CompileError


def kernel_spec(launch: LaunchPlan, device: Device) -> KernelSpec:
    p = launch.params
    if launch.kernel == "linear_w4_gemv":
        return gemv_spec(p["tn"], p["tk"], p["group"], p["bias"], device.mmul["bf16"])
    if launch.kernel == "linear_w4_gemm":
        return gemm_spec(p["tm"], p["tn"], p["tk"], p["group"], p["bias"], device.mmul["bf16"])
    if launch.kernel == "rms_norm":
        return rms_norm_spec(p["d"], p["d_real"], p["tr"], p["eps"], p["add"])
    if launch.kernel == "silu_mul":
        return silu_mul_spec(p["t"], p["tr"], arch_of(device))
    if launch.kernel == "rope":
        return rope_spec(p["d"], p["tr"])
    if launch.kernel == "attention":
        return attention_spec(p["d"], p["gq"], p["tq"], p["tkv"], p["scale"], p["causal"], arch_of(device),
                              bool(p.get("header", False)))
    raise CompileError(f"no kernel family {launch.kernel!r}")


__all__ = ["kernel_spec"]
