"""Generated AIE kernels, compiled with g++ against the host AIE API, against NumPy references of the contract.

Tolerance. The references are exact (float64 from the same bf16 inputs and fp32 constants) and the kernels round
their fp32 results to bf16 once. A kernel's fp32 value differs from the exact one by its fp32 rounding error (sums
taken in another order than NumPy's, exp to ~1e-7 relative): at most ``REL * mag`` where ``mag`` is the sum of the
magnitudes of the terms that make up the value. Two values that close round to bf16 values at most one bf16 ulp
apart (when the exact value sits near a rounding midpoint), so a result passes when
``|got - exact| <= 1 ulp_bf16(exact) + REL * mag``. ``mag`` rather than ``|exact|`` keeps cancellation honest
(rope, dot products near 0). Values that the contract makes exact (the bf16 sum of add_rms_norm, fully masked rows)
are compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from aielower.backends.aie import kernels as K
from aielower.backends.aie.device import NPU1, NPU2
from aielower.backends.aie.weights import pretile_linear
from aielower.errors import CompileError
from aielower.quant.bf16 import bf16_bits, from_bf16_bits, round_to_bf16
from aielower.quant.groupwise import quantize_rtn

REL = 2e-5

GEMV_CASES = [
    # n, k, tn, tk, group, bias: padded rows, several kt, TN not a multiple of 16, padded group of columns
    (40, 256, 16, 128, 32, True),
    (20, 96, 12, 96, 32, False),
    (33, 160, 16, 64, 32, True),
    (24, 512, 8, 256, 128, False),
    (9, 96, 16, 96, 16, True),  # groups of 16: two groups per 32-code vector
    (16, 96, 16, 32, 32, False),  # TK = 32: one vector per row
]
GEMM_CASES = [
    # m, n, k, tm, tn, tk, group, bias, mmul
    (10, 20, 160, 8, 16, 64, 32, True, NPU1.mmul["bf16"]),
    (16, 24, 128, 16, 8, 128, 64, False, NPU1.mmul["bf16"]),
    (12, 40, 96, 4, 16, 32, 32, True, NPU2.mmul["bf16"]),
    (8, 16, 96, 8, 16, 96, 16, True, NPU2.mmul["bf16"]),
]
RMS_CASES = [(64, 64, 3, 1e-6, False), (48, 40, 2, 1e-5, False), (64, 60, 3, 1e-6, True), (256, 256, 1, 1e-6, True)]
SILU_CASES = [(32, 3), (48, 1)]
ROPE_CASES = [(38, 3), (64, 2), (8, 1), (2, 2)]
ATTN_CASES = [
    # d, gq, tq, tkv, causal
    (24, 1, 4, 20, True),
    (64, 2, 3, 16, False),
    (16, 7, 2, 12, True),
    (32, 2, 5, 16, True),
]


def _gemv(case):
    n, k, tn, tk, group, bias = case
    return K.gemv_spec(tn, tk, group, bias)


def _gemm(case):
    m, n, k, tm, tn, tk, group, bias, mmul = case
    return K.gemm_spec(tm, tn, tk, group, bias, mmul)


def _attn(case):
    d, gq, tq, tkv, causal = case
    return K.attention_spec(d, gq, tq, tkv, 1.0 / np.sqrt(d - 3), causal)


def _all_specs():
    return ([_gemv(c) for c in GEMV_CASES] + [_gemm(c) for c in GEMM_CASES]
            + [K.rms_norm_spec(*c) for c in RMS_CASES] + [K.silu_mul_spec(*c) for c in SILU_CASES]
            + [K.rope_spec(*c) for c in ROPE_CASES] + [_attn(c) for c in ATTN_CASES])


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """Every kernel of this module in one library, built once."""
    return K.KernelLibrary.build(_all_specs(), tmp_path_factory.mktemp("kernels"))


# ------------------------------------------------------------------------------------------------ helpers


def rand_bf16(rng, shape, scale=1.0):
    """Random bf16 values: (bit patterns uint16, the same values as float64)."""
    bits = bf16_bits(rng.standard_normal(shape).astype(np.float32) * np.float32(scale))
    return bits, from_bf16_bits(bits).astype(np.float64)


def bf16_ulp(x):
    """Spacing of bf16 numbers at |x| (8 significant bits); the smallest normal spacing at 0."""
    x = np.maximum(np.abs(x), np.finfo(np.float32).tiny)
    return np.exp2(np.floor(np.log2(x)) - 7)


def assert_bf16_close(got_bits, exact, mag):
    got = from_bf16_bits(np.asarray(got_bits, np.uint16)).astype(np.float64)
    exact = np.broadcast_to(exact, got.shape)
    err = np.abs(got - exact)
    tol = bf16_ulp(exact) + REL * np.broadcast_to(mag, got.shape)
    bad = err > tol
    worst = int(np.argmax(err - tol))
    assert not bad.any(), (f"{bad.sum()} of {bad.size} values off; worst at {np.unravel_index(worst, got.shape)}: "
                           f"got {got.flat[worst]}, exact {exact.flat[worst]}")


# ------------------------------------------------------------------------------------------------- linear


def _quantized_linear(rng, n, k, group, bias):
    w = quantize_rtn(rng.standard_normal((n, k)).astype(np.float32) * np.float32(0.1), bits=4, group=group)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    deq = round_to_bf16(w.dequantize()).astype(np.float64)
    b64 = round_to_bf16(b).astype(np.float64) if bias else np.zeros(n)
    return w, b, deq, b64


def _pad(n, t):
    return -(-n // t) * t


@pytest.mark.parametrize("case", GEMV_CASES, ids=lambda c: "n{}_k{}_tn{}_tk{}_g{}_{}".format(*c))
def test_gemv_matches_the_dequantized_matmul(lib, case):
    n, k, tn, tk, group, bias = case
    spec = _gemv(case)
    rng = np.random.default_rng(n + k)
    w, b, deq, b64 = _quantized_linear(rng, n, k, group, bias)
    n_pad, k_pad = _pad(n, tn), _pad(k, tk)
    tiles = pretile_linear(w, b, n_pad, k_pad, tn, tk).reshape(n_pad // tn, k_pad // tk, -1)
    x_bits, x = rand_bf16(rng, k)
    x_pad = np.zeros(k_pad, np.uint16)
    x_pad[:k] = x_bits
    init, step, store = (lib.function(f) for f in spec.functions)
    y = np.zeros(n_pad, np.uint16)
    for nt in range(n_pad // tn):
        acc = np.full(tn, np.nan, np.float32)
        init(acc)
        for kt in range(k_pad // tk):
            step(x_pad[kt * tk:(kt + 1) * tk], np.ascontiguousarray(tiles[nt, kt]), acc)
        store(acc, y[nt * tn:(nt + 1) * tn])
    assert_bf16_close(y[:n], deq @ x + b64, np.abs(deq) @ np.abs(x) + np.abs(b64))
    assert not y[n:].any(), "padded rows compute 0"


def _blocked(a, r, s):
    """Row-major [rows, cols] -> the mmul-blocked layout [rows/r][cols/s][r][s], flattened."""
    rows, cols = a.shape
    return np.ascontiguousarray(a.reshape(rows // r, r, cols // s, s).transpose(0, 2, 1, 3)).reshape(-1)


def _unblocked(c, rows, cols, r, t):
    return c.reshape(rows // r, cols // t, r, t).transpose(0, 2, 1, 3).reshape(rows, cols)


@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: "m{}_n{}_k{}_tm{}_tn{}_tk{}_g{}_{}_{}".format(*c))
def test_gemm_matches_the_dequantized_matmul_through_blocked_layouts(lib, case):
    m, n, k, tm, tn, tk, group, bias, mmul = case
    spec = _gemm(case)
    rng = np.random.default_rng(m + n + k)
    w, b, deq, b64 = _quantized_linear(rng, n, k, group, bias)
    m_pad, n_pad, k_pad = _pad(m, tm), _pad(n, tn), _pad(k, tk)
    tiles = pretile_linear(w, b, n_pad, k_pad, tn, tk).reshape(n_pad // tn, k_pad // tk, -1)
    a_bits, a = rand_bf16(rng, (m, k))
    a_pad = np.zeros((m_pad, k_pad), np.uint16)
    a_pad[:m, :k] = a_bits
    init, step, store = (lib.function(f) for f in spec.functions)
    c = np.zeros((m_pad, n_pad), np.uint16)
    for mt in range(m_pad // tm):
        for nt in range(n_pad // tn):
            acc = np.full(tm * tn, np.nan, np.float32)
            init(acc)
            for kt in range(k_pad // tk):
                a_tile = _blocked(a_pad[mt * tm:(mt + 1) * tm, kt * tk:(kt + 1) * tk], mmul.m, mmul.k)
                step(a_tile, np.ascontiguousarray(tiles[nt, kt]), acc)
            out = np.zeros(tm * tn, np.uint16)
            store(acc, out)
            c[mt * tm:(mt + 1) * tm, nt * tn:(nt + 1) * tn] = _unblocked(out, tm, tn, mmul.m, mmul.n)
    assert_bf16_close(c[:m, :n], a @ deq.T + b64, np.abs(a) @ np.abs(deq).T + np.abs(b64))
    assert not c[:m, n:].any(), "padded columns compute 0"


# -------------------------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("case", RMS_CASES, ids=lambda c: "d{}_dr{}_tr{}_eps{}_add{}".format(*c))
def test_rms_norm(lib, case):
    d, d_real, tr, eps, add = case
    spec = K.rms_norm_spec(*case)
    rng = np.random.default_rng(d + tr)
    eps32 = spec.p["eps"]

    def padded(shape, scale=1.0):
        bits, vals = rand_bf16(rng, shape, scale)
        bits[..., d_real:] = 0
        return bits, from_bf16_bits(bits).astype(np.float64)

    w_bits, w = padded(d)
    fn = lib.function(spec.symbol)
    if not add:
        x_bits, x = padded((tr, d), 3.0)
        y = np.zeros((tr, d), np.uint16)
        fn(x_bits, w_bits, y)
        scale = 1.0 / np.sqrt((x * x).sum(-1, keepdims=True) / d_real + eps32)
        assert_bf16_close(y, x * scale * w, np.abs(x * scale * w))
        return
    ab_bits, ab = padded((2, tr, d), 3.0)
    out = np.zeros((2, tr, d), np.uint16)
    fn(ab_bits, w_bits, out)
    s = (ab[0].astype(np.float32) + ab[1].astype(np.float32)).astype(np.float64)  # the kernel's fp32 sum
    np.testing.assert_array_equal(out[0], bf16_bits(s))
    scale = 1.0 / np.sqrt((s * s).sum(-1, keepdims=True) / d_real + eps32)
    assert_bf16_close(out[1], s * scale * w, np.abs(s * scale * w))
    in_place = ab_bits.copy()
    fn(in_place, w_bits, in_place)
    np.testing.assert_array_equal(in_place, out, "add_rms_norm may write over its input")


@pytest.mark.parametrize("case", SILU_CASES, ids=lambda c: "t{}_tr{}".format(*c))
def test_silu_mul(lib, case):
    t, tr = case
    spec = K.silu_mul_spec(t, tr)
    rng = np.random.default_rng(t * tr)
    gu_bits, gu = rand_bf16(rng, (2, tr, t), 4.0)
    gu_bits[0, 0, :4] = bf16_bits([-100.0, 100.0, 0.0, -20.0])  # saturating exp, and 0
    gu = from_bf16_bits(gu_bits).astype(np.float64)
    y = np.zeros((tr, t), np.uint16)
    lib.function(spec.symbol)(gu_bits, y)
    g, u = gu
    exact = g / (1.0 + np.exp(-g)) * u
    # exp(100) is beyond fp32 in the exact formula but not in the kernel's saturated exp; both give ~0 * u.
    assert_bf16_close(y, exact, np.abs(exact) + 1e-30)


@pytest.mark.parametrize("case", ROPE_CASES, ids=lambda c: "d{}_tr{}".format(*c))
def test_rope(lib, case):
    d, tr = case
    h = d // 2
    spec = K.rope_spec(d, tr)
    rng = np.random.default_rng(d * 7 + tr)
    x_bits, x = rand_bf16(rng, (tr, d))
    angles = rng.uniform(-np.pi, np.pi, (tr, h))
    cs_bits = bf16_bits(np.concatenate([np.cos(angles), np.sin(angles)], -1))
    cs = from_bf16_bits(cs_bits).astype(np.float64)
    y = np.zeros((tr, d), np.uint16)
    lib.function(spec.symbol)(x_bits, cs_bits, y)
    c, s, x1, x2 = cs[:, :h], cs[:, h:], x[:, :h], x[:, h:]
    exact = np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], -1)
    mag = np.concatenate([np.abs(x1 * c) + np.abs(x2 * s)] * 2, -1)
    assert_bf16_close(y, exact, mag)


# ---------------------------------------------------------------------------------------------- attention


def _attention_reference(q, k, v, scale, q_pos0, causal):
    """Exact softmax(scale q k^T) v over all KV rows a query may see; rows that see none are 0. q [GQ, TQ, D]."""
    gq, tq, d = q.shape
    pos = q_pos0 + np.arange(tq)
    scores = scale * np.einsum("gtd,jd->gtj", q, k)
    visible = np.ones((tq, len(k)), bool) if not causal else np.arange(len(k))[None, :] <= pos[:, None]
    scores = np.where(visible[None], scores, -np.inf)
    m = scores.max(-1, keepdims=True)
    p = np.where(visible[None], np.exp(scores - np.where(np.isfinite(m), m, 0)), 0.0)
    l = p.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(l > 0, p @ v / np.where(l > 0, l, 1), 0.0)
        mag = np.where(l > 0, p @ np.abs(v) / np.where(l > 0, l, 1), 0.0)
    return out, mag


def _run_attention(lib, spec, q_bits, k_bits, v_bits, q_pos0, kv_tiles):
    """Run init, one step per ``(kv_pos0, kv_valid)`` tile of K/V rows, store; unused tile rows hold NaN."""
    p = spec.p
    d, tkv = p["d"], p["tkv"]
    init, step, store = (lib.function(f) for f in spec.functions)
    rows = p["gq"] * p["tq"]
    state = np.full(rows * d + 2 * rows, np.nan, np.float32)
    init(state)
    for kv_pos0, kv_valid in kv_tiles:
        kv = np.full((2, tkv, d), 0x7FC0, np.uint16)  # NaN: rows past kv_valid must not be read
        kv[0, :kv_valid] = k_bits[kv_pos0:kv_pos0 + kv_valid]
        kv[1, :kv_valid] = v_bits[kv_pos0:kv_pos0 + kv_valid]
        step(q_bits, kv, state, q_pos0, kv_pos0, kv_valid)
    out = np.zeros((p["gq"], p["tq"], d), np.uint16)
    store(state, out)
    return out


@pytest.mark.parametrize("case", ATTN_CASES, ids=lambda c: "d{}_gq{}_tq{}_tkv{}_causal{}".format(*c))
@pytest.mark.parametrize("kv_len, q_at_end", [(50, True), (37, False)])
def test_attention_over_several_kv_tiles(lib, case, kv_len, q_at_end):
    """Several KV tiles, the last one partial (kv_valid < TKV); causal tiles past the queries are fully masked."""
    d, gq, tq, tkv, causal = case
    spec = _attn(case)
    rng = np.random.default_rng(d + gq + tkv + kv_len)
    q_bits, q = rand_bf16(rng, (gq, tq, d), 2.0)
    k_bits, k = rand_bf16(rng, (kv_len, d), 2.0)
    v_bits, v = rand_bf16(rng, (kv_len, d))
    q_pos0 = kv_len - tq if q_at_end else 3  # decode/prefill-tail positions, or early queries
    tiles = [(p0, min(tkv, kv_len - p0)) for p0 in range(0, kv_len, tkv)]
    assert tiles[-1][1] < tkv, "the test must cover a partial tile"
    out = _run_attention(lib, spec, q_bits, k_bits, v_bits, q_pos0, tiles)
    exact, mag = _attention_reference(q, k, v, spec.p["scale"], q_pos0, causal)
    assert_bf16_close(out, exact, mag)


@pytest.mark.parametrize("case", [c for c in ATTN_CASES if c[4]], ids=lambda c: "d{}_gq{}_tq{}_tkv{}".format(*c))
def test_attention_rows_that_see_no_kv_row_are_zero(lib, case):
    """Causal queries at positions 0.. against KV tiles that all start later: every row is masked, l == 0."""
    d, gq, tq, tkv, causal = case
    spec = _attn(case)
    rng = np.random.default_rng(5)
    q_bits, _ = rand_bf16(rng, (gq, tq, d))
    k_bits, _ = rand_bf16(rng, (3 * tkv, d))
    v_bits, _ = rand_bf16(rng, (3 * tkv, d))
    out = _run_attention(lib, spec, q_bits, k_bits, v_bits, 0, [(tkv + tq, tkv), (2 * tkv + tq, tkv - tq)])
    assert not out.any()


def test_attention_tile_masked_for_some_rows_only_leaves_them_unchanged(lib):
    """A tile visible to the last query token only: the other rows keep the state of the earlier tiles."""
    case = ATTN_CASES[0]
    d, gq, tq, tkv, causal = case
    spec = _attn(case)
    rng = np.random.default_rng(11)
    kv_len = tkv + 1
    q_bits, q = rand_bf16(rng, (gq, tq, d))
    k_bits, k = rand_bf16(rng, (kv_len, d))
    v_bits, v = rand_bf16(rng, (kv_len, d))
    q_pos0 = kv_len - tq
    out = _run_attention(lib, spec, q_bits, k_bits, v_bits, q_pos0, [(0, tkv), (tkv, 1)])
    exact, mag = _attention_reference(q, k, v, spec.p["scale"], q_pos0, causal)
    assert_bf16_close(out, exact, mag)


# -------------------------------------------------------------------------------------- specs and errors


def test_symbols_are_readable_unique_and_valid_identifiers():
    specs = _all_specs() + [K.rms_norm_spec(64, 64, 3, 1e-5, False), K.attention_spec(24, 1, 4, 20, 0.125, False)]
    symbols = [s.symbol for s in specs]
    assert len(set(symbols)) == len(set(specs))
    assert all(s.isidentifier() for s in symbols)
    assert K.gemv_spec(16, 128, 32, True).symbol == "linear_w4_gemv_tn16_tk128_g32_bias"
    assert K.rms_norm_spec(4096, 4096, 4, 1e-6, True).symbol == "add_rms_norm_d4096_dr4096_tr4_eps1em06"
    assert K.attention_spec(128, 1, 16, 64, 0.125, True).symbol == "attention_d128_gq1_tq16_tkv64_s0p125_causal"
    assert K.gemm_spec(32, 64, 128, 32, False, NPU2.mmul["bf16"]).filename == (
        "linear_w4_gemm_tm32_tn64_tk128_g32_r4s8t8.cc")


def test_rendered_sources_name_their_kernel_and_define_its_functions():
    for spec in _all_specs():
        text = spec.render()
        assert text == spec.render()
        assert text.startswith(f"// {spec.symbol}:")
        assert "#include <aie_api/aie.hpp>" in text
        for fn in spec.functions:
            assert f" {fn}(" in text
    assert "aie::mmul<R, S, T, bfloat16, bfloat16>" in _gemm(GEMM_CASES[0]).render()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: K.gemv_spec(16, 96, 64, True),
         "linear_w4_gemv kernel: TK=96 is not a multiple of the group size G=64"),
        (lambda: K.gemv_spec(16, 64, 8, True), "group size G=8 is not a multiple of 16"),
        (lambda: K.gemv_spec(16, 48, 16, True), "TK=48 is not a multiple of 32"),
        (lambda: K.gemm_spec(6, 16, 64, 32, False, NPU1.mmul["bf16"]),
         "linear_w4_gemm kernel: TM=6 is not a multiple of the mmul's R=4"),
        (lambda: K.gemm_spec(8, 12, 64, 32, False, NPU2.mmul["bf16"]), "TN=12 is not a multiple of the mmul's T=8"),
        (lambda: K.rms_norm_spec(40, 40, 2, 1e-6, False), "rms_norm kernel: D=40 is not a multiple of 16"),
        (lambda: K.rms_norm_spec(48, 64, 2, 1e-6, False), "D_REAL=64 exceeds the padded width D=48"),
        (lambda: K.silu_mul_spec(24, 2), "silu_mul kernel: T=24 is not a multiple of 16"),
        (lambda: K.rope_spec(7, 2), "rope kernel: D=7 is odd"),
        (lambda: K.attention_spec(12, 1, 4, 16, 0.3, True), "attention kernel: D=12 is not a multiple of 8"),
        (lambda: K.attention_spec(16, 0, 4, 16, 0.3, True), "GQ must be a positive integer"),
        (lambda: K.KernelSpec("conv2d", ()), "unknown AIE kernel family 'conv2d'"),
    ],
)
def test_bad_specs_are_compile_errors_naming_kernel_and_rule(make, message):
    with pytest.raises(CompileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_a_gxx_error_names_the_file_and_shows_the_diagnostic(tmp_path):
    with pytest.raises(CompileError) as err:
        source = '#include <aie_api/aie.hpp>\nextern "C" void f() { aie::nonsense(); }\n'
        K.build_library([("broken_kernel.cc", source)], tmp_path)
    text = str(err.value)
    assert "broken_kernel.cc" in text and "nonsense" in text and "error" in text


def test_a_missing_compiler_says_the_emulator_needs_gxx(tmp_path):
    with pytest.raises(CompileError, match="host emulator needs g\\+\\+"):
        K.build_library([K.rope_spec(8, 1)], tmp_path, cxx="no-such-g++-compiler")


def test_libraries_are_cached_by_content(tmp_path):
    src = ("ok.cc", 'extern "C" int answer() { return 42; }\n')
    first = K.build_library([src], tmp_path)
    mtime = first.stat().st_mtime_ns
    assert K.build_library([src], tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert K.build_library([("ok.cc", src[1] + "// changed\n")], tmp_path) != first


def test_function_arguments_are_checked_before_calling_c(lib):
    spec = K.rope_spec(8, 1)
    fn = lib.function(spec.symbol)
    good = np.zeros(8, np.uint16)
    with pytest.raises(ValueError, match="argument x: dtype float32 \\(expected uint16"):
        fn(np.zeros(8, np.float32), good, good.copy())
    with pytest.raises(ValueError, match="argument cs: 4 elements \\(expected 8\\)"):
        fn(good, np.zeros(4, np.uint16), good.copy())
    with pytest.raises(ValueError, match="not C-contiguous"):
        fn(good, np.zeros(16, np.uint16)[::2], good.copy())
    with pytest.raises(TypeError, match="takes 3 arguments"):
        fn(good, good)
    with pytest.raises(CompileError, match="no kernel function 'nope'"):
        lib.function("nope")
