"""Generated AIE kernels, compiled with g++ against the host AIE API, against NumPy references of the contract.

Every kernel that depends on the device is built for both: the linear kernels for npu1's 4x8x4 and npu2's 4x8x8
bf16 mmul (their weight tiles differ), silu_mul and attention for AIE-ML and AIE2P (their exp2 differs).

Tolerance. The references are exact (float64 from the same bf16 inputs and fp32 constants). A kernel that rounds its
fp32 result to bf16 once differs from the exact value by its fp32 rounding error (sums taken in another order than
NumPy's): at most ``REL * mag`` where ``mag`` is the sum of the magnitudes of the terms that make up the value. Two
values that close round to bf16 values at most one bf16 ulp apart, so such a result passes when
``|got - exact| <= 1 ulp_bf16(exact) + REL * mag``; a kernel that rounds ``k`` times on the way (docs/aie-kernels.md,
Numerics) gets ``k`` ulps. ``mag`` rather than ``|exact|`` keeps cancellation honest (rope, dot products near 0).
Values that the contract makes exact (the bf16 sum of add_rms_norm, fully masked rows, one-hot products of the
dequantized weights) are compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from aielower.backends.aie import kernels as K
from aielower.backends.aie.device import NPU1, NPU2, MMulShape
from aielower.backends.aie.families.attention import attention_spec, rope_spec
from aielower.backends.aie.families.linear_w4 import gemm_spec, gemv_spec
from aielower.backends.aie.families.rms_norm import rms_norm_spec
from aielower.backends.aie.families.silu_mul import silu_mul_spec
from aielower.backends.aie.weights import interleave_gate_up, pretile_linear, untile_linear
from aielower.errors import CompileError
from aielower.quant.bf16 import bf16_bits, from_bf16_bits, round_to_bf16
from aielower.quant.groupwise import quantize_rtn

REL = 2e-5

MMULS = {"npu1": NPU1.mmul["bf16"], "npu2": NPU2.mmul["bf16"]}
ARCHS = ("aie2", "aie2p")
GEMV_CASES = [
    # n, k, tn, tk, group, bias, device: padded rows, several kt, padded group of columns, both tile layouts
    (40, 256, 16, 128, 32, True, "npu1"),
    (40, 256, 16, 128, 32, True, "npu2"),
    (20, 96, 32, 96, 32, False, "npu2"),
    (33, 160, 16, 64, 32, True, "npu1"),
    (24, 512, 16, 256, 128, False, "npu2"),
    (9, 96, 16, 96, 16, True, "npu1"),  # groups of 16: two units per group
    (70, 96, 64, 32, 16, True, "npu2"),  # TK = 32: two groups per tile, 8 unit columns
]
GEMM_CASES = [
    # m, n, k, tm, tn, tk, group, bias, device
    (10, 20, 160, 8, 16, 64, 32, True, "npu1"),
    (16, 24, 128, 16, 32, 128, 64, False, "npu1"),
    (12, 40, 96, 4, 16, 32, 32, True, "npu2"),
    (8, 16, 96, 8, 16, 96, 16, True, "npu2"),
    (8, 48, 64, 8, 32, 64, 16, True, "npu1"),
]
RMS_CASES = [(64, 64, 3, 1e-6, False), (48, 40, 2, 1e-5, False), (64, 60, 3, 1e-6, True), (256, 256, 1, 1e-6, True),
             (64, 64, 3, 1e-6, True)]
SILU_CASES = [(32, 3, a) for a in ARCHS] + [(48, 1, a) for a in ARCHS]
ARCH_OF = {"npu1": "aie2", "npu2": "aie2p"}
# The silu_mul epilogue of the linear kernels. GEMV: i (gate rows = up rows), k, tn, tk, group, bias, device; TN = 16
# stores 8 outputs at a time (in both halves of 16 lanes), 32 and 64 whole 16-lane vectors. GEMM: m first, and tm.
EPILOGUE_GEMV_CASES = [(20, 96, 16, 32, 16, False, "npu2"), (40, 128, 32, 64, 32, True, "npu1"),
                       (24, 64, 64, 64, 16, False, "npu2")]
EPILOGUE_GEMM_CASES = [(8, 20, 96, 8, 16, 32, 16, False, "npu2"), (12, 24, 64, 4, 32, 64, 32, True, "npu1")]
ROPE_CASES = [(38, 3), (64, 2), (8, 1), (2, 2)]
ATTN_CASES = [
    # d, gq, tq, tkv, causal, arch
    (24, 1, 4, 20, True, "aie2"),
    (24, 1, 4, 20, True, "aie2p"),
    (64, 2, 3, 16, False, "aie2p"),
    (16, 7, 2, 12, True, "aie2"),
    (32, 2, 5, 16, True, "aie2p"),
]


def _gemv(case):
    n, k, tn, tk, group, bias, device = case
    return gemv_spec(tn, tk, group, bias, MMULS[device])


def _gemm(case):
    m, n, k, tm, tn, tk, group, bias, device = case
    return gemm_spec(tm, tn, tk, group, bias, MMULS[device])


def _attn(case):
    d, gq, tq, tkv, causal, arch = case
    return attention_spec(d, gq, tq, tkv, 1.0 / np.sqrt(d - 3), causal, arch)


# Prompt attention on npu2's bf16 aie::mmul (4x8x8): R = GQ * TQ rows and D multiples of 8, TKV of 4 and 8.
MMUL_ATTN_CASES = [
    # d, gq, tq, tkv, causal
    (16, 1, 8, 8, True),
    (32, 2, 8, 16, True),
    (24, 1, 8, 16, False),
    (64, 4, 4, 32, True),
    (16, 3, 8, 8, True),  # R = 24: the softmax takes 8 queries a vector
]


def _mmul_attn(case, mmul=True, header=False):
    d, gq, tq, tkv, causal = case
    return attention_spec(d, gq, tq, tkv, 1.0 / np.sqrt(d - 3), causal, "aie2p", header=header,
                          mmul=MMULS["npu2"] if mmul else None)


def _layout_specs():
    """The one-hot and bias tests' kernels: a 32 x 64 tile, groups of 16, on both devices."""
    return [make(bias, MMULS[device]) for device in sorted(MMULS) for bias in (False, True)
            for make in (lambda b, m: gemv_spec(32, 64, 16, b, m), lambda b, m: gemm_spec(8, 32, 64, 16, b, m))]


def _epilogue_specs():
    """Per epilogue case: the plain kernel, the one with the silu_mul epilogue, and silu_mul on 16 columns."""
    out = []
    for i, k, tn, tk, group, bias, device in EPILOGUE_GEMV_CASES:
        out += [gemv_spec(tn, tk, group, bias, MMULS[device]),
                gemv_spec(tn, tk, group, bias, MMULS[device], "silu_mul", ARCH_OF[device])]
    for m, i, k, tm, tn, tk, group, bias, device in EPILOGUE_GEMM_CASES:
        out += [gemm_spec(tm, tn, tk, group, bias, MMULS[device]),
                gemm_spec(tm, tn, tk, group, bias, MMULS[device], "silu_mul", ARCH_OF[device])]
    return out + [silu_mul_spec(16, 1, arch) for arch in ARCHS] + _slot_specs()


# Kernels with several accumulator slots (one buffer, the call's slot picks one): GEMV and GEMM, both devices.
SLOT_CASES = [("npu1", 3), ("npu2", 4)]


def _slot_specs():
    return [spec for device, nb in SLOT_CASES
            for spec in (gemv_spec(32, 64, 16, True, MMULS[device], nb=nb),
                         gemm_spec(8, 32, 64, 16, True, MMULS[device], nb=nb))]


# Kernels that store half a tile per call (YS = TN / 2), and the mixed kernels of a shared configuration (both
# stores, a header of 3 words): (tn, tk, group, bias, device).
HALF_STORE_CASES = [(16, 32, 16, False, "npu2"), (32, 64, 32, True, "npu1")]


