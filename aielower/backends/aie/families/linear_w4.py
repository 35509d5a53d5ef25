"""The ``linear_w4`` kernel family: 4-bit group-quantized linears (``quant.linear``, and the linear of a
linear-like fused op whose epilogue then runs on the host), as a GEMV for one row and a GEMM for prompt buckets.

Data movement (per column; see :mod:`aielower.backends.aie.budget` for the channel count):

- GEMV (M = 1): the ``N`` output rows are split over all cores in blocks of ``tn``; every core streams its weight
  tiles (``tn x tk``, pre-tiled in DDR in the order the DMA reads them: a column's tiles for all its rows
  interleaved, so one contiguous read per column that the memory tile splits) and the activation vector, broadcast to
  the column from the memory tile. Every weight byte crosses DDR once per token.
- GEMM (prompt buckets): columns split ``N`` (same weight tiles as the GEMV, taken in the blob's order so that a
  column's weights stay one regular read), core rows split ``M`` into ``tm``-row tiles dealt round-robin (a
  memory-tile element holds ``rows x tm`` consecutive rows: one box per DMA step); the memory tile broadcasts each
  weight tile to the column's rows and splits the activation tiles, which the DMA reshapes into the mmul-blocked
  layout.
"""

from __future__ import annotations

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.device import Device, MMulShape
from aielower.backends.aie.families import gemv_attention, gemv_norm
from aielower.backends.aie.families.base import KernelFamily, Offer, per_core
from aielower.backends.aie.host_arrays import from_bf16, pad2, to_bf16
from aielower.backends.aie.families.silu_mul import silu_times_ops
from aielower.backends.aie.kernels import (Arg, KernelDef, KernelSpec, Ops, VectorModel, arch_of, ceil_div, check_arch,
                                           fp32, header_ops, loads, require_members, require_positive, require_rule,
                                           stores, vector_ops)
from aielower.backends.aie.launcher import Resident
from aielower.backends.aie.plan import AccessPattern, Buffer, LaunchPlan, OpPlan, Stream
from aielower.backends.aie.planner import (BF16, F32, VECTOR, Unplannable, checked, core_grid, first_fitting,
                                           roundup)
from aielower.backends.aie.weights import UNIT_ROWS, linear_tile_bytes, tile_positions
from aielower.errors import CompileError
from aielower.ir import QTensorType
from aielower.ir.core import LinearLike

# --------------------------------------------------------------------------- kernels


# The most prompt buckets one shared GEMM configuration serves. A shared design holds every member's runtime sequence
# and one core body per set of members that differ only in loop counts (designs/shared.py: a linear at every
# bucket is one body), so it grows mainly with the sequences: Qwen1.5-7B's five buckets make at most 0.59 MB (the
# lm_head's GEMMs; 1.17 MB when each member kept a body of its own, over the 1 MB a design may take, issue 14).
GEMM_SHARED_BUCKETS = 8

# Epilogues the linear kernels can compute in their store (``epilogue`` of the plan's shape and the kernel params):
# the op class that asks for each. ``silu_mul``: a weight tile's first TN/2 rows are gate rows, its last TN/2 the
# matching up rows (:func:`aielower.backends.aie.weights.interleave_gate_up`), the store writes silu(g) * u.
EPILOGUES = {"fused.linear_silu_mul": "silu_mul"}


def epilogue_entries(epilogue: str | None, arch: str | None) -> dict:
    """The ``epilogue`` and ``arch`` entries of a linear's shape, launch params and kernel params (none without an
    epilogue)."""
    return {"epilogue": epilogue, "arch": arch} if epilogue else {}


def gemv_spec(tn: int, tk: int, group: int, bias: bool, mmul: MMulShape, epilogue: str | None = None,
              arch: str | None = None, nb: int = 1, ys: int | None = None, members: int = 0,
              mixed: bool = False, norm: dict | None = None, bias_init: bool = False,
              attention: dict | None = None) -> KernelSpec:
    """The GEMV kernel; ``nb`` accumulators of ``tn`` in its accumulator buffer (a call's ``slot`` picks one).
    ``ys``: outputs per store call, when less than a tile's (a store's slot then picks a part of an accumulator).
    A kernel of a shared configuration (:mod:`aielower.backends.aie.designs.shared`) of ``members`` linears has a
    ``_header`` function; ``mixed``: its linears store both ways, plainly (``_store``) and with the epilogue
    (``_store_<epilogue>``). ``norm``: the ``norm_*`` constants of the decode norms it also runs
    (:mod:`.gemv_norm`). ``bias_init``: it has ``_bias_init``, which starts accumulators at a bias tile's values
    (:func:`bias_tile_rows`). ``attention``: the ``attn_*`` constants of the decode attention it also runs
    (:mod:`.gemv_attention`); a shared kernel's cores then keep attention's parameter words before the header's."""
    params = (("tn", tn), ("tk", tk), ("group", group), ("bias", bool(bias)), ("r", mmul.m), ("s", mmul.k),
              ("t", mmul.n), ("nb", nb)) + tuple(epilogue_entries(epilogue, arch).items())
    if ys is not None and (ys != out_tile(dict(params)) or mixed or norm or attention):
        params += (("ys", ys),)
    norm = norm or {}
    params += tuple((k, fp32(norm[k]) if k == "norm_eps" else norm[k]) for k in gemv_norm.PARAMS if k in norm)
    attention = attention or {}
    params += tuple((k, fp32(attention[k]) if k == "attn_scale" else attention[k])
                    for k in gemv_attention.PARAMS if k in attention)
    if members:
        params += (("members", members),)
        if attention:
            params += (("words_at", gemv_attention.WORDS_AT),)
    if mixed:
        params += (("mixed", True),)
    if bias_init:
        params += (("bias_init", True),)
    return KernelSpec("linear_w4_gemv", params)


def gemm_spec(tm: int, tn: int, tk: int, group: int, bias: bool, mmul: MMulShape, epilogue: str | None = None,
              arch: str | None = None, nb: int = 1, members: int = 0, bias_init: bool = False) -> KernelSpec:
    """The GEMM kernel; ``nb`` accumulators of ``tm x tn`` in its accumulator buffer (a call's ``slot`` picks
    one). A kernel of a shared configuration of ``members`` linears has a ``_header`` function (its header is the
    first weight tile of a launch). ``bias_init``: it has ``_bias_init`` (:func:`gemv_spec`)."""
    params = (("tm", tm), ("tn", tn), ("tk", tk), ("group", group), ("bias", bool(bias)),
              ("r", mmul.m), ("s", mmul.k), ("t", mmul.n), ("nb", nb)) + tuple(epilogue_entries(epilogue, arch).items())
    if members:
        params += (("members", members),)
    if bias_init:
        params += (("bias_init", True),)
    return KernelSpec("linear_w4_gemm", params)


def out_tile(p: dict) -> int:
    """Output columns of one weight tile's store: TN, or TN / 2 with the silu_mul epilogue."""
    return p["tn"] // 2 if p.get("epilogue") else p["tn"]


def store_size(p: dict) -> int:
    """Outputs of one store call: the launch's ``ys`` (GEMV), else a whole :func:`out_tile`."""
    return p.get("ys") or out_tile(p)


def store_parts(p: dict) -> int:
    """Store calls per weight tile: :func:`out_tile` / :func:`store_size`."""
    return out_tile(p) // store_size(p)


def out_columns(p: dict, n_pad: int) -> int:
    """Columns of the output of a linear padded to ``n_pad`` rows: one :func:`out_tile` per weight tile."""
    return n_pad // p["tn"] * out_tile(p)


