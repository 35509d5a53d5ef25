"""Decode attention as a member of the GEMV configuration (issue 14: one device configuration per decode layer).

With decode's norms and qkv on the shared GEMV configuration G (:mod:`.gemv_norm`), a 7B decode layer still
switched the array twice: G -> decode attention's own design -> G. A decode attention launch planned here runs on
G's cores through G's own object FIFOs, one more member of G, so a decode layer runs on one configuration.

What moves, per launch (G's tile format: ``x`` TK bf16 broadcast to a column's cores, ``w`` a weight tile of
``tile_bytes`` split one element per core, ``y`` YS bf16 split); core ``k = column x rows + row`` attends for KV
head ``k`` (the grid's first ``kv_heads / rows`` columns; the others idle):

- ``x``: the query records of the column's KV heads, one after the other, each ``RECORD / TK`` elements (the
  attention design's decode record, :func:`~aielower.backends.aie.host_arrays.query_records`: the head's GQ
  queries, the step's key and value, the rotary row, the step header; zero-padded to whole elements). Every core
  takes all of them and keeps its own (``_attn_q``).
- ``w``: the KV cache itself, in the attention designs' layout ``[kv_heads][tiles][K|V][TKV][D]`` bf16
  (:class:`~aielower.backends.aie.kv_cache.BlockedKvCache`), read in weight tiles of ``CR`` KV rows: per cache
  tile, its K rows in ``TKV / CR`` elements, then its V rows. An element holds ``tile_bytes`` bytes read from
  where its rows start, so it runs past them into the next rows (ignored): the cache row's DDR tensor needs
  :func:`kv_tail_bytes` bytes after its last row. One runtime sequence per cache tile count, as decode attention's
  own design has (:data:`~.attention.KV_READ_BLOCK`); the count comes in the launch's header, which the kernel's
  ``_header`` copies into the cores' parameter word 2, the trip count of their KV loop (a member built as a design
  of its own has its sequences write it, as decode attention's own design does).
- ``y``: per core its head's ``GQ x D`` outputs (o / l), then the step's rotated key (with the rotary embedding
  fused), ``YS`` a store.

The kernel functions are G's GEMV kernel's (``linear_w4_gemv`` with the ``attn_*`` constants, :data:`PARAMS`); their
arithmetic is the attention kernel's (both include ``_attend.cc.j2``), so a member computes bit for bit what decode
attention's own design computes (the online softmax per cache tile; o is kept in fp32 between the weight tiles of a
tile, which is exact).
"""

from __future__ import annotations

import math

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.device import Device
from aielower.backends.aie.kernels import (ARCHS, ATTENTION_WORDS, REDUCE_16, SCALAR_ELEMENTARY, STEP_HEADER, Arg,
                                           Ops, VectorModel, arch_of, encode_float, loads, require_positive,
                                           require_rule, stores)
from aielower.backends.aie.launcher import Resident
from aielower.backends.aie.plan import AccessPattern, Buffer, LaunchPlan
from aielower.backends.aie.planner import BF16, F32, Unplannable, checked, roundup
from aielower.errors import AielowerError, CompileError

# The constants of a GEMV kernel's attention functions, in the order the symbol names them.
PARAMS = ("attn_d", "attn_gq", "attn_tkv", "attn_rows", "attn_record", "attn_rope", "attn_scale", "attn_arch")
ROLE = "attention"
WORDS_AT = ATTENTION_WORDS  # the cores' own parameter words (P, L, the cache tiles sent); the header's follow


def functions(p: dict) -> tuple[str, ...]:
    """The kernel functions a GEMV kernel with decode attention has beside its own (none without)."""
    if "attn_d" not in p:
        return ()
    return ("_attn_q", "_attn_params") + (("_attn_rotate",) if p["attn_rope"] else ()) + (
        "_attn_init", "_attn_kv", "_attn_new", "_attn_store")


def is_attention(launch: LaunchPlan) -> bool:
    """Whether ``launch`` is decode attention planned on a GEMV configuration."""
    return is_attention_params(launch.params)


def is_attention_params(p: dict) -> bool:
    return "attn_d" in p


def attention_params(p: dict) -> dict:
    """The ``attn_*`` constants of a launch's (or kernel's) params; empty for a linear."""
    return {k: p[k] for k in PARAMS if k in p}


