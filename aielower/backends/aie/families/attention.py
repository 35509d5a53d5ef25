"""The ``attention`` kernel family: ``fused.attention``, rotary embedding of q and k (one ``rope`` launch over the
heads of both: the host stacks k's heads under q's, sharing the cos/sin table of the positions), then flash attention
(an ``attention`` launch), per bucket of query tokens (batch 1; the host loops over a batch). A decode step (one
query token over the cache) is one ``attention`` launch that rotates q and the step's key itself.

Work items are (KV head, query tile); K and V tiles stream in a joined tile. When a column's rows work on the same KV
head (prefill: they take different query tiles) the KV stream is broadcast; otherwise (decode) each row has its own,
which the memory tile's six output channels allow for at most two rows. Over a KV cache, the position of the step and
the valid KV length come with every query tile in a step header the host writes after the tile's queries in the
``q`` tensor (one record per query tile). A decode design reads the cache tiles of the rows before the step
(:class:`BlockedKvCache`), then the step's own keys and values, which come in the query records, and has one runtime
sequence per block of cache tiles it reads (:data:`KV_READ_BLOCK` rows). Prompt attention, with or without a cache,
runs its products on the device's bf16 ``aie::mmul`` where its tiles are whole mmul blocks (the host lays each query
tile out transposed in the mmul's B blocks; K and V stay row-major).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.device import Device, MMulShape
from aielower.backends.aie.families import gemv_attention
from aielower.backends.aie.families.base import KernelFamily, fifo_shape, per_core
from aielower.backends.aie.host_arrays import (from_bf16, kv_blocks, mmul_query_tiles, pad2, pad3, query_records,
                                               step_header, to_bf16)
from aielower.backends.aie.kernels import (ATTENTION_WORDS, REDUCE_16, SCALAR_ELEMENTARY, STEP_HEADER, Arg, KernelDef,
                                           KernelSpec, Ops, VectorModel, arch_of, ceil_div, check_arch, encode_float, fp32,
                                           header_ops, loads, require_members, require_positive, require_rule, stores)
from aielower.backends.aie.kv_cache import BlockedKvCache
from aielower.backends.aie.launcher import Resident
from aielower.backends.aie.plan import AccessPattern, Buffer, LaunchPlan, OpPlan, Stream
from aielower.backends.aie.planner import BF16, F32, Unplannable, checked, core_grid, first_fitting, roundup
from aielower.errors import AielowerError, CompileError
from aielower.ir.dialects import fused

# --------------------------------------------------------------------------- kernels


def rope_spec(d: int, tr: int, members: int = 0) -> KernelSpec:
    """The rotary-embedding kernel; a kernel of a shared configuration (:mod:`aielower.backends.aie.designs.shared`)
    of ``members`` launches has a ``_header`` function (its header is a launch's first row tile, one per core)."""
    return KernelSpec("rope", (("d", d), ("tr", tr)) + ((("members", members),) if members else ()))


# The most prompt buckets one shared attention configuration serves (the catalog cuts in bucket order). The members'
# bodies are one (designs/shared.py: they differ only in constants), so a design grows mainly with their runtime
# sequences: the 7B's cached prompt attention of all five buckets is 0.97 MB, just under the 1 MB a design may take
# (issue 14; 1.35 MB with a body per member).
ATTENTION_SHARED_BUCKETS = 8


def rope_header_words(p: dict) -> int:
    """The i32 words of a shared rope launch's header: one row tile, TR x D bf16."""
    return p["tr"] * p["d"] // 2


def attention_spec(d: int, gq: int, tq: int, tkv: int, scale: float, causal: bool, arch: str,
                   header: bool = False, rope: int = 0, step_rows: int = 0,
                   mmul: MMulShape | None = None, members: int = 0) -> KernelSpec:
    """``header``: each query tile carries the step header (:data:`STEP_HEADER` slots after its rows), which
    ``_params`` copies into the core's parameter words (attention over a KV cache: per-step values come from DDR).
    ``step_rows``: the query tile also carries the step's own keys and values (that many rows of each, after its
    queries), which ``_step_new`` attends to after the cache tiles (0: none; the step's rows are in the cache).
    ``rope``: the rotary embedding of a decode step is fused (the real head dim it rotates; 0: none): the query tile
    carries its rows and the step's key unrotated and the position's rotary row before the header, ``_params``
    rotates the query rows, and ``_rotate`` rotates the key and writes it out.
    ``mmul``: the products k q^T and p v run on the device's bf16 ``aie::mmul`` (prompt attention), with q
    transposed in its B blocks (:func:`~aielower.backends.aie.host_arrays.mmul_query_tiles`); K and V stay
    row-major, the KV cache's layout.
    ``members``: a kernel of a shared configuration (:mod:`aielower.backends.aie.designs.shared`) of that many
    prompt-attention launches has a ``_header`` function writing the header's words after the core's own parameter
    words (:func:`own_words`), from word ``words_at``."""
    shape = (mmul.m, mmul.k, mmul.n) if mmul is not None else (0, 0, 0)
    params = (("d", d), ("gq", gq), ("tq", tq), ("tkv", tkv), ("scale", fp32(scale)), ("causal", bool(causal)),
              ("arch", arch), ("header", bool(header)), ("rope", rope), ("step_rows", step_rows),
              ("mr", shape[0]), ("ms", shape[1]), ("mt", shape[2]))
    if members:
        params += (("members", members), ("words_at", own_words(bool(header))))
    return KernelSpec("attention", params)


def own_words(header: bool) -> int:
    """A prompt-attention core's own parameter words: position and valid length, and with the step header the cache
    tiles sent (:data:`ATTENTION_WORDS`)."""
    return ATTENTION_WORDS if header else 2


def _check_rope(family: str, p: dict) -> None:
    require_positive(family, p, "d", "tr")
    require_rule(family, p["d"] % 2 == 0, f"D={p['d']} is odd (contract: the head dim is even)", "rotate an even D")
    require_members(family, p, rope_header_words(p), element="header tile")


def _rope_signature(p: dict) -> dict[str, tuple[Arg, ...]]:
    out = {"": tuple(Arg(n, "bf16", p["tr"] * p["d"], out=(n == "y")) for n in ("x", "cs", "y"))}
    if "members" in p:
        out["_header"] = (Arg("x", "bf16", p["tr"] * p["d"]), Arg("words", "words", p["members"], out=True))
    return out


def _check_attention(family: str, p: dict) -> None:
    check_arch(family, p)
    require_positive(family, p, "d", "gq", "tq", "tkv")
    require_rule(family, p["d"] % 8 == 0, f"D={p['d']} is not a multiple of 8 (contract)", "pad the head dim to 8")
    require_rule(family, math.isfinite(p["scale"]) and p["scale"] > 0, f"SCALE={p['scale']} must be finite and > 0",
                 "use 1/sqrt(real head dim)")
    require_members(family, p, _attention_header_words(p))
    if "members" in p:
        require_rule(family, p.get("words_at") == own_words(p["header"]) and not p["step_rows"] and not p["rope"],
                     f"a shared attention kernel writes its header after the cores' {own_words(p['header'])} own "
                     f"parameter words (WORDS_AT={p.get('words_at')!r}) and serves prompt buckets only",
                     "share prompt attention of one kind")
    if p["step_rows"] != 0:  # from a plan, maybe from IR text: checked before it names a symbol or sizes a buffer
        require_positive(family, p, "step_rows")
        require_rule(family, p["header"] and p["step_rows"] <= p["tkv"],
                     f"STEP={p['step_rows']} needs the step header and at most TKV={p['tkv']} rows: the step's keys "
                     "and values come with the query tile", "carry the step's rows only over a KV cache")
    if p["mr"] or p["ms"] or p["mt"]:
        require_positive(family, p, "mr", "ms", "mt")
        r, s, t = p["mr"], p["ms"], p["mt"]
        rows = p["gq"] * p["tq"]
        require_rule(family, not p["step_rows"] and _mmul_fits(MMulShape(r, s, t), rows, p["d"], p["tkv"]),
                     f"the mmul {r}x{s}x{t} needs no step rows, R={rows} a multiple of {r} and {t}, D={p['d']} a "
                     f"multiple of {s} and {t}, TKV={p['tkv']} a multiple of {r} and {s}, and 8-lane blocks "
                     "(contract)", "use the plain kernel for this tile")
    if p["rope"] != 0:
        require_positive(family, p, "rope")
        require_rule(family, p["header"] and p["tq"] == 1 and p["step_rows"] == 1,
                     "ROPE needs the step header, one query token (TQ=1) and its key in the query tile (STEP=1): it "
                     "rotates one position", "fuse the rotary embedding into decode attention only")
        require_rule(family, p["rope"] % 2 == 0 and 0 < p["rope"] <= p["d"],
                     f"ROPE={p['rope']} must be even and at most D={p['d']}", "rotate the real head dim")


def _attention_header_words(p: dict) -> int:
    """The i32 words of a shared attention launch's header: one KV tile (2 x TKV x D bf16), the stream a column's
    cores share."""
    return p["tkv"] * p["d"]


def _attention_signature(p: dict) -> dict[str, tuple[Arg, ...]]:
    rows = p["gq"] * p["tq"]
    state = rows * p["d"] + 2 * rows
    q = ((rows + 2 * p["step_rows"]) * p["d"] + (p["d"] if p["rope"] else 0)
         + (STEP_HEADER if p["header"] else 0))
    out = {
        "_init": (Arg("state", "f32", state, out=True),),
        "_step": (Arg("q", "bf16", q), Arg("kv", "bf16", 2 * p["tkv"] * p["d"]),
                  Arg("state", "f32", state, out=True), Arg("q_pos0", "i32"), Arg("kv_pos0", "i32"),
                  Arg("kv_valid", "i32")),
        "_store": (Arg("state", "f32", state), Arg("out", "bf16", rows * p["d"], out=True)),
    }
    words = ATTENTION_WORDS + p.get("members", 0)  # a shared kernel's cores keep the header's words after their own
    if p["header"]:
        out["_params"] = (Arg("q", "bf16", q), Arg("words", "words", words, out=True))
    if "members" in p:
        out["_header"] = (Arg("kv", "bf16", 2 * p["tkv"] * p["d"]),
                          Arg("words", "words", p["words_at"] + p["members"], out=True))
    if p["step_rows"]:
        out["_step_new"] = (Arg("q", "bf16", q), Arg("state", "f32", state, out=True), Arg("q_pos0", "i32"),
                            Arg("kv_pos0", "i32"), Arg("kv_valid", "i32"))
    if p["rope"]:
        out["_rotate"] = (Arg("q", "bf16", q), Arg("k_out", "bf16", p["d"], out=True))
    return out


def _rope_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    h = p["d"] // 2
    vec_pairs = h - h % 16
    # MUL, MSC, rounding, MUL, MAC, rounding; ASSUMPTION: a scalar pair is 12 cycles (4 fp32 products, 2 sums, 2
    # conversions to bf16, loads and stores on the scalar unit)
    row = (loads(256) * 4 + Ops(vec=6) + stores(256) * 2) * (vec_pairs // 16) + Ops(scalar=12 * (h - vec_pairs))
    out = {"": row * p["tr"]}
    if "members" in p:
        out["_header"] = header_ops(p)
    return out


def _attention_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    d, tkv, rows = p["d"], p["tkv"], p["gq"] * p["tq"]
    wd = 16 if d % 16 == 0 else 8
    chunks, tkv_pad = d // wd, ceil_div(tkv, 16) * 16
    scale_f32 = Ops(vec=8)  # split v (2 roundings, a sub), MUL, 2 MACs, conversion of v to an accumulator

    def row_over(n: int) -> Ops:
        """One query row's update over a tile of ``n`` KV rows (score arrays padded to TKV_PAD)."""
        scores = ((loads(wd * 16) * 2 + Ops(vec=1)) * chunks + Ops(vec=1 + REDUCE_16, scalar=2)) * n
        scores += Ops(scalar=tkv_pad - n)  # -inf padding
        max_of = (loads(16 * 32) + Ops(vec=1)) * (tkv_pad // 16) + Ops(vec=REDUCE_16)
        exp_sum = ((loads(16 * 32) + Ops(vec=2 + m.exp2_16) + stores(16 * 16)) * (tkv_pad // 16)
                   + Ops(vec=1 + REDUCE_16))
        update_o = ((loads(wd * 32) + scale_f32 + (loads(wd * 16) + Ops(vec=1)) * n + Ops(vec=1) + stores(wd * 32))
                    * chunks)
        return scores + max_of + Ops(vec=m.exp2_16, scalar=8) + exp_sum + update_o  # alpha, m, l bookkeeping

    row = row_over(tkv)
    store_row = (loads(wd * 32) + scale_f32 + Ops(vec=1) + stores(wd * 16)) * chunks + Ops(scalar=SCALAR_ELEMENTARY)
    rotate = _rope_cycles({"d": p["rope"], "tr": 1}, m)[""] if p["rope"] else Ops()
    return {"_init": stores(rows * d * 32) + Ops(scalar=2 * rows), "_step": row * rows, "_store": store_row * rows,
            "_params": Ops(scalar=4) + rotate * rows, "_rotate": rotate + (loads(wd * 16) + stores(wd * 16)) * chunks,
            "_step_new": row_over(max(1, p["step_rows"])) * rows,
            "_header": header_ops(p)} | (
        _mmul_cycles(p, m) if p["mr"] else {})


def _mmul_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    """``_step`` (for a tile every query sees whole) and ``_store`` of the mmul kernel: k q^T and p v as native
    mmuls (one vector instruction and the loads of its A and B blocks each, as the GEMM's model counts them; the
    blocks of K and V gathered row by row), the scores scaled and masked per query on the scalar unit, the softmax
    over QW queries a vector, p moved into its A blocks on the scalar unit, o scaled by alpha per row."""
    d, tkv, rows = p["d"], p["tkv"], p["gq"] * p["tq"]
    r, s, t = p["mr"], p["ms"], p["mt"]
    qw = 16 if rows % 16 == 0 else 8
    scores = (loads(s * 16) * r + Ops(vec=r) + loads(s * t * 16) + Ops(vec=1)) * ((tkv // r) * (rows // t) * (d // s))
    scores += Ops(vec=1, scalar=2 * r * t) * ((tkv // r) * (rows // t))  # to a vector, scaled per score
    per_query = Ops(scalar=3 * tkv) + Ops(vec=m.exp2_16, scalar=8)  # mask and max; alpha, m, l bookkeeping
    softmax = ((loads(qw * 32) + Ops(vec=2 + m.exp2_16) + Ops(scalar=qw)) * tkv) * (rows // qw)  # exp2: 16 lanes
    pv = (loads(r * s * 16) + loads(t * 16) * s + Ops(vec=s + 1)) * ((rows // r) * (d // t) * (tkv // s))
    scale_o = (loads(t * 32) + Ops(vec=8) + stores(t * 32)) * (rows * d // t)  # o alpha per row
    c_blocks = (loads(r * t * 32) + stores(r * t * 32)) * ((rows // r) * (d // t))
    store_row = (loads(t * 32) + Ops(vec=8 + 1) + stores(t * 16)) * (d // t) + Ops(scalar=SCALAR_ELEMENTARY)
    return {"_step": scores + per_query * rows + softmax + pv + scale_o + c_blocks, "_store": store_row * rows}


def _attention_symbol(p: dict) -> str:
    causal = "_causal" if p["causal"] else ""
    header = "_hdr" if p["header"] else ""
    rope = f"_rope{p['rope']}" if p["rope"] else ""
    step = f"_sr{p['step_rows']}" if p["step_rows"] else ""
    mmul = f"_mm{p['mr']}x{p['ms']}x{p['mt']}" if p["mr"] else ""
    return (f"attention_d{p['d']}_gq{p['gq']}_tq{p['tq']}_tkv{p['tkv']}_s{encode_float(p['scale'])}{causal}{header}"
            f"{step}{rope}{mmul}" + (f"_x{p['members']}" if "members" in p else "") + f"_{p['arch']}")


def _stack_arrays(p: dict) -> int:
    """Bytes of the arrays the kernel's functions declare: float s[TKV_PAD], bfloat16 p[TKV_PAD]; with the mmul, the
    whole tile's scores float st[TKV * R] and weights bfloat16 p[R * TKV], and per query float alpha, m_new and sums,
    int n and bool live."""
    if not p["mr"]:
        return 6 * (ceil_div(p["tkv"], 16) * 16)
    rows = p["gq"] * p["tq"]
    return 6 * rows * p["tkv"] + 17 * rows


ROPE_KERNEL = KernelDef(
    functions=lambda p: ("",) + (("_header",) if "members" in p else ()), check=_check_rope, cycles=_rope_cycles,
    signature=_rope_signature,
    symbol=lambda p: f"rope_d{p['d']}_tr{p['tr']}" + (f"_x{p['members']}" if "members" in p else ""),
)
ATTENTION_KERNEL = KernelDef(
    functions=lambda p: (("_init", "_step", "_store") + (("_params",) if p["header"] else ())
                         + (("_step_new",) if p["step_rows"] else ()) + (("_rotate",) if p["rope"] else ())
                         + (("_header",) if "members" in p else ())),
    check=_check_attention, signature=_attention_signature, cycles=_attention_cycles,
    symbol=_attention_symbol,
    stack_arrays=_stack_arrays,
)


# --------------------------------------------------------------------------- planning


def plan_attention(label: str, heads: int, kv_heads: int, head_dim: int, scale: float, causal: bool,
                   cache_len: int | None, buckets: tuple[int, ...], device: Device) -> OpPlan:
    """Rope of q and k, then flash attention, per bucket of query tokens (batch 1; the host loops over a batch).
    ``cache_len`` is the static KV cache length of ``decode`` (None: prefill, attention over the prompt)."""
    gq = heads // kv_heads
    d_pad = roundup(head_dim, 8)
    if cache_len is not None:  # no more query tokens than the cache holds: clamp the prompt buckets to it
        buckets = tuple(sorted({min(b, cache_len) for b in buckets}))
    if head_dim % 2:
        raise CompileError(f"cannot tile {label}: rotary embedding needs an even head_dim, got {head_dim}")

    def tkv_candidates(kv_len: int) -> list[int]:
        return [t for t in (128, 64, 32, 16, 8) if kv_len % t == 0]

    def build(candidate: tuple[int, int]) -> OpPlan:
        size, kv_size = candidate
        launches = []
        for s in buckets:
            kv_len = cache_len if cache_len is not None else s
            tkvs = [t for t in tkv_candidates(kv_len) if t <= kv_size]
            if not tkvs:
                raise Unplannable(f"attention at bucket {s}: no KV tile of at most {kv_size} rows divides the KV "
                                  f"length {kv_len} (use a multiple of 8)")
            tkv = tkvs[0]
            tq = 1 if s == 1 else min(s, max(1, size // gq))
            tq = 1 << (tq.bit_length() - 1)  # a power of two dividing the (power-of-two) bucket
            tr = min(16, s)
            if cache_len is not None and s == 1:  # decode: the rotary embedding fused into attention
                launches.append(_attention_fitting(s, kv_len, heads, kv_heads, gq, d_pad, head_dim, tq, tkv, scale,
                                                   causal, device, cached=True, rope=head_dim))
                continue
            launches.append(_fewest_rows_dropped(lambda rows: _rope(s, heads + kv_heads, head_dim, tr, rows, device),
                                                 device))
            launches.append(_attention_fitting(s, kv_len, heads, kv_heads, gq, d_pad, head_dim, tq, tkv, scale,
                                               causal, device, cached=cache_len is not None))
        shape = dict(heads=heads, kv_heads=kv_heads, head_dim=head_dim, d_pad=d_pad, gq=gq,
                     cache_len=cache_len if cache_len is not None else 0)
        return OpPlan("attention", device.name, shape, tuple(launches))

    # The longest KV tiles first (each is one DMA transfer of K and one of V), then the most query rows per tile.
    sizes = (128, 64, 32, 16, 8)
    return first_fitting(label, device, [(q, kv) for kv in sizes for q in sizes], build)


def _fewest_rows_dropped(make, device: Device) -> LaunchPlan:
    """The launch ``make(max_rows)`` on as many core rows as its budgets allow (two split input streams need two
    memory-tile channels per row)."""
    last = None
    for max_rows in range(device.core_rows, 0, -1):
        try:
            return checked(make(max_rows), device)
        except Unplannable as e:
            last = e
    raise last


def _rope(s: int, heads: int, d: int, tr: int, max_rows: int, device: Device) -> LaunchPlan:
    """Rotary embedding of ``heads`` heads of ``s`` rows (q's heads, then k's)."""
    rows_total = heads * s
    columns, rows = core_grid(rows_total // tr, device, max_rows=max_rows)
    tile = tr * d * BF16
    buffers = (
        Buffer("x", "L1", tile, 2), Buffer("cs", "L1", tile, 2), Buffer("y", "L1", tile, 2),
        Buffer("x", "L2", rows * tile, 2), Buffer("cs", "L2", rows * tile, 2), Buffer("y", "L2", rows * tile, 2),
    )
    ap = AccessPattern(0, (tr * d,), (1,))
    streams = (
        Stream("x", "in", ("x",), "split", tile, 2, (ap,)),
        Stream("cs", "in", ("cs",), "split", tile, 2, (ap,)),
        Stream("y", "out", ("y",), "split", tile, 2, (ap,)),
    )
    return LaunchPlan(
        bucket=s, kernel="rope", role="rope", params=dict(d=d, tr=tr),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=rows_total * d * 2, padded_macs=rows_total * d * 2,
        ddr_read=2 * rows_total * d * BF16, ddr_write=rows_total * d * BF16,
    )


def _attention_fitting(s, kv_len, heads, kv_heads, gq, d_pad, d_real, tq, tkv, scale, causal, device,
                       cached: bool = False, rope: int = 0) -> LaunchPlan:
    q_tiles = s // tq
    last = None
    # broadcast KV when a column's rows can share a KV head (several query tiles), else split over <= 2 rows
    modes = (["broadcast"] if q_tiles >= 2 else []) + ["split"]
    for mode in modes:
        for max_rows in range(device.core_rows, 0, -1):
            try:
                return checked(_attention(s, kv_len, heads, kv_heads, gq, d_pad, d_real, tq, tkv, scale, causal,
                                           mode, max_rows, device, cached, rope), device)
            except Unplannable as e:
                last = e
    raise last


def _attention(s, kv_len, heads, kv_heads, gq, d_pad, d_real, tq, tkv, scale, causal, mode, max_rows, device,
               cached=False, rope=0):
    """Over a KV cache (``cached``) the step's position and valid length vary per step: every query tile carries
    them in a header of :data:`STEP_HEADER` slots from the host's ``step`` buffer (no patched instructions). A
    decode design (:func:`_carries_step`) reads only the cache tiles before the step: every query tile also carries
    the step's keys and values (``step_rows``). With ``rope`` (decode: the real head dim), the rotary embedding is
    fused: every query tile also carries the position's rotary row, and the cores write the step's rotated keys to
    ``k_new`` [kv_heads][d]."""
    q_tiles = s // tq
    items = kv_heads * q_tiles
    if mode == "broadcast":
        rows = min(max_rows, q_tiles)
        columns = min(device.columns, kv_heads * -(-q_tiles // rows))
    else:
        columns, rows = core_grid(items, device, max_rows=max_rows)
    r = gq * tq
    header = STEP_HEADER if cached else 0
    step_rows = s if _carries_step(cached, mode, s, tkv) else 0
    mmul = not step_rows and _mmul_fits(device.mmul["bf16"], r, d_pad, tkv)
    q_tile = r * d_pad * BF16
    q_in = q_tile + header * BF16 + (d_pad * BF16 if rope else 0) + 2 * step_rows * d_pad * BF16
    kv_tile = 2 * tkv * d_pad * BF16
    state = (r * d_pad + 2 * r) * F32
    buffers = (
        Buffer("q", "L1", q_in, 2), Buffer("kv", "L1", kv_tile, 2), Buffer("state", "L1", state),
        Buffer("scores", "L1", r * tkv * F32), Buffer("out", "L1", q_tile, 2),
        Buffer("q", "L2", rows * q_in, 2), Buffer("kv", "L2", (1 if mode == "broadcast" else rows) * kv_tile, 2),
        Buffer("out", "L2", rows * q_tile, 2),
    ) + ((Buffer("k_new", "L1", d_pad * BF16, 2), Buffer("k_new", "L2", rows * d_pad * BF16, 2)) if rope else ())
    # Over a cache, ``q`` holds one record per (KV head, query tile): its gq x tq x d queries, the step's keys and
    # values (decode), the rotary row (rope fused), then the step header (host_arrays.query_records); on the mmul,
    # a tile's queries are transposed in blocks (host_arrays.mmul_query_tiles). A query tile is one run and a core's
    # tiles are one transfer.
    q_first = (AccessPattern(0, (q_in // BF16,), (1,)) if header or mmul
               else AccessPattern(0, (gq, tq, d_pad), (s * d_pad, d_pad, 1)))
    streams = (
        Stream("q", "in", ("q",), "split", q_in, 2, (q_first,)),
        # K and V live in one DDR tensor blocked by KV tile, [kv_heads][blocks][K|V][tkv][d]: a tile is one run
        # and consecutive tiles of a head are contiguous, so a head's KV sweep is one transfer.
        Stream("kv", "in", ("kv",), mode, kv_tile, 2, (AccessPattern(0, (2 * tkv * d_pad,), (1,)),)),
        Stream("out", "out", ("out",), "split", q_tile, 2,
               (AccessPattern(0, (gq, tq, d_pad), (s * d_pad, d_pad, 1)),)),
    ) + ((Stream("k_new", "out", ("k_new",), "split", d_pad * BF16, 2, (AccessPattern(0, (d_pad,), (1,)),)),)
         if rope else ())
    # KV tiles a query tile visits: all valid ones (decode), or up to the diagonal (causal prefill).
    if kv_len == s and causal:
        pairs = sum(-(-((qt + 1) * tq) // tkv) for qt in range(q_tiles))
    else:
        pairs = q_tiles * (kv_len // tkv)
    per_pair = r * tkv * d_pad * 2
    useful = heads * d_real * 2 * (s * (s + 1) // 2 if (kv_len == s and causal) else s * kv_len)
    kv_row = kv_heads * 2 * d_pad * BF16
    kv_reads = q_tiles if mode == "split" else -(-q_tiles // rows)
    decode = kv_len != s
    # a design whose query tiles carry the step's keys and values (Attention.reads_valid_tiles)
    step_kv = kv_heads * q_tiles * 2 * step_rows * d_pad * BF16
    return LaunchPlan(
        bucket=s, kernel="attention", role="attention",
        params=dict(d=d_pad, gq=gq, tq=tq, tkv=tkv, scale=scale, causal=causal, header=bool(header))
        | (dict(step_rows=step_rows) if step_rows else {}) | (dict(rope=rope) if rope else {})
        | (dict(mmul=True) if mmul else {}),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=0 if decode else useful, padded_macs=0 if decode else kv_heads * pairs * per_pair,
        ddr_read=heads * s * d_pad * BF16 + kv_heads * q_tiles * header * BF16 + step_kv
        + (kv_heads * q_tiles * d_pad * BF16 if rope else 0) + (0 if decode else kv_row * kv_len * kv_reads),
        ddr_write=heads * s * d_pad * BF16 + (kv_heads * d_pad * BF16 if rope else 0),
        ddr_read_per_kv=kv_row * kv_reads if decode else 0,
        macs_per_kv=heads * s * d_pad * 2 if decode else 0,
    )


# --------------------------------------------------------------------------- schedule


def rope(launch: LaunchPlan, heads: int, s_pad: int) -> list[sched.CoreProgram]:
    """Tensors: ``x`` [heads, s_pad, d] bf16, ``cs`` [s_pad, d] (cos | sin halves per position), ``y`` laid out like
    ``x``."""
    d, tr = launch.params["d"], launch.params["tr"]
    per_head = s_pad // tr
    cores = sched.cores_of(launch)
    # A column's rows take consecutive row tiles: the rotary table's tiles of a step are then one run (rows of a
    # column taking different heads would each need the same table tile, a repeat no transfer can express inside).
    for core, items in zip(cores, sched.column_interleaved(heads * per_head, launch.columns, launch.rows)):
        for item in items:
            h, i = divmod(item, per_head)
            t0 = i * tr
            x = sched.contiguous("x", (h * s_pad + t0) * d, tr * d)
            cs = sched.contiguous("cs", t0 * d, tr * d)
            y = sched.contiguous("y", (h * s_pad + t0) * d, tr * d)
            core.calls.append(sched.Call("", (sched.In((x,)), sched.In((cs,)), sched.Out((y,)))))
    return cores


def attention(launch: LaunchPlan, kv_heads: int, s: int, s_pad: int, kv_rows: int, kv_valid: int, position: int,
              causal: bool) -> list[sched.CoreProgram]:
    """Tensors: ``q`` and ``out`` [kv_heads * gq, s_pad, d] bf16; ``kv`` [kv_heads, kv_rows / tkv, 2, tkv, d]: the
    keys and values blocked by KV tile (block ``j`` of head ``h`` holds rows ``j * tkv ...`` of K, then of V:
    :class:`BlockedKvCache`). Query token ``i`` is at position ``position + i``; KV rows ``0 .. kv_valid - 1`` are
    valid. With a step header (attention over a cache), ``q`` is instead one record per (KV head, query tile),
    ``[kv_heads][s_pad / tq][record]``: the tile's queries [gq][tq][d], with ``step_rows`` (decode) the step's own
    keys then values [step_rows][d] (KV rows ``position ..``: an item visits the cache tiles of the ``position`` rows
    before the step, then those rows), with ``rope`` the position's rotary row [d], then the step header
    (:func:`~aielower.backends.aie.host_arrays.query_records`)."""
    p = launch.params
    d, gq, tq, tkv = p["d"], p["gq"], p["tq"], p["tkv"]
    header = STEP_HEADER if p.get("header") else 0
    rope = bool(p.get("rope"))
    step_rows = p.get("step_rows", 0)
    blocked = bool(p.get("mmul"))
    tiles = sched.Tiles()
    q_tiles = -(-s // tq)
    cores = sched.cores_of(launch)
    kv_stream = next(st for st in launch.streams if st.name == "kv")
    if kv_stream.to_cores == "broadcast":
        # The rows of a column share one KV stream, so they take consecutive query tiles of the same KV head:
        # a column item is (head, group of `rows` query tiles); row r takes tile `group * rows + r`.
        groups = -(-q_tiles // launch.rows)
        per_column = sched.blocks(kv_heads * groups, launch.columns)
        for core in cores:
            for item in per_column[core.column]:
                h, g = divmod(item, groups)
                qt = g * launch.rows + core.row
                if qt < q_tiles:
                    _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal,
                                    header, tiles, step_rows=step_rows, blocked=blocked)
    else:
        for core, items in zip(cores, sched.blocks(kv_heads * q_tiles, len(cores))):
            for item in items:
                h, qt = divmod(item, q_tiles)
                _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal, header,
                                tiles, step_rows, s, rope, blocked)
    return cores


def _attention_item(core, h, qt, gq, tq, tkv, d, s_pad, kv_rows, kv_valid, position, causal, header=0,
                    tiles=None, step_rows: int = 0, s: int = 0, rope: bool = False, blocked: bool = False) -> None:
    """Query tile ``qt`` of KV head ``h``: init, one step per KV tile it can see, store. ``tiles`` shares the KV
    tiles between items. With ``step_rows`` (the query record carries the step's keys and values), the cache tiles
    cover the ``position`` rows before the step and a ``step_new`` call visits the record's ``s`` rows at
    ``position``; with ``rope``, a ``rotate`` call first rotates the record's key and writes it to ``k_new``
    [kv_heads][d] (the record carries the rotary row before the header). With ``blocked`` (the mmul kernel), the
    tile's queries are one run of transposed blocks, ``q`` [kv_heads][s_pad / tq][gq * tq * d (+ header)]."""
    tiles = sched.Tiles() if tiles is None else tiles
    q_pos0 = position + qt * tq
    q_ap = AccessPattern((h * gq * s_pad + qt * tq) * d, (gq, tq, d), (s_pad * d, d, 1))
    cached_valid = position if step_rows else kv_valid  # valid rows of the cache tiles
    last = min(cached_valid, q_pos0 + tq) if causal else cached_valid  # cache rows any query of the tile can see
    if header or blocked:  # the tile's record: its queries (blocked, or then the step's keys and values, the rotary
        record = (gq * tq + 2 * step_rows) * d + (d if rope else 0) + header  # row, the step header)
        q = sched.In((sched.TileRef("q", AccessPattern((h * (s_pad // tq) + qt) * record, (record,), (1,))),))
    else:
        q = sched.In((sched.TileRef("q", q_ap),))
    acc = sched.Acc()
    calls = core.calls
    calls.append(sched.Call("init", (acc,)))
    if rope:
        k_new = sched.Out((sched.TileRef("k_new", AccessPattern(h * d, (d,), (1,))),))
        calls.append(sched.Call("rotate", (q, k_new)))
    base, size = h * kv_rows * 2 * d, 2 * tkv * d
    kv = tiles.reads("kv", base, size, -(-last // tkv))  # a 7B prompt bucket makes a million of these calls
    step = sched.Call
    calls.extend([step("step", (q, kv[j], acc, q_pos0, j * tkv, tkv)) for j in range(last // tkv)])
    if last % tkv:
        row = last // tkv * tkv
        calls.append(step("step", (q, kv[last // tkv], acc, q_pos0, row, min(tkv, cached_valid - row))))
    if step_rows:
        calls.append(sched.Call("step_new", (q, acc, q_pos0, position, min(step_rows, s))))
    calls.append(sched.Call("store", (acc, sched.Out((sched.TileRef("out", q_ap),)))))


# --------------------------------------------------------------------------- the family


def _mmul_fits(mmul: MMulShape, rows: int, d: int, tkv: int) -> bool:
    """Whether attention tiles of ``rows`` query rows, head dim ``d`` and ``tkv`` KV rows are whole blocks of the
    device's bf16 ``mmul`` (whose C rows the kernel handles 8 lanes at a time: npu2's 4x8x8, not npu1's 4x8x4)."""
    r, s, t = mmul.m, mmul.k, mmul.n
    return (rows % r == 0 and rows % t == 0 and d % s == 0 and d % t == 0 and tkv % r == 0 and tkv % s == 0
            and s % 8 == 0 and t % 8 == 0)


def _carries_step_rows(launch: LaunchPlan) -> bool:
    """Whether ``launch`` is attention whose query records carry the step's keys and values (:func:`_carries_step`)."""
    return launch.kernel == "attention" and launch.params.get("step_rows", 0) > 0


def _carries_step(cached: bool, kv_to_cores: str, bucket: int, tkv: int) -> bool:
    """Whether an attention launch's query tiles carry the step's keys and values, its KV stream then reading only
    the cache tiles of the rows before the step: over a cache, its rows reading the KV stream each on their own
    (split), a step of at most one KV tile of query rows. (A split design with a longer bucket reads the whole cache:
    none is planned today.)"""
    return cached and kv_to_cores == "split" and bucket <= tkv


# Decode attention reads the valid KV rows rounded up to blocks of this many rows (whole KV tiles; a block of one
# tile when the tile is longer): one runtime sequence per block count. At most KV_READ_BLOCK - 1 rows past the
# valid ones per KV head and layer (7B: up to 32 rows, 16 MB a token, 0.4 % of its DDR bytes).
KV_READ_BLOCK = 64


def kv_read_counts(tkv: int, tiles: int) -> tuple[int, ...]:
    """The cache tile counts of a decode design reading a cache of ``tiles`` tiles of ``tkv`` rows: 0, then
    multiples of :data:`KV_READ_BLOCK` rows of tiles, and all ``tiles``."""
    per_block = max(1, KV_READ_BLOCK // tkv)
    return tuple(sorted({0} | {min(tiles, n) for n in range(per_block, tiles + per_block, per_block)}))


class Attention(KernelFamily):
    name = "attention"
    kinds = ("attention",)
    kernel_defs = {"rope": ROPE_KERNEL, "attention": ATTENTION_KERNEL}

    def plan_key(self, op, buckets, linear_buckets):
        if not isinstance(op, fused.Attention):
            return None
        cache_len = op.k_cache.type.shape[2] if op.k_cache is not None else None
        args = (op.heads, op.kv_heads, op.head_dim, op.scale, op.causal, cache_len, buckets)
        return ("attention",) + args, (lambda label, device: plan_attention(label, *args, device))

    def configuration_key(self, launch: LaunchPlan, op_plan: OpPlan):
        """Rope launches of any bucket share a configuration when their cores take the same tiles (grid, head dim,
        rows per tile, buffers and streams): a member's body and runtime sequence carry its rows. The header comes
        first on the rows' stream, one copy per core. Prompt attention launches of any bucket likewise, when their KV
        tiles are broadcast to a column's cores (the header comes first on that stream); decode's have their own
        (one launch, and a runtime sequence per KV tile count)."""
        if launch.kernel == "rope":
            return ("rope", fifo_shape(launch), tuple(sorted(launch.params.items())))
        if launch.bucket == 1 or self.reads_valid_tiles(launch, op_plan) or not any(
                s.name == "kv" and s.to_cores == "broadcast" for s in launch.streams):
            return None  # decode: one launch, and a runtime sequence per KV tile count
        return ("attention", fifo_shape(launch), tuple(sorted(launch.params.items())))

    def joined(self, plan: OpPlan, offers: list, device: Device) -> OpPlan:
        """Decode attention (its one-token launch over the cache) as a member of the first decode GEMV
        configuration of ``offers`` it fits (:mod:`.gemv_attention`): a decode layer then runs on one
        configuration."""
        offers = [x for x in offers if x.format.get("kind") == "gemv"]
        decode = next((i for i, x in enumerate(plan.launches) if x.bucket == 1 and _carries_step_rows(x)), None)
        if decode is None or not offers:
            return plan
        for offer in offers:
            try:
                member = gemv_attention.plan_member(offer, plan.launches[decode], plan.shape, device)
            except Unplannable:
                continue
            return dataclasses.replace(plan, launches=plan.launches[:decode] + (member,) + plan.launches[decode + 1:])
        return plan

    def shared_spec(self, members: list[tuple[LaunchPlan, OpPlan]], device: Device) -> KernelSpec:
        launch = members[0][0]
        p = launch.params
        if launch.kernel == "rope":
            return rope_spec(p["d"], p["tr"], members=len(members))
        return attention_spec(p["d"], p["gq"], p["tq"], p["tkv"], p["scale"], p["causal"], arch_of(device),
                              bool(p.get("header", False)), mmul=device.mmul["bf16"] if p.get("mmul") else None,
                              members=len(members))

    def max_shared(self, launch: LaunchPlan) -> int:
        if launch.kernel == "rope":
            return rope_header_words(launch.params)
        return launch.params["tkv"] * launch.params["d"]  # one KV tile of words (_attention_header_words)

    def max_shared_buckets(self, launch: LaunchPlan) -> int | None:
        """Prompt attention: :data:`ATTENTION_SHARED_BUCKETS` buckets per configuration (the design holds every
        member's core bodies and sequences); rope: all."""
        return ATTENTION_SHARED_BUCKETS if launch.kernel == "attention" else None

    def kernel_spec(self, launch: LaunchPlan, device: Device) -> KernelSpec:
        p = launch.params
        if launch.kernel == "rope":
            return rope_spec(p["d"], p["tr"])
        return attention_spec(p["d"], p["gq"], p["tq"], p["tkv"], p["scale"], p["causal"], arch_of(device),
                              bool(p.get("header", False)), p.get("rope", 0), p.get("step_rows", 0),
                              device.mmul["bf16"] if p.get("mmul") else None)

    def schedule(self, launch: LaunchPlan, op_plan: OpPlan, kv_tiles: int | None = None):
        """Attention over a cache is scheduled for ``kv_tiles`` cache tiles (default: the whole cache): a design
        whose query records carry the step's rows (:meth:`reads_valid_tiles`) has its step at position ``P =
        kv_tiles * tkv`` after them (``L = P + bucket``); the others have the step's last query at the end of the
        tiles."""
        s, b, p = op_plan.shape, launch.bucket, launch.params
        cache = s.get("cache_len", 0)
        if launch.kernel == "rope":
            # q's heads, then k's. Rotated keys come out contiguous like the queries; the host copies them into the
            # KV cache (no transfer offset depends on the position).
            return rope(launch, s["heads"] + s["kv_heads"], roundup(b, p["tr"])), ()
        staged = self.reads_valid_tiles(launch, op_plan)
        if cache:
            tiles = cache // p["tkv"] if kv_tiles is None else kv_tiles
            kv_rows = cache
            if staged:  # the cache tiles hold the rows before the step; the step's rows come with the queries
                position = tiles * p["tkv"]
                kv_valid = position + b
            else:
                kv_valid = tiles * p["tkv"]
                position = kv_valid - b
        else:
            kv_rows, kv_valid, position = roundup(b, p["tkv"]), b, 0
        programs = attention(launch, s["kv_heads"], b, roundup(b, p["tq"]), kv_rows, kv_valid, position,
                             p["causal"])
        if p.get("header"):  # words 0, 1 from the query tiles' step header; word 2 the cache tiles sent (or unused)
            return programs, (position, kv_valid, tiles if staged else 0)
        return programs, (position, kv_valid)

    def design_shape(self, launch: LaunchPlan, op_plan: OpPlan) -> dict:
        """The rope launch rotates the step's rows whatever the cache: prompt and cached attention share its
        design (the cache length is left out)."""
        if launch.kernel == "rope":
            return {k: v for k, v in op_plan.shape.items() if k != "cache_len"}
        return op_plan.shape

    def reads_valid_tiles(self, launch: LaunchPlan, op_plan: OpPlan) -> bool:
        """Attention over a KV cache whose rows each read the KV stream on their own (split), for steps of at most
        one KV tile of query rows (decode): its design reads only the cache tiles of the rows before the step, with
        one runtime sequence per tile count (the cores loop over the count the sequence writes, run-time parameter
        word 2); the step's keys and values come in the query records (``step_rows``), and the host appends them
        to the cache after the launch. No transfer depends on the position. Broadcast KV (rows of a column share a
        stream and stop at different tiles) reads the whole cache, the step's rows written into it first."""
        return _carries_step_rows(launch)

    def kv_tile_counts(self, launch: LaunchPlan, tiles: int) -> tuple[int, ...]:
        """0 (the first step: no cache row before it), then multiples of :data:`KV_READ_BLOCK` rows of KV tiles (and
        all ``tiles``): a step reads the cache
        rows before it rounded up to that block (the kernel leaves a row with no valid KV row unchanged, so the rows
        past the valid ones change nothing), which halves the 7B's 128 sequences of 32-row tiles."""
        return kv_read_counts(launch.params["tkv"], tiles)

    def scheduled_kv_len(self, launch: LaunchPlan, op_plan: OpPlan) -> int:
        """The whole cache (:meth:`schedule`'s default); none for a rope launch."""
        return 0 if launch.kernel == "rope" else op_plan.shape.get("cache_len", 0)

    def calls_per_core(self, launch: LaunchPlan, shape: dict, kv_len: int = 0) -> dict[str, int]:
        p, b = launch.params, launch.bucket
        if launch.kernel == "rope":
            return {"": per_core((shape["heads"] + shape["kv_heads"]) * -(-b // p["tr"]), launch)}
        q_tiles = -(-b // p["tq"])
        items = per_core(shape["kv_heads"] * q_tiles, launch)
        per_item = {"params": items} if p.get("header") else {}  # the step header, read (and q rotated) per item
        if p.get("rope"):
            per_item["rotate"] = items
        if kv_len:  # over a cache: the valid KV tiles (the cache tiles before a decode step, whose own ``b`` rows
            if _carries_step_rows(launch):  # come with its queries; exact for decode)
                return {"init": items, "step": items * -(-(kv_len - b) // p["tkv"]), "step_new": items,
                        "store": items} | per_item
            steps = -(-kv_len // p["tkv"])
        else:  # prefill, causal: a query tile sees the KV tiles up to its diagonal (on average)
            steps = -(-sum(-(-((qt + 1) * p["tq"]) // p["tkv"]) for qt in range(q_tiles)) // q_tiles)
        return {"init": items, "step": items * steps, "store": items} | per_item

    def run(self, host, op, plan: OpPlan, operands: tuple):
        """Per batch row: rotate q and k (one rope launch), then one attention launch over the valid KV tiles.
        Over a cache (a :class:`BlockedKvCache` in DDR, or copies of the given arrays) the host writes the step's
        keys and values into the cache first, or, for a design whose query records carry them (decode,
        :meth:`reads_valid_tiles`), into the records, appending them to the cache after the launch: nothing the
        host writes between the rope and the attention launch depends on the position. A decode design with the
        rotary embedding fused (``rope`` in its parameters) has no rope launch: the host hands it q and the step's
        key unrotated, with the position's rotary row in every query record, and appends the rotated keys the
        design writes (``k_new``). Returns the output, and the caches when the op has them."""
        q, k, v, cos, sin, *cached_args = operands
        k_cache, v_cache, position = (cached_args + [None, None, None])[:3]
        b, heads, s, d = q.shape
        kv_heads, d_pad = plan.shape["kv_heads"], plan.shape["d_pad"]
        bucket = plan.bucket_for(s)
        if s > bucket:
            raise AielowerError(f"{s} query tokens exceed the largest planned attention bucket {bucket}")
        half = d // 2
        cos2, sin2 = np.asarray(cos).reshape(s, d), np.asarray(sin).reshape(s, d)
        if not (np.array_equal(cos2[:, :half], cos2[:, half:]) and np.array_equal(sin2[:, :half], sin2[:, half:])):
            raise CompileError(f"{op.name}: the rotary tables are not in rotate-half form (cos/sin halves differ)")
        cs = to_bf16(np.concatenate([cos2[:, :half], sin2[:, :half]], axis=1))
        attn = host.launch_of(plan, bucket, "attention")
        if gemv_attention.is_attention(attn):  # decode attention on the GEMV configuration
            return self._run_joined(host, op, plan, attn, operands, cs)
        fused = bool(attn.params.get("rope"))
        rope_qk = None if fused else host.launch_of(plan, bucket, "rope")
        tq, tkv = attn.params["tq"], attn.params["tkv"]
        mmul = host.device.mmul["bf16"] if attn.params.get("mmul") else None
        staged = self.reads_valid_tiles(attn, plan)
        cached = k_cache is not None
        resident = isinstance(k_cache, BlockedKvCache)
        if resident and v_cache is not k_cache:
            raise AielowerError(f"{op.name}: a blocked KV cache holds keys and values together; pass the same "
                                "BlockedKvCache as the key and the value cache")
        pos = int(np.asarray(position).reshape(-1)[0]) if cached else 0
        cache_len = (k_cache.rows if resident else k_cache.shape[2]) if cached else 0
        if pos < 0:
            raise AielowerError(f"{op.name}: position {pos} is negative")
        if cached and pos + s > cache_len:
            raise AielowerError(f"positions {pos}..{pos + s - 1} do not fit the KV cache of {cache_len}")
        out = np.empty((b, heads, s, d), np.float32)
        new_k = np.array(k_cache, copy=True) if cached and not resident else None
        new_v = np.array(v_cache, copy=True) if cached and not resident else None
        bucket_pad = roundup(bucket, tq)
        for bi in range(b):
            if fused:  # the design rotates q and the step's key
                q_rot, k_rot = to_bf16(q[bi]), to_bf16(k[bi])
            else:
                rotated = self._rope(host, plan, rope_qk, np.concatenate([to_bf16(q[bi]), to_bf16(k[bi])]), cs,
                                     bucket)
                q_rot, k_rot = rotated[:heads], rotated[heads:]
            keys, values = k_rot[:, :s], to_bf16(v[bi])
            layout = dict(kv_heads=kv_heads, d_pad=d_pad, tkv=tkv)
            if resident:
                if not staged:  # the step's rotated keys and values into the DDR cache at the step's position
                    k_cache.write(bi, pos, keys, values, **layout)
                kv = k_cache.resident(bi, **layout)
            elif cached:
                if not fused:  # else the rotated keys come out of the launch
                    new_k[bi][:, pos : pos + s] = from_bf16(keys)
                new_v[bi][:, pos : pos + s] = from_bf16(values)
                kv = kv_blocks(to_bf16(new_k[bi]), to_bf16(new_v[bi]), kv_heads, cache_len, d_pad, tkv)
            else:
                kv_rows = roundup(bucket, tkv)
                kv = kv_blocks(k_rot[:, :kv_rows], to_bf16(v[bi]), kv_heads, kv_rows, d_pad, tkv)
            queries = pad3(q_rot[:, :s], heads, bucket_pad, d_pad)
            blocks = (mmul.k, mmul.n) if mmul is not None else None  # q^T in the mmul's B blocks
            if blocks is not None and not attn.params.get("header"):
                queries = mmul_query_tiles(queries.reshape(heads, bucket_pad, d_pad), kv_heads, tq, *blocks)
            if attn.params.get("header"):  # each query tile's record carries the step's position and KV length
                step_rows = attn.params.get("step_rows", 0)  # and, decode, the step's keys and values
                step_kv = tuple(pad3(a, kv_heads, step_rows, d_pad).reshape(kv_heads, step_rows, d_pad)
                                for a in (keys, values)) if step_rows else None
                queries = query_records(queries.reshape(heads, bucket_pad, d_pad), kv_heads, tq,
                                        step_header(pos, pos + s), pad2(cs, 1, d_pad)[0] if fused else None, step_kv,
                                        blocks)
            tensors = {"q": queries, "kv": kv, "out": np.zeros(heads * bucket_pad * d_pad, np.uint16)}
            if fused:
                tensors["k_new"] = np.zeros(kv_heads * d_pad, np.uint16)
            # the sequence reading the cache rows before the step (staged), or the design's only one
            host.submit(plan, attn, tensors, pos if staged else None)
            if fused:  # the step's keys as the design rotated them
                keys = tensors["k_new"].reshape(kv_heads, 1, d_pad)[:, :, :d]
                if not resident:
                    new_k[bi][:, pos : pos + s] = from_bf16(keys)
            if resident and staged:
                k_cache.write(bi, pos, keys, values, **layout)
            out[bi] = from_bf16(tensors["out"].reshape(heads, bucket_pad, d_pad)[:, :s, :d])
        if resident:
            return out, k_cache, v_cache
        return (out, new_k, new_v) if cached else out

    @staticmethod
    def _run_joined(host, op, plan: OpPlan, attn: LaunchPlan, operands: tuple, cs: np.ndarray):
        """A decode step on the GEMV configuration (:mod:`.gemv_attention`): per batch row, the query records
        (queries, the step's key and value unrotated, the position's rotary row, the step header) and the cache row
        (the sequence reading the cache rows before the step); the step's rotated key and its value appended to the
        cache after the launch."""
        q, k, v, _, _, k_cache, v_cache, position = operands
        b, heads, s, d = q.shape
        shape = plan.shape
        gemv_attention.require_matches(attn, shape)
        kv_heads, d_pad = shape["kv_heads"], shape["d_pad"]
        tkv = attn.params["attn_tkv"]
        resident = isinstance(k_cache, BlockedKvCache)
        if resident and v_cache is not k_cache:
            raise AielowerError(f"{op.name}: a blocked KV cache holds keys and values together; pass the same "
                                "BlockedKvCache as the key and the value cache")
        pos = int(np.asarray(position).reshape(-1)[0])
        cache_len = k_cache.rows if resident else k_cache.shape[2]
        if pos < 0:
            raise AielowerError(f"{op.name}: position {pos} is negative")
        if pos + s > cache_len:
            raise AielowerError(f"positions {pos}..{pos + s - 1} do not fit the KV cache of {cache_len}")
        if s != 1:
            raise AielowerError(f"{op.name}: decode attention on the GEMV configuration runs one token, not {s}")
        tail = gemv_attention.kv_tail_bytes(attn)
        layout = dict(kv_heads=kv_heads, d_pad=d_pad, tkv=tkv)
        out = np.empty((b, heads, s, d), np.float32)
        new_k = None if resident else np.array(k_cache, copy=True)
        new_v = None if resident else np.array(v_cache, copy=True)
        rotary = pad2(cs, 1, d_pad)[0]  # the rotary embedding is fused (gemv_attention.require_matches)
        for bi in range(b):
            keys, values = to_bf16(k[bi]), to_bf16(v[bi])
            step_kv = tuple(pad3(a, kv_heads, 1, d_pad).reshape(kv_heads, 1, d_pad) for a in (keys, values))
            queries = pad3(to_bf16(q[bi]), heads, 1, d_pad).reshape(heads, 1, d_pad)
            records = query_records(queries, kv_heads, 1, step_header(pos, pos + 1), rotary, step_kv)
            if resident:
                kv = k_cache.resident(bi, **layout)
            else:  # copies of the given arrays: a new DDR tensor every launch
                blocks = kv_blocks(to_bf16(new_k[bi]), to_bf16(new_v[bi]), kv_heads, cache_len, d_pad, tkv)
                kv = Resident(f"kv/{op.name}/{bi}", np.concatenate([blocks, np.zeros(-(-tail // 2), np.uint16)]),
                              None)
            tensors = gemv_attention.tensors(attn, shape, records, kv)
            host.submit(plan, attn, tensors, pos)
            result, rotated = gemv_attention.results(attn, shape, tensors["y"])
            keys = rotated.reshape(kv_heads, 1, d_pad)[:, :, :d]  # as the design rotated them
            if resident:
                k_cache.write(bi, pos, keys, values, **layout)
            else:
                new_k[bi][:, pos : pos + 1] = from_bf16(keys)
                new_v[bi][:, pos : pos + 1] = from_bf16(values)
            out[bi] = from_bf16(result.reshape(heads, 1, d_pad)[:, :s, :d])
        if resident:
            return out, k_cache, v_cache
        return out, new_k, new_v

    @staticmethod
    def _rope(host, plan: OpPlan, launch: LaunchPlan, x_bits: np.ndarray, cs: np.ndarray,
              bucket: int) -> np.ndarray:
        """Rotate ``x_bits`` [heads, s, d] (padded to the bucket) into a new [heads, bucket_pad, d] array."""
        heads, s, d = x_bits.shape
        s_pad = roundup(bucket, launch.params["tr"])
        tensors = {"x": pad3(x_bits, heads, s_pad, d), "cs": pad2(cs, s_pad, d).reshape(-1),
                   "y": np.zeros(heads * s_pad * d, np.uint16)}
        host.submit(plan, launch, tensors)
        return tensors["y"].reshape(heads, s_pad, d)


__all__ = ["ATTENTION_KERNEL", "Attention", "KV_READ_BLOCK", "ROPE_KERNEL", "attention", "attention_spec",
           "plan_attention", "rope", "rope_spec"]
