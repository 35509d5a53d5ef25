"""``numerics="aie"``: the ref backend with the AIE backend's bf16 storage (docs/aie-kernels.md, "Numerics")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import aielower
from aielower.backends.ref import RefCompiledModel, generate
from aielower.errors import CompileError
from aielower.ir import QTensorType, parse
from aielower.quant.bf16 import round_to_bf16
from aielower.quant.groupwise import quantize_rtn
from tests.conftest import CONFIGS, tiny_qwen2


def is_bf16(a) -> bool:
    a = np.asarray(a, dtype=np.float32)
    return bool((a.view(np.uint32) & np.uint32(0xFFFF) == 0).all())


def quant_for(name: str) -> aielower.QuantConfig:
    """A group size dividing the config's hidden and intermediate sizes (4 for odd-hidden)."""
    config = {**dict(hidden_size=64, intermediate_size=96), **CONFIGS[name]}
    group = min(16, math.gcd(config["hidden_size"], config["intermediate_size"]))
    return aielower.QuantConfig(group_size=group, lm_head_group_size=group)


def ids_for(batch, seq, seed=0):
    return torch.randint(0, 128, (batch, seq), generator=torch.Generator().manual_seed(seed)).numpy()


# -- whole models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("quantized", [True, False], ids=["w4", "fp32-weights"])
@pytest.mark.parametrize("name", ["mha", "gqa-14x2", "odd-hidden"])
def test_aie_logits_are_fp32_logits_at_bf16_level(name, quantized):
    model = tiny_qwen2(seed=1, **CONFIGS[name])
    quant = quant_for(name) if quantized else None
    fp32 = aielower.compile(model, quant=quant, functions=("prefill",))
    aie = aielower.compile(model, quant=quant, functions=("prefill",), numerics="aie")
    ids = ids_for(2, 13)
    expected, got = fp32(ids), aie(ids)
    scale = np.abs(expected).max()
    err = np.abs(got - expected).max()
    # Measured: 0.58-0.73% of max |logit| (max |difference| 0.0036-0.0050) on these six.
    assert err <= 3e-2 * scale, f"max error {err:.3g} vs max |logit| {scale:.3g}"
    assert not np.array_equal(got, expected)  # the option does something
    assert got.dtype == np.float32 and is_bf16(got)  # the lm_head is a kernel: its result is bf16


def test_fp32_numerics_is_the_default():
    model = tiny_qwen2(seed=2, num_hidden_layers=1)
    default = aielower.compile(model, functions=("prefill",))
    explicit = aielower.compile(model, functions=("prefill",), numerics="fp32")
    assert default.numerics == explicit.numerics == "fp32"
    assert explicit.source == default.source and "bf16" not in default.source
    ids = ids_for(1, 7)
    np.testing.assert_array_equal(explicit(ids), default(ids))


def test_weights_are_what_the_npu_stores():
    model = tiny_qwen2(seed=3, **CONFIGS["gqa-14x2"])
    cm = aielower.compile(model, quant=aielower.QuantConfig(group_size=16), numerics="aie", functions=("prefill",))
    assert "aie numerics" in repr(cm)
    kinds = set()
    for name, w in cm.ir.weights.items():
        loaded = cm.weights[name]
        if isinstance(w.type, QTensorType):
            kinds.add("w4")
            np.testing.assert_array_equal(loaded, round_to_bf16(w.data.dequantize()))  # bf16((q - z) * s)
        elif name.endswith("inv_freq"):
            kinds.add("rotary")  # host-only: the host computes the cos/sin tables from it in fp32
            np.testing.assert_array_equal(loaded, w.data)
        else:
            kinds.add("float")  # embedding, norms, biases, the fp32 lm_head
            np.testing.assert_array_equal(loaded, round_to_bf16(w.data))
            assert not np.array_equal(loaded, w.data)
    assert kinds == {"w4", "rotary", "float"}


@pytest.mark.parametrize("name", ["mha", "gqa-14x2"])
def test_decode_over_the_cache_matches_prefill(name):
    model = tiny_qwen2(seed=4, **CONFIGS[name])
    cm = aielower.compile(model, quant=quant_for(name), max_seq_len=24, numerics="aie")
    ids = ids_for(2, 12, seed=1)
    full = cm(ids)
    tol = 1e-2 * np.abs(full).max()  # measured: 0 (identical)
    cache = cm.new_cache(batch=2)
    np.testing.assert_allclose(cm.decode(ids[:, :5], 0, cache), full[:, 4:5], rtol=0, atol=tol)  # the last token's
    for t in range(5, 12):
        step = cm.decode(ids[:, t : t + 1], t, cache)
        np.testing.assert_allclose(step[:, 0], full[:, t], rtol=0, atol=tol)
    for c in cache:
        assert is_bf16(c) and np.abs(c[:, :, :12]).max() > 0 and not c[:, :, 12:].any()
    out = cm.generate(ids[:1, :4], max_new_tokens=6)
    for t in range(4, 10):  # generate runs decode; each token is the argmax of prefill over its prefix
        assert out[0, t] == cm(out[:, :t])[0, -1].argmax()


