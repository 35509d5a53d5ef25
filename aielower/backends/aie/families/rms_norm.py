"""The ``rms_norm`` kernel family: ``fused.rms_norm`` and ``fused.add_rms_norm`` (the residual add fused in: it
writes the sum and the normalized sum). Rows are split over the cores; the norm weight is broadcast once."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.device import Device
from aielower.backends.aie.families import gemv_norm
from aielower.backends.aie.families.base import KernelFamily, fifo_shape, per_core
from aielower.backends.aie.host_arrays import from_bf16, from_tile_records, pad2, tile_records, to_bf16
from aielower.backends.aie.kernels import (REDUCE_16, SCALAR_ELEMENTARY, Arg, KernelDef, KernelSpec, Ops, VectorModel,
                                           encode_float, fp32, header_ops, loads, require_members, require_positive,
                                           require_rule, stores)
from aielower.backends.aie.plan import DECODE_BUCKETS, AccessPattern, Buffer, LaunchPlan, OpPlan, Stream
from aielower.backends.aie.planner import BF16, VECTOR, Unplannable, checked, core_grid, first_fitting, roundup
from aielower.ir import Weight
from aielower.ir.dialects import fused


def rms_norm_spec(d: int, d_real: int, tr: int, eps: float, add: bool, members: int = 0) -> KernelSpec:
    """The norm kernel; a kernel of a shared configuration (:mod:`aielower.backends.aie.designs.shared`) of
    ``members`` launches has a ``_header`` function (its header is the first norm-weight element of a launch)."""
    params = (("d", d), ("d_real", d_real), ("tr", tr), ("eps", fp32(eps)), ("add", bool(add)))
    if members:
        params += (("members", members),)
    return KernelSpec("rms_norm", params)


def header_words_of(p: dict) -> int:
    """The i32 words of a shared norm launch's header: one norm-weight element, D bf16."""
    return p["d"] // 2


def _check_rms_norm(family: str, p: dict) -> None:
    require_positive(family, p, "d", "d_real", "tr")
    require_rule(family, p["d"] % 16 == 0, f"D={p['d']} is not a multiple of 16 (contract)",
                 "pad D to a multiple of 16")
    require_rule(family, p["d_real"] <= p["d"], f"D_REAL={p['d_real']} exceeds the padded width D={p['d']}",
                 "D is D_REAL padded up")
    require_rule(family, math.isfinite(p["eps"]) and p["eps"] >= 0, f"EPS={p['eps']} must be finite and >= 0",
                 "use the model's rms_norm_eps")
    require_members(family, p, header_words_of(p))


def _rms_norm_signature(p: dict) -> dict[str, tuple[Arg, ...]]:
    n = (2 if p["add"] else 1) * p["tr"] * p["d"]
    out = {"": (Arg("x", "bf16", n), Arg("w", "bf16", p["d"]), Arg("y", "bf16", n, out=True))}
    if "members" in p:
        out["_header"] = (Arg("w", "bf16", p["d"]), Arg("words", "words", p["members"], out=True))
    return out


def _rms_norm_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    tr, chunks = p["tr"], p["d"] // 16
    if p["add"]:  # s = a + b as bf16 head + tail (widen, add, round, sub, round); s^2 from 3 MACs
        first = loads(256) * 2 + Ops(vec=5 + 3)
        second = loads(256) * 3 + Ops(vec=5 + 2 + 7) + stores(256) * 2  # s w (MUL + MAC), times r
    else:
        first = loads(256) + Ops(vec=1)
        second = loads(256) * 2 + Ops(vec=1 + 7) + stores(256)  # x w, times r
    # times r: split p (round, sub, round), MUL + 2 MACs, round. Per row: r from the reduced sum (a division, an
    # inverse square root, the split into r_hi + r_lo).
    row = first * chunks + Ops(vec=1 + REDUCE_16, scalar=2 * SCALAR_ELEMENTARY + 3) + second * chunks
    out = {"": row * tr}
    if "members" in p:
        out["_header"] = header_ops(p)
    return out