def _align16(n: int) -> int:
    return roundup(n, 16)


def record_bf16(gq: int, d: int, rope: int, tk: int) -> int:
    """A query record's bf16, padded to whole activation elements of ``tk``: the queries, the step's key and value,
    the rotary row (``rope``), the step header."""
    return roundup(gq * d + 2 * d + (d if rope else 0) + STEP_HEADER, tk)


def accumulator_floats(p: dict) -> int:
    """Floats of the accumulator buffer the attention functions use (the kernel's ``FLOATS``): o, m, l; the tile's
    scores, p (bf16), alpha, the visible rows; the record (bf16); each part on 16 floats."""
    r, d, tkv_pad = p["attn_gq"], p["attn_d"], roundup(p["attn_tkv"], 16)
    a_s = _align16(r * d + 2 * r)
    a_p = a_s + r * tkv_pad
    a_alpha = a_p + _align16(r * tkv_pad // 2)
    a_n = a_alpha + _align16(r)
    return a_n + _align16(r) + p["attn_record"] // 2


def chunk_rows(d: int, tkv: int, tile_bytes: int) -> int:
    """KV rows per weight tile: the most rows of ``d`` bf16 a tile holds that divide a cache tile of ``tkv`` (0:
    none fits)."""
    return max((cr for cr in range(1, tkv + 1) if tkv % cr == 0 and cr * d * BF16 <= tile_bytes), default=0)


def weight_tile_bytes(launch: LaunchPlan) -> int:
    """Bytes of a weight tile of the configuration ``launch`` runs on (what a ``w`` element carries)."""
    return next(s.tile_bytes for s in launch.streams if s.name == "w")


def kv_tail_bytes(launch: LaunchPlan) -> int:
    """Bytes member ``launch`` reads past a cache row's last KV row (its last weight tile runs past the rows it
    carries)."""
    return weight_tile_bytes(launch) - launch.params["attn_rows"] * launch.params["attn_d"] * BF16


def store_slots(p: dict) -> int:
    """Store calls per core: the head's GQ x D outputs, then the rotated key's D (rotary embedding fused)."""
    ys = p.get("ys") or p["tn"]
    return (p["attn_gq"] * p["attn_d"] + (p["attn_d"] if p["attn_rope"] else 0)) // ys


def symbol_suffix(p: dict) -> str:
    """The attention constants in a GEMV kernel's symbol (the architecture once, when the epilogue names it)."""
    if "attn_d" not in p:
        return ""
    arch = "" if p.get("arch") == p["attn_arch"] else f"_{p['attn_arch']}"
    return (f"_at{p['attn_d']}q{p['attn_gq']}k{p['attn_tkv']}c{p['attn_rows']}r{p['attn_record']}"
            f"p{p['attn_rope']}s{encode_float(p['attn_scale'])}{arch}")


def check(family: str, p: dict, tile_bytes: int) -> None:
    """The contract of a GEMV kernel's attention functions (``tile_bytes``: its weight tile)."""
    if "attn_d" not in p:
        return
    require_positive(family, p, "attn_d", "attn_gq", "attn_tkv", "attn_rows", "attn_record")
    d, tkv, cr, ys, tk = p["attn_d"], p["attn_tkv"], p["attn_rows"], p.get("ys") or p["tn"], p["tk"]
    require_rule(family, p["attn_arch"] in ARCHS, f"ATTN_ARCH={p['attn_arch']!r} is not one of {sorted(ARCHS)}",
                 "generate for the device's architecture")
    scale = p["attn_scale"]
    require_rule(family, isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)
                 and scale > 0, f"ATTN_SCALE={scale!r} must be a finite number > 0", "use 1/sqrt(real head dim)")
    require_rule(family, p.get("arch", p["attn_arch"]) == p["attn_arch"], f"ATTN_ARCH={p['attn_arch']!r} is not "
                 f"the epilogue's ARCH={p.get('arch')!r}: one kernel has one exp2", "generate for one architecture")
    rope = p["attn_rope"]
    require_rule(family, isinstance(rope, int) and rope >= 0 and rope % 2 == 0 and rope <= d,
                 f"ATTN_ROPE={rope!r} must be 0 or even and at most D={d}", "rotate the real head dim")
    require_rule(family, d % 8 == 0 and d % ys == 0, f"the head dim D={d} must be a multiple of 8 and of the "
                 f"{ys} outputs of a store (contract)", "pad the head dim")
    require_rule(family, tkv % cr == 0 and cr * d * BF16 <= tile_bytes, f"CR={cr} KV rows of {d} bf16 per weight "
                 f"tile must divide TKV={tkv} and fit the {tile_bytes}-byte tile (contract)",
                 "plan decode attention on its own configuration")
    need = record_bf16(p["attn_gq"], d, rope, tk)
    require_rule(family, p["attn_record"] == need, f"a query record of {p['attn_record']} bf16 is not the "
                 f"{need} its queries, step rows, rotary row and header take in whole elements of TK={tk}",
                 "plan the launch again (plan-aie-tiling)")
    require_rule(family, accumulator_floats(p) <= p["nb"] * p["tn"], f"decode attention needs "
                 f"{accumulator_floats(p)} floats of accumulators, the buffer holds NB x TN = {p['nb'] * p['tn']}",
                 "give the kernel more accumulators")
    if "members" in p:
        require_rule(family, p["members"] + 1 <= tk // 2, f"the header of a shared kernel with decode attention "
                     f"holds its {p['members']} members' words and the KV tile count in TK/2 = {tk // 2} words",
                     "share fewer launches")
        require_rule(family, p.get("words_at") == WORDS_AT, f"a shared kernel with decode attention writes the "
                     f"header after the cores' {WORDS_AT} own parameter words (WORDS_AT={p.get('words_at')!r})",
                     "plan the configuration again (plan-aie-tiling)")


