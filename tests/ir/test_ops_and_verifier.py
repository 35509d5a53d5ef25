"""Op construction, result-type rules, the verifier and the networkx view."""

from __future__ import annotations

import networkx as nx
import pytest

from aielower.errors import IRError, VerifyError
from aielower.ir import Builder, Function, Module, Sym, TensorType, parse, to_networkx, verify
from aielower.ir.dialects import nn, tensor

B, S = Sym("b"), Sym("s")


def make_module():
    m = Module("t")
    w = m.add_weight("w", TensorType((32, 64), "f32"))
    fn = m.add_function(Function("prefill"))
    x = fn.add_arg("x", TensorType((B, S, 64), "f32"))
    b = Builder(fn)
    y = b.add(nn.Linear(x, w))
    z = b.add(nn.Silu(y))
    fn.set_results([z])
    return m, fn, x, y, z


def test_builder_and_use_lists():
    m, fn, x, y, z = make_module()
    verify(m)
    assert [op.name for op in fn.ops] == ["nn.linear", "nn.silu"]
    assert x.users == [fn.ops[0]]
    assert m.weights["w"].users == [fn.ops[0]]
    assert y.type == TensorType((B, S, 32), "f32")


def test_replace_all_uses_with_updates_users_and_returns():
    m, fn, x, y, z = make_module()
    b = Builder(fn)
    z2 = b.add(nn.Neg(y))
    z.replace_all_uses_with(z2)
    assert fn.results == [z2]
    verify(m)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda x, w: nn.Linear(x, x), "weight must be 2-D"),
        (lambda x, w: nn.Linear(x, w, w), "bias"),
        (lambda x, w: tensor.Reshape(x, shape=[S, 3]), "cannot reshape"),
        (lambda x, w: tensor.Split(x, dim=-1, sizes=[30, 30]), "do not add up"),
        (lambda x, w: tensor.Transpose(x, dim0=0, dim1=5), "out of range"),
        (lambda x, w: nn.Add(x, tensor.Cast(x, dtype="f16").result), "dtypes differ"),
        (lambda x, w: nn.Mean(x, dims=[0], kep=True), "unknown attribute(s) kep"),
        (lambda x, w: tensor.Concat([x, x], dim=1), "symbolic dim"),
        (lambda x, w: nn.Softmax(x), "missing attribute 'dim'"),
        (lambda x, w: tensor.Slice(x, dim=1, start=-2, end=S), "cover it whole or keep its last entry"),
        (lambda x, w: tensor.Slice(x, dim=1, start=-1, end=S, step=2), "cover it whole or keep its last entry"),
        (lambda x, w: tensor.Slice(x, dim=2, start=-65, end=64), "start -65 is before the first of 64 entries"),
        (lambda x, w: tensor.Slice(x, dim=2, start=-1, end=8), "start -1 > end 8"),
    ],
)
def test_type_rules_reject_bad_ops(build, message):
    m, fn, x, *_ = make_module()
    with pytest.raises(IRError, match=None) as info:
        build(x, m.weights["w"])
    assert message in str(info.value)


def test_slice_with_a_negative_start_counts_from_the_end():
    m, fn, x, *_ = make_module()
    assert tensor.Slice(x, dim=1, start=-1, end=S).result.type.shape == (B, 1, 64)  # the last token
    assert tensor.Slice(x, dim=2, start=-3, end=64).result.type.shape == (B, S, 3)
    assert tensor.Slice(x, dim=1, start=0, end=S).result.type.shape == (B, S, 64)


def test_verifier_names_function_and_op():
    m, fn, x, y, z = make_module()
    fn.ops.reverse()  # silu now reads the linear result before it is defined
    with pytest.raises(VerifyError) as info:
        verify(m)
    assert "@prefill, op #0 (nn.silu): uses a value that is not defined before it" in str(info.value)


def test_verifier_catches_stale_result_types():
    m, fn, x, y, z = make_module()
    other = m.add_weight("w2", TensorType((16, 64), "f32"))
    fn.ops[0].replace_operand(m.weights["w"], other)  # result type is now stale
    with pytest.raises(VerifyError, match="differ from what the op computes"):
        verify(m)