def _check_linear(family: str, p: dict) -> None:
    require_positive(family, p, "tn", "tk", "group", "r", "s", "t", "nb")
    tn, tk, g, s, t = p["tn"], p["tk"], p["group"], p["s"], p["t"]
    require_rule(family, tk % g == 0, f"TK={tk} is not a multiple of the group size G={g} (contract: TK % G == 0)",
                 f"choose TK as a multiple of {g}")
    require_rule(family, g % 16 == 0, f"group size G={g} is not a multiple of 16 (contract: G % 16 == 0)",
                 "quantize with a group of 16, 32, 64 or 128")
    require_rule(family, tk % 32 == 0, f"TK={tk} is not a multiple of 32 (contract: TK % 32 == 0)",
                 "choose TK as a multiple of 32")
    require_rule(family, tn % 16 == 0, f"TN={tn} is not a multiple of 16 (contract: TN % 16 == 0, so that every part "
                 "of a weight tile starts on a 32-byte boundary)", "choose TN as a multiple of 16")
    require_rule(family, t in (4, 8), f"the mmul's T={t} is neither 4 nor 8 (contract: a code unit of {UNIT_ROWS} rows "
                 "is one or two mmul B blocks)", "use the device's bf16 mmul shape")
    require_rule(family, s == 8 and g % s == 0, f"the mmul's S={s} must be 8, dividing G={g} (contract: a code unit "
                 "is 8 x S codes, 32 bytes, of one group)", "use the device's bf16 mmul shape")
    if "epilogue" in p:
        require_rule(family, p["epilogue"] in EPILOGUES.values(), f"unknown epilogue {p['epilogue']!r}",
                     f"choose one of {', '.join(sorted(EPILOGUES.values()))}")
        check_arch(family, p)
    if "ys" in p:
        ys = p["ys"]
        require_rule(family, isinstance(ys, int) and (ys == 8 or ys > 0 and ys % 16 == 0) and out_tile(p) % ys == 0,
                     f"YS={ys} outputs per store must be 8 or a multiple of 16 (the store's vectors) dividing the "
                     f"{out_tile(p)} outputs of a tile (contract)", "store whole tiles, or halves of 16- or 32-row "
                     "tiles")
        require_rule(family, not p.get("mixed") or ys == p["tn"] // 2, f"YS={ys}: the stores of a mixed kernel "
                     f"write {p['tn'] // 2} outputs, a silu_mul tile's (contract)", f"choose YS = {p['tn'] // 2}")
    if p.get("mixed"):
        require_rule(family, "epilogue" in p and "ys" in p, "a mixed kernel stores both plainly (YS outputs) and "
                     "with an epilogue; it needs both", "give the kernel its epilogue and YS")
    require_members(family, p, header_words_of(p), "linears", "header tile")
    require_rule(family, not (p["bias"] and p.get("bias_init")), "BIAS_INIT with BIAS: a kernel takes its bias from "
                 "its weight tiles or from bias tiles, not both", "plan the linear again (plan-aie-tiling)")
    if "tm" not in p:
        gemv_norm.check(family, p, linear_tile_bytes(tn, tk, g, p["bias"]))
        gemv_attention.check(family, p, linear_tile_bytes(tn, tk, g, p["bias"]))


def _check_gemm(family: str, p: dict) -> None:
    _check_linear(family, p)
    require_positive(family, p, "tm")
    for dim, blk, rule in (("tm", "r", "TM % R"), ("tk", "s", "TK % S"), ("tn", "t", "TN % T")):
        require_rule(family, p[dim] % p[blk] == 0,
                     f"{dim.upper()}={p[dim]} is not a multiple of the mmul's {blk.upper()}={p[blk]} "
                     f"(contract: {rule} == 0, mmul {p['r']}x{p['s']}x{p['t']})",
                     f"choose {dim.upper()} as a multiple of {p[blk]}")
    if "epilogue" in p:
        half, t = p["tn"] // 2, p["t"]
        require_rule(family, half % t == 0, f"TN/2={half} is not a multiple of the mmul's T={t} (contract of the "
                     f"{p['epilogue']} epilogue: the gate half of a tile is whole column blocks)",
                     f"choose TN as a multiple of {2 * t}")
        require_rule(family, (p["r"] * t) % 16 == 0, f"an mmul C block of R x T = {p['r'] * t} lanes is not a multiple "
                     f"of 16 (contract of the {p['epilogue']} epilogue)", "use the device's bf16 mmul shape")


def header_words_of(p: dict) -> int:
    """The i32 words of a shared launch's header: an activation tile (GEMV: TK bf16) or a weight tile (GEMM: the
    weights are the stream broadcast to every core)."""
    if "tm" in p:
        return linear_tile_bytes(p["tn"], p["tk"], p["group"], p["bias"]) // 4
    return p["tk"] // 2


def _bias(p: dict) -> str:
    suffix = f"_nb{p['nb']}" + ("_bias" if p["bias"] else "") + ("_bi" if p.get("bias_init") else "")
    suffix += f"_ys{p['ys']}" if "ys" in p else ""
    suffix += f"_x{p['members']}" if "members" in p else ""
    suffix += "_mixed" if p.get("mixed") else ""
    suffix += gemv_norm.symbol_suffix(p) + gemv_attention.symbol_suffix(p)
    return suffix + (f"_{p['epilogue']}_{p['arch']}" if p.get("epilogue") else "")


def _linear_signature(p: dict) -> dict[str, tuple[Arg, ...]]:
    rows = p.get("tm", 1)
    acc = p["nb"] * rows * p["tn"]  # NB accumulators; the i32 slot picks one
    tile = linear_tile_bytes(p["tn"], p["tk"], p["group"], p["bias"])
    store = (Arg("accs", "f32", acc), Arg("slot", "i32"), Arg("y", "bf16", rows * store_size(p), out=True))
    out = {
        "_init": (Arg("accs", "f32", acc, out=True), Arg("slot", "i32")),
        "_step": (Arg("x", "bf16", rows * p["tk"]), Arg("w", "u8", tile), Arg("accs", "f32", acc, out=True),
                  Arg("slot", "i32")),
        "_store": store,
    }
    if p.get("mixed"):
        out[f"_store_{p['epilogue']}"] = store
    if p.get("bias_init"):
        out["_bias_init"] = (Arg("w", "u8", tile), Arg("accs", "f32", acc, out=True), Arg("slot", "i32"))
    if "tm" not in p:
        out.update(gemv_norm.signatures(p, acc, tile))
        out.update(gemv_attention.signatures(p, acc, tile))
    if "members" in p:
        head = Arg("w", "u8", tile) if "tm" in p else Arg("x", "bf16", p["tk"])
        out["_header"] = (head, Arg("words", "words", p.get("words_at", 0) + p["members"], out=True))
    return out


def _w4_ops(p: dict, m: VectorModel) -> tuple[Ops, Ops]:
    """(per unit column and group: group_lanes, per unit: dequant_unit) of _w4_dequant.cc.j2."""
    unit, t = UNIT_ROWS * p["s"], p["t"]
    spread = vector_ops(unit * 16) if t == UNIT_ROWS else 1 + 2 * vector_ops(unit * 8)  # one unit_lanes: (zip,) grow_replicate
    lanes = (loads(UNIT_ROWS * 16) + Ops(scalar=1)  # 8 scales; the zero-point word
             + Ops(vec=5 + 2 * spread + vector_ops(unit * 16) + ceil_div(unit, m.mac_lanes)))  # bcast, and, shift, 2 zips; neg; mul
    # load, and, shift, two zips (128 + q); MAC with the zero-point accumulator; rounding to bf16
    unit_ops = loads(unit * 4) + Ops(vec=2 + 2 * vector_ops(unit * 8) + ceil_div(unit, m.mac_lanes) + ceil_div(unit, m.acc_lanes))
    return lanes, unit_ops


