"""Decode's residual add + RMSNorm as a member of the GEMV configuration (issue 14: fewer array switches per token).

A 7B decode layer ran its launches on four device configurations: the norm's, the qkv GEMV's, attention's and the
shared GEMV configuration of o_proj, gate/up and down (G). Every switch between them reconfigures the array. A norm
launch planned here runs on G's cores through G's own object FIFOs, as one more member of G (one more runtime
sequence, selected by its header, :mod:`aielower.backends.aie.designs.shared`): with the qkv GEMV in G too (its bias
in bias tiles, :func:`~aielower.backends.aie.families.linear_w4.bias_tile_rows`) a layer switches twice
(G -> attention -> G) instead of six times.

What moves, per launch (G's tile format: ``x`` TK bf16 broadcast to a column's cores, ``w`` a weight tile split one
element per core, ``y`` YS bf16 split):

- ``x``: the row, ``ND / (TK/2)`` elements of ``[a | b]`` (TK/2 columns of the residual ``a``, then the same of the
  delta ``b``; ``ND`` the width padded to whole elements and slices), every column's cores all of them;
- ``w``: per core one weight tile whose first ``2 NL`` bytes are its slice of the norm weight (``NL = ND / cores``
  columns from column ``k NL``, core ``k = column x rows + row``);
- ``y``: per core its slice of the sum (bf16) then of the norm, ``2 NL / YS`` elements, into ``[sum | norm]`` (each
  ``ND`` wide): the norm is one run a linear after it can read where it is (a chain, :mod:`..chains`).

Every core sums the squares of the whole row, in the order the norm kernel does (the kernel functions share
``_rms_row.cc.j2`` with ``rms_norm.cc.j2``), so a member computes bit for bit what the norm's own design computes.
The launch's kernel is G's GEMV kernel (``linear_w4_gemv`` with the ``norm_*`` constants, whose ``_norm_init``,
``_norm_row`` and ``_norm_store`` functions :data:`FUNCTIONS` are), so the linear family's configuration key puts
it with G's linears; its schedule, cost and host side are here.
"""

from __future__ import annotations

from math import lcm

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.device import Device
from aielower.backends.aie.host_arrays import from_bf16, pad2, to_bf16
from aielower.backends.aie.launcher import Resident
from aielower.backends.aie.kernels import (Arg, Ops, VectorModel, encode_float, loads, require_positive, require_rule,
                                           stores)
from aielower.backends.aie.plan import Buffer, LaunchPlan
from aielower.backends.aie.planner import BF16, F32, VECTOR, Unplannable, checked, roundup
from aielower.backends.aie.weights import linear_tile_bytes
from aielower.errors import CompileError

# The kernel functions a GEMV kernel with a norm has beside its own (the schedule's call names without the "_").
FUNCTIONS = ("_norm_init", "_norm_row", "_norm_store")
# The norm constants of a GEMV kernel's params, in the order the symbol names them.
PARAMS = ("norm_d", "norm_d_real", "norm_eps", "norm_slice")
SUMSQ = VECTOR  # floats of the sum of squares (one vector of lanes)
SCALARS = 2  # the slice's first column and r


def is_norm(launch: LaunchPlan) -> bool:
    """Whether ``launch`` is a norm planned on a GEMV configuration."""
    return is_norm_params(launch.params)


def is_norm_params(p: dict) -> bool:
    """Whether launch params ``p`` are a norm's (a linear's have no ``norm_*`` constants)."""
    return "norm_d" in p


def norm_params(p: dict) -> dict:
    """The ``norm_*`` constants of a launch's (or kernel's) params; empty for a linear."""
    return {k: p[k] for k in PARAMS if k in p}


def accumulator_floats(norm_d: int, norm_slice: int) -> int:
    """Floats of the accumulator buffer a norm needs: the row's sum, the sum of squares, the weight slice (bf16),
    the scalars."""
    return norm_d + SUMSQ + norm_slice // 2 + SCALARS


def symbol_suffix(p: dict) -> str:
    if "norm_d" not in p:
        return ""
    return f"_norm{p['norm_d']}r{p['norm_d_real']}s{p['norm_slice']}eps{encode_float(p['norm_eps'])}"