def test_bad_symbol_name_is_rejected():
    with pytest.raises(IRError, match="no lowercase 'x'"):
        Sym("max")


def test_to_networkx_is_a_read_only_dataflow_graph():
    m, fn, *_ = make_module()
    g = to_networkx(m)
    assert nx.is_frozen(g)
    assert g.nodes["prefill:0"]["op"] == "nn.linear"
    assert list(nx.topological_sort(g))[-1] == "prefill:return"
    assert g.has_edge("@w", "prefill:0") and g.has_edge("prefill:%x", "prefill:0")
    with pytest.raises(nx.NetworkXError):
        g.add_node("x")


def test_parse_of_a_printed_module_verifies():
    m, *_ = make_module()
    verify(parse(str(m)))


def test_builder_insertion_points():
    m, fn, x, y, z = make_module()
    b = Builder(fn)
    b.set_insertion_point_before(fn.ops[1])
    neg = b.add(nn.Neg(y))
    b.set_insertion_point_after(fn.ops[0])
    b.add(nn.Neg(y))
    assert [op.name for op in fn.ops] == ["nn.linear", "nn.neg", "nn.neg", "nn.silu"]
    assert fn.ops[2].result is neg
    verify(m)


@pytest.mark.parametrize(
    "text, message",
    [
        ("func @f(%q: tensor<1x1x1x2xf32>, %k: tensor<1x1x4x2xf32>, %m: tensor<1x1x4x1xi1>) -> tensor<1x1x1x2xf32> {\n"
         "  %0 = nn.sdpa %q, %k, %k, %m {scale = 1.0, causal = false} : tensor<1x1x1x2xf32>\n  return %0\n}\n",
         "mask tensor<1x1x4x1xi1> must broadcast to the scores"),
        ("weight @w : tensor<4x2xf32>\nweight @b : tensor<4xi64>\n"
         "func @f(%x: tensor<3x2xf32>) -> tensor<3x4xf32> {\n"
         "  %0 = nn.linear %x, @w, @b : tensor<3x4xf32>\n  return %0\n}\n", "operand dtypes differ (f32, i64)"),
        ("weight @w : tensor<2xf16>\nfunc @f(%x: tensor<3x2xf32>) -> tensor<3x2xf32> {\n"
         "  %0 = fused.rms_norm %x, @w {eps = 1e-06} : tensor<3x2xf32>\n  return %0\n}\n", "operand dtypes differ (f16, f32)"),
        ("func @f(%q: tensor<1x2x3x4xf32>, %k: tensor<2x1x3x4xf32>, %c: tensor<1x1x3x4xf32>) -> tensor<1x2x3x4xf32> {\n"
         "  %0 = fused.attention %q, %k, %k, %c, %c {heads = 2, kv_heads = 1, head_dim = 4, scale = 0.5} : tensor<1x2x3x4xf32>\n"
         "  return %0\n}\n", "batch of q, k, v differ"),
        ("func @f(%q: tensor<1x2x3x4xf32>, %k: tensor<1x1x5x4xf32>, %c: tensor<1x1x3x4xf32>) -> tensor<1x2x3x4xf32> {\n"
         "  %0 = fused.attention %q, %k, %k, %c, %c {heads = 2, kv_heads = 1, head_dim = 4, scale = 0.5} : tensor<1x2x3x4xf32>\n"
         "  return %0\n}\n", "q has 3 positions, the new k/v 5"),
    ],
)
def test_type_rules_reject_inconsistent_ops_in_text(text, message):
    from aielower.errors import ParseError

    with pytest.raises(ParseError) as info:
        parse(text)
    assert message in info.value.reason


@pytest.mark.parametrize("value", ["-inf", "inf", "nan", "-1e-06", "1000000.0"])
def test_special_float_attributes_round_trip(value):
    text = f"func @f(%x: tensor<4xf32>) -> tensor<4xf32> {{\n  %0 = nn.add_scalar %x {{value = {value}}} : tensor<4xf32>\n  return %0\n}}\n"
    assert str(parse(text)) == text