def signatures(p: dict, accs: int, tile_bytes: int) -> dict[str, tuple[Arg, ...]]:
    """The attention functions of a GEMV kernel with ``accs`` floats of accumulators (none without)."""
    if "attn_d" not in p:
        return {}
    ys = p.get("ys") or p["tn"]
    acc = Arg("accs", "f32", accs, out=True)
    words = p.get("words_at", WORDS_AT) + p.get("members", 0)
    out = {
        "_attn_q": (Arg("x", "bf16", p["tk"]), acc, Arg("slot", "i32")),
        "_attn_params": (acc, Arg("words", "words", words, out=True)),
        "_attn_init": (acc,),
        "_attn_kv": (Arg("w", "u8", tile_bytes), acc, Arg("chunk", "i32"), Arg("q_pos0", "i32"),
                     Arg("kv_pos0", "i32"), Arg("kv_valid", "i32")),
        "_attn_new": (acc, Arg("q_pos0", "i32"), Arg("kv_pos0", "i32"), Arg("kv_valid", "i32")),
        "_attn_store": (acc, Arg("slot", "i32"), Arg("y", "bf16", ys, out=True)),
    }
    if p["attn_rope"]:
        out["_attn_rotate"] = (acc,)
    return out


def cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    """The cycle model of the attention functions: the attention kernel's arithmetic (``_attention_cycles``'
    figures), a cache tile's work spread over its weight tiles."""
    if "attn_d" not in p:
        return {}
    from aielower.backends.aie.families.attention import _rope_cycles

    d, tkv, r, cr = p["attn_d"], p["attn_tkv"], p["attn_gq"], p["attn_rows"]
    wd = 16 if d % 16 == 0 else 8
    chunks, tkv_pad = d // wd, roundup(tkv, 16)
    scale_f32 = Ops(vec=8)
    score = (loads(wd * 16) * 2 + Ops(vec=1)) * chunks + Ops(vec=1 + REDUCE_16, scalar=2)
    softmax = ((loads(16 * 32) + Ops(vec=1)) * (tkv_pad // 16) + Ops(vec=REDUCE_16)  # max
               + (loads(16 * 32) + Ops(vec=2 + m.exp2_16) + stores(16 * 16)) * (tkv_pad // 16)  # p, sum p
               + Ops(vec=1 + REDUCE_16 + m.exp2_16, scalar=8))  # alpha, m, l bookkeeping
    update = (loads(wd * 32) + scale_f32 + (loads(wd * 16) + Ops(vec=1)) * cr + Ops(vec=1) + stores(wd * 32)) * chunks
    ys = p.get("ys") or p["tn"]
    rotate = _rope_cycles({"d": p["attn_rope"], "tr": 1}, m)[""] if p["attn_rope"] else Ops()
    new = (score + softmax + update) * r
    return {"_attn_q": loads(p["tk"] * 16) + stores(p["tk"] * 16) + Ops(scalar=2),
            "_attn_params": Ops(scalar=4) + rotate * r, "_attn_rotate": rotate,
            "_attn_init": stores(r * d * 32) + Ops(scalar=2 * r),
            # the mean of a K and a V weight tile (a cache tile's calls are half of each); the tile's softmax once
            "_attn_kv": ((score * cr + Ops(scalar=2 + (tkv_pad - tkv))) + update + softmax * (cr / tkv)) * (r / 2),
            "_attn_new": new,
            "_attn_store": (loads(wd * 32) + scale_f32 + Ops(vec=1) + stores(ys * 16)) * max(1, ys // wd)
            + Ops(scalar=SCALAR_ELEMENTARY)}


def stack_bytes(p: dict) -> int:
    """Bytes of the arrays the attention functions declare on the stack (``attend``'s s and p, for the step's own
    rows)."""
    return 6 * roundup(p["attn_tkv"], 16) if "attn_d" in p else 0


def spec_entries(members: list[dict]) -> dict:
    """The attention constants of a shared GEMV kernel whose members' params are ``members``: those of its decode
    attention launches, which must agree (one set of functions per kernel); with them, the cores' own parameter
    words before the header's."""
    found = {tuple(attention_params(p).items()) for p in members if "attn_d" in p}
    if len(found) > 1:
        raise CompileError(f"decode attention of other shapes cannot share one GEMV configuration: {sorted(found)}")
    return dict(found.pop()) if found else {}


# --------------------------------------------------------------------------------------------------- planning


def plan_member(offer, attention: LaunchPlan, shape: dict, device: Device) -> LaunchPlan:
    """Decode attention (its own design's launch ``attention``, of an op with ``shape``) as a launch in the tile
    format of ``offer`` (a decode GEMV's :class:`~.base.Offer`, :func:`.gemv_norm.gemv_format`). Unplannable when
    a weight tile holds no KV row, the KV heads do not fill whole columns of the grid, or a budget breaks."""
    gemv, f = offer.launch, offer.format
    tn, tk, ys, tile = f["tn"], f["tk"], f["ys"], f["tile_bytes"]
    a = attention.params
    if not (a.get("header") and a.get("step_rows") == 1 and a["tq"] == 1 and not a.get("mmul")):
        raise Unplannable("attention: only decode attention (one query token, the step's rows in its records) joins "
                          "a GEMV configuration")
    d, gq, tkv, kv_heads = a["d"], a["gq"], a["tkv"], shape["kv_heads"]
    sizes = {s.name: s.tile_bytes for s in gemv.streams}
    if sizes != {"x": tk * BF16, "w": tile, "y": ys * BF16}:
        raise Unplannable(f"attention: the GEMV's streams move {sizes}, not its format's tiles")
    cr = chunk_rows(d, tkv, tile)
    if not cr:
        raise Unplannable(f"attention: a KV row of {d * BF16} bytes exceeds the {tile}-byte weight tile")
    if kv_heads % gemv.rows or kv_heads > gemv.cores:
        raise Unplannable(f"attention: {kv_heads} KV heads do not fill whole columns of the {gemv.columns}x"
                          f"{gemv.rows} grid")
    if d % ys:
        raise Unplannable(f"attention: the head dim {d} is not whole stores of {ys}")
    rope = a.get("rope", 0)
    if rope != shape["head_dim"]:  # what require_matches asks of the member
        raise Unplannable("attention: only decode attention with the rotary embedding fused joins a GEMV "
                          "configuration")
    params = dict(tn=tn, tk=tk, group=f["group"], bias=False, nb=f["nb"], ys=ys, header=True,
                  attn_d=d, attn_gq=gq, attn_tkv=tkv, attn_rows=cr, attn_record=record_bf16(gq, d, rope, tk),
                  attn_rope=rope, attn_scale=float(a["scale"]), attn_arch=arch_of(device))
    params["nb"] = max(f["nb"], -(-accumulator_floats(params) // tn))
    buffers = tuple(Buffer("acc", "L1", params["nb"] * tn * F32) if (b.name, b.tier) == ("acc", "L1") else b
                    for b in gemv.buffers if b.name not in ("stack", "kernel_static"))
    record = params["attn_record"]
    heads = kv_heads * gq
    out_bf16 = kv_heads * (gq * d + (d if rope else 0))
    per_tile = 2 * (tkv // cr) * tile  # bytes a core reads per cache tile (whole tiles per position, rounded up)
    return checked(LaunchPlan(
        bucket=1, kernel=gemv.kernel, role=ROLE, params=params, columns=gemv.columns, rows=gemv.rows,
        buffers=buffers, streams=gemv.streams, macs=0, padded_macs=0,
        ddr_read=kv_heads * record * BF16, ddr_write=out_bf16 * BF16,
        ddr_read_per_kv=-(-kv_heads * per_tile // tkv), macs_per_kv=heads * d * 2,
    ), device)


def require_matches(launch: LaunchPlan, shape: dict) -> None:
    """CompileError unless member ``launch`` fits its attention op's ``shape`` (a plan read from IR text may pair
    them wrongly): the KV heads fill whole columns of the grid, the kernel's head dim, query heads per KV head and
    rotated dims are the op's, its cache tiles divide the cache."""
    p = launch.params
    kv_heads, rows = shape.get("kv_heads", 0), launch.rows
    problems = []
    if not kv_heads or kv_heads % rows or kv_heads > launch.cores:
        problems.append(f"{kv_heads} KV heads do not fill whole columns of the {launch.columns}x{rows} grid")
    for const, key in (("attn_d", "d_pad"), ("attn_gq", "gq"), ("attn_rope", "head_dim")):
        if p[const] != shape.get(key):
            problems.append(f"{const.upper()}={p[const]} is not the op's {key} {shape.get(key)}")
    cache = shape.get("cache_len", 0)
    if not cache or cache % p["attn_tkv"]:
        problems.append(f"its {p['attn_tkv']}-row cache tiles do not divide the cache of {cache}")
    if problems:
        raise CompileError(f"decode attention on the GEMV configuration: {'; '.join(problems)}; plan the op again "
                           "(plan-aie-tiling)")


# --------------------------------------------------------------------------------------------------- schedule


def columns_used(launch: LaunchPlan, shape: dict) -> int:
    return shape["kv_heads"] // launch.rows


def schedule(launch: LaunchPlan, shape: dict, kv_tiles: int | None = None):
    """Tensors: ``x`` [kv_heads][RECORD] bf16 (the query records), ``w`` the KV cache as bytes,
    ``[kv_heads][tiles][K|V][TKV][D]`` bf16 (``tiles = cache_len / TKV``), ``y`` [kv_heads][GQ x D (+ D)] bf16.
    Core ``k`` (column-major over the used columns) attends for KV head ``k`` over ``kv_tiles`` cache tiles (default:
    the whole cache); the step is at position ``P = kv_tiles x TKV``. Returns the cores' programs and the parameter
    words they were made with (P, L = P + 1, the tiles)."""
    require_matches(launch, shape)
    p = launch.params
    d, tkv, cr, tk, ys = p["attn_d"], p["attn_tkv"], p["attn_rows"], p["tk"], p["ys"]
    record, tile = p["attn_record"], weight_tile_bytes(launch)
    cache = shape["cache_len"]
    tiles = cache // tkv if kv_tiles is None else kv_tiles
    position = tiles * tkv
    elements = record // tk
    head_bytes = cache * 2 * d * BF16
    acc = sched.Acc(0)
    cores = sched.cores_of(launch)
    used = columns_used(launch, shape)
    for core in cores:
        if core.column >= used:
            continue  # an idle core
        k = core.column * launch.rows + core.row
        first = core.column * launch.rows * elements
        calls = core.calls
        calls.append(sched.Call("attn_init", (acc,)))
        for e in range(launch.rows * elements):  # slot e - row x E: the core's own record at 0 .. E - 1
            x = sched.In((sched.TileRef("x", AccessPattern((first + e) * tk, (tk,), (1,))),))
            calls.append(sched.Call("attn_q", (x, acc, e - core.row * elements)))
        if p["attn_rope"]:
            calls.append(sched.Call("attn_rotate", (acc,)))
        for j in range(tiles):
            row = j * tkv
            base = k * head_bytes + j * 2 * tkv * d * BF16
            for c in range(2 * tkv // cr):  # the tile's K rows, then its V rows, CR a weight tile
                w = sched.In((sched.TileRef("w", AccessPattern(base + c * cr * d * BF16, (tile,), (1,))),))
                calls.append(sched.Call("attn_kv", (w, acc, c, position, row, min(tkv, position - row))))
        calls.append(sched.Call("attn_new", (acc, position, position, 1)))
        per_core = store_slots(p)
        for s in range(per_core):
            y = sched.Out((sched.TileRef("y", AccessPattern((k * per_core + s) * ys, (ys,), (1,))),))
            calls.append(sched.Call("attn_store", (acc, s, y)))
    return cores, (position, position + 1, tiles)


def calls_per_core(launch: LaunchPlan, shape: dict, kv_len: int = 0) -> dict[str, int]:
    """Calls of a busy core for a step with ``kv_len`` valid positions after it (the cache tiles of the rows before
    the step; default: the whole cache)."""
    p = launch.params
    tkv, cr = p["attn_tkv"], p["attn_rows"]
    tiles = -(-(kv_len - 1) // tkv) if kv_len else shape["cache_len"] // tkv
    out = {"attn_init": 1, "attn_q": launch.rows * p["attn_record"] // p["tk"], "attn_params": 1,
           "attn_kv": tiles * 2 * (tkv // cr), "attn_new": 1,
           "attn_store": store_slots(p)}
    if p["attn_rope"]:
        out["attn_rotate"] = 1
    return out


# --------------------------------------------------------------------------------------------------- host side


def tensors(launch: LaunchPlan, shape: dict, records: np.ndarray, kv: Resident) -> dict:
    """The DDR tensors of a launch: ``records`` the decode attention design's query records (bf16 bits
    [kv_heads][record'], :func:`~aielower.backends.aie.host_arrays.query_records`), padded here to whole
    activation elements; ``kv`` the cache row (bf16 bits, with :func:`kv_tail_bytes` bytes after it), passed as
    bytes."""
    p = launch.params
    kv_heads, record = shape["kv_heads"], p["attn_record"]
    rows = records.reshape(kv_heads, -1)
    if rows.shape[1] > record:
        raise CompileError(f"decode attention: a query record of {rows.shape[1]} bf16 exceeds the planned {record}")
    x = np.zeros((kv_heads, record), np.uint16)
    x[:, : rows.shape[1]] = rows
    tail = kv_tail_bytes(launch)
    need = kv_heads * shape["cache_len"] * 2 * p["attn_d"] * BF16 + tail
    if kv.array.nbytes < need:
        raise AielowerError(f"decode attention on the GEMV configuration reads {need} bytes of the KV cache row "
                            f"{kv.key}, which has {kv.array.nbytes}: allocate the cache with "
                            f"{tail} bytes after its rows")
    item = kv.array.itemsize
    changed = None if kv.changed is None else tuple((a * item, n * item) for a, n in kv.changed)
    return {"x": x.reshape(-1), "w": Resident(kv.key, kv.array.view(np.uint8), changed),
            "y": np.zeros(kv_heads * store_slots(p) * p["ys"], np.uint16)}


def results(launch: LaunchPlan, shape: dict, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(the output bf16 bits [heads][D], the step's rotated keys bf16 bits [kv_heads][D] or None) from ``y``."""
    p = launch.params
    d, gq, kv_heads = p["attn_d"], p["attn_gq"], shape["kv_heads"]
    parts = y.reshape(kv_heads, -1)
    out = parts[:, : gq * d].reshape(kv_heads * gq, d)
    return out, (parts[:, gq * d : gq * d + d] if p["attn_rope"] else None)


__all__ = ["PARAMS", "ROLE", "WORDS_AT", "accumulator_floats", "attention_params", "calls_per_core", "check",
           "chunk_rows", "columns_used", "cycles", "functions", "is_attention", "is_attention_params",
           "kv_tail_bytes", "plan_member", "record_bf16", "require_matches", "results", "schedule", "signatures",
           "spec_entries",
           "stack_bytes", "store_slots", "symbol_suffix", "tensors", "weight_tile_bytes"]