def check(family: str, p: dict, tile_bytes: int) -> None:
    """The contract of a GEMV kernel's norm functions (``tile_bytes``: its weight tile)."""
    if "norm_d" not in p:
        return
    require_positive(family, p, "norm_d", "norm_d_real", "norm_slice")
    nd, nl, tk, ys = p["norm_d"], p["norm_slice"], p["tk"], p.get("ys") or p["tn"]
    require_rule(family, nd % (tk // 2) == 0 and (tk // 2) % VECTOR == 0, f"the norm's ND={nd} is not whole "
                 f"activation elements of TK/2={tk // 2} columns, a multiple of 16 (contract)", "pad ND up")
    require_rule(family, nl % VECTOR == 0 and nl % ys == 0 and nd % nl == 0, f"a core's norm slice of NL={nl} "
                 f"columns is not whole vectors of 16 and stores of YS={ys}, dividing ND={nd} (contract)",
                 "pad ND to whole slices")
    require_rule(family, p["norm_d_real"] <= nd, f"D_REAL={p['norm_d_real']} exceeds the padded row ND={nd}",
                 "ND is D_REAL padded up")
    require_rule(family, 2 * nl <= tile_bytes, f"a core's norm-weight slice ({2 * nl} bytes) does not fit its "
                 f"weight tile of {tile_bytes} bytes", "plan the norm on its own configuration")
    require_rule(family, accumulator_floats(nd, nl) <= p["nb"] * p["tn"], f"the norm's row needs "
                 f"{accumulator_floats(nd, nl)} floats, the accumulator buffer holds NB x TN = {p['nb'] * p['tn']}",
                 "give the kernel more accumulators")


def signatures(p: dict, accs: int, tile_bytes: int) -> dict[str, tuple[Arg, ...]]:
    """The norm functions of a GEMV kernel with ``accs`` floats of accumulators (none without a norm)."""
    if "norm_d" not in p:
        return {}
    ys = p.get("ys") or p["tn"]
    return {
        "_norm_init": (Arg("w", "u8", tile_bytes), Arg("accs", "f32", accs, out=True), Arg("first", "i32")),
        "_norm_row": (Arg("x", "bf16", p["tk"]), Arg("accs", "f32", accs, out=True), Arg("slot", "i32")),
        "_norm_store": (Arg("accs", "f32", accs, out=True), Arg("slot", "i32"), Arg("y", "bf16", ys, out=True)),
    }


def cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    """The cycle model of the norm functions (rms_norm.cc.j2's row arithmetic, per vector of 16 columns)."""
    if "norm_d" not in p:
        return {}
    ys = p.get("ys") or p["tn"]
    vectors = p["tk"] // 2 // VECTOR
    # a + b (widen, add), the split (round, sub, round), three MACs; the fp32 sum stored
    row = loads(32 * 16) + (loads(256) * 2 + Ops(vec=5 + 3) + stores(512)) * vectors + stores(512)
    # per store call: the sum reloaded and split; the norm's product (MUL + MAC) times r (split, MUL + 2 MACs,
    # round); r once (a reduction, a division, an inverse square root)
    per_vector = loads(512) + Ops(vec=4) + loads(256) + Ops(vec=2 + 7) + stores(min(ys, 16) * 16)
    store = per_vector * max(1, ys // VECTOR) + Ops(vec=1, scalar=6)
    init = (loads(256) + stores(256)) * (p["norm_slice"] // VECTOR) + stores(512) + Ops(scalar=1)
    return {"_norm_init": init, "_norm_row": row, "_norm_store": store}


def spec_entries(members: list[dict]) -> dict:
    """The norm constants of a shared GEMV kernel whose members' params are ``members``: those of its norms, which
    must agree (one set of functions per kernel)."""
    found = {tuple(norm_params(p).items()) for p in members if "norm_d" in p}
    if len(found) > 1:
        raise CompileError(f"norms of other widths or eps cannot share one GEMV configuration: {sorted(found)}")
    return dict(found.pop()) if found else {}


# --------------------------------------------------------------------------------------------------- planning


def gemv_format(params: dict, ys: int, tile_bytes: int) -> dict:
    """The tile format of a decode GEMV launch with ``params``, as its :class:`~.base.Offer` states it: the kernel's
    tile constants, its outputs per store call ``ys`` and its weight tile's bytes (a tile without bias)."""
    return {"kind": "gemv", "tn": params["tn"], "tk": params["tk"], "group": params["group"], "nb": params["nb"],
            "ys": ys, "tile_bytes": tile_bytes}


def plan_member(offer, d: int, eps: float, role: str, device: Device) -> LaunchPlan:
    """Decode's norm of width ``d`` (``role``: ``rms_norm`` or ``add_rms_norm``; both run the residual add, a plain
    norm with a residual of -0) as a launch in the tile format of ``offer`` (a decode GEMV's
    :class:`~.base.Offer`, :func:`gemv_format`): its grid and streams, a row padded to whole activation elements
    and core slices, an accumulator buffer that holds the row. Unplannable when a core's weight slice does not fit
    a weight tile or the launch breaks a budget."""
    gemv, f = offer.launch, offer.format
    tn, tk, ys, tile = f["tn"], f["tk"], f["ys"], f["tile_bytes"]
    cores = gemv.cores
    nd = roundup(d, lcm(cores * lcm(VECTOR, ys), tk // 2))
    nl = nd // cores
    sizes = {s.name: s.tile_bytes for s in gemv.streams}
    if sizes != {"x": tk * BF16, "w": tile, "y": ys * BF16}:
        raise Unplannable(f"{role}: the GEMV's streams move {sizes}, not its format's tiles")
    if 2 * nl > tile:
        raise Unplannable(f"{role}: a core's norm-weight slice of {2 * nl} bytes exceeds the {tile}-byte weight tile")
    nb = max(f["nb"], -(-accumulator_floats(nd, nl) // tn))
    buffers = tuple(Buffer("acc", "L1", nb * tn * F32) if (b.name, b.tier) == ("acc", "L1")
                    else Buffer("x", "L2", 2 * nd * BF16) if (b.name, b.tier) == ("x", "L2") else b
                    for b in gemv.buffers if b.name not in ("stack", "kernel_static"))
    params = dict(tn=tn, tk=tk, group=f["group"], bias=False, nb=nb, ys=ys, norm_d=nd,
                  norm_d_real=d, norm_eps=float(eps), norm_slice=nl)
    return checked(LaunchPlan(
        bucket=1, kernel=gemv.kernel, role=role, params=params, columns=gemv.columns, rows=gemv.rows,
        buffers=buffers, streams=gemv.streams, macs=2 * d, padded_macs=2 * nd,
        ddr_read=gemv.columns * 2 * nd * BF16 + cores * tile, ddr_write=2 * nd * BF16,
    ), device)


# --------------------------------------------------------------------------------------------------- schedule


def schedule(launch: LaunchPlan) -> list[sched.CoreProgram]:
    """Tensors: ``x`` [ND / (TK/2)][TK] bf16 (element ``i``: columns ``i TK/2 ..`` of ``a``, then of ``b``), ``w``
    [cores][tile] bytes (core ``k``'s slice of the norm weight first), ``y`` [2][ND] bf16 (the sum, then the
    norm). Core ``k = column x rows + row`` takes its weight tile, every row element, then stores its slices of the
    sum and of the norm (columns ``k NL ..``)."""
    p = launch.params
    tk, ys, nd, nl = p["tk"], p["ys"], p["norm_d"], p["norm_slice"]
    tile = linear_tile_bytes(p["tn"], tk, p["group"], False)
    elements = nd // (tk // 2)
    acc = sched.Acc(0)
    rows = [sched.In((sched.contiguous("x", i * tk, tk),)) for i in range(elements)]
    cores = sched.cores_of(launch)
    for core in cores:
        k = core.column * launch.rows + core.row
        core.calls.append(sched.Call("norm_init", (sched.In((sched.contiguous("w", k * tile, tile),)), acc, k * nl)))
        core.calls.extend(sched.Call("norm_row", (x, acc, i)) for i, x in enumerate(rows))
        out = [sched.Out((sched.contiguous("y", half * nd + k * nl + j * ys, ys),))
               for half in (0, 1) for j in range(nl // ys)]
        core.calls.extend(sched.Call("norm_store", (acc, j, y)) for j, y in enumerate(out))
    return cores


def calls_per_core(launch: LaunchPlan) -> dict[str, int]:
    p = launch.params
    return {"norm_init": 1, "norm_row": p["norm_d"] // (p["tk"] // 2), "norm_store": 2 * p["norm_slice"] // p["ys"]}


# --------------------------------------------------------------------------------------------------- host side


def tensors(launch: LaunchPlan, a: np.ndarray, b: np.ndarray, weight: np.ndarray,
            weight_key: str | None = None) -> dict[str, np.ndarray | Resident]:
    """The DDR tensors of a launch for one row: ``a`` and ``b`` [d] (float), the norm ``weight`` [d]; with
    ``weight_key`` (the weight's name) the weight tiles are resident, written to the device once."""
    p = launch.params
    half, nd, nl = p["tk"] // 2, p["norm_d"], p["norm_slice"]
    tile = linear_tile_bytes(p["tn"], p["tk"], p["group"], False)
    a, b = (pad2(to_bf16(v.reshape(1, -1)), 1, nd).reshape(nd // half, half) for v in (a, b))
    w = np.zeros((launch.cores, tile), np.uint8)
    w[:, : 2 * nl] = pad2(to_bf16(weight.reshape(1, -1)), 1, nd).reshape(launch.cores, nl).view(np.uint8)
    tiles = w.reshape(-1)
    if weight_key is not None:
        tiles = Resident(f"norm-weight/{weight_key}/{launch.columns}x{launch.rows}x{tile}/{nd}x{nl}", tiles)
    return {"x": np.concatenate([a, b], axis=1).reshape(-1), "w": tiles, "y": np.zeros(2 * nd, np.uint16)}


def results(launch: LaunchPlan, y: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(the sum, the norm) [d] float from the launch's ``y``."""
    nd = launch.params["norm_d"]
    return from_bf16(y[:d]), from_bf16(y[nd : nd + d])


def result_places(launch: LaunchPlan, d: int) -> tuple[tuple[str, int, int], tuple[str, int, int]]:
    """Where the launch writes (the sum, the norm) of width ``d``: (``y``, first element, elements) each."""
    return ("y", 0, d), ("y", launch.params["norm_d"], d)


__all__ = ["FUNCTIONS", "PARAMS", "accumulator_floats", "calls_per_core", "check", "cycles", "gemv_format", "is_norm",
           "is_norm_params", "norm_params", "plan_member", "result_places", "results", "schedule", "signatures",
           "spec_entries", "symbol_suffix", "tensors"]
