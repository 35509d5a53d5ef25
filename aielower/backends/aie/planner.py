"""Tiling plans for the ops the NPU runs: one function per op kind, each searching tile sizes and core grids in
order of preference and keeping the first candidate whose every launch holds the device's budgets.

Shapes: ``M`` is the number of activation rows (batch x tokens), padded to a bucket (1 for a decode step,
128 ... 2048 for prompts); linears are ``N x K`` 4-bit weights in groups of ``G`` along ``K``.

Data movement (per column; see :mod:`aielower.backends.aie.budget` for the channel count):

- linear, decode (GEMV, M = 1): the ``N`` output rows are split over all cores in blocks of ``tn``; every core
  streams its weight tiles (``tn x tk``, pre-tiled in DDR in the order the DMA reads them: a column's tiles for all
  its rows interleaved, so one contiguous read per column that the memory tile splits) and the activation vector,
  broadcast to the column from the memory tile. Every weight byte crosses DDR once per token.
- linear, prefill (GEMM): columns split ``N`` (same weight tiles as the GEMV, taken in the blob's order so that a
  column's weights stay one regular read), core rows split ``M`` into ``tm``-row tiles dealt round-robin (a memory-tile
  element holds ``rows x tm`` consecutive rows: one box per DMA step); the memory tile broadcasts each weight tile to
  the column's rows and splits the activation tiles, which the DMA reshapes into the mmul-blocked layout.
- norms, silu_mul, rope: rows (or column blocks) are split over cores; the norm weight is broadcast once.
- attention: work items are (KV head, query tile); K and V tiles stream in a joined tile. When a column's rows work
  on the same KV head (prefill: they take different query tiles) the KV stream is broadcast; otherwise (decode) each
  row has its own, which the memory tile's six output channels allow for at most two rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.budget import violations
from aielower.backends.aie.device import Device
from aielower.backends.aie.kernels import STEP_HEADER
from aielower.backends.aie.plan import AccessPattern, Buffer, LaunchPlan, OpPlan, Stream
from aielower.backends.aie.weights import linear_tile_bytes
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


def _checked(launch: LaunchPlan, device: Device) -> LaunchPlan:
    """``launch`` if it holds every budget and its kernel accepts its constants (docs/aie-kernels.md). The core
    stack the kernel needs (``KernelSpec.stack_bytes``; designs set ``stack_size`` to it) and the kernel's static
    arrays (``KernelSpec.static_bytes``) are L1 buffers of the launch like any other."""
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


# --------------------------------------------------------------------------- linear


def plan_linear(label: str, n: int, k: int, group: int, bias: bool, buckets: tuple[int, ...], device: Device) -> OpPlan:
    mmul = device.mmul["bf16"]
    tks = [t for t in (1024, 512, 256, 128, 64, 32, 16) if t % group == 0 and t % mmul.k == 0 and t >= group]
    if not tks and group % VECTOR == 0:
        tks = [group]
    tns = [t for t in (64, 32, 16) if t % mmul.n == 0]

    def waste(tn: int, tk: int) -> float:
        columns, rows = core_grid(-(-n // tn), device)
        return roundup(n, columns * rows * tn) * roundup(k, tk) / (n * k) - 1

    # Of the weight tilings whose launches all fit: least padding (to 0.1 %), then least DDR traffic over the
    # buckets, then the biggest tiles (fewest DMA transfers and kernel calls).
    candidates = sorted(((tn, tk) for tn in tns for tk in tks), key=lambda c: (round(waste(*c), 3), -c[0] * c[1], -c[1]))

    def build(candidate) -> OpPlan:
        tn, tk = candidate
        nt_total = -(-n // tn)
        columns, rows = core_grid(nt_total, device)
        n_pad, k_pad = roundup(n, columns * rows * tn), roundup(k, tk)
        tile = linear_tile_bytes(tn, tk, group, bias)
        blob = (n_pad // tn) * (k_pad // tk) * tile
        # w_columns x w_rows: the GEMV grid, whose DMA order the weight blob is stored in (weights.tile_positions)
        shape = dict(n=n, k=k, group=group, bias=bias, n_pad=n_pad, k_pad=k_pad, tn=tn, tk=tk, tile_bytes=tile,
                     weight_bytes=blob, w_columns=columns, w_rows=rows)
        launches = []
        for m in buckets:
            if m == 1:
                launches.append(_checked(_gemv(shape, columns, rows), device))
            else:
                launches.append(_gemm_fitting(shape, m, columns, device))
        return OpPlan("linear", device.name, shape, tuple(launches))

    plans = []
    for candidate in candidates:
        try:
            plans.append(build(candidate))
        except Unplannable:
            continue
    if plans:
        return min(plans, key=lambda p: (round(waste(p.shape["tn"], p.shape["tk"]), 3),
                                         sum(x.ddr_read for x in p.launches), -p.shape["tn"] * p.shape["tk"]))
    return first_fitting(label, device, candidates, build)


# At most this many output tiles per GEMV work item: the core keeps one accumulator per tile and unrolls one step
# call per accumulator in its K loop, so the activation tile streams once per item while core code stays small.
GEMV_ACCUMULATORS = 16


def gemv_items(tiles_per_core: int) -> tuple[int, int]:
    """(work items, accumulators per item) of a core with ``tiles_per_core`` output tiles: as few items as
    :data:`GEMV_ACCUMULATORS` allows, of equal size but the last."""
    items = max(1, -(-tiles_per_core // GEMV_ACCUMULATORS))
    return items, -(-tiles_per_core // items) if tiles_per_core else 1


def _gemv(s: dict, columns: int, rows: int) -> LaunchPlan:
    tn, tk, tile = s["tn"], s["tk"], s["tile_bytes"]
    tiles_per_core = s["n_pad"] // tn // (columns * rows)
    items, nb = gemv_items(tiles_per_core)
    buffers = (
        Buffer("x", "L1", tk * BF16, 2),
        Buffer("w", "L1", tile, 2),
        Buffer("acc", "L1", nb * tn * F32),
        Buffer("y", "L1", tn * BF16, 2),
        Buffer("x", "L2", s["k_pad"] * BF16),
        Buffer("w", "L2", tile * rows, 2),
        Buffer("y", "L2", tn * BF16 * rows, 2),
    )
    streams = (
        Stream("x", "in", ("x",), "broadcast", tk * BF16, 2, (AccessPattern(0, (tk,), (1,)),)),
        Stream("w", "in", ("w",), "split", tile, 2, (AccessPattern(0, (tile,), (1,)),)),
        Stream("y", "out", ("y",), "split", tn * BF16, 2, (AccessPattern(0, (tn,), (1,)),)),
    )
    return LaunchPlan(
        bucket=1, kernel="linear_w4_gemv", role="gemv",
        params=dict(tn=tn, tk=tk, group=s["group"], bias=s["bias"], nb=nb),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=s["n"] * s["k"], padded_macs=s["n_pad"] * s["k_pad"],
        ddr_read=s["weight_bytes"] + items * columns * s["k_pad"] * BF16, ddr_write=s["n_pad"] * BF16,
    )


def _gemm_fitting(s: dict, m: int, columns: int, device: Device) -> LaunchPlan:
    """The GEMM tiling with the least DDR traffic that fits: ``tm`` rows per core tile and ``nb`` weight tiles per
    core block (the activation tile is reused for ``nb`` weight tiles; the accumulators hold ``tm x nb*tn``)."""
    rows = device.core_rows
    mmul = device.mmul["bf16"]
    n_tiles_per_column = s["n_pad"] // s["tn"] // columns
    fitting, last = [], None
    for tm in (64, 32, 16, 8, 4):
        if tm % mmul.m or (m // rows) % tm or tm > m // rows:
            continue
        for nb in (16, 8, 4, 2, 1):
            if nb > n_tiles_per_column:
                continue
            try:
                fitting.append(_checked(_gemm(s, m, tm, nb, columns, rows, mmul), device))
            except Unplannable as e:
                last = e
    if not fitting:
        raise last or Unplannable(f"gemm at bucket {m}: no row tile divides {m // rows} rows per core row")
    return min(fitting, key=lambda launch: (launch.ddr_read, -launch.params["tm"]))


def _gemm(s: dict, m: int, tm: int, nb: int, columns: int, rows: int, mmul) -> LaunchPlan:
    tn, tk, tile, k_pad, n_pad = s["tn"], s["tk"], s["tile_bytes"], s["k_pad"], s["n_pad"]
    r, k_blk, t = mmul.m, mmul.k, mmul.n
    buffers = (
        Buffer("a", "L1", tm * tk * BF16, 2),
        Buffer("w", "L1", tile, 2),
        Buffer("acc", "L1", nb * tm * tn * F32),
        Buffer("c", "L1", tm * tn * BF16, 2),
        Buffer("a", "L2", rows * tm * tk * BF16, 2),
        Buffer("w", "L2", tile, 2),
        Buffer("c", "L2", rows * tm * tn * BF16, 2),
    )
    streams = (
        Stream("a", "in", ("a",), "split", tm * tk * BF16, 2,
               (AccessPattern(0, (tm // r, tk // k_blk, r, k_blk), (r * k_pad, k_blk, k_pad, 1)),)),
        Stream("w", "in", ("w",), "broadcast", tile, 2, (AccessPattern(0, (tile,), (1,)),)),
        Stream("c", "out", ("c",), "split", tm * tn * BF16, 2,
               (AccessPattern(0, (tm // r, tn // t, r, t), (r * n_pad, t, n_pad, 1)),)),
    )
    n_blocks_per_column = -(-(n_pad // tn // columns) // nb)  # the last block may be partial
    m_tiles = m // (rows * tm)  # per core
    a_bytes = m * k_pad * BF16 * n_blocks_per_column * columns  # each column reads A once per block of nb N tiles
    w_bytes = s["weight_bytes"] * m_tiles  # each M tile pass reads the weights once (broadcast to the rows)
    return LaunchPlan(
        bucket=m, kernel="linear_w4_gemm", role="gemm",
        params=dict(tm=tm, tn=tn, tk=tk, group=s["group"], bias=s["bias"], r=r, s=k_blk, t=t, nb=nb),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=m * s["n"] * s["k"], padded_macs=m * n_pad * k_pad,
        ddr_read=a_bytes + w_bytes, ddr_write=m * n_pad * BF16,
    )


# --------------------------------------------------------------------------- norms, silu_mul


def plan_norm(label: str, d: int, eps: float, add: bool, buckets: tuple[int, ...], device: Device) -> OpPlan:
    d_pad = roundup(d, VECTOR)
    parts = 2 if add else 1

    def build(candidate) -> OpPlan:
        tr_max, depth_in, depth_out = candidate
        launches = []
        for m in buckets:
            columns, rows = core_grid(m, device)
            tr = min(tr_max, max(1, m // (columns * rows)))
            tile = tr * d_pad * BF16
            names_in = ("a", "b") if add else ("x",)
            names_out = ("sum", "y") if add else ("y",)
            buffers = (
                Buffer("x", "L1", parts * tile, depth_in), Buffer("w", "L1", d_pad * BF16),
                Buffer("y", "L1", parts * tile, depth_out),
                Buffer("x", "L2", rows * parts * tile, 2), Buffer("w", "L2", d_pad * BF16),
                Buffer("y", "L2", rows * parts * tile, 2),
            )
            ap = AccessPattern(0, (tr * d_pad,), (1,))
            streams = (
                Stream("x", "in", names_in, "split", parts * tile, depth_in, (ap,) * parts),
                Stream("w", "in", ("w",), "broadcast", d_pad * BF16, 1, (AccessPattern(0, (d_pad,), (1,)),)),
                Stream("y", "out", names_out, "split", parts * tile, depth_out, (ap,) * parts),
            )
            launches.append(_checked(LaunchPlan(
                bucket=m, kernel="rms_norm", role="add_rms_norm" if add else "rms_norm",
                params=dict(d=d_pad, d_real=d, tr=tr, eps=eps, add=add),
                columns=columns, rows=rows, buffers=buffers, streams=streams,
                macs=m * d * parts, padded_macs=roundup(m, tr) * d_pad * parts,
                ddr_read=m * d_pad * BF16 * parts + columns * d_pad * BF16, ddr_write=m * d_pad * BF16 * parts,
            ), device))
        return OpPlan("add_rms_norm" if add else "rms_norm", device.name, dict(d=d, d_pad=d_pad, eps=eps),
                      tuple(launches))

    # double-buffer both streams if the rows fit, else the input only, else neither (a wide add_rms_norm row)
    candidates = [(tr, i, o) for tr in (16, 8, 4, 2, 1) for i, o in ((2, 2), (2, 1), (1, 1))]
    return first_fitting(label, device, candidates, build)


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
            launches.append(_checked(LaunchPlan(
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


# --------------------------------------------------------------------------- attention


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
            launches.append(_fewest_rows_dropped(lambda rows: _rope(s, heads, head_dim, tr, "rope_q", rows, device), device))
            launches.append(_fewest_rows_dropped(lambda rows: _rope(s, kv_heads, head_dim, tr, "rope_k", rows, device),
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
            return _checked(make(max_rows), device)
        except Unplannable as e:
            last = e
    raise last


def _rope(s: int, heads: int, d: int, tr: int, role: str, max_rows: int, device: Device) -> LaunchPlan:
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
        bucket=s, kernel="rope", role=role, params=dict(d=d, tr=tr),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=rows_total * d * 2, padded_macs=rows_total * d * 2,
        ddr_read=2 * rows_total * d * BF16, ddr_write=rows_total * d * BF16,
    )


def _attention_fitting(s, kv_len, heads, kv_heads, gq, d_pad, d_real, tq, tkv, scale, causal, device,
                       cached: bool = False) -> LaunchPlan:
    q_tiles = s // tq
    last = None
    # broadcast KV when a column's rows can share a KV head (several query tiles), else split over <= 2 rows
    modes = (["broadcast"] if q_tiles >= 2 else []) + ["split"]
    for mode in modes:
        for max_rows in range(device.core_rows, 0, -1):
            try:
                return _checked(_attention(s, kv_len, heads, kv_heads, gq, d_pad, d_real, tq, tkv, scale, causal,
                                           mode, max_rows, device, cached), device)
            except Unplannable as e:
                last = e
    raise last


def _attention(s, kv_len, heads, kv_heads, gq, d_pad, d_real, tq, tkv, scale, causal, mode, max_rows, device,
               cached=False):
    """Over a KV cache (``cached``) the step's position and valid length vary per step: every query tile carries
    them in a header of :data:`STEP_HEADER` slots from the host's ``step`` buffer (no patched instructions)."""
    q_tiles = s // tq
    items = kv_heads * q_tiles
    if mode == "broadcast":
        rows = min(max_rows, q_tiles)
        columns = min(device.columns, kv_heads * -(-q_tiles // rows))
    else:
        columns, rows = core_grid(items, device, max_rows=max_rows)
    r = gq * tq
    header = STEP_HEADER if cached else 0
    q_tile = r * d_pad * BF16
    q_in = q_tile + header * BF16
    kv_tile = 2 * tkv * d_pad * BF16
    state = (r * d_pad + 2 * r) * F32
    buffers = (
        Buffer("q", "L1", q_in, 2), Buffer("kv", "L1", kv_tile, 2), Buffer("state", "L1", state),
        Buffer("scores", "L1", r * tkv * F32), Buffer("out", "L1", q_tile, 2),
        Buffer("q", "L2", rows * q_in, 2), Buffer("kv", "L2", (1 if mode == "broadcast" else rows) * kv_tile, 2),
        Buffer("out", "L2", rows * q_tile, 2),
    )
    streams = (
        Stream("q", "in", ("q", "step") if header else ("q",), "split", q_in, 2,
               (AccessPattern(0, (gq, tq, d_pad), (s * d_pad, d_pad, 1)),)
               + ((AccessPattern(0, (header,), (1,)),) if header else ())),
        # K and V live in one DDR tensor blocked by KV tile, [kv_heads][blocks][K|V][tkv][d]: a tile is one run
        # and consecutive tiles of a head are contiguous, so a head's KV sweep is one transfer.
        Stream("kv", "in", ("kv",), mode, kv_tile, 2, (AccessPattern(0, (2 * tkv * d_pad,), (1,)),)),
        Stream("out", "out", ("out",), "split", q_tile, 2,
               (AccessPattern(0, (gq, tq, d_pad), (s * d_pad, d_pad, 1)),)),
    )
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
    return LaunchPlan(
        bucket=s, kernel="attention", role="attention",
        params=dict(d=d_pad, gq=gq, tq=tq, tkv=tkv, scale=scale, causal=causal, header=bool(header)),
        columns=columns, rows=rows, buffers=buffers, streams=streams,
        macs=0 if decode else useful, padded_macs=0 if decode else kv_heads * pairs * per_pair,
        ddr_read=heads * s * d_pad * BF16 + kv_heads * q_tiles * header * BF16
        + (0 if decode else kv_row * kv_len * kv_reads),
        ddr_write=heads * s * d_pad * BF16,
        ddr_read_per_kv=kv_row * kv_reads if decode else 0,
        macs_per_kv=heads * s * d_pad * 2 if decode else 0,
    )


# --------------------------------------------------------------------------- bookkeeping


def padding_waste(plans: Iterable[OpPlan], bucket: int) -> float:
    """Executed MACs over useful MACs, minus one, over the launches at ``bucket`` (those that count MACs)."""
    useful = padded = 0
    for plan in plans:
        for launch in plan.launches_for(bucket):
            useful += launch.macs
            padded += launch.padded_macs
    return padded / useful - 1 if useful else 0.0


__all__ = [
    "core_grid",
    "padding_waste",
    "plan_attention",
    "plan_linear",
    "plan_norm",
    "plan_silu_mul",
    "roundup",
]
