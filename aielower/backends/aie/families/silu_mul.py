"""The ``silu_mul`` kernel family: ``fused.silu_mul``, ``silu(gate) * up`` of the gated MLP. Work items (one row x
``t`` columns) are split over the cores."""

from __future__ import annotations

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.device import Device
from aielower.backends.aie.families.base import KernelFamily, per_core
from aielower.backends.aie.host_arrays import from_bf16, to_bf16
from aielower.backends.aie.kernels import (Arg, KernelDef, KernelSpec, Ops, VectorModel, arch_of, check_arch, loads,
                                           require_positive, require_rule, stores)
from aielower.backends.aie.plan import AccessPattern, Buffer, LaunchPlan, OpPlan, Stream
from aielower.backends.aie.planner import BF16, checked, core_grid, first_fitting, roundup
from aielower.ir.dialects import fused


def silu_mul_spec(t: int, tr: int, arch: str) -> KernelSpec:
    return KernelSpec("silu_mul", (("t", t), ("tr", tr), ("arch", arch)))


def _check_silu_mul(family: str, p: dict) -> None:
    check_arch(family, p)
    require_positive(family, p, "t", "tr")
    require_rule(family, p["t"] % 16 == 0, f"T={p['t']} is not a multiple of 16 (contract)",
                 "pad T to a multiple of 16")


def silu_times_ops(m: VectorModel) -> Ops:
    """``silu_times`` of _silu.cc.j2 on 16 lanes (also the linear_w4 silu epilogue's): abs; -|g| log2 e (MUL, MAC,
    to fp32); exp2; 1 / (1 + E) (MSC + round, 2 x (sub, MSC, round, widen, MAC, round)); split r (round, sub,
    round); the E-or-1 factor (compare, select); sigmoid (MUL, MAC) and its split; g u (MUL) and its split; the
    product (MUL, 2 MACs) and its rounding."""
    return Ops(vec=1 + 3 + m.exp2_16 + 14 + 3 + 2 + 2 + 3 + 4 + 4)


def _silu_mul_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    lane16 = loads(256) * 2 + silu_times_ops(m) + stores(256)
    return {"": lane16 * (p["tr"] * p["t"] // 16)}


SILU_MUL_KERNEL = KernelDef(
    functions=lambda p: ("",), check=_check_silu_mul, cycles=_silu_mul_cycles,
    signature=lambda p: {"": (Arg("gu", "bf16", 2 * p["tr"] * p["t"]), Arg("y", "bf16", p["tr"] * p["t"], out=True))},
    symbol=lambda p: f"silu_mul_t{p['t']}_tr{p['tr']}_{p['arch']}",
)


def plan_silu_mul(label: str, i: int, buckets: tuple[int, ...], device: Device) -> OpPlan:
    def build(t: int) -> OpPlan:
        i_pad = roundup(i, t)
        launches = []
        for m in buckets:
            col_tiles = i_pad // t
            items = m * col_tiles  # one row x t columns each
            columns, rows = core_grid(items, device)
            tr = 1
            tile = tr * t * BF16
            buffers = (
                Buffer("gu", "L1", 2 * tile, 2), Buffer("y", "L1", tile, 2),
                Buffer("gu", "L2", rows * 2 * tile, 2), Buffer("y", "L2", rows * tile, 2),
            )
            streams = (
                Stream("gu", "in", ("gate", "up"), "split", 2 * tile, 2,
                       (AccessPattern(0, (t,), (1,)), AccessPattern(i_pad, (t,), (1,)))),
                Stream("y", "out", ("y",), "split", tile, 2, (AccessPattern(0, (t,), (1,)),)),
            )
            launches.append(checked(LaunchPlan(
                bucket=m, kernel="silu_mul", role="silu_mul", params=dict(t=t, tr=tr),
                columns=columns, rows=rows, buffers=buffers, streams=streams,
                macs=m * i, padded_macs=m * i_pad,
                ddr_read=2 * m * i_pad * BF16, ddr_write=m * i_pad * BF16,
            ), device))
        return OpPlan("silu_mul", device.name, dict(i=i, i_pad=i_pad, t=t), tuple(launches))

    # the widest tile that pads I by at most 1 %, else the one that pads least
    ts = [t for t in (512, 256, 128, 64, 32, 16)]
    ts.sort(key=lambda t: (roundup(i, t) / i - 1 > 0.01, roundup(i, t), -t))
    return first_fitting(label, device, ts, build)


def silu_mul(launch: LaunchPlan, m: int, i_pad: int) -> list[sched.CoreProgram]:
    """Tensors: ``gu`` [m, 2*i_pad] bf16 (gate columns, then up columns), ``y`` [m, i_pad]."""
    t = launch.params["t"]
    per_row = i_pad // t
    cores = sched.cores_of(launch)
    for core, items in zip(cores, sched.blocks(m * per_row, len(cores))):
        for item in items:
            row, ct = divmod(item, per_row)
            gate = sched.contiguous("gu", row * 2 * i_pad + ct * t, t)
            up = sched.contiguous("gu", row * 2 * i_pad + i_pad + ct * t, t)
            y = sched.contiguous("y", row * i_pad + ct * t, t)
            core.calls.append(sched.Call("", (sched.In((gate, up)), sched.Out((y,)))))
    return cores


class SiluMul(KernelFamily):
    name = "silu_mul"
    kinds = ("silu_mul",)
    kernel_defs = {"silu_mul": SILU_MUL_KERNEL}

    def plan_key(self, op, buckets, linear_buckets):
        if not isinstance(op, fused.SiluMul):
            return None
        i = op.x.type.shape[-1] // 2
        return ("silu_mul", i, buckets), (lambda label, device: plan_silu_mul(label, i, buckets, device))

    def kernel_spec(self, launch: LaunchPlan, device: Device) -> KernelSpec:
        return silu_mul_spec(launch.params["t"], launch.params["tr"], arch_of(device))

    def schedule(self, launch: LaunchPlan, op_plan: OpPlan, kv_tiles: int | None = None):
        return silu_mul(launch, launch.bucket, op_plan.shape["i_pad"]), ()

    def calls_per_core(self, launch: LaunchPlan, shape: dict, kv_len: int = 0) -> dict[str, int]:
        return {"": per_core(launch.bucket * (shape["i_pad"] // launch.params["t"]), launch)}

    def run(self, host, op, plan: OpPlan, operands: tuple):
        """``silu(x[..., :i]) * x[..., i:]`` for all rows in one launch (gate and up padded apart to ``i_pad``)."""
        (x,) = operands
        i, i_pad = plan.shape["i"], plan.shape["i_pad"]
        lead = x.shape[:-1]
        m = int(np.prod(lead))
        launch, bucket = host.rows_launch(plan, m)
        flat = to_bf16(x.reshape(m, 2 * i))
        gu = np.zeros((bucket, 2 * i_pad), np.uint16)
        gu[:m, :i], gu[:m, i_pad : i_pad + i] = flat[:, :i], flat[:, i:]
        tensors = {"gu": gu.reshape(-1), "y": np.zeros(bucket * i_pad, np.uint16)}
        host.submit(plan, launch, tensors)
        return from_bf16(tensors["y"].reshape(bucket, i_pad)[:m, :i]).reshape(*lead, i)


__all__ = ["silu_times_ops", "SILU_MUL_KERNEL", "SiluMul", "plan_silu_mul", "silu_mul", "silu_mul_spec"]