def _gemv_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    tn, tk, r, s, t = p["tn"], p["tk"], p["r"], p["s"], p["t"]
    jb, units = UNIT_ROWS // t, tk // s
    lanes, unit_ops = _w4_ops(p, m)
    column = loads(UNIT_ROWS * 32) + Ops(vec=jb)  # acc[8], as row 0 of JB zeroed C blocks
    if p["bias"]:
        column += loads(UNIT_ROWS * 16) + Ops(vec=3 * ceil_div(UNIT_ROWS, m.acc_lanes))  # + bias in fp32, back to a vector
    column += lanes * (tk // p["group"])
    column += (unit_ops + loads(s * 16) + Ops(vec=1 + jb)) * units  # x block into A's row 0; JB mmuls
    column += Ops(vec=jb * ceil_div(r * t, m.acc_lanes)) + stores(UNIT_ROWS * 32)
    vf = Ops(vec=ceil_div(16, m.acc_lanes))
    ys = store_size(p) if not p.get("epilogue") or p.get("mixed") else tn  # a plain store's outputs
    store = (loads(16 * 32) + vf + vf + stores(16 * 16)) * ceil_div(ys, 16)
    silu = Ops()
    if p.get("epilogue"):  # per 16 outputs (or 8, in both halves of 16 lanes): g and u loaded and rounded
        lanes = 16 if (tn // 2) % 16 == 0 else 8
        silu = (loads(lanes * 32) * 2 + vf * 2 + silu_times_ops(m) + stores(lanes * 16)) * (tn // 2 // lanes)
    out = {"_init": stores(16 * 32) * (tn // 16), "_step": column * (tn // UNIT_ROWS),
           "_store": silu if p.get("epilogue") and not p.get("mixed") else store}
    if p.get("mixed"):
        out[f"_store_{p['epilogue']}"] = silu
    if p.get("bias_init"):  # TN bf16 widened to fp32
        out["_bias_init"] = (loads(16 * 16) + Ops(vec=ceil_div(16, m.acc_lanes)) + stores(16 * 32)) * (tn // 16)
    out.update(gemv_norm.cycles(p, m))
    out.update(gemv_attention.cycles(p, m))
    if "members" in p:
        out["_header"] = header_ops(p)
    return out


def _gemm_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    tm, tn, tk, r, s, t = p["tm"], p["tn"], p["tk"], p["r"], p["s"], p["t"]
    units, c_lanes = tk // s, r * t
    lanes, unit_ops = _w4_ops(p, m)
    column = lanes * (tk // p["group"]) + (unit_ops + stores(UNIT_ROWS * s * 16)) * units  # into b_col
    block = Ops(vec=2 * ceil_div(c_lanes, m.acc_lanes)) + loads(c_lanes * 32) + stores(c_lanes * 32)  # acc in and out
    if p["bias"]:
        block += Ops(vec=ceil_div(c_lanes, m.acc_lanes))
    block += (Ops(vec=1) + loads(r * s * 16) + loads(s * t * 16)) * units  # one mmul, its A and B blocks
    bias = loads(UNIT_ROWS * 16) + Ops(vec=1 if t == UNIT_ROWS else 2) if p["bias"] else Ops()
    blocks = (tm // r) * (tn // t)
    to_bf16 = loads(c_lanes * 32) + Ops(vec=2 * ceil_div(c_lanes, m.acc_lanes)) + stores(c_lanes * 16)
    store = to_bf16 * blocks
    if p.get("epilogue"):  # per 16 lanes of an output block: g and u loaded and rounded, silu(g) * u stored
        vf = Ops(vec=ceil_div(16, m.acc_lanes))
        store = (loads(16 * 32) * 2 + vf * 2 + silu_times_ops(m) + stores(16 * 16)) * (tm * tn // 2 // 16)
    out = {"_init": stores(tm * tn * 32), "_step": column * (tn // UNIT_ROWS) + bias * (tn // t) + block * blocks,
           "_store": store}
    if p.get("bias_init"):  # per C block: its bias rows, widened to fp32
        out["_bias_init"] = (loads(UNIT_ROWS * 16) + Ops(vec=2 + ceil_div(c_lanes, m.acc_lanes))
                             + stores(c_lanes * 32)) * blocks
    if "members" in p:
        out["_header"] = header_ops(p)
    return out


def _linear_functions(p: dict) -> tuple[str, ...]:
    return (("_init", "_step", "_store") + ((f"_store_{p['epilogue']}",) if p.get("mixed") else ())
            + (("_bias_init",) if p.get("bias_init") else ())
            + (gemv_norm.FUNCTIONS if "norm_d" in p else ()) + gemv_attention.functions(p)
            + (("_header",) if "members" in p else ()))


GEMV_KERNEL = KernelDef(
    functions=_linear_functions, check=_check_linear, signature=_linear_signature, cycles=_gemv_cycles,
    symbol=lambda p: f"linear_w4_gemv_tn{p['tn']}_tk{p['tk']}_g{p['group']}_r{p['r']}s{p['s']}t{p['t']}{_bias(p)}",
    stack_arrays=gemv_attention.stack_bytes,
)
GEMM_KERNEL = KernelDef(
    functions=_linear_functions, check=_check_gemm, signature=_linear_signature, cycles=_gemm_cycles,
    symbol=lambda p: (f"linear_w4_gemm_tm{p['tm']}_tn{p['tn']}_tk{p['tk']}_g{p['group']}"
                      f"_r{p['r']}s{p['s']}t{p['t']}{_bias(p)}"),
    static_arrays=lambda p: 2 * p["tk"] * UNIT_ROWS,  # bfloat16 b_col[TK * UR]: one dequantized unit column
)


# --------------------------------------------------------------------------- planning


def plan_linear(label: str, n: int, k: int, group: int, bias: bool, buckets: tuple[int, ...], device: Device,
                epilogue: str | None = None, bias_tiles: bool = True) -> OpPlan:
    """The tiling of an ``[n, k]`` 4-bit linear for ``buckets``; with ``epilogue`` (a value of :data:`EPILOGUES`)
    its kernels compute it as they store (``silu_mul``: ``n`` is gate + up rows, the result has ``n / 2``
    columns). A linear with a bias and a GEMV launch keeps its bias in tiles of its own (:func:`bias_tile_rows`)
    where they hold a work item's (unless ``bias_tiles`` is False), so that its weight tiles have the format of the
    linears without bias; else every weight tile carries the bias (zeros but in the first K tile)."""
    mmul = device.mmul["bf16"]
    tks = [t for t in (1024, 512, 256, 128, 64, 32, 16) if t % group == 0 and t % mmul.k == 0 and t >= group]
    if not tks and group % VECTOR == 0:
        tks = [group]
    tns = [t for t in (64, 32, 16) if t % mmul.n == 0 and not (epilogue and (t // 2) % max(8, mmul.n))]

    def waste(tn: int, tk: int) -> float:
        columns, rows = core_grid(-(-n // tn), device)
        return roundup(n, columns * rows * tn) * roundup(k, tk) / (n * k) - 1

    # Of the weight tilings whose launches all fit: least padding (to 0.1 %), then least DDR traffic over the
    # buckets, then the biggest tiles (fewest DMA transfers and kernel calls).
    candidates = sorted(((tn, tk) for tn in tns for tk in tks), key=lambda c: (round(waste(*c), 3), -c[0] * c[1], -c[1]))

    def build(candidate) -> OpPlan:
        """The plan of ``candidate``, its bias in tiles of its own where they hold it (else in the weight tiles)."""
        if bias and bias_tiles and 1 in buckets:
            try:
                return build_with(candidate, True)
            except Unplannable:
                pass
        return build_with(candidate, False)

    def build_with(candidate, separate: bool) -> OpPlan:
        tn, tk = candidate
        nt_total = -(-n // tn)
        columns, rows = core_grid(nt_total, device)
        n_pad, k_pad = roundup(n, columns * rows * tn), roundup(k, tk)
        # separate: the bias in tiles of its own (bias_tile_rows), so that the weight tiles have the format of the
        # linears without bias and the GEMV can share their configuration
        tile = linear_tile_bytes(tn, tk, group, bias and not separate)
        blob = (n_pad // tn) * (k_pad // tk) * tile
        # w_columns x w_rows: the GEMV grid, whose DMA order the weight blob is stored in, in blocks of w_block
        # tiles per core (weights.tile_positions): a GEMV work item is whole blocks, a GEMM N block one per row
        shape = dict(n=n, k=k, group=group, bias=bias, n_pad=n_pad, k_pad=k_pad, tn=tn, tk=tk, tile_bytes=tile,
                     weight_bytes=blob, w_columns=columns, w_rows=rows)
        epilogue_shape = epilogue_entries(epilogue, arch_of(device))

        def with_block(block: int) -> dict:  # w_block beside the grid, the bias tiles, the epilogue entries last
            blocked = dict(shape, w_block=block)
            if separate:
                counts = bias_tile_counts(blocked, any(m != 1 for m in buckets))
                blocked.update(gemv_bias_tiles=counts[0], gemm_bias_tiles=counts[1],
                               weight_bytes=blob + sum(counts) * tile)
            return dict(blocked, **epilogue_shape)

        per_core = n_pad // tn // (columns * rows)
        gemm_buckets = [m for m in buckets if m != 1]
        if not gemm_buckets:  # GEMV only: items as large as the accumulators allow, of equal size but the last
            blocked = with_block(gemv_items(per_core)[1])
            return OpPlan("linear", device.name, blocked, tuple(checked(_gemv(blocked, columns, rows), device)
                                                                for _ in buckets))
        # the blob's block: of those whose launches all fit, the least DDR traffic over the buckets (the GEMM reads
        # the activations once per N block, the GEMV once per item), then the largest
        fitting, last = [], None
        for block in sorted({min(b, per_core) for b in GEMM_BLOCKS if b * rows <= GEMM_ACCUMULATORS}, reverse=True):
            blocked = with_block(block)
            try:
                launches = [checked(_gemv(blocked, columns, rows), device) if m == 1
                            else _gemm_fitting(blocked, m, columns, device) for m in buckets]
            except Unplannable as e:
                last = e
                continue
            fitting.append(OpPlan("linear", device.name, blocked, tuple(launches)))
        if not fitting:
            raise last
        return min(fitting, key=lambda p: (sum(x.ddr_read for x in p.launches), -p.shape["w_block"]))

    plans = []
    for candidate in candidates:
        try:
            plans.append(build(candidate))
        except Unplannable:
            continue
    # A linear with a GEMV launch takes the narrowest tile that pads no more: decode's linears then share one tile
    # width (a silu_mul linear's gate and up halves need the narrow tiles to split evenly over the cores), hence one
    # weight-tile and store format, so they can share a device configuration (designs.shared). Decode is DDR-bound:
    # narrower tiles move no more bytes.
    # The bias tiles' reads are left out of the ranking: a bias tile is a whole weight tile, which would favour narrow K
    # tiles for a small biased linear and give it another tile format than the linears it could share with.
    gemv = 1 in buckets
    if plans:
        return min(plans, key=lambda p: (round(waste(p.shape["tn"], p.shape["tk"]), 3),
                                         p.shape["tn"] if gemv else 0,
                                         sum(x.ddr_read for x in p.launches) - bias_tile_reads(p),
                                         -p.shape["tn"] * p.shape["tk"]))
    return first_fitting(label, device, candidates, build)


# At most this many output tiles per GEMV work item: the core keeps one accumulator slot per tile in one buffer (4 x TN
# bytes of L1 each; the init, step and store runs are loops over the slot) and the activation streams once per item.
# With 64, the 7B's qkv, o_proj and down GEMVs are one item per core, gate/up two (40 + 3 tiles: whole blocks of the
# GEMM's 4, then the short block) and the lm_head six (297 tiles).
GEMV_ACCUMULATORS = 64
# At most this many output tiles per GEMM N block (accumulators of tm x tn each), and the blob's block sizes (tiles
# per core) tried for a linear with GEMM launches, largest first: a GEMM N block is one blob block per core row.
GEMM_ACCUMULATORS = 16
GEMM_BLOCKS = (16, 8, 4, 2, 1)


def gemv_items(tiles_per_core: int) -> tuple[int, int]:
    """(work items, accumulators per item) of a core with ``tiles_per_core`` output tiles: as few items as
    :data:`GEMV_ACCUMULATORS` allows, of equal size but the last."""
    items = max(1, -(-tiles_per_core // GEMV_ACCUMULATORS))
    return items, -(-tiles_per_core // items) if tiles_per_core else 1


def blob_grid(shape: dict) -> tuple[int, int, int]:
    """``(w_columns, w_rows, w_block)`` of a linear plan's ``shape``, checked against its padded sizes: the weight
    blob's order and every launch's work follow from them, and a plan read from IR text is data from outside. A plan
    from before ``w_block`` has blocks of 1 tile."""
    def positive(key: str, default=None) -> int:
        value = shape.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CompileError(f"linear plan: shape.{key} must be a positive integer, got {value!r}; plan the op "
                               "again (plan-aie-tiling)")
        return value

    columns, rows, block = positive("w_columns"), positive("w_rows"), positive("w_block", 1)
    n_pad, tn = positive("n_pad"), positive("tn")
    n_tiles = n_pad // tn
    if n_pad % tn or n_tiles % (columns * rows):
        raise CompileError(f"linear plan: N_pad = {n_pad} is not a whole number of TN = {tn} tiles per core of the "
                           f"{columns} x {rows} weight grid; plan the op again (plan-aie-tiling)")
    if block > n_tiles // (columns * rows):
        raise CompileError(f"linear plan: w_block = {block} is more than the {n_tiles // (columns * rows)} output "
                           "tiles of a core; plan the op again (plan-aie-tiling)")
    return columns, rows, block


def gemv_item_sizes(tiles_per_core: int, block: int) -> list[int]:
    """Output tiles of each GEMV work item on a core with ``tiles_per_core`` tiles of a blob stored in blocks of
    ``block`` tiles (the last may be short): items of whole full blocks, as many as :data:`GEMV_ACCUMULATORS`
    allows, then the short block on its own. An item's weights are then one regular read: per K tile, its blocks'
    runs of ``block x rows`` tiles."""
    per_item = block * max(1, GEMV_ACCUMULATORS // block)
    full = tiles_per_core // block * block  # tiles in full blocks
    sizes = [min(per_item, full - start) for start in range(0, full, per_item)]
    return sizes + ([tiles_per_core - full] if tiles_per_core > full else [])


def bias_in_tiles(shape: dict) -> bool:
    """Whether a linear plan's weight tiles carry its bias (else it has none, or it is in bias tiles of its own,
    :func:`bias_tile_rows`)."""
    return bool(shape["bias"]) and "gemv_bias_tiles" not in shape


def bias_tile_counts(shape: dict, gemm: bool) -> tuple[int, int]:
    """(GEMV, GEMM) bias tiles of a linear plan ``shape`` whose bias is in tiles of its own: one per core and GEMV
    work item, and with ``gemm`` launches one per column and GEMM N block."""
    columns, rows, block = shape["w_columns"], shape["w_rows"], shape["w_block"]
    n_tiles = shape["n_pad"] // shape["tn"]
    items = len(gemv_item_sizes(n_tiles // (columns * rows), block))
    blocks = -(-(n_tiles // columns) // (block * rows))
    return columns * rows * items, columns * blocks if gemm else 0


def bias_tile_rows(shape: dict) -> list[np.ndarray]:
    """The output tiles each bias tile holds the bias of, in slot order (accumulator ``j`` of the work item or N
    block: its ``j``-th entry), the bias tiles in their order after the weight tiles: the GEMV's per column, work
    item and core row (a column's rows take their item's bias tiles in one transfer), then the GEMM's per column
    and N block. A bias tile holds ``TN`` bf16 per output tile, the rest zeros."""
    columns, rows, block = shape["w_columns"], shape["w_rows"], shape["w_block"]
    n_tiles = shape["n_pad"] // shape["tn"]
    per_core = n_tiles // (columns * rows)
    sizes = gemv_item_sizes(per_core, block)
    starts = np.cumsum([0] + sizes[:-1])
    out = [(c * rows + r) * per_core + start + np.arange(size, dtype=np.int64)
           for c in range(columns) for start, size in zip(starts.tolist(), sizes) for r in range(rows)]
    if shape.get("gemm_bias_tiles"):
        per_column, nb = n_tiles // columns, block * rows
        i, lane = np.divmod(np.arange(per_column, dtype=np.int64), rows)
        for c in range(columns):
            nt = c * per_column + lane * (per_column // rows) + i  # the column's tiles in blob order (gemm_work)
            out += [nt[b0 : b0 + nb] for b0 in range(0, per_column, nb)]
    if len(out) != shape["gemv_bias_tiles"] + shape.get("gemm_bias_tiles", 0):
        raise CompileError(f"linear plan: {len(out)} bias tiles for its grid, the plan counts "
                           f"{shape['gemv_bias_tiles'] + shape.get('gemm_bias_tiles', 0)}; plan the op again")
    return out


def bias_tile_reads(plan: OpPlan) -> int:
    """DDR bytes ``plan``'s launches read of its bias tiles (0 without them): the GEMV's once, the GEMM's once per M
    tile pass."""
    s = plan.shape
    if "gemv_bias_tiles" not in s:
        return 0
    total = 0
    for x in plan.launches:
        if x.kernel == "linear_w4_gemv":
            total += s["gemv_bias_tiles"] * s["tile_bytes"]
        else:
            total += s["gemm_bias_tiles"] * s["tile_bytes"] * (x.bucket // (x.rows * x.params["tm"]))
    return total


def bias_tile_offset(shape: dict, index):
    """Byte offset in the weight blob of bias tile ``index`` (:func:`bias_tile_rows`' order); elementwise on an
    integer array."""
    return ((shape["n_pad"] // shape["tn"]) * (shape["k_pad"] // shape["tk"]) + index) * shape["tile_bytes"]


# Outputs per GEMV store call: half a weight tile, what a silu_mul tile stores, so that linears with and without the
# epilogue store the same elements and can share a device configuration (designs.shared).
def gemv_store_size(tn: int) -> int:
    return tn // 2


def _gemv(s: dict, columns: int, rows: int) -> LaunchPlan:
    tn, tk, tile = s["tn"], s["tk"], s["tile_bytes"]
    ys = gemv_store_size(tn)
    sizes = gemv_item_sizes(s["n_pad"] // tn // (columns * rows), s["w_block"])
    nb, items = max(sizes), len(sizes)
    bias_tiles = s.get("gemv_bias_tiles", 0)
    if bias_tiles and nb * tn * BF16 > tile:
        raise Unplannable(f"gemv: a work item's bias ({nb * tn * BF16} bytes) exceeds a {tile}-byte bias tile")
    buffers = (
        Buffer("x", "L1", tk * BF16, 2),
        Buffer("w", "L1", tile, 2),
        Buffer("acc", "L1", nb * tn * F32),
        Buffer("y", "L1", ys * BF16, 2),
        Buffer("x", "L2", s["k_pad"] * BF16),
        Buffer("w", "L2", tile * rows, 2),
        Buffer("y", "L2", ys * BF16 * rows, 2),
    )
    streams = (
        Stream("x", "in", ("x",), "broadcast", tk * BF16, 2, (AccessPattern(0, (tk,), (1,)),)),
        Stream("w", "in", ("w",), "split", tile, 2, (AccessPattern(0, (tile,), (1,)),)),
        Stream("y", "out", ("y",), "split", ys * BF16, 2, (AccessPattern(0, (ys,), (1,)),)),
    )
    extra = {} if s.get("epilogue") else {"ys": ys}
    weights = ((s["n_pad"] // tn) * (s["k_pad"] // tk) + bias_tiles) * tile  # the weight tiles and its bias tiles
    return LaunchPlan(
        bucket=1, kernel="linear_w4_gemv", role="gemv",
        params=dict(tn=tn, tk=tk, group=s["group"], bias=bias_in_tiles(s), nb=nb,
                    **({"bias_init": True} if bias_tiles else {}),
                    **epilogue_entries(s.get("epilogue"), s.get("arch")), **extra),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=s["n"] * s["k"], padded_macs=s["n_pad"] * s["k_pad"],
        ddr_read=weights + items * columns * s["k_pad"] * BF16,
        ddr_write=out_columns(s, s["n_pad"]) * BF16,
    )


def _gemm_fitting(s: dict, m: int, columns: int, device: Device) -> LaunchPlan:
    """The GEMM tiling with the least DDR traffic that fits: ``tm`` rows per core tile; a core block is ``nb`` weight
    tiles, one block of the blob per row of the weight grid (the activation tile is reused for ``nb`` weight tiles;
    the accumulators hold ``tm x nb*tn``)."""
    rows = device.core_rows
    mmul = device.mmul["bf16"]
    nb = s["w_block"] * s["w_rows"]
    fitting, last = [], None
    for tm in (64, 32, 16, 8, 4):
        if tm % mmul.m or (m // rows) % tm or tm > m // rows:
            continue
        try:
            fitting.append(checked(_gemm(s, m, tm, nb, columns, rows, mmul), device))
        except Unplannable as e:
            last = e
    if not fitting:
        raise last or Unplannable(f"gemm at bucket {m}: no row tile divides {m // rows} rows per core row")
    return min(fitting, key=lambda launch: (launch.ddr_read, -launch.params["tm"]))


def _gemm(s: dict, m: int, tm: int, nb: int, columns: int, rows: int, mmul) -> LaunchPlan:
    tn, tk, tile, k_pad, n_pad = s["tn"], s["tk"], s["tile_bytes"], s["k_pad"], s["n_pad"]
    out = out_tile(s)
    n_out = out_columns(s, n_pad)  # columns of C
    r, k_blk, t = mmul.m, mmul.k, mmul.n
    buffers = (
        Buffer("a", "L1", tm * tk * BF16, 2),
        Buffer("w", "L1", tile, 2),
        Buffer("acc", "L1", nb * tm * tn * F32),
        Buffer("c", "L1", tm * out * BF16, 2),
        Buffer("a", "L2", rows * tm * tk * BF16, 2),
        Buffer("w", "L2", tile, 2),
        Buffer("c", "L2", rows * tm * out * BF16, 2),
    )
    streams = (
        Stream("a", "in", ("a",), "split", tm * tk * BF16, 2,
               (AccessPattern(0, (tm // r, tk // k_blk, r, k_blk), (r * k_pad, k_blk, k_pad, 1)),)),
        Stream("w", "in", ("w",), "broadcast", tile, 2, (AccessPattern(0, (tile,), (1,)),)),
        Stream("c", "out", ("c",), "split", tm * out * BF16, 2,
               (AccessPattern(0, (tm // r, out // t, r, t), (r * n_out, t, n_out, 1)),)),
    )
    n_blocks_per_column = -(-(n_pad // tn // columns) // nb)  # the last block may be partial
    m_tiles = m // (rows * tm)  # per core
    a_bytes = m * k_pad * BF16 * n_blocks_per_column * columns  # each column reads A once per block of nb N tiles
    bias_tiles = s.get("gemm_bias_tiles", 0)
    if bias_tiles and nb * tn * BF16 > tile:
        raise Unplannable(f"gemm: an N block's bias ({nb * tn * BF16} bytes) exceeds a {tile}-byte bias tile")
    # each M tile pass reads the weight tiles and its bias tiles once (broadcast to the rows)
    w_bytes = ((n_pad // tn) * (k_pad // tk) + bias_tiles) * tile * m_tiles
    return LaunchPlan(
        bucket=m, kernel="linear_w4_gemm", role="gemm",
        params=dict(tm=tm, tn=tn, tk=tk, group=s["group"], bias=bias_in_tiles(s), r=r, s=k_blk, t=t, nb=nb,
                    **({"bias_init": True} if bias_tiles else {}),
                    **epilogue_entries(s.get("epilogue"), s.get("arch"))),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=m * s["n"] * s["k"], padded_macs=m * n_pad * k_pad,
        ddr_read=a_bytes + w_bytes, ddr_write=m * n_out * BF16,
    )


# --------------------------------------------------------------------------- schedule


def gemv_work(launch: LaunchPlan, n_pad: int, k_pad: int, tile_bytes: int,
                grid: tuple[int, int, int], shape: dict | None = None) -> sched.LinearWork:
    """Tensors: ``x`` [k_pad] bf16, ``w`` the pre-tiled weights (bytes, in the DMA order of the ``(columns, rows,
    block)`` it was cut for, which must be this launch's grid and items), ``y`` [n_pad] bf16 ([n_pad / 2] with the
    silu_mul epilogue: each tile stores half its rows). Core ``(c, r)`` computes the ``c * rows + r``-th block of
    output tiles in items of up to ``nb`` tiles (one accumulator each): per K tile, one activation tile serves the
    item's ``nb`` weight tiles, so the activation streams once per item, not once per output tile. With the plan's
    ``shape`` of a linear whose bias is in tiles of its own, each item starts from its bias tile
    (:func:`bias_tile_rows`: per column, item and row)."""
    p = launch.params
    tn, tk, nb = p["tn"], p["tk"], p.get("nb", 1)
    out, ys, parts = out_tile(p), store_size(p), store_parts(p)
    n_tiles, k_tiles = n_pad // tn, k_pad // tk
    if grid[:2] != (launch.columns, launch.rows):
        raise CompileError(f"the GEMV runs on {launch.columns}x{launch.rows} cores but its weights are ordered for "
                           f"{grid[0]}x{grid[1]}")
    sizes = gemv_item_sizes(n_tiles // (launch.columns * launch.rows), grid[2])
    if nb != max(sizes):
        raise CompileError(f"the GEMV takes items of up to {nb} output tiles but items of whole blocks of its weights "
                           f"(w_block {grid[2]}) have up to {max(sizes)}: plan it again (plan-aie-tiling)")
    starts = np.cumsum([0] + sizes[:-1])
    cores = {}
    kts = np.arange(k_tiles, dtype=np.int64)
    for index, tiles in enumerate(sched.blocks(n_tiles, launch.columns * launch.rows)):
        blocks = np.full((len(sizes), nb), -1, np.int64)  # [item, j]: output tile, -1 past the item's last
        for item, (start, size) in enumerate(zip(starts, sizes)):
            blocks[item, :size] = tiles.start + start + np.arange(size)
        w = np.where(blocks[:, None, :] >= 0,
                     tile_positions(np.maximum(blocks, 0)[:, None, :], kts[None, :, None], n_tiles, k_tiles, *grid)
                     * tile_bytes, -1)  # [item, kt, j]
        nbs = (blocks >= 0).sum(axis=1).astype(np.int64)
        y = np.where(blocks[:, :, None] >= 0, blocks[:, :, None] * out + np.arange(parts) * ys, -1)  # [item, j, part]
        cores[divmod(index, launch.rows)] = (nbs, np.broadcast_to(kts * tk, (len(sizes), k_tiles)), w,
                                             y.reshape(len(sizes), nb * parts))
    bias = None
    if launch.params.get("bias_init"):
        items = np.arange(len(sizes), dtype=np.int64)
        bias = {(c, r): bias_tile_offset(shape, (c * len(sizes) + items) * launch.rows + r) for (c, r) in cores}
    return sched.LinearWork("x", "y", AccessPattern(0, (tk,), (1,)), AccessPattern(0, (ys,), (1,)), tile_bytes, tn,
                            cores, parts, bias)


def gemm_work(launch: LaunchPlan, m_pad: int, n_pad: int, k_pad: int, tile_bytes: int,
              grid: tuple[int, int, int], shape: dict | None = None) -> sched.LinearWork:
    """Tensors: ``a`` [m_pad, k_pad] bf16, ``w`` the pre-tiled weights (in the DMA order of the GEMV ``grid``,
    ``(columns, rows, block)``; an N block of ``nb`` tiles is one blob block per grid row),
    ``c`` [m_pad, n_pad] bf16 ([m_pad, n_pad / 2] with the silu_mul epilogue). Columns split N as the GEMV grid does
    and take their N tiles in the blob's order
    (so a column's weight reads stay regular); core rows take the M tiles round-robin (row ``r`` the tiles ``r, r +
    rows, ...``: a memory-tile element of the split activation stream is ``rows x tm`` consecutive rows). Each
    core keeps ``nb`` accumulators, so one activation tile serves ``nb`` weight tiles; items are (M tile, block of
    ``nb`` N tiles), M tile major. With the ``shape`` of a linear whose bias is in tiles of its own, each item
    starts from its N block's bias tile (:func:`bias_tile_rows`: after the GEMV's, per column and N block)."""
    p = launch.params
    tm, tn, tk, nb, r, s, t = p["tm"], p["tn"], p["tk"], p["nb"], p["r"], p["s"], p["t"]
    out = out_tile(p)
    n_tiles, k_tiles, m_tiles = n_pad // tn, k_pad // tk, m_pad // tm
    n_out = out_columns(p, n_pad)  # columns of C
    if grid[0] != launch.columns:
        raise CompileError(f"the GEMM runs on {launch.columns} columns but its weights are ordered for {grid[0]}")
    if nb != grid[1] * grid[2]:
        raise CompileError(f"the GEMM takes blocks of {nb} output tiles but its weights are stored in blocks of "
                           f"{grid[2]} per row of a {grid[1]}-row grid (w_block): plan it again (plan-aie-tiling)")
    per_column = n_tiles // launch.columns
    per_lane = per_column // grid[1]
    kts = np.arange(k_tiles, dtype=np.int64)
    blocks = [(b0, min(nb, per_column - b0)) for b0 in range(0, per_column, nb)]
    cores = {}
    for c in range(launch.columns):
        i, lane = np.divmod(np.arange(per_column, dtype=np.int64), grid[1])  # the column's tiles in blob order
        nt = c * per_column + lane * per_lane + i
        w_all = tile_positions(nt[None, :], kts[:, None], n_tiles, k_tiles, *grid) * tile_bytes  # [kt, tile]
        nbs = np.array([n for _, n in blocks], np.int64)
        w_blk = np.full((len(blocks), k_tiles, nb), -1, np.int64)
        n_blk = np.full((len(blocks), nb), -1, np.int64)
        for b, (b0, n) in enumerate(blocks):
            w_blk[b, :, :n] = w_all[:, b0 : b0 + n]
            n_blk[b, :n] = nt[b0 : b0 + n]
        for row in range(launch.rows):
            mts = np.arange(row, m_tiles, launch.rows, dtype=np.int64)
            m0 = np.repeat(mts * tm, len(blocks))  # items: M tile major, N block minor
            x = m0[:, None] * k_pad + kts[None, :] * tk
            y = np.where(np.tile(n_blk, (len(mts), 1)) >= 0, m0[:, None] * n_out + np.tile(n_blk, (len(mts), 1)) * out,
                         -1)
            cores[(c, row)] = (np.tile(nbs, len(mts)), x, np.tile(w_blk, (len(mts), 1, 1)), y)
    bias = None
    if launch.params.get("bias_init"):
        column_blocks = shape["gemv_bias_tiles"] + np.arange(len(blocks), dtype=np.int64)
        bias = {(c, row): np.tile(bias_tile_offset(shape, column_blocks + c * len(blocks)),
                                  len(cores[(c, row)][0]) // len(blocks))  # per M tile, its N blocks'
                for (c, row) in cores}
    x_ap = AccessPattern(0, (tm // r, tk // s, r, s), (r * k_pad, s, k_pad, 1))
    y_ap = AccessPattern(0, (tm // r, out // t, r, t), (r * n_out, t, n_out, 1))
    return sched.LinearWork("a", "c", x_ap, y_ap, tile_bytes, tm * tn, cores, bias=bias)


# --------------------------------------------------------------------------- the family


def _joined(launch: LaunchPlan) -> bool:
    """Whether ``launch`` runs another family's op on a GEMV configuration (a norm, decode attention)."""
    return gemv_norm.is_norm(launch) or gemv_attention.is_attention(launch)


class LinearW4(KernelFamily):
    name = "linear_w4"
    kinds = ("linear",)
    kernel_defs = {"linear_w4_gemv": GEMV_KERNEL, "linear_w4_gemm": GEMM_KERNEL}
    array_scheduled = True

    def plan_key(self, op, buckets, linear_buckets):
        if not (isinstance(op, LinearLike) and isinstance(op.linear_weight.type, QTensorType)):
            return None
        wtype = op.linear_weight.type
        n, k = wtype.shape
        bias = op.linear_bias is not None
        if wtype.bits != 4:
            def refuse(label, device):
                raise CompileError(f"cannot tile {label}: the AIE kernels take 4-bit weights, this one has "
                                   f"{wtype.bits} bits; quantize with bits=4")
            return ("refuse", id(op)), refuse
        # One weight tiling for both functions (prefill and decode read the same pre-tiled weights): plan all
        # buckets, keep each op's. An op whose epilogue the kernels compute (EPILOGUES) gets its own plan; any other
        # epilogue runs on the host after the linear.
        epilogue = EPILOGUES.get(op.name)
        return ("linear", n, k, wtype.group, bias, linear_buckets, epilogue), (
            lambda label, device: plan_linear(label, n, k, wtype.group, bias, linear_buckets, device, epilogue))

    def kernel_spec(self, launch: LaunchPlan, device: Device) -> KernelSpec:
        p = launch.params
        epilogue = (p.get("epilogue"), p.get("arch"))
        if launch.kernel == "linear_w4_gemv":
            return gemv_spec(p["tn"], p["tk"], p["group"], p["bias"], device.mmul["bf16"], *epilogue,
                             nb=p.get("nb", 1), ys=p.get("ys"), norm=gemv_norm.norm_params(p),
                             bias_init=bool(p.get("bias_init")), attention=gemv_attention.attention_params(p))
        return gemm_spec(p["tm"], p["tn"], p["tk"], p["group"], p["bias"], device.mmul["bf16"], *epilogue,
                         nb=p.get("nb", 1), bias_init=bool(p.get("bias_init")))

    def configuration_key(self, launch: LaunchPlan, op_plan: OpPlan):
        """GEMVs share a configuration when their cores take the same tiles: the grid, the activation and weight
        tiles (width, depth, group, bias) and the store size; the epilogue may differ (the shared kernel has both
        stores; a linear whose bias is in bias tiles has bias-free weight tiles and shares with the linears without
        bias), and decode's norms planned in their format (:mod:`.gemv_norm`) join them. GEMMs when their tiles,
        grid, epilogue and bias tiles are the same, whatever their bucket: a member's body and runtime sequence
        carry its rows, so one configuration serves every prompt bucket."""
        p, s = launch.params, op_plan.shape
        if launch.kernel == "linear_w4_gemm":  # the store's C block differs with the epilogue: share only alike
            # (and GEMMs with bias tiles only with their like: a prompt gains nothing from one configuration for
            # qkv and o_proj, which attention separates, and the design would outgrow 1 MB)
            return ("linear_w4_gemm", launch.columns, launch.rows, p["tm"], p["tn"], p["tk"],
                    p["group"], p["bias"], s["tile_bytes"], p.get("epilogue"), p.get("arch"),
                    bool(p.get("bias_init")))
        return ("linear_w4_gemv", launch.columns, launch.rows, p["tn"], p["tk"], p["group"], p["bias"],
                store_size(p))

    def shared_spec(self, members: list[tuple[LaunchPlan, OpPlan]], device: Device) -> KernelSpec:
        """The kernel of ``members``: the most accumulators any needs. GEMVs: with an epilogue when one computes
        it, and both stores (``mixed``) when others do not; GEMMs: all alike (their key holds the epilogue)."""
        params = [launch.params for launch, _ in members]
        epilogues = {p.get("epilogue") for p in params}
        if len(epilogues - {None}) > 1:
            raise CompileError(f"linears with epilogues {sorted(epilogues - {None})} cannot share one kernel")
        first = params[0]
        epilogue = next(iter(epilogues - {None}), None)
        arch = next((p["arch"] for p in params if p.get("arch")), None)
        if members[0][0].kernel == "linear_w4_gemm":
            if len(epilogues) > 1:
                raise CompileError("GEMMs with and without an epilogue store different C blocks: they cannot share")
            return gemm_spec(first["tm"], first["tn"], first["tk"], first["group"], first["bias"],
                             device.mmul["bf16"], epilogue, arch, nb=max(p["nb"] for p in params),
                             members=len(members), bias_init=any(p.get("bias_init") for p in params))
        linears = [p for p in params if not gemv_norm.is_norm_params(p) and not gemv_attention.is_attention_params(p)]
        return gemv_spec(first["tn"], first["tk"], first["group"], first["bias"], device.mmul["bf16"], epilogue,
                         arch, nb=max(p.get("nb", 1) for p in params), ys=store_size(first),
                         members=len(members), mixed=epilogue is not None and None in {p.get("epilogue")
                                                                                        for p in linears},
                         norm=gemv_norm.spec_entries(params), bias_init=any(p.get("bias_init") for p in params),
                         attention=gemv_attention.spec_entries(params))

    def offers(self, plan: OpPlan) -> tuple[Offer, ...]:
        """Decode's GEMVs whose weight tiles carry no bias: decode's norms can run in their configuration
        (:mod:`.gemv_norm`), in their tile format."""
        return tuple(Offer(self.configuration_key(x, plan), x, plan, gemv_norm.gemv_format(
                     x.params, store_size(x.params), linear_tile_bytes(x.params["tn"], x.params["tk"],
                                                                       x.params["group"], False)))
                     for x in plan.launches if x.kernel == "linear_w4_gemv" and not x.params["bias"]
                     and not _joined(x))

    def scheduled_as_arrays(self, launch: LaunchPlan) -> bool:
        """Linears: their work comes as arrays; a norm or decode attention on a GEMV configuration's, call by
        call."""
        return not _joined(launch)

    def reads_valid_tiles(self, launch: LaunchPlan, op_plan: OpPlan) -> bool:
        """Decode attention on a GEMV configuration (:mod:`.gemv_attention`): one runtime sequence per cache tile
        count."""
        return gemv_attention.is_attention(launch)

    def kv_tile_counts(self, launch: LaunchPlan, tiles: int) -> tuple[int, ...]:
        from aielower.backends.aie.families.attention import kv_read_counts

        return kv_read_counts(self.kv_tile_rows(launch), tiles)

    def kv_tile_rows(self, launch: LaunchPlan) -> int:
        return launch.params["attn_tkv"]

    def kv_tail_bytes(self, launch: LaunchPlan) -> int:
        return gemv_attention.kv_tail_bytes(launch) if gemv_attention.is_attention(launch) else 0

    def scheduled_kv_len(self, launch: LaunchPlan, op_plan: OpPlan) -> int:
        return op_plan.shape.get("cache_len", 0) if gemv_attention.is_attention(launch) else 0

    def design_shape(self, launch: LaunchPlan, op_plan: OpPlan) -> dict:
        """Decode attention on a GEMV configuration: what its schedule reads of the attention op's shape."""
        if gemv_attention.is_attention(launch):
            return {k: op_plan.shape[k] for k in ("kv_heads", "cache_len")}
        return op_plan.shape

    def max_shared(self, launch: LaunchPlan) -> int:
        """One header word per linear, in the header tile (:func:`header_words_of`); a GEMV configuration keeps one
        word for the KV tile count of decode attention among its members (:mod:`.gemv_attention`)."""
        return header_words_of(launch.params) - (0 if "tm" in launch.params else 1)

    def max_shared_buckets(self, launch: LaunchPlan) -> int | None:
        """GEMMs: :data:`GEMM_SHARED_BUCKETS` prompt buckets per configuration."""
        return GEMM_SHARED_BUCKETS if launch.kernel == "linear_w4_gemm" else None

    def array_work(self, launch: LaunchPlan, op_plan: OpPlan) -> sched.LinearWork | None:
        if _joined(launch):  # a norm's or decode attention's calls, one by one (schedule)
            return None
        s = op_plan.shape
        grid = blob_grid(s)
        counts = s.get("gemv_bias_tiles", 0), s.get("gemm_bias_tiles", 0)
        own = counts[0] if launch.kernel == "linear_w4_gemv" else counts[1]
        if launch.params["bias"] != bias_in_tiles(s) or bool(launch.params.get("bias_init")) != bool(own):
            raise CompileError(f"linear plan: a {launch.role} launch with bias={launch.params['bias']}, "
                               f"bias_init={bool(launch.params.get('bias_init'))} does not match its shape (bias "
                               f"{s['bias']}, bias tiles {counts}); plan the op again (plan-aie-tiling)")
        if launch.kernel == "linear_w4_gemv":
            return gemv_work(launch, s["n_pad"], s["k_pad"], s["tile_bytes"], grid, s)
        return gemm_work(launch, launch.bucket, s["n_pad"], s["k_pad"], s["tile_bytes"], grid, s)

    def schedule(self, launch: LaunchPlan, op_plan: OpPlan, kv_tiles: int | None = None):
        if gemv_norm.is_norm(launch):
            return gemv_norm.schedule(launch), ()
        if gemv_attention.is_attention(launch):
            return gemv_attention.schedule(launch, op_plan.shape, kv_tiles)
        return sched.programs(launch, self.array_work(launch, op_plan)), ()

    def calls_per_core(self, launch: LaunchPlan, shape: dict, kv_len: int = 0) -> dict[str, int]:
        if gemv_norm.is_norm(launch):
            return gemv_norm.calls_per_core(launch)
        if gemv_attention.is_attention(launch):
            return gemv_attention.calls_per_core(launch, shape, kv_len)
        n_tiles, k_tiles = shape["n_pad"] // shape["tn"], shape["k_pad"] // shape["tk"]
        if launch.kernel == "linear_w4_gemv":
            tiles = per_core(n_tiles, launch)
        else:  # columns split N, rows take the M tiles round-robin
            tiles = -(-n_tiles // launch.columns) * -(-launch.bucket // (launch.rows * launch.params["tm"]))
        parts = store_parts(launch.params) if launch.kernel == "linear_w4_gemv" else 1  # a GEMV stores halves
        start = "bias_init" if launch.params.get("bias_init") else "init"  # accumulators from bias tiles, or zero
        return {start: tiles, "step": tiles * k_tiles, "store": tiles * parts}

    def computes_epilogue(self, plan: OpPlan) -> bool:
        """The launches of ``plan`` compute the op's epilogue too (their result is the op's)."""
        return bool(plan.shape.get("epilogue"))

    @staticmethod
    def _plain_gemv(launch: LaunchPlan) -> bool:
        return launch.kernel == "linear_w4_gemv" and not gemv_norm.is_norm(launch) and not gemv_attention.is_attention(
            launch)

    def ddr_results(self, op, launch: LaunchPlan, op_plan: OpPlan) -> tuple[tuple[str, int, int] | None, ...]:
        """A GEMV's ``y`` when it is the op's result (the op has no epilogue, or the kernel computes it) and its
        outputs are not padded (:meth:`run` crops nothing)."""
        if not self._plain_gemv(launch) or op.has_epilogue and not self.computes_epilogue(op_plan):
            return ()
        s = op_plan.shape
        n, n_pad = (s["n"] // 2, s["n_pad"] // 2) if s.get("epilogue") else (s["n"], s["n_pad"])
        return (("y", 0, n) if n == n_pad else None,)

    def ddr_operand(self, op, launch: LaunchPlan, op_plan: OpPlan) -> tuple[str, int] | None:
        """A GEMV's ``x`` when its K is not padded (:meth:`run` pads nothing)."""
        if not self._plain_gemv(launch):
            return None
        s = op_plan.shape
        return ("x", s["k"]) if s["k"] == s["k_pad"] else None

    def run(self, host, op, plan: OpPlan, operands: tuple):
        """``x @ W.T (+ b)`` for the rows of ``x`` (with the silu_mul epilogue: ``silu(g) * u`` of its halves):
        chunks of the largest bucket, each a GEMV (one row) or a GEMM launch over the pre-tiled weight blob
        (resident in DDR)."""
        s = plan.shape
        epilogue = EPILOGUES.get(op.name)
        if s.get("epilogue") != epilogue or any(launch.params.get("epilogue") != epilogue for launch in plan.launches):
            raise CompileError(f"{op.name}: its plan's kernels compute epilogue {s.get('epilogue')!r}, the op needs "
                               f"{epilogue!r}; plan it again (plan-aie-tiling)")
        x = operands[0]
        k, k_pad = s["k"], s["k_pad"]
        n, n_pad = (s["n"] // 2, s["n_pad"] // 2) if s.get("epilogue") else (s["n"], s["n_pad"])
        weight_buffer = Resident(f"weight/{op.weight.name}", host.blobs[op.weight.name])
        lead = x.shape[:-1]
        rows = to_bf16(x.reshape(-1, k))
        out = np.empty((rows.shape[0], n), np.float32)
        largest = plan.buckets[-1]
        for m0 in range(0, rows.shape[0], largest):
            chunk = rows[m0 : m0 + largest]
            bucket = plan.bucket_for(chunk.shape[0])
            launch = host.launch_of(plan, bucket)
            if launch.role == "gemv":
                tensors = {"x": pad2(chunk, 1, k_pad).reshape(-1), "w": weight_buffer,
                           "y": np.zeros(n_pad, np.uint16)}
                host.submit(plan, launch, tensors)
                result = tensors["y"].reshape(1, n_pad)
            else:
                tensors = {"a": pad2(chunk, bucket, k_pad).reshape(-1), "w": weight_buffer,
                           "c": np.zeros(bucket * n_pad, np.uint16)}
                host.submit(plan, launch, tensors)
                result = tensors["c"].reshape(bucket, n_pad)
            out[m0 : m0 + chunk.shape[0]] = from_bf16(result[: chunk.shape[0], :n])
        return out.reshape(*lead, n)


__all__ = ["EPILOGUES", "GEMM_ACCUMULATORS", "GEMM_BLOCKS", "GEMM_KERNEL", "GEMV_ACCUMULATORS", "GEMV_KERNEL",
           "LinearW4", "blob_grid", "epilogue_entries", "gemm_spec", "gemm_work", "gemv_item_sizes", "gemv_items",
           "header_words_of",
           "gemv_spec", "gemv_work", "out_columns", "out_tile", "plan_linear"]