def _half_store_specs():
    out = []
    for tn, tk, group, bias, device in HALF_STORE_CASES:
        m = MMULS[device]
        out += [gemv_spec(tn, tk, group, bias, m, nb=2, ys=tn // 2),
                gemv_spec(tn, tk, group, bias, m, "silu_mul", ARCH_OF[device], nb=2, ys=tn // 2, members=3,
                          mixed=True)]
    return out


def _all_specs():
    return (_half_store_specs() + [_gemv(c) for c in GEMV_CASES] + [_gemm(c) for c in GEMM_CASES] + _layout_specs()
            + _epilogue_specs()
            + [rms_norm_spec(*c) for c in RMS_CASES] + [silu_mul_spec(*c) for c in SILU_CASES]
            + [rope_spec(*c) for c in ROPE_CASES] + [_attn(c) for c in ATTN_CASES] + [HEADER_SPEC, PLAIN_SPEC]
            + [ROPE_SPEC, STEP_SPEC, STEP_PLAIN_SPEC, rope_spec(14, 1)]
            + [_mmul_attn(c, mmul) for c in MMUL_ATTN_CASES for mmul in (True, False)]
            + [_mmul_attn(MMUL_ATTN_CASES[1], header=True)])


# An attention kernel whose query tiles carry the step header (attention over a KV cache), and its plain twin.
HEADER_SPEC = attention_spec(16, 2, 1, 16, 0.25, True, "aie2p", header=True)
PLAIN_SPEC = attention_spec(16, 2, 1, 16, 0.25, True, "aie2p")
# Decode attention with the rotary embedding fused: a real head dim of 14, padded to 16; the step's key and value
# in the query record.
ROPE_SPEC = attention_spec(16, 2, 1, 16, 0.25, True, "aie2p", header=True, rope=14, step_rows=1)
# A step of two query tokens whose two KV rows come in the query record (causal among themselves).
STEP_SPEC = attention_spec(16, 2, 2, 16, 0.25, True, "aie2p", header=True, step_rows=2)
STEP_PLAIN_SPEC = attention_spec(16, 2, 2, 16, 0.25, True, "aie2p")


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


def assert_bf16_close(got_bits, exact, mag, ulps=1.0, rel=REL):
    """Within ``ulps`` bf16 steps of the exact value plus ``rel`` of the magnitude of its terms."""
    got = from_bf16_bits(np.asarray(got_bits, np.uint16)).astype(np.float64)
    exact = np.broadcast_to(exact, got.shape)
    err = np.abs(got - exact)
    tol = ulps * bf16_ulp(exact) + rel * np.broadcast_to(mag, got.shape)
    bad = ~(err <= tol)  # a NaN is off too
    worst = int(np.argmax(np.where(np.isnan(err), np.inf, err - tol)))
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


def _run_gemv(lib, spec, tiles, x_pad, store="_store"):
    """As a design runs it: the N tiles in groups of NB, one accumulator slot each: init every slot, then per K
    tile one step per slot, then store every slot (in TN / YS calls of YS outputs, the slot counting them, when the
    kernel stores parts of a tile). Returns y bf16 bits [n_pad] (with an epilogue that stores half the tile:
    [n_pad / 2]). ``store``: the store function (a mixed kernel's ``_store_silu_mul``)."""
    tn, tk, nb = spec.p["tn"], spec.p["tk"], spec.p["nb"]
    silu = store != "_store" or ("epilogue" in spec.p and not spec.p.get("mixed"))
    out = tn // 2 if silu else tn
    ys = out if silu else spec.p.get("ys", tn)
    parts = out // ys
    init, step, store = (lib.function(spec.symbol + f) for f in ("_init", "_step", store))
    y = np.zeros(tiles.shape[0] * out, np.uint16)
    for first in range(0, tiles.shape[0], nb):
        group = range(first, min(first + nb, tiles.shape[0]))
        accs = np.full(nb * tn, np.nan, np.float32)
        for slot in range(len(group)):
            init(accs, slot)
        for kt in range(tiles.shape[1]):
            for slot, nt in enumerate(group):
                step(x_pad[kt * tk:(kt + 1) * tk], np.ascontiguousarray(tiles[nt, kt]), accs, slot)
        for slot, nt in enumerate(group):
            for part in range(parts):
                start = nt * out + part * ys
                store(accs, slot * parts + part, y[start:start + ys])
    return y


@pytest.mark.parametrize("case", GEMV_CASES, ids=lambda c: "n{}_k{}_tn{}_tk{}_g{}_{}_{}".format(*c))
def test_gemv_matches_the_dequantized_matmul(lib, case):
    n, k, tn, tk, group, bias, device = case
    spec = _gemv(case)
    rng = np.random.default_rng(n + k)
    w, b, deq, b64 = _quantized_linear(rng, n, k, group, bias)
    n_pad, k_pad = _pad(n, tn), _pad(k, tk)
    tiles = pretile_linear(w, b, n_pad, k_pad, tn, tk, mmul=MMULS[device]).reshape(n_pad // tn, k_pad // tk, -1)
    x_bits, x = rand_bf16(rng, k)
    x_pad = np.zeros(k_pad, np.uint16)
    x_pad[:k] = x_bits
    y = _run_gemv(lib, spec, tiles, x_pad)
    assert_bf16_close(y[:n], deq @ x + b64, np.abs(deq) @ np.abs(x) + np.abs(b64))
    assert not y[n:].any(), "padded rows compute 0"


def _one_hot_tiles(device, tn=32, tk=64, group=16, bias=True, seed=4):
    """A [tn, 2 tk] weight (and bias) in 1 x 2 tiles, with its NumPy dequantization and bias (float64)."""
    rng = np.random.default_rng(seed)
    w, b, deq, b64 = _quantized_linear(rng, tn, 2 * tk, group, bias)
    tiles = pretile_linear(w, b, tn, 2 * tk, tn, tk, mmul=MMULS[device]).reshape(1, 2, -1)
    return tiles, deq, b64


@pytest.mark.parametrize("device", sorted(MMULS))
def test_gemv_reads_every_weight_of_the_tile_layout_where_numpy_has_it(lib, device):
    """x = e_k (a one-hot row) makes y = bf16(W[:, k]) exactly (no bias): each of the 128 inputs, every row."""
    tiles, deq, _ = _one_hot_tiles(device, bias=False)
    spec = gemv_spec(32, 64, 16, False, MMULS[device])
    one = bf16_bits(np.float32(1.0))
    for k in range(128):
        x = np.zeros(128, np.uint16)
        x[k] = one
        y = _run_gemv(lib, spec, tiles, x)
        np.testing.assert_array_equal(from_bf16_bits(y), deq[:, k].astype(np.float32), f"input {k}")


@pytest.mark.parametrize("device", sorted(MMULS))
def test_gemv_and_gemm_add_the_bias_once(lib, device):
    """x = 0: y is the bias, exactly, after two K tiles (the kt == 0 tile holds it, the other one zeros)."""
    tiles, _, b64 = _one_hot_tiles(device)
    y = _run_gemv(lib, gemv_spec(32, 64, 16, True, MMULS[device]), tiles, np.zeros(128, np.uint16))
    np.testing.assert_array_equal(from_bf16_bits(y), b64.astype(np.float32))
    mmul = MMULS[device]
    spec = gemm_spec(8, 32, 64, 16, True, mmul)
    init, step, store = (lib.function(f) for f in spec.functions)
    acc = np.full(8 * 32, np.nan, np.float32)
    init(acc, 0)
    for kt in range(2):
        step(np.zeros(8 * 64, np.uint16), np.ascontiguousarray(tiles[0, kt]), acc, 0)
    out = np.zeros(8 * 32, np.uint16)
    store(acc, 0, out)
    c = _unblocked(out, 8, 32, mmul.m, mmul.n)
    np.testing.assert_array_equal(from_bf16_bits(c), np.broadcast_to(b64.astype(np.float32), (8, 32)))


def _blocked(a, r, s):
    """Row-major [rows, cols] -> the mmul-blocked layout [rows/r][cols/s][r][s], flattened."""
    rows, cols = a.shape
    return np.ascontiguousarray(a.reshape(rows // r, r, cols // s, s).transpose(0, 2, 1, 3)).reshape(-1)


def _unblocked(c, rows, cols, r, t):
    return c.reshape(rows // r, cols // t, r, t).transpose(0, 2, 1, 3).reshape(rows, cols)


def _run_gemm(lib, spec, tiles, a_pad):
    """Every M tile against the N tiles in groups of NB, one accumulator slot each (init, the K steps, store), as a
    design runs it; returns C bf16 bits [m_pad, n_pad] (with an epilogue that stores half the tile:
    [m_pad, n_pad / 2])."""
    p = spec.p
    tm, tn, tk, r, s, t, nb = p["tm"], p["tn"], p["tk"], p["r"], p["s"], p["t"], p["nb"]
    out = tn // 2 if "epilogue" in p else tn
    init, step, store = (lib.function(f) for f in spec.functions)
    c = np.zeros((a_pad.shape[0], tiles.shape[0] * out), np.uint16)
    for mt in range(a_pad.shape[0] // tm):
        for first in range(0, tiles.shape[0], nb):
            group = range(first, min(first + nb, tiles.shape[0]))
            accs = np.full(nb * tm * tn, np.nan, np.float32)
            for slot in range(len(group)):
                init(accs, slot)
            for kt in range(tiles.shape[1]):
                a = _blocked(a_pad[mt * tm:(mt + 1) * tm, kt * tk:(kt + 1) * tk], r, s)
                for slot, nt in enumerate(group):
                    step(a, np.ascontiguousarray(tiles[nt, kt]), accs, slot)
            for slot, nt in enumerate(group):
                tile = np.zeros(tm * out, np.uint16)
                store(accs, slot, tile)
                c[mt * tm:(mt + 1) * tm, nt * out:(nt + 1) * out] = _unblocked(tile, tm, out, r, t)
    return c


@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: "m{}_n{}_k{}_tm{}_tn{}_tk{}_g{}_{}_{}".format(*c))
def test_gemm_matches_the_dequantized_matmul_through_blocked_layouts(lib, case):
    m, n, k, tm, tn, tk, group, bias, device = case
    spec = _gemm(case)
    rng = np.random.default_rng(m + n + k)
    w, b, deq, b64 = _quantized_linear(rng, n, k, group, bias)
    m_pad, n_pad, k_pad = _pad(m, tm), _pad(n, tn), _pad(k, tk)
    tiles = pretile_linear(w, b, n_pad, k_pad, tn, tk, mmul=MMULS[device]).reshape(n_pad // tn, k_pad // tk, -1)
    a_bits, a = rand_bf16(rng, (m, k))
    a_pad = np.zeros((m_pad, k_pad), np.uint16)
    a_pad[:m, :k] = a_bits
    c = _run_gemm(lib, spec, tiles, a_pad)
    assert_bf16_close(c[:m, :n], a @ deq.T + b64, np.abs(a) @ np.abs(deq).T + np.abs(b64))
    assert not c[:m, n:].any(), "padded columns compute 0"


@pytest.mark.parametrize("device", sorted(MMULS))
def test_gemm_reads_every_weight_of_the_tile_layout_where_numpy_has_it(lib, device):
    """A = identity rows (row i = e_{k0 + i}): C's rows are bf16(W[:, k0 + i]) exactly, for all 128 inputs."""
    tiles, deq, _ = _one_hot_tiles(device, bias=False)
    spec = gemm_spec(8, 32, 64, 16, False, MMULS[device])
    one = bf16_bits(np.float32(1.0))
    for k0 in range(0, 128, 8):
        a = np.zeros((8, 128), np.uint16)
        a[np.arange(8), k0 + np.arange(8)] = one
        c = _run_gemm(lib, spec, tiles, a)
        np.testing.assert_array_equal(from_bf16_bits(c), deq[:, k0:k0 + 8].T.astype(np.float32), f"inputs {k0}+")


@pytest.mark.parametrize("device", sorted(MMULS))
def test_kernels_and_untile_agree_on_the_layout(lib, device):
    """The GEMV's one-hot columns equal untile_linear's reading of the same blob (the test helper is no oracle of
    its own: this ties it to the kernels)."""
    tiles, deq, b64 = _one_hot_tiles(device)
    full, b = untile_linear(tiles.reshape(-1), 32, 128, 32, 128, 32, 64, 16, True, mmul=MMULS[device])
    np.testing.assert_array_equal(full, deq.astype(np.float32))
    np.testing.assert_array_equal(b, b64.astype(np.float32))


# -------------------------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("case", RMS_CASES, ids=lambda c: "d{}_dr{}_tr{}_eps{}_add{}".format(*c))
def test_rms_norm(lib, case):
    d, d_real, tr, eps, add = case
    spec = rms_norm_spec(*case)
    rng = np.random.default_rng(d + tr)
    eps32 = spec.p["eps"]

    def padded(shape, scale=1.0):
        bits, vals = rand_bf16(rng, shape, scale)
        bits[..., d_real:] = 0
        return bits, from_bf16_bits(bits).astype(np.float64)

    w_bits, w = padded(d)
    fn = lib.function(spec.symbol)
    # y = bf16(x r w): one rounding of a value good to ~2^-16 (REL covers it).
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


def test_the_add_kernel_with_a_zero_residual_is_the_plain_norm_bit_for_bit(lib):
    """A plain norm runs on the add_rms_norm kernel with b = -0 (so both norms share one configuration,
    rms_norm.plan_norm's zero_residual): a + (-0) is a exactly, its tail s_lo is 0, so every term the add kernel
    adds to the plain one's is a zero; the norm out equals the plain kernel's (a zero may change sign), and the sum
    out is x bit for bit."""
    rng = np.random.default_rng(17)
    x_bits, _ = rand_bf16(rng, (3, 64), 3.0)
    x_bits[0, :4] = [0x0000, 0x8000, 0x0000, 0x8000]  # zeros of both signs
    w_bits, _ = rand_bf16(rng, 64)
    plain = np.zeros((3, 64), np.uint16)
    lib.function(rms_norm_spec(64, 64, 3, 1e-6, False).symbol)(x_bits, w_bits, plain)
    ab = np.stack([x_bits, np.full_like(x_bits, 0x8000)])
    out = np.zeros((2, 3, 64), np.uint16)
    lib.function(rms_norm_spec(64, 64, 3, 1e-6, True).symbol)(ab, w_bits, out)
    np.testing.assert_array_equal(out[1] & 0x7FFF, plain & 0x7FFF)
    np.testing.assert_array_equal(out[1][plain & 0x7FFF != 0], plain[plain & 0x7FFF != 0])
    np.testing.assert_array_equal(out[0], x_bits)


def _silu_mul_kernel(lib, arch, g_bits, u_bits):
    """The silu_mul kernel on gate and up rows (bf16 bits, [rows, cols]), 16 columns at a time."""
    rows, cols = g_bits.shape
    fn = lib.function(silu_mul_spec(16, 1, arch).symbol)
    y = np.zeros((rows, _pad(cols, 16)), np.uint16)
    for row in range(rows):
        for c0 in range(0, cols, 16):
            gu = np.zeros((2, 1, 16), np.uint16)
            gu[0, 0, : min(16, cols - c0)] = g_bits[row, c0:c0 + 16]
            gu[1, 0, : min(16, cols - c0)] = u_bits[row, c0:c0 + 16]
            fn(gu, y[row, c0:c0 + 16])
    return y[:, :cols]


@pytest.mark.parametrize("case", EPILOGUE_GEMV_CASES, ids=lambda c: "i{}_k{}_tn{}_tk{}_g{}_{}_{}".format(*c))
def test_gemv_silu_mul_epilogue_is_the_gemv_then_the_silu_mul_kernel_bit_for_bit(lib, case):
    """The fused gate/up GEMV on the interleaved weight stores exactly what the plain GEMV on [Wg; Wu] and then the
    silu_mul kernel on its two halves give (the store rounds g and u to bf16 first, as DDR did); padded outputs 0."""
    i, k, tn, tk, group, bias, device = case
    rng = np.random.default_rng(i * k)
    w, b, _, _ = _quantized_linear(rng, 2 * i, k, group, bias)
    k_pad, n_pad = _pad(k, tk), 2 * _pad(i, tn // 2)
    x_pad = np.zeros(k_pad, np.uint16)
    x_pad[:k] = rand_bf16(rng, k)[0]
    plain_pad = _pad(2 * i, tn)
    plain = pretile_linear(w, b, plain_pad, k_pad, tn, tk, mmul=MMULS[device]).reshape(plain_pad // tn, k_pad // tk, -1)
    y = _run_gemv(lib, gemv_spec(tn, tk, group, bias, MMULS[device]), plain, x_pad)
    expected = _silu_mul_kernel(lib, ARCH_OF[device], y[None, :i], y[None, i:2 * i])[0]
    wi, bi = interleave_gate_up(w, b, n_pad, tn)
    tiles = pretile_linear(wi, bi, n_pad, k_pad, tn, tk, mmul=MMULS[device]).reshape(n_pad // tn, k_pad // tk, -1)
    got = _run_gemv(lib, gemv_spec(tn, tk, group, bias, MMULS[device], "silu_mul", ARCH_OF[device]), tiles, x_pad)
    assert got.shape == (n_pad // 2,)
    np.testing.assert_array_equal(got[:i], expected)
    assert not got[i:].any(), "padded outputs are silu(0) * 0"


@pytest.mark.parametrize("case", EPILOGUE_GEMM_CASES, ids=lambda c: "m{}_i{}_k{}_tm{}_tn{}_tk{}_g{}_{}_{}".format(*c))
def test_gemm_silu_mul_epilogue_is_the_gemm_then_the_silu_mul_kernel_bit_for_bit(lib, case):
    m, i, k, tm, tn, tk, group, bias, device = case
    rng = np.random.default_rng(m * i * k)
    w, b, _, _ = _quantized_linear(rng, 2 * i, k, group, bias)
    m_pad, k_pad, n_pad = _pad(m, tm), _pad(k, tk), 2 * _pad(i, tn // 2)
    a_pad = np.zeros((m_pad, k_pad), np.uint16)
    a_pad[:m, :k] = rand_bf16(rng, (m, k))[0]
    plain_pad = _pad(2 * i, tn)
    plain = pretile_linear(w, b, plain_pad, k_pad, tn, tk, mmul=MMULS[device]).reshape(plain_pad // tn, k_pad // tk, -1)
    c = _run_gemm(lib, gemm_spec(tm, tn, tk, group, bias, MMULS[device]), plain, a_pad)
    expected = _silu_mul_kernel(lib, ARCH_OF[device], c[:m, :i], c[:m, i:2 * i])
    wi, bi = interleave_gate_up(w, b, n_pad, tn)
    tiles = pretile_linear(wi, bi, n_pad, k_pad, tn, tk, mmul=MMULS[device]).reshape(n_pad // tn, k_pad // tk, -1)
    got = _run_gemm(lib, gemm_spec(tm, tn, tk, group, bias, MMULS[device], "silu_mul", ARCH_OF[device]), tiles, a_pad)
    assert got.shape == (m_pad, n_pad // 2)
    np.testing.assert_array_equal(got[:m, :i], expected)
    assert not got[:, i:].any(), "padded outputs are silu(0) * 0"


@pytest.mark.parametrize("case", HALF_STORE_CASES, ids=lambda c: "tn{}_tk{}_g{}_{}_{}".format(*c))
def test_half_tile_stores_and_a_mixed_kernel_store_what_the_whole_tile_kernels_store(lib, case):
    """A kernel storing YS = TN / 2 outputs per call (its slot counting the halves) writes bit for bit what the
    whole-tile kernel writes; the mixed kernel of a shared configuration stores plainly with ``_store`` and with
    the silu_mul epilogue with ``_store_silu_mul``, each bit for bit as the kernel with only that store."""
    tn, tk, group, bias, device = case
    m = MMULS[device]
    rng = np.random.default_rng(tn * tk)
    n, k = 5 * tn, 2 * tk  # more tiles than the 2 slots: two full groups and a partial one
    w, b, _, _ = _quantized_linear(rng, n, k, group, bias)
    tiles = pretile_linear(w, b, n, k, tn, tk, mmul=m).reshape(n // tn, k // tk, -1)
    x = rand_bf16(rng, k)[0]
    whole = _run_gemv(lib, gemv_spec(tn, tk, group, bias, m), tiles, x)
    half = gemv_spec(tn, tk, group, bias, m, nb=2, ys=tn // 2)
    assert half.p["ys"] == tn // 2 and half.signature(half.symbol + "_store")[-1].size == tn // 2
    np.testing.assert_array_equal(_run_gemv(lib, half, tiles, x), whole)
    mixed = gemv_spec(tn, tk, group, bias, m, "silu_mul", ARCH_OF[device], nb=2, ys=tn // 2, members=3, mixed=True)
    np.testing.assert_array_equal(_run_gemv(lib, mixed, tiles, x), whole)
    silu = _run_gemv(lib, gemv_spec(tn, tk, group, bias, m, "silu_mul", ARCH_OF[device]), tiles, x)
    np.testing.assert_array_equal(_run_gemv(lib, mixed, tiles, x, store="_store_silu_mul"), silu)


def test_the_header_function_copies_the_selector_words(lib):
    tn, tk, group, bias, device = HALF_STORE_CASES[0]
    spec = gemv_spec(tn, tk, group, bias, MMULS[device], "silu_mul", ARCH_OF[device], nb=2, ys=tn // 2, members=3,
                     mixed=True)
    header = np.zeros(tk // 2, np.int32)
    header[:4] = (0, 1, 0, 7)  # the fourth word is not the kernel's
    words = np.full(3, -1, np.int32)
    lib.function(spec.symbol + "_header")(header.view(np.uint16), words)
    np.testing.assert_array_equal(words, (0, 1, 0))


def test_store_sizes_and_shared_kernels_are_checked():
    m = MMULS["npu2"]
    with pytest.raises(CompileError, match="YS=24 outputs per store must be 8 or a multiple of 16"):
        gemv_spec(32, 64, 32, False, m, ys=24).symbol
    with pytest.raises(CompileError, match="YS=24 outputs per store"):  # divides the tile, but not in vectors
        gemv_spec(48, 64, 32, False, m, ys=24).symbol
    with pytest.raises(CompileError, match="YS=8: the stores of a mixed kernel write 16"):
        gemv_spec(32, 64, 32, False, m, "silu_mul", "aie2p", ys=8, members=2, mixed=True).symbol
    with pytest.raises(CompileError, match="selects one of 2 .. 32 linears"):
        gemv_spec(32, 64, 32, False, m, ys=16, members=40).symbol
    assert gemv_spec(32, 64, 32, False, m, ys=32).symbol == gemv_spec(32, 64, 32, False, m).symbol  # a whole tile
    # a shared GEMM's header is a weight tile: 32 x 64 codes at group 32, 4 scales and zeros per row: 1184 bytes
    gemm = gemm_spec(8, 32, 64, 32, False, m, members=2)
    assert gemm.symbol.endswith("_x2") and gemm.signature(gemm.symbol + "_header")[0].size == 1184
    with pytest.raises(CompileError, match="selects one of 2 .. 296 linears"):
        gemm_spec(8, 32, 64, 32, False, m, members=300)


@pytest.mark.parametrize("device, nb", SLOT_CASES)
def test_accumulator_slots_are_independent_and_give_the_one_slot_kernels_results(lib, device, nb):
    """NB tiles in the slots of one buffer, steps interleaved slot by slot (as the designs' slot loops run them):
    bit for bit what the one-slot kernel gives tile by tile, for a GEMV and a GEMM."""
    rng = np.random.default_rng(nb)
    n, k = 32 * (nb + 2), 128  # more tiles than slots: a full group and a partial one
    w, b, _, _ = _quantized_linear(rng, n, k, 16, True)
    tiles = pretile_linear(w, b, n, k, 32, 64, mmul=MMULS[device]).reshape(n // 32, 2, -1)
    x = np.zeros(k, np.uint16)
    x[:] = rand_bf16(rng, k)[0]
    one = _run_gemv(lib, gemv_spec(32, 64, 16, True, MMULS[device]), tiles, x)
    np.testing.assert_array_equal(_run_gemv(lib, gemv_spec(32, 64, 16, True, MMULS[device], nb=nb), tiles, x), one)
    a = rand_bf16(rng, (8, k))[0]
    one = _run_gemm(lib, gemm_spec(8, 32, 64, 16, True, MMULS[device]), tiles, a)
    got = _run_gemm(lib, gemm_spec(8, 32, 64, 16, True, MMULS[device], nb=nb), tiles, a)
    np.testing.assert_array_equal(got, one)


def test_interleave_gate_up_puts_half_tiles_side_by_side():
    w = quantize_rtn(np.arange(12 * 32, dtype=np.float32).reshape(12, 32) / 100, bits=4, group=16)
    spread, bias = interleave_gate_up(w, np.arange(12, dtype=np.float32), 16, 8)
    # gate rows 0-5 padded to 8, up rows 6-11 padded to 8; tiles of 8 rows: [g0-3, u0-3], [g4-5 0 0, u4-5 0 0]
    assert bias.tolist() == [0, 1, 2, 3, 6, 7, 8, 9, 4, 5, 0, 0, 10, 11, 0, 0]
    assert np.array_equal(spread.packed[[0, 4, 8, 12]], w.packed[[0, 6, 4, 10]])
    assert not spread.scales[[10, 11, 14, 15]].any() and spread.shape == (16, 32)
    with pytest.raises(CompileError, match="even number of rows"):
        interleave_gate_up(quantize_rtn(np.ones((5, 32), np.float32), bits=4, group=16), None, 16, 8)


@pytest.mark.parametrize("case", SILU_CASES, ids=lambda c: "t{}_tr{}_{}".format(*c))
def test_silu_mul(lib, case):
    t, tr, arch = case
    spec = silu_mul_spec(t, tr, arch)
    rng = np.random.default_rng(t * tr)
    gu_bits, gu = rand_bf16(rng, (2, tr, t), 4.0)
    gu_bits[0, 0, :6] = bf16_bits([-100.0, 100.0, 0.0, -20.0, -87.5, 200.0])  # 2^x below the bf16 range, and 0
    gu = from_bf16_bits(gu_bits).astype(np.float64)
    y = np.zeros((tr, t), np.uint16)
    lib.function(spec.symbol)(gu_bits, y)
    g, u = gu
    with np.errstate(over="ignore"):
        exact = g / (1.0 + np.exp(-g)) * u
    # Relative everywhere, in both tails: E = exp2 is off by up to one bf16 step on AIE-ML (half a step on AIE2P),
    # which moves the sigmoid by as much at most; one more rounding at the end: 2 steps. Below 2^-126 the exp2 gives
    # 0 (-87.5: silu is -2e-36 exactly, 0 here), hence the absolute 1e-30 (times REL) in the magnitude.
    assert_bf16_close(y, exact, np.abs(exact) + 1e-30, ulps=2)


@pytest.mark.parametrize("case", ROPE_CASES, ids=lambda c: "d{}_tr{}".format(*c))
def test_rope(lib, case):
    d, tr = case
    h = d // 2
    spec = rope_spec(d, tr)
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


@pytest.mark.parametrize("arch", ARCHS)
def test_exp2_is_within_one_bf16_step(tmp_path, arch):
    """exp2_bf16 over t in [-126, 0] (and below): AIE2P's is the hardware's (on the host: correctly rounded), AIE-ML's
    the polynomial of _exp2.cc.j2, documented as within one bf16 step, equal for 94 % of inputs; 0 below -126."""
    from aielower.backends.aie.templating import ENV

    body = "\n".join(ENV.get_template(f"kernels/{name}.cc.j2").render(arch=arch) for name in ("_common", "_exp2"))
    source = ("#include <aie_api/aie.hpp>\n#include <cstdint>\nnamespace {\n" + body + "\n}\n"
              'extern "C" void exp2_test(const float* t, bfloat16* y, int32_t n) {\n'
              "    for (int i = 0; i < n; i += 16) aie::store_v(y + i, exp2_bf16(aie::load_v<16>(t + i)));\n}\n")
    import ctypes
    fn = ctypes.CDLL(str(K.build_library([(f"exp2_{arch}.cc", source)], tmp_path))).exp2_test
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32], None
    t = np.concatenate([np.linspace(-126, 0, 200000), np.linspace(-140, -126.0001, 1600), [-np.inf] * 16])
    t = t[: len(t) // 16 * 16].astype(np.float32)
    y = np.zeros(t.size, np.uint16)
    fn(t.ctypes.data, y.ctypes.data, t.size)
    exact = bf16_bits(np.exp2(t.astype(np.float64)).astype(np.float32))
    normal = t >= -126
    steps = np.abs(y[normal].astype(np.int64) - exact[normal].astype(np.int64))
    assert steps.max() <= (0 if arch == "aie2p" else 1)
    assert (steps == 0).mean() >= (1.0 if arch == "aie2p" else 0.93)
    assert not y[~normal].any(), "2^t below the smallest normal bf16 (and -inf) is 0"


# ---------------------------------------------------------------------------------------------- attention


# The softmax weights p are bf16: each off by half a step (2^-9 relative) from the exact 2^x on AIE2P, by up to one
# step (2^-8) on AIE-ML's polynomial; o = sum p v / sum p then moves by at most twice that of the magnitude sum |p v|.
P_REL = {"aie2p": 2 * 2.0**-9, "aie2": 2 * 2.0**-8}


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
    """Run init, one step per ``(kv_pos0, kv_valid)`` tile of K/V rows, store; unused tile rows hold NaN. The
    queries ``q_bits`` [GQ, TQ, D] are passed as the host lays them out in DDR: row-major, or (an mmul kernel)
    transposed in the mmul's B blocks; the KV tiles are row-major for both."""
    from aielower.backends.aie.host_arrays import mmul_query_tiles

    p = spec.p
    d, tkv = p["d"], p["tkv"]
    init, step, store = (lib.function(spec.symbol + f) for f in ("_init", "_step", "_store"))
    rows = p["gq"] * p["tq"]
    state = np.full(rows * d + 2 * rows, np.nan, np.float32)
    init(state)
    if p["mr"]:
        q_bits = mmul_query_tiles(q_bits, 1, p["tq"], p["ms"], p["mt"])
    for kv_pos0, kv_valid in kv_tiles:
        kv = np.full((2, tkv, d), 0x7FC0, np.uint16)  # NaN: rows past kv_valid must not be read
        filled = max(0, min(kv_valid, len(k_bits) - kv_pos0))
        kv[0, :filled] = k_bits[kv_pos0:kv_pos0 + filled]
        kv[1, :filled] = v_bits[kv_pos0:kv_pos0 + filled]
        step(q_bits, kv, state, q_pos0, kv_pos0, kv_valid)
    out = np.zeros((p["gq"], p["tq"], d), np.uint16)
    store(state, out)
    return out


@pytest.mark.parametrize("case", ATTN_CASES, ids=lambda c: "d{}_gq{}_tq{}_tkv{}_causal{}_{}".format(*c))
@pytest.mark.parametrize("kv_len, q_at_end", [(50, True), (37, False)])
def test_attention_over_several_kv_tiles(lib, case, kv_len, q_at_end):
    """Several KV tiles, the last one partial (kv_valid < TKV); causal tiles past the queries are fully masked."""
    d, gq, tq, tkv, causal, arch = case
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
    assert_bf16_close(out, exact, mag, rel=P_REL[spec.p["arch"]])


@pytest.mark.parametrize("case", MMUL_ATTN_CASES, ids=lambda c: "d{}_gq{}_tq{}_tkv{}_causal{}".format(*c))
@pytest.mark.parametrize("kv_len, q_at_end", [(45, True), (37, False)])
def test_mmul_attention_matches_the_exact_softmax_and_the_plain_kernel(lib, case, kv_len, q_at_end):
    """The mmul kernel over several KV tiles (the last partial; causal tiles past the queries fully masked, and
    queries early enough that some rows see no KV row of a tile) is within the plain kernel's error bound of the
    exact attention, and close to the plain kernel itself (only the order of the fp32 sums of q k and of p
    differs)."""
    d, gq, tq, tkv, causal = case
    spec, plain = _mmul_attn(case), _mmul_attn(case, mmul=False)
    assert spec.symbol.endswith("_mm4x8x8_aie2p") and spec.symbol != plain.symbol
    rng = np.random.default_rng(d + gq + tkv + kv_len)
    q_bits, q = rand_bf16(rng, (gq, tq, d), 2.0)
    k_bits, k = rand_bf16(rng, (kv_len, d), 2.0)
    v_bits, v = rand_bf16(rng, (kv_len, d))
    q_pos0 = kv_len - tq if q_at_end else 3
    tiles = [(p0, min(tkv, kv_len - p0)) for p0 in range(0, kv_len, tkv)]
    assert tiles[-1][1] < tkv, "the test must cover a partial tile"
    out = _run_attention(lib, spec, q_bits, k_bits, v_bits, q_pos0, tiles)
    exact, mag = _attention_reference(q, k, v, spec.p["scale"], q_pos0, causal)
    assert_bf16_close(out, exact, mag, rel=P_REL["aie2p"])
    reference = _run_attention(lib, plain, q_bits, k_bits, v_bits, q_pos0, tiles)
    assert_bf16_close(out, from_bf16_bits(reference).astype(np.float64), mag, rel=P_REL["aie2p"])


def test_mmul_attention_rows_that_see_no_kv_row_are_zero_and_keep_their_state(lib):
    """Causal queries at positions 0..7 against tiles starting later are all masked (l == 0: zeros); a tile that
    only the last query sees leaves the other rows' output as the tiles before it made it."""
    case = (32, 2, 8, 16, True)
    spec = _mmul_attn(case)
    rng = np.random.default_rng(9)
    q_bits, q = rand_bf16(rng, (2, 8, 32))
    k_bits, k = rand_bf16(rng, (40, 32))
    v_bits, v = rand_bf16(rng, (40, 32))
    assert not _run_attention(lib, spec, q_bits, k_bits, v_bits, 0, [(16, 16), (32, 8)]).any()
    # queries at 9..16: the tile at 16 is visible to the last query only
    before = _run_attention(lib, spec, q_bits, k_bits, v_bits, 9, [(0, 16)])
    after = _run_attention(lib, spec, q_bits, k_bits, v_bits, 9, [(0, 16), (16, 16)])
    np.testing.assert_array_equal(after[:, :7], before[:, :7])
    assert not np.array_equal(after[:, 7], before[:, 7])


def test_mmul_attention_tiles_no_query_sees_leave_the_state_exactly(lib):
    """A tile past the valid KV length (kv_valid <= 0, all NaN) or past every query's causal limit changes no bit
    of the state; nor do the NaN rows past kv_valid of a partly valid tile reach the output."""
    from aielower.backends.aie.host_arrays import mmul_query_tiles

    spec = _mmul_attn(MMUL_ATTN_CASES[1])
    init, step = (lib.function(spec.symbol + f) for f in ("_init", "_step"))
    rng = np.random.default_rng(12)
    q_bits, _ = rand_bf16(rng, (2, 8, 32))
    q = mmul_query_tiles(q_bits, 1, 8, 8, 8)
    kv = np.full((2, 16, 32), 0x7FC0, np.uint16)
    kv[:, :5], _ = rand_bf16(rng, (2, 5, 32))
    state = np.zeros(16 * 32 + 32, np.float32)
    init(state)
    step(q, kv, state, 10, 0, 5)  # 5 valid rows of 16, the rest NaN
    assert np.isfinite(state).all()  # every query sees the 5 valid rows; no NaN row reached o, m or l
    before = state.copy()
    step(q, np.full((2, 16, 32), 0x7FC0, np.uint16), state, 10, 5, 0)  # kv_valid = 0
    step(q, np.full((2, 16, 32), 0x7FC0, np.uint16), state, 10, 5, -3)
    step(q, np.full((2, 16, 32), 0x7FC0, np.uint16), state, 10, 32, 16)  # causal: past every query (10..17)
    np.testing.assert_array_equal(state.view(np.uint32), before.view(np.uint32))


def test_mmul_attention_over_a_cache_reads_its_step_header(lib):
    """The query record of attention over a KV cache: q^T blocks, then the step header, which _params reads."""
    from aielower.backends.aie.host_arrays import mmul_query_tiles, step_header

    case = MMUL_ATTN_CASES[1]
    spec, plain = _mmul_attn(case, header=True), _mmul_attn(case)
    rng = np.random.default_rng(4)
    q_bits, _ = rand_bf16(rng, (2, 8, 32))
    k_bits, _ = rand_bf16(rng, (30, 32))
    v_bits, _ = rand_bf16(rng, (30, 32))
    record = np.concatenate([mmul_query_tiles(q_bits, 1, 8, 8, 8), step_header(22, 30)])
    words = np.zeros(K.ATTENTION_WORDS, np.int32)
    lib.function(spec.symbol + "_params")(record, words)
    assert words.tolist()[:2] == [22, 30]
    init, step, store = (lib.function(spec.symbol + f) for f in ("_init", "_step", "_store"))
    state = np.zeros(16 * 32 + 32, np.float32)
    init(state)
    for p0 in (0, 16):
        kv = np.zeros((2, 16, 32), np.uint16)
        n = min(16, 30 - p0)
        kv[0, :n], kv[1, :n] = k_bits[p0 : p0 + n], v_bits[p0 : p0 + n]
        step(record, kv, state, 22, p0, 30 - p0)
    out = np.zeros(16 * 32, np.uint16)
    store(state, out)
    expected = _run_attention(lib, plain, q_bits, k_bits, v_bits, 22, [(0, 16), (16, 14)])
    np.testing.assert_array_equal(out, expected.reshape(-1))


@pytest.mark.parametrize("params, message", [
    (dict(tq=4), r"R=4 a multiple of 4 and 8"),
    (dict(tkv=12), r"TKV=12 a multiple of 4 and 8"),
    (dict(tkv=4), r"TKV=4 a multiple of 4 and 8"),
    (dict(header=True, step_rows=1, tq=8), "needs no step rows"),
])
def test_mmul_attention_refuses_tiles_that_are_not_whole_blocks(params, message):
    args = dict(d=16, gq=1, tq=8, tkv=8, scale=0.25, causal=True, arch="aie2p", mmul=MMULS["npu2"]) | params
    with pytest.raises(CompileError, match=message):
        attention_spec(**args).symbol
    with pytest.raises(CompileError, match="8-lane blocks"):
        attention_spec(16, 1, 8, 8, 0.25, True, "aie2", mmul=MMULS["npu1"]).symbol  # npu1's 4x8x4: 4-lane rows


def test_mmul_layouts_are_the_blocks_the_kernel_reads():
    from aielower.backends.aie.host_arrays import mmul_blocks, mmul_query_tiles, query_records, step_header

    x = np.arange(8 * 16).reshape(8, 16)
    blocks = mmul_blocks(x, 4, 8)
    assert blocks.shape == (2, 2, 4, 8)
    np.testing.assert_array_equal(blocks[1, 0], x[4:8, 0:8])
    np.testing.assert_array_equal(blocks[0, 1], x[0:4, 8:16])
    queries = np.arange(4 * 8 * 16, dtype=np.uint16).reshape(4, 8, 16)  # 4 heads over 2 KV heads, 8 rows
    tiles = mmul_query_tiles(queries, 2, 4, 8, 8).reshape(2, 2, -1)  # [kv head][query tile][R = 2 x 4 rows x 16]
    tile = np.concatenate([queries[2, 4:8], queries[3, 4:8]])  # KV head 1, query tile 1: heads 2, 3, rows 4..7
    np.testing.assert_array_equal(tiles[1, 1], mmul_blocks(tile.T, 8, 8).reshape(-1))  # q^T [16][8] in 8x8 blocks
    records = query_records(queries, 2, 4, step_header(3, 4), blocks=(8, 8)).reshape(2, 2, -1)
    np.testing.assert_array_equal(records[1, 1, :128], tiles[1, 1])
    np.testing.assert_array_equal(records[1, 1, 128:], step_header(3, 4))


@pytest.mark.parametrize("case", [c for c in ATTN_CASES if c[4]], ids=lambda c: "d{}_gq{}_tq{}_tkv{}_{}".format(
    *c[:4], c[5]))
def test_attention_rows_that_see_no_kv_row_are_zero(lib, case):
    """Causal queries at positions 0.. against KV tiles that all start later: every row is masked, l == 0."""
    d, gq, tq, tkv, causal, arch = case
    spec = _attn(case)
    rng = np.random.default_rng(5)
    q_bits, _ = rand_bf16(rng, (gq, tq, d))
    k_bits, _ = rand_bf16(rng, (3 * tkv, d))
    v_bits, _ = rand_bf16(rng, (3 * tkv, d))
    out = _run_attention(lib, spec, q_bits, k_bits, v_bits, 0, [(tkv + tq, tkv), (2 * tkv + tq, tkv - tq)])
    assert not out.any()


@pytest.mark.parametrize("case", ATTN_CASES[:2], ids=lambda c: c[5])
def test_attention_tile_masked_for_some_rows_only_leaves_them_unchanged(lib, case):
    """A tile visible to the last query token only: the other rows keep the state of the earlier tiles."""
    d, gq, tq, tkv, causal, arch = case
    spec = _attn(case)
    rng = np.random.default_rng(11)
    kv_len = tkv + 1
    q_bits, q = rand_bf16(rng, (gq, tq, d))
    k_bits, k = rand_bf16(rng, (kv_len, d))
    v_bits, v = rand_bf16(rng, (kv_len, d))
    q_pos0 = kv_len - tq
    out = _run_attention(lib, spec, q_bits, k_bits, v_bits, q_pos0, [(0, tkv), (tkv, 1)])
    exact, mag = _attention_reference(q, k, v, spec.p["scale"], q_pos0, causal)
    assert_bf16_close(out, exact, mag, rel=P_REL[spec.p["arch"]])


@pytest.mark.parametrize("case", ATTN_CASES, ids=lambda c: "d{}_gq{}_tq{}_tkv{}_causal{}_{}".format(*c))
def test_attention_tiles_past_the_valid_rows_change_nothing(lib, case):
    """Decode attention reads the valid KV rows rounded up to a block of tiles: a tile with no valid row (kv_valid
    <= 0: L - kv_pos0 past the end) leaves the state bit for bit as it was (the rows it holds are NaN here)."""
    d, gq, tq, tkv, causal, arch = case
    spec = _attn(case)
    rng = np.random.default_rng(13)
    q_bits, _ = rand_bf16(rng, (gq, tq, d))
    k_bits, _ = rand_bf16(rng, (tkv, d))
    v_bits, _ = rand_bf16(rng, (tkv, d))
    q_pos0 = tkv - tq  # the queries are the last rows: every valid row is visible
    valid = _run_attention(lib, spec, q_bits, k_bits, v_bits, q_pos0, [(0, tkv)])
    padded = _run_attention(lib, spec, q_bits, k_bits, v_bits, q_pos0, [(0, tkv), (tkv, 0), (2 * tkv, -tkv)])
    assert valid.any() and np.array_equal(valid, padded)


# -------------------------------------------------------------------------------------- specs and errors


def test_symbols_are_readable_unique_and_valid_identifiers():
    specs = _all_specs() + [rms_norm_spec(64, 64, 3, 1e-5, False),
                            attention_spec(24, 1, 4, 20, 0.125, False, "aie2p")]
    symbols = [s.symbol for s in specs]
    assert len(set(symbols)) == len(set(specs))
    assert all(s.isidentifier() for s in symbols)
    assert gemv_spec(16, 128, 32, True, NPU2.mmul["bf16"], nb=16).symbol == (
        "linear_w4_gemv_tn16_tk128_g32_r4s8t8_nb16_bias")
    assert gemv_spec(16, 128, 32, False, NPU2.mmul["bf16"], "silu_mul", "aie2p").symbol == (
        "linear_w4_gemv_tn16_tk128_g32_r4s8t8_nb1_silu_mul_aie2p")
    assert rms_norm_spec(4096, 4096, 4, 1e-6, True).symbol == "add_rms_norm_d4096_dr4096_tr4_eps1em06"
    assert attention_spec(128, 1, 16, 64, 0.125, True, "aie2").symbol == (
        "attention_d128_gq1_tq16_tkv64_s0p125_causal_aie2")
    assert silu_mul_spec(64, 2, "aie2p").symbol == "silu_mul_t64_tr2_aie2p"
    assert gemm_spec(32, 64, 128, 32, False, NPU2.mmul["bf16"]).filename == (
        "linear_w4_gemm_tm32_tn64_tk128_g32_r4s8t8_nb1.cc")
    assert [K.arch_of(d) for d in (NPU1, NPU2)] == ["aie2", "aie2p"]


def test_rendered_sources_name_their_kernel_and_define_its_functions():
    for spec in _all_specs():
        text = spec.render()
        assert text == spec.render()
        assert text.startswith(f"// {spec.symbol}:")
        assert "#include <aie_api/aie.hpp>" in text
        for fn in spec.functions:
            assert f" {fn}(" in text
    assert "aie::mmul<R, S, T, bfloat16, bfloat16>" in _gemm(GEMM_CASES[0]).render()
    # AIE2P kernels use the exp2 instruction, AIE-ML ones cannot; each refuses the other architecture's compiler
    for arch, other in (("aie2p", 20), ("aie2", 21)):
        text = silu_mul_spec(32, 1, arch).render()
        assert ("aie::exp2<bfloat16>" in text) == (arch == "aie2p")
        assert f"__AIE_ARCH__ != {K.ARCHS[arch]}" in text and f"__AIE_ARCH__ != {other}" not in text


def test_no_kernel_multiplies_fp32_vectors(tmp_path):
    """Every product is bf16 x bf16 into fp32: built with AIELOWER_HOST_NO_FP32_PRODUCTS, the host header refuses an
    fp32 x fp32 vector mul / mac / msc (which AIE-ML and AIE2P only emulate), and every kernel still compiles."""
    sources = [(spec.filename, "#define AIELOWER_HOST_NO_FP32_PRODUCTS\n" + spec.render()) for spec in _all_specs()]
    K.build_library(sources, tmp_path)
    bad = "#define AIELOWER_HOST_NO_FP32_PRODUCTS\n#include <aie_api/aie.hpp>\n" \
          'extern "C" void f(float* p) { aie::store_v(p, aie::mul(aie::load_v<16>(p), 2.0f).to_vector<float>()); }\n'
    with pytest.raises(CompileError, match="fp32 x fp32 vector product"):
        K.build_library([("fp32_product.cc", bad)], tmp_path)


def test_stack_and_static_bytes_follow_the_templates():
    gemm = gemm_spec(32, 64, 128, 32, True, NPU2.mmul["bf16"])
    assert "alignas(64) bfloat16 b_col[TK * UR];" in gemm.render()
    assert gemm.static_bytes == 2 * 128 * 8 and gemm.stack_bytes == K.DEFAULT_STACK  # no bias array any more
    attn = attention_spec(64, 2, 3, 20, 0.125, True, "aie2")
    text = attn.render()
    assert "float s[TKV_PAD];" in text and "bfloat16 p[TKV_PAD];" in text
    assert attn.stack_bytes == -(-(K.DEFAULT_STACK + 32 * 4 + 32 * 2) // 64) * 64
    for spec in _all_specs():
        if spec.family != "linear_w4_gemm":
            assert spec.static_bytes == 0


def test_cycles_count_every_function_and_follow_the_work():
    for spec in _all_specs():
        for fn in spec.functions:
            c = spec.cycles(fn)
            assert isinstance(c, int) and c > K.CALL_CYCLES, (fn, c)
    with pytest.raises(CompileError, match="defines no function 'x_step'"):
        rope_spec(8, 1).cycles("x_step")
    npu1, npu2 = NPU1.mmul["bf16"], NPU2.mmul["bf16"]
    step = lambda spec: spec.cycles(spec.symbol + "_step")  # noqa: E731
    # the GEMV step is the dequantization: about linear in the tile's weights; AIE2P's wider MACs make it cheaper
    ratio = step(gemv_spec(64, 256, 128, False, npu2)) / step(gemv_spec(64, 128, 128, False, npu2))
    assert 1.9 < ratio <= 2
    assert step(gemv_spec(64, 256, 128, False, npu2)) < step(gemv_spec(64, 256, 128, False, npu1))
    # exp2 is one instruction per 16 lanes on AIE2P and a polynomial on AIE-ML
    silu = {a: silu_mul_spec(64, 4, a) for a in ARCHS}
    assert silu["aie2p"].cycles(silu["aie2p"].symbol) < silu["aie2"].cycles(silu["aie2"].symbol)
    # a full 7B-like GEMV step: 64 rows x 512 inputs on npu2, well under the DDR time of its 16.4 KiB tile
    big = gemv_spec(64, 512, 128, True, npu2)
    assert step(big) < 16 * 1024 / (57.6e9 / 32 / 1.8e9)

@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: gemv_spec(16, 96, 64, True, NPU2.mmul["bf16"]),
         "linear_w4_gemv kernel: TK=96 is not a multiple of the group size G=64"),
        (lambda: gemv_spec(16, 64, 8, True, NPU2.mmul["bf16"]), "group size G=8 is not a multiple of 16"),
        (lambda: gemv_spec(16, 48, 16, True, NPU1.mmul["bf16"]), "TK=48 is not a multiple of 32"),
        (lambda: gemv_spec(24, 64, 16, True, NPU1.mmul["bf16"]), "TN=24 is not a multiple of 16"),
        (lambda: gemv_spec(16, 64, 16, True, MMulShape(4, 8, 2)), "the mmul's T=2 is neither 4 nor 8"),
        (lambda: gemm_spec(6, 16, 64, 32, False, NPU1.mmul["bf16"]),
         "linear_w4_gemm kernel: TM=6 is not a multiple of the mmul's R=4"),
        (lambda: rms_norm_spec(40, 40, 2, 1e-6, False), "rms_norm kernel: D=40 is not a multiple of 16"),
        (lambda: rms_norm_spec(48, 64, 2, 1e-6, False), "D_REAL=64 exceeds the padded width D=48"),
        (lambda: silu_mul_spec(24, 2, "aie2"), "silu_mul kernel: T=24 is not a multiple of 16"),
        (lambda: silu_mul_spec(32, 2, "aie1"), "silu_mul kernel: unknown architecture ARCH='aie1'"),
        (lambda: gemv_spec(32, 64, 16, False, NPU2.mmul["bf16"], nb=0), "NB must be a positive integer"),
        (lambda: gemv_spec(32, 64, 16, False, NPU2.mmul["bf16"], "gelu", "aie2p"), "unknown epilogue 'gelu'"),
        (lambda: gemv_spec(32, 64, 16, False, NPU2.mmul["bf16"], "silu_mul", "aie9"), "unknown architecture"),
        (lambda: gemm_spec(8, 16, 64, 16, False, MMulShape(2, 8, 4), "silu_mul", "aie2"),
         "an mmul C block of R x T = 8 lanes is not a multiple of 16"),
        (lambda: rope_spec(7, 2), "rope kernel: D=7 is odd"),
        (lambda: attention_spec(12, 1, 4, 16, 0.3, True, "aie2p"), "attention kernel: D=12 is not a multiple of 8"),
        (lambda: attention_spec(16, 0, 4, 16, 0.3, True, "aie2p"), "GQ must be a positive integer"),
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
        K.build_library([rope_spec(8, 1)], tmp_path, cxx="no-such-g++-compiler")


def test_libraries_are_cached_by_content(tmp_path):
    src = ("ok.cc", 'extern "C" int answer() { return 42; }\n')
    first = K.build_library([src], tmp_path)
    mtime = first.stat().st_mtime_ns
    assert K.build_library([src], tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert K.build_library([("ok.cc", src[1] + "// changed\n")], tmp_path) != first


def test_function_arguments_are_checked_before_calling_c(lib):
    spec = rope_spec(8, 1)
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


def test_attention_step_header_gives_the_parameters_and_changes_nothing_else(lib):
    from aielower.backends.aie.host_arrays import step_header

    assert HEADER_SPEC.functions == tuple(HEADER_SPEC.symbol + f for f in ("_init", "_step", "_store", "_params"))
    assert HEADER_SPEC.symbol.endswith("_causal_hdr_aie2p") and len(PLAIN_SPEC.functions) == 3
    init, step, store, params = (lib.function(f) for f in HEADER_SPEC.functions)
    rng = np.random.default_rng(11)
    q_bits, _ = rand_bf16(rng, (2, 1, 16))
    k_bits, _ = rand_bf16(rng, (16, 16))
    v_bits, _ = rand_bf16(rng, (16, 16))
    tile = np.concatenate([q_bits.reshape(-1), step_header(12, 13)])  # query at position 12, 13 valid KV rows
    words = np.zeros(K.ATTENTION_WORDS, np.int32)
    params(tile, words)
    assert words.tolist()[:2] == [12, 13]
    with pytest.raises(ValueError, match=r"32 elements \(expected 36\)"):
        params(q_bits.reshape(-1), words)  # a tile without its header is refused, not read past
    state = np.zeros(2 * 16 + 4, np.float32)
    init(state)
    kv = np.concatenate([k_bits, v_bits]).reshape(-1)
    step(tile, kv, state, int(words[0]), 0, int(words[1]))
    out = np.zeros(2 * 16, np.uint16)
    store(state, out)
    plain = _run_attention(lib, PLAIN_SPEC, q_bits, k_bits, v_bits, 12, [(0, 13)])
    np.testing.assert_array_equal(out, plain.reshape(-1))


def _cache_tile_then_record(spec, lib, record, k_bits, v_bits, position):
    """init, one ``_step`` over a cache tile holding KV rows ``0 .. position - 1``, ``_step_new`` over the record's
    rows (at ``position``), store: the output [R * D]."""
    p = spec.p
    rows, d = p["gq"] * p["tq"], p["d"]
    init, step, store = (lib.function(spec.symbol + f) for f in ("_init", "_step", "_store"))
    step_new = lib.function(spec.symbol + "_step_new")
    state = np.zeros(rows * d + 2 * rows, np.float32)
    init(state)
    cache = np.zeros((2, p["tkv"], d), np.uint16)
    cache[0, :position], cache[1, :position] = k_bits[:position], v_bits[:position]
    step(record, cache, state, position, 0, position)
    step_new(record, state, position, position, p["step_rows"])
    out = np.zeros(rows * d, np.uint16)
    store(state, out)
    return out


def test_attention_with_fused_rope_rotates_as_the_rope_kernel_and_attends_as_without_it(lib):
    # The query record is [q rows unrotated][the step's key (unrotated) and value][cos | sin of the position (14 real
    # columns, padded)][step header]: _params rotates the rows in place, _rotate the record's key (and writes it
    # out), bit for bit as the rope kernel; then init / step / step_new / store give what the header kernel gives
    # on rotated inputs.
    from aielower.backends.aie.host_arrays import step_header

    assert ROPE_SPEC.symbol.endswith("_hdr_sr1_rope14_aie2p") and ROPE_SPEC.functions[-1].endswith("_rotate")
    params, rotate = (lib.function(ROPE_SPEC.symbol + f) for f in ("_params", "_rotate"))
    rope = lib.function(rope_spec(14, 1).symbol)
    rng = np.random.default_rng(21)
    q_bits = np.zeros((2, 16), np.uint16)
    q_bits[:, :14], _ = rand_bf16(rng, (2, 14))
    angles = rng.uniform(-np.pi, np.pi, 7)
    cs = np.zeros(16, np.uint16)
    cs[:14] = bf16_bits(np.concatenate([np.cos(angles), np.sin(angles)]))
    k_bits = np.zeros((4, 16), np.uint16)
    k_bits[:, :14], _ = rand_bf16(rng, (4, 14))
    v_bits, _ = rand_bf16(rng, (4, 16))
    record = np.concatenate([q_bits.reshape(-1), k_bits[3], v_bits[3], cs, step_header(3, 4)])
    words = np.zeros(K.ATTENTION_WORDS, np.int32)
    params(record, words)
    assert words.tolist()[:2] == [3, 4]
    expected_q = np.zeros_like(q_bits)
    for r in range(2):
        rope(q_bits[r, :14].copy(), cs[:14].copy(), expected_q[r, :14])
    np.testing.assert_array_equal(record[:32].reshape(2, 16), expected_q)
    k_out = np.zeros(16, np.uint16)
    rotate(record, k_out)
    expected_k = np.zeros(16, np.uint16)
    rope(k_bits[3, :14].copy(), cs[:14].copy(), expected_k[:14])
    np.testing.assert_array_equal(k_out, expected_k)
    np.testing.assert_array_equal(record[32:48], expected_k)  # rotated in place, for the step_new that follows
    np.testing.assert_array_equal(record[48:64], v_bits[3])  # the value and the rotary row are left alone
    np.testing.assert_array_equal(record[64:80], cs)
    assert not expected_k[14:].any()  # the padded columns stay zero
    # attention over 3 cache rows (already rotated) and the record's row, as the header kernel over all 4
    rotated_k = k_bits.copy()
    rotated_k[3] = expected_k
    out = _cache_tile_then_record(ROPE_SPEC, lib, record, rotated_k, v_bits, 3)
    plain = _run_attention(lib, PLAIN_SPEC, expected_q.reshape(2, 1, 16), rotated_k, v_bits, 3, [(0, 3), (3, 1)])
    np.testing.assert_array_equal(out, plain.reshape(-1))


def test_attention_step_rows_in_the_query_record_attend_as_a_kv_tile_would(lib):
    # Two query tokens at positions 5, 6 (GQ=2, so 4 query rows) over 5 cache rows and their own two KV rows, which
    # come in the query record: causal among themselves (the first query sees the first step row only).
    from aielower.backends.aie.host_arrays import step_header

    params, step_new = (lib.function(STEP_SPEC.symbol + f) for f in ("_params", "_step_new"))
    assert STEP_SPEC.functions[-1].endswith("_sr2_aie2p_step_new")
    rng = np.random.default_rng(5)
    q_bits, _ = rand_bf16(rng, (2, 2, 16))
    k_bits, _ = rand_bf16(rng, (7, 16))
    v_bits, _ = rand_bf16(rng, (7, 16))
    record = np.concatenate([q_bits.reshape(-1), k_bits[5:].reshape(-1), v_bits[5:].reshape(-1),
                             step_header(5, 7)])
    words = np.zeros(K.ATTENTION_WORDS, np.int32)
    params(record, words)
    assert words.tolist()[:2] == [5, 7]
    with pytest.raises(ValueError, match=r"64 elements \(expected 132\)"):
        step_new(q_bits.reshape(-1), np.zeros(4 * 16 + 8, np.float32), 5, 5, 2)  # a record without its rows
    out = _cache_tile_then_record(STEP_SPEC, lib, record, k_bits, v_bits, 5)
    plain = _run_attention(lib, STEP_PLAIN_SPEC, q_bits, k_bits, v_bits, 5, [(0, 5), (5, 2)])
    np.testing.assert_array_equal(out, plain.reshape(-1))


@pytest.mark.parametrize("params, message", [
    (dict(header=False, rope=14), "ROPE needs the step header, one query token"),
    (dict(header=True, rope=14), r"ROPE needs .* its key in the query tile \(STEP=1\)"),
    (dict(header=True, rope=14, step_rows=2), r"ROPE needs .* its key in the query tile \(STEP=1\)"),
    (dict(header=True, rope=13, step_rows=1), "ROPE=13 must be even and at most D=16"),
    (dict(header=True, rope=18, step_rows=1), "ROPE=18 must be even and at most D=16"),
    (dict(header=False, step_rows=1), "STEP=1 needs the step header and at most TKV=16 rows"),
    (dict(header=True, step_rows=17), "STEP=17 needs the step header and at most TKV=16 rows"),
    (dict(header=True, step_rows="x"), "STEP_ROWS must be a positive integer, got 'x'"),
    (dict(header=True, step_rows=-1), "STEP_ROWS must be a positive integer, got -1"),
    # a plan's parameters may come from IR text
    (dict(header=True, rope="x"), "ROPE must be a positive integer, got 'x'"),
    (dict(header=True, rope=14.0), "ROPE must be a positive integer, got 14.0"),
    (dict(header=True, rope=True), "ROPE must be a positive integer, got True"),
    (dict(header=True, rope=-2), "ROPE must be a positive integer, got -2"),
])
def test_attention_with_fused_rope_refuses_what_it_cannot_rotate(params, message):
    with pytest.raises(CompileError, match=message):
        attention_spec(16, 2, 1, 16, 0.25, True, "aie2p", **params).symbol