# -- one kernel at a time: IR functions parsed from text -------------------------------------------

KERNELS = """\
weight @w : tensor<24x32xf32>
weight @b : tensor<24xf32>
weight @qw : qtensor<24x32xu4, group=16, scale=bf16, zero=u4>
weight @norm : tensor<32xf32>

func @linear(%x: tensor<2x5x32xf32>) -> tensor<2x5x24xf32> {
  %y = nn.linear %x, @w, @b : tensor<2x5x24xf32>
  return %y
}

func @qlinear(%x: tensor<2x5x32xf32>) -> tensor<2x5x24xf32> {
  %y = quant.linear %x, @qw, @b {bits = 4, group = 16} : tensor<2x5x24xf32>
  return %y
}

func @rms_norm(%x: tensor<2x5x32xf32>) -> tensor<2x5x32xf32> {
  %y = fused.rms_norm %x, @norm {eps = 1e-06} : tensor<2x5x32xf32>
  return %y
}

func @add_rms_norm(%x: tensor<2x5x32xf32>, %r: tensor<2x5x32xf32>) -> (tensor<2x5x32xf32>, tensor<2x5x32xf32>) {
  %s, %y = fused.add_rms_norm %x, %r, @norm {eps = 1e-06} : tensor<2x5x32xf32>, tensor<2x5x32xf32>
  return %s, %y
}

func @silu_mul(%x: tensor<2x5x32xf32>) -> tensor<2x5x16xf32> {
  %y = fused.silu_mul %x : tensor<2x5x16xf32>
  return %y
}

func @attention(%q: tensor<2x4x5x8xf32>, %k: tensor<2x2x5x8xf32>, %v: tensor<2x2x5x8xf32>, %cos: tensor<1x1x5x8xf32>, %sin: tensor<1x1x5x8xf32>) -> tensor<2x4x5x8xf32> {
  %o = fused.attention %q, %k, %v, %cos, %sin {heads = 4, kv_heads = 2, head_dim = 8, scale = 0.35355339059327373} : tensor<2x4x5x8xf32>
  return %o
}

func @attention_cache(%q: tensor<2x4x5x8xf32>, %k: tensor<2x2x5x8xf32>, %v: tensor<2x2x5x8xf32>, %cos: tensor<1x1x5x8xf32>, %sin: tensor<1x1x5x8xf32>, %k_cache: tensor<2x2x9x8xf32>, %v_cache: tensor<2x2x9x8xf32>, %position: tensor<1xi64>) -> (tensor<2x4x5x8xf32>, tensor<2x2x9x8xf32>, tensor<2x2x9x8xf32>) {
  %o, %kc, %vc = fused.attention %q, %k, %v, %cos, %sin, %k_cache, %v_cache, %position {heads = 4, kv_heads = 2, head_dim = 8, scale = 0.35355339059327373} : tensor<2x4x5x8xf32>, tensor<2x2x9x8xf32>, tensor<2x2x9x8xf32>
  return %o, %kc, %vc
}
"""

SHAPES = {
    "linear": [(2, 5, 32)],
    "qlinear": [(2, 5, 32)],
    "rms_norm": [(2, 5, 32)],
    "add_rms_norm": [(2, 5, 32), (2, 5, 32)],
    "silu_mul": [(2, 5, 32)],
    "attention": [(2, 4, 5, 8), (2, 2, 5, 8), (2, 2, 5, 8), (1, 1, 5, 8), (1, 1, 5, 8)],
}


def kernels(numerics: str) -> RefCompiledModel:
    module = parse(KERNELS)
    rng = np.random.default_rng(0)
    data = {"w": rng.standard_normal((24, 32)), "b": rng.standard_normal(24), "norm": 1 + 0.1 * rng.standard_normal(32)}
    for name, array in data.items():
        module.weights[name].data = array.astype(np.float32)
    module.weights["qw"].data = quantize_rtn(data["w"].astype(np.float32), bits=4, group=16)
    return RefCompiledModel(module, generate(module, numerics), numerics)


def inputs(shapes, seed=1):
    """fp32 values that are not bf16 (a random float32 is bf16-exact with probability 2**-16)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def rope(x, cos, sin):
    """The attention kernel's rotary, in fp32."""
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    out = x * cos
    rotated *= sin
    out += rotated
    return out