RMS_NORM_KERNEL = KernelDef(
    functions=lambda p: ("",) + (("_header",) if "members" in p else ()), check=_check_rms_norm,
    signature=_rms_norm_signature, cycles=_rms_norm_cycles,
    symbol=lambda p: (f"{'add_' if p['add'] else ''}rms_norm_d{p['d']}_dr{p['d_real']}_tr{p['tr']}"
                      f"_eps{encode_float(p['eps'])}" + (f"_x{p['members']}" if "members" in p else "")),
)


# L1 bytes a norm launch keeps for the header words of the configuration it shares (designs.shared): one word for
# the plain norm and one for the residual-add norm of every bucket a function can have, so that the norms of every
# bucket still fit once they share one (the catalog cuts a configuration whose cores would not hold its words). One
# figure for every launch: launches of one bucket in both functions stay one launch.
HEADER_RESERVE = 4 * 2 * len(DECODE_BUCKETS)


def plan_norm(label: str, d: int, eps: float, add: bool, buckets: tuple[int, ...], device: Device,
              zero_residual: bool = False) -> OpPlan:
    """Rows in tiles of ``tr`` (at most the candidate's), dealt over the cores. Every prompt bucket (more than one
    row) takes the same ``tr``, the largest that still gives each core of the smallest prompt bucket a tile, so
    that their launches move the same tiles and share one configuration (:meth:`RmsNorm.configuration_key`). When
    that is one row, decode's row (one core's work) is planned on the prompt buckets' grid too, so that it shares
    their configuration: the other cores only take the header (which costs one norm-weight element per column).
    ``zero_residual``: a plain norm (not ``add``) runs on the residual-add kernel with a residual of -0, so that its
    launches share the configuration of the add_rms_norm launches of the same width: ``a + (-0)`` is ``a`` exactly
    and, for finite rows, the kernel's ``s_lo`` terms are zeros, so the norm equals the plain kernel's (bit for bit
    but for the sign of a zero output; a row holding an infinity comes out all NaN, where the plain kernel's is NaN
    at that element). It reads the zeros and writes the sum: twice the plain norm's traffic, for the one plain norm
    of a token (layer 0's)."""
    d_pad = roundup(d, VECTOR)
    kernel_add = add or zero_residual
    parts = 2 if kernel_add else 1
    prompts = [m for m in buckets if m > 1]
    per_core = min((m // (c * r) for m in prompts for c, r in [core_grid(m, device)]), default=1)

    def build(candidate) -> OpPlan:
        tr_max, depth_in, depth_out = candidate
        launches = []
        prompt_tr = min(tr_max, max(1, per_core))
        for m in buckets:
            columns, rows = core_grid(m, device)
            tr = prompt_tr if m > 1 else 1
            if m == 1 and prompts and prompt_tr == 1:
                # decode's one row on the prompt buckets' grid (the other cores idle): their configuration
                columns, rows = core_grid(min(prompts), device)
            tile = tr * d_pad * BF16
            # add: one record per row tile, the a rows then the b rows ("ab"; the sum then the norm out, "sy"), so
            # that a core's tiles are one run (host_arrays.tile_records)
            names_in = ("ab",) if kernel_add else ("x",)
            names_out = ("sy",) if kernel_add else ("y",)
            buffers = (
                Buffer("x", "L1", parts * tile, depth_in), Buffer("w", "L1", d_pad * BF16),
                Buffer("y", "L1", parts * tile, depth_out), Buffer("header", "L1", HEADER_RESERVE),
                Buffer("x", "L2", rows * parts * tile, 2), Buffer("w", "L2", d_pad * BF16),
                Buffer("y", "L2", rows * parts * tile, 2),
            )
            ap = AccessPattern(0, (parts * tr * d_pad,), (1,))
            streams = (
                Stream("x", "in", names_in, "split", parts * tile, depth_in, (ap,)),
                Stream("w", "in", ("w",), "broadcast", d_pad * BF16, 1, (AccessPattern(0, (d_pad,), (1,)),)),
                Stream("y", "out", names_out, "split", parts * tile, depth_out, (ap,)),
            )
            launches.append(checked(LaunchPlan(
                bucket=m, kernel="rms_norm", role="add_rms_norm" if add else "rms_norm",
                params=dict(d=d_pad, d_real=d, tr=tr, eps=eps, add=kernel_add),
                columns=columns, rows=rows, buffers=buffers, streams=streams,
                macs=m * d * parts, padded_macs=roundup(m, tr) * d_pad * parts,
                ddr_read=m * d_pad * BF16 * parts + columns * d_pad * BF16, ddr_write=m * d_pad * BF16 * parts,
            ), device))
        return OpPlan("add_rms_norm" if add else "rms_norm", device.name, dict(d=d, d_pad=d_pad, eps=eps),
                      tuple(launches))

    # double-buffer both streams if the rows fit, else the input only, else neither (a wide add_rms_norm row)
    candidates = [(tr, i, o) for tr in (16, 8, 4, 2, 1) for i, o in ((2, 2), (2, 1), (1, 1))]
    return first_fitting(label, device, candidates, build)


def rms_norm(launch: LaunchPlan, m_pad: int) -> list[sched.CoreProgram]:
    """Tensors: ``x`` [m_pad, d] bf16, ``w`` [d], ``y`` [m_pad, d]; with the residual add ``ab`` and ``sy``
    instead of ``x`` and ``y``: per row tile of ``tr`` rows a record ``[a rows | b rows]`` (``[sum | y]``),
    ``[m_pad / tr][2][tr][d]`` (:func:`~aielower.backends.aie.host_arrays.tile_records`)."""
    p = launch.params
    d, tr, add = p["d"], p["tr"], p["add"]
    parts = 2 if add else 1
    cores = sched.cores_of(launch)
    x_name, y_name = ("ab", "sy") if add else ("x", "y")
    size = parts * tr * d
    for core, tiles in zip(cores, sched.column_interleaved(m_pad // tr, launch.columns, launch.rows)):
        for i in tiles:
            x = sched.In((sched.contiguous(x_name, i * size, size),))
            y = sched.Out((sched.contiguous(y_name, i * size, size),))
            core.calls.append(sched.Call("", (x, sched.In((sched.contiguous("w", 0, d),)), y)))
    return cores


class RmsNorm(KernelFamily):
    name = "rms_norm"
    kinds = ("rms_norm", "add_rms_norm")
    kernel_defs = {"rms_norm": RMS_NORM_KERNEL}

    def plan_key(self, op, buckets, linear_buckets):
        if not isinstance(op, (fused.RMSNorm, fused.AddRMSNorm)):
            return None
        d = op.x.type.shape[-1]
        add = isinstance(op, fused.AddRMSNorm)
        # a plain norm on the add kernel with a zero residual: one configuration for both norms (plan_norm)
        return ("norm", d, op.eps, add, buckets), (
            lambda label, device: plan_norm(label, d, op.eps, add, buckets, device, zero_residual=not add))

    def joined(self, plan: OpPlan, offers: list, device: Device) -> OpPlan:
        """Decode's norm (its one-row launch) as a member of the first decode GEMV configuration of ``offers`` it
        fits (:mod:`.gemv_norm`): a decode layer then switches configurations fewer times."""
        offers = [x for x in offers if x.format.get("kind") == "gemv"]
        decode = next((i for i, x in enumerate(plan.launches) if x.bucket == 1 and x.kernel == "rms_norm"), None)
        if decode is None or not offers:
            return plan
        for offer in offers:
            try:
                member = gemv_norm.plan_member(offer, plan.shape["d"], plan.shape["eps"], plan.launches[decode].role,
                                               device)
            except Unplannable:
                continue
            launches = plan.launches[:decode] + (member,) + plan.launches[decode + 1:]
            return dataclasses.replace(plan, launches=launches)
        return plan

    def kernel_spec(self, launch: LaunchPlan, device: Device) -> KernelSpec:
        p = launch.params
        return rms_norm_spec(p["d"], p["d_real"], p["tr"], p["eps"], p["add"])

    def schedule(self, launch: LaunchPlan, op_plan: OpPlan, kv_tiles: int | None = None):
        return rms_norm(launch, roundup(launch.bucket, launch.params["tr"])), ()

    def configuration_key(self, launch: LaunchPlan, op_plan: OpPlan):
        """Norms of any bucket share a configuration when their cores take the same tiles: the grid, the kernel's
        constants (width, rows per tile, eps, the residual add) and the buffers and streams (a member's body and
        runtime sequence carry its rows). The header comes first on the norm weight's stream."""
        return ("rms_norm", fifo_shape(launch), tuple(sorted(launch.params.items())))

    def shared_spec(self, members: list[tuple[LaunchPlan, OpPlan]], device: Device) -> KernelSpec:
        p = members[0][0].params
        return rms_norm_spec(p["d"], p["d_real"], p["tr"], p["eps"], p["add"], members=len(members))

    def max_shared(self, launch: LaunchPlan) -> int:
        return header_words_of(launch.params)

    def calls_per_core(self, launch: LaunchPlan, shape: dict, kv_len: int = 0) -> dict[str, int]:
        return {"": per_core(-(-launch.bucket // launch.params["tr"]), launch)}

    def ddr_results(self, op, launch: LaunchPlan, op_plan: OpPlan) -> tuple[tuple[str, int, int] | None, ...]:
        """Decode's norm on the GEMV configuration: the sum (with the residual add) and the norm, each one run of
        its ``y`` (:func:`~.gemv_norm.result_places`)."""
        if not gemv_norm.is_norm(launch):
            return ()
        total, normed = gemv_norm.result_places(launch, op_plan.shape["d"])
        return (total, normed) if op_plan.kind == "add_rms_norm" else (normed,)

    def run(self, host, op, plan: OpPlan, operands: tuple):
        """``y = norm(x)``, or ``(sum, y) = (a + b, norm(a + b))``, for all rows in one launch (a plain norm planned
        on the add kernel adds a residual of -0 and keeps the norm, :func:`plan_norm`)."""
        add = plan.kind == "add_rms_norm"
        x, weight = (operands[0], operands[2]) if add else operands
        d, d_pad = plan.shape["d"], plan.shape["d_pad"]
        lead = x.shape[:-1]
        m = int(np.prod(lead))
        launch, bucket = host.rows_launch(plan, m)
        if gemv_norm.is_norm(launch):  # decode's row on the GEMV configuration
            a, b = (operands[0], operands[1]) if add else (x, np.full_like(x, -0.0))
            name = op.weight.name if isinstance(op.weight, Weight) else None
            tensors = gemv_norm.tensors(launch, a.reshape(-1), b.reshape(-1), weight, name)
            host.submit(plan, launch, tensors)
            total, normed = (v.reshape(*lead, d) for v in gemv_norm.results(launch, tensors["y"], d))
            return (total, normed) if add else normed
        tr = launch.params["tr"]
        m_pad = roundup(bucket, tr)
        kernel_add = launch.params["add"]
        inputs = operands[:2] if add else (x, np.full_like(x, -0.0)) if kernel_add else (x,)
        rows = [pad2(to_bf16(value.reshape(m, d)), m_pad, d_pad) for value in inputs]
        x_name, y_name = ("ab", "sy") if kernel_add else ("x", "y")
        tensors = {"w": pad2(to_bf16(weight).reshape(1, d), 1, d_pad).reshape(-1),
                   x_name: tile_records(rows, tr), y_name: np.zeros(len(rows) * m_pad * d_pad, np.uint16)}
        host.submit(plan, launch, tensors)
        outs = [from_bf16(part[:m, :d]).reshape(*lead, d) for part in from_tile_records(tensors[y_name], len(rows),
                                                                                       m_pad, d_pad, tr)]
        return tuple(outs) if add else outs[-1]


__all__ = ["RMS_NORM_KERNEL", "RmsNorm", "header_words_of", "plan_norm", "rms_norm", "rms_norm_spec"]