@pytest.mark.parametrize("function", sorted(SHAPES))
def test_kernel_results_are_bf16_and_operands_are_rounded(function):
    aie, fp32 = kernels("aie"), kernels("fp32")
    args = inputs(SHAPES[function])
    assert not any(is_bf16(a) for a in args)
    results = aie.run(function, *args)
    results = results if isinstance(results, tuple) else (results,)
    for r in results:
        assert r.dtype == np.float32 and is_bf16(r)
    # Operands are rounded before the kernel: rounding them first changes nothing in aie
    # numerics, and something in fp32 numerics.
    rounded = [round_to_bf16(a) for a in args]
    again = aie.run(function, *rounded)
    for r, s in zip(results, again if isinstance(again, tuple) else (again,)):
        np.testing.assert_array_equal(r, s)
    assert not np.array_equal(fp32.run(function, *args), fp32.run(function, *rounded))


def test_attention_rounds_the_rotated_q_and_k():
    aie, fp32 = kernels("aie"), kernels("fp32")
    q, k, v, cos, sin = (round_to_bf16(a) for a in inputs(SHAPES["attention"], seed=2))
    out = aie.run("attention", q, k, v, cos, sin)
    # The same attention in fp32 on bf16(rope(q)), bf16(rope(k)) with an identity rotary (cos 1, sin 0).
    q_r, k_r = round_to_bf16(rope(q, cos, sin)), round_to_bf16(rope(k, cos, sin))
    identity = np.ones_like(cos), np.zeros_like(sin)
    np.testing.assert_array_equal(out, round_to_bf16(fp32.run("attention", q_r, k_r, v, *identity)))
    assert not np.array_equal(out, round_to_bf16(fp32.run("attention", q, k, v, cos, sin)))


def test_attention_writes_bf16_into_the_caches():
    aie = kernels("aie")
    q, k, v, cos, sin = inputs(SHAPES["attention"], seed=3)
    k_cache, v_cache = np.zeros((2, 2, 9, 8), np.float32), np.zeros((2, 2, 9, 8), np.float32)
    out, k_cache, v_cache = aie.run("attention_cache", q, k, v, cos, sin, k_cache, v_cache, np.array([3]))
    assert is_bf16(out) and is_bf16(k_cache) and is_bf16(v_cache)
    rounded = {name: round_to_bf16(a) for name, a in dict(k=k, v=v, cos=cos, sin=sin).items()}
    np.testing.assert_array_equal(k_cache[:, :, 3:8], round_to_bf16(rope(rounded["k"], rounded["cos"], rounded["sin"])))
    np.testing.assert_array_equal(v_cache[:, :, 3:8], rounded["v"])
    assert not k_cache[:, :, :3].any() and not k_cache[:, :, 8:].any()


def test_generated_source_shows_the_rounding():
    cm = kernels("aie")
    assert 'NUMERICS = "aie"' in cm.source and "from aielower.quant.bf16 import round_to_bf16 as bf16" in cm.source
    assert "v0 = nn_linear(bf16(x), W['w'], W['b'])\n    v0 = bf16(v0)\n" in cm.source
    assert "v0, v1 = fused_add_rms_norm(bf16(x), bf16(r), W['norm'], eps=1e-06)\n    v0, v1 = bf16(v0), bf16(v1)\n" in cm.source
    # The caches are written in place, never rounded as a whole (they only receive bf16 values).
    assert "fused_attention(bf16(q), bf16(k), bf16(v), bf16(cos), bf16(sin), k_cache, v_cache, position," in cm.source
    compile(cm.source, "<generated>", "exec")


def test_model_source_rounds_only_what_is_not_bf16_yet():
    cm = aielower.compile(tiny_qwen2(num_hidden_layers=1), functions=("prefill",), numerics="aie")
    calls = [line.strip() for line in cm.source.split("def prefill(")[1].splitlines() if "bf16(" in line]
    # Kernel results are rounded; the only operands rounded at a call are the host's fp32 rotary tables.
    operands = [c for c in calls if "= bf16(" not in c]
    assert len(operands) == 1 and "fused_attention(" in operands[0] and operands[0].count("bf16(") == 2


# -- errors --------------------------------------------------------------------------------------------


def test_unknown_numerics_is_a_compile_error_listing_the_valid_ones():
    # Checked before the model is even looked at.
    with pytest.raises(CompileError, match=r"unknown numerics 'bf16'; valid numerics: 'fp32' \(.*\); 'aie' \(.*\)"):
        aielower.compile(object(), numerics="bf16")
    module = parse(KERNELS)
    with pytest.raises(CompileError, match="unknown numerics 'fp16'"):
        generate(module, "fp16")
    with pytest.raises(CompileError, match="unknown numerics 'AIE'"):
        RefCompiledModel(module, generate(module), numerics="AIE")


def test_source_and_model_numerics_must_agree():
    module = parse(KERNELS)
    with pytest.raises(CompileError, match=r"generated with numerics='fp32' but .* numerics='aie'"):
        RefCompiledModel(module, generate(module), numerics="aie")
