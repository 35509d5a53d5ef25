"""IR text: printing, parsing back, and parse errors that name line:column."""

from __future__ import annotations

import pytest

from aielower.errors import ParseError
from aielower.ir import parse, verify

SAMPLE = """\
weight @emb : tensor<128x64xf32>
weight @q.weight : tensor<64x64xf32>
weight @q.bias : tensor<64xf32>
weight @inv_freq : tensor<8xf32>

func @prefill(%input_ids: tensor<?bx?sxi64>) -> (tensor<?bx4x?sx16xf32>, tensor<?bx?sx32xf32>) {
  %x = nn.embedding %input_ids, @emb : tensor<?bx?sx64xf32>
  %pos = tensor.arange {end = ?s} : tensor<?sxi64>
  %posf = tensor.cast %pos {dtype = f32} : tensor<?sxf32>
  %p2 = tensor.reshape %posf {shape = [?s, 1]} : tensor<?sx1xf32>
  %freqs = nn.mul %p2, @inv_freq : tensor<?sx8xf32>
  %emb2 = tensor.concat %freqs, %freqs {dim = -1} : tensor<?sx16xf32>
  %c = nn.cos %emb2 : tensor<?sx16xf32>
  %sq = nn.pow_scalar %x {value = 2} : tensor<?bx?sx64xf32>
  %ms = nn.mean %sq {dims = [-1], keepdim = true} : tensor<?bx?sx1xf32>
  %eps = nn.add_scalar %ms {value = 1e-06} : tensor<?bx?sx1xf32>
  %r = nn.rsqrt %eps : tensor<?bx?sx1xf32>
  %n = nn.mul %x, %r : tensor<?bx?sx64xf32>
  %q = nn.linear %n, @q.weight, @q.bias : tensor<?bx?sx64xf32>
  %q4 = tensor.reshape %q {shape = [?b, ?s, 4, 16]} : tensor<?bx?sx4x16xf32>
  %qt = tensor.transpose %q4 {dim0 = 1, dim1 = 2} : tensor<?bx4x?sx16xf32>
  %lo = tensor.slice %qt {dim = 3, end = 8} : tensor<?bx4x?sx8xf32>
  %hi = tensor.slice %qt {dim = 3, start = 8, end = 16} : tensor<?bx4x?sx8xf32>
  %rot = tensor.concat %hi, %lo {dim = -1} : tensor<?bx4x?sx16xf32>
  %qr = nn.mul %rot, %c : tensor<?bx4x?sx16xf32>
  %e = tensor.reshape %qr {shape = [?b, 4, 1, ?s, 16]} : tensor<?bx4x1x?sx16xf32>
  %ex = tensor.expand %e {shape = [?b, 4, 2, ?s, 16]} : tensor<?bx4x2x?sx16xf32>
  %kv = tensor.reshape %ex {shape = [?b, 8, ?s, 16]} : tensor<?bx8x?sx16xf32>
  %k4 = tensor.slice %kv {dim = 1, end = 4} : tensor<?bx4x?sx16xf32>
  %a = nn.sdpa %qr, %k4, %k4 {scale = 0.25} : tensor<?bx4x?sx16xf32>
  %s0, %s1 = tensor.split %q {dim = 2, sizes = [32, 32]} : tensor<?bx?sx32xf32>, tensor<?bx?sx32xf32>
  %h = nn.silu %s0 : tensor<?bx?sx32xf32>
  %m = nn.mul_scalar %h {value = 0.5} : tensor<?bx?sx32xf32>
  %perm = tensor.permute %m {perm = [1, 0, 2]} : tensor<?sx?bx32xf32>
  %back = tensor.permute %perm {perm = [1, 0, 2]} : tensor<?bx?sx32xf32>
  %g = nn.sub %back, %s1 : tensor<?bx?sx32xf32>
  return %a, %g
}
"""


def test_round_trip_of_every_construct():
    module = parse(SAMPLE)
    verify(module)
    assert str(module) == SAMPLE
    assert str(parse(str(module))) == str(module)


def test_introspection_api():
    module = parse(SAMPLE)
    fn = module.functions["prefill"]
    linear = next(op for op in fn.ops if op.name == "nn.linear")
    assert [v.type.shape[-1] for v in linear.operands[1:]] == [64, 64]
    assert linear.results[0].type.dtype == "f32"
    assert str(linear.results[0].type) == "tensor<?bx?sx64xf32>"
    split = next(op for op in fn.ops if op.name == "tensor.split")
    assert split.attributes == {"dim": 2, "sizes": (32, 32)}
    assert len(split.results) == 2
    assert module.weights["q.bias"].data is None  # parsed weights are shape-only


def test_unnamed_values_are_numbered_around_named_ones():
    text = SAMPLE.replace("%sq", "%0").replace("%ms", "%1")
    module = parse(text)
    assert str(module) == text


def _error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text, "graph.ir")
    return info.value


@pytest.mark.parametrize(
    "old, new, line, col, expected",
    [
        ("%q = nn.linear %n, @q.weight, @q.bias", "%q = nn.linear %n, @q.wt, @q.bias", 19, 22, "unknown weight @q.wt"),
        ("%q = nn.linear %n, @q.weight, @q.bias", "%q = nn.linear %nn, @q.weight, @q.bias", 19, 18, "use of undefined value %nn"),
        ("%c = nn.cos %emb2", "%c = nn.cosine %emb2", 13, 8, "unknown op 'nn.cosine'"),
        ("{dim0 = 1, dim1 = 2}", "{dim0 = 1, dimm = 2}", 21, 40, "has no attribute 'dimm' (valid: dim0, dim1)"),
        ("%r = nn.rsqrt %eps : tensor<?bx?sx1xf32>", "%r = nn.rsqrt %eps tensor<?bx?sx1xf32>", 17, 22, "expected ':' and the result types"),
        ("tensor<?bx?sx64xf32>\n  %q4", "tensor<?bx?sx65xf32>\n  %q4", 19, 43, "computes result type(s) tensor<?bx?sx64xf32>"),
        ("tensor<64xf32>", "tensor<64xf33>", 3, 28, "unknown element type 'f33'"),
        ("  return %a, %g", "  retrun %a, %g", 37, 3, "expected an op"),
        ("{dim = 3, end = 8}", "{dim = 3, end = [8]}", 22, 42, "attribute 'end' must be an int or a symbol"),
    ],
)
def test_parse_errors_name_line_and_column(old, new, line, col, expected):
    assert old in SAMPLE
    err = _error(SAMPLE.replace(old, new, 1))
    assert expected in err.reason
    assert (err.line, err.col) == (line, col), str(err)
    assert str(err).startswith(f"graph.ir:{line}:{col}: error: ")
    assert str(err).splitlines()[2].index("^") == col + 1  # caret under the column (after two spaces)


def test_parse_error_on_garbage_at_top_level():
    err = _error("graph {\n}")
    assert (err.line, err.col) == (1, 1)
    assert "expected 'weight' or 'func'" in err.reason


def test_module_header_errors_say_what_is_expected():
    assert "'@' and the module name" in _error("module {\n}").reason
    assert "expected '{' opening the module attributes" in _error("module @m attributes [1]").reason
    assert "module name @a$b is not allowed" in _error("module @a$b").reason
    err = _error('module @m attributes {"" = 1}')
    assert "quoted dictionary key" in err.reason


def test_module_attributes_round_trip_and_reach_the_passes():
    """A dump parsed back carries the module's attributes: fuse-attention reads rope_theta from them."""
    from aielower.ir import Module

    m = Module("tiny")
    m.metadata.update({"rope_theta": 1000000.0, "config": {"id2label": {"0": "A", "1": "B"}, "rope_scaling": None,
                                                            "architectures": ["Qwen2ForCausalLM"]}})
    text = str(m)
    assert text.splitlines()[0].startswith('module @tiny attributes {rope_theta = 1000000.0, config = {id2label = {"0"')
    back = parse(text)
    assert back.name == "tiny" and back.metadata == m.metadata and str(back) == text


def test_redefined_value_is_an_error():
    err = _error(SAMPLE.replace("%r = nn.rsqrt %eps", "%x = nn.rsqrt %eps"))
    assert "value %x is defined twice" in err.reason


def test_qtensor_weight_type_round_trips():
    text = "weight @w : qtensor<12288x4096xu4, group=128, scale=bf16, zero=u4>\n"
    module = parse(text)
    t = module.weights["w"].type
    assert (t.shape, t.bits, t.group, t.scale) == ((12288, 4096), 4, 128, "bf16")
    assert str(module) == text
    err = _error(text.replace("group=128", "group=0"))
    assert "bad qtensor type" in err.reason and (err.line, err.col) == (1, 13)


def test_module_names_with_plus_and_numpy_values_round_trip():
    import numpy as np

    from aielower.ir import Module

    m = Module("qwen2.5-7b+awq")
    m.metadata.update({"theta": np.float64(0.5), "layers": np.int64(3), "flag": np.bool_(True)})
    text = str(m)
    assert text.startswith("module @qwen2.5-7b+awq attributes {theta = 0.5, layers = 3, flag = true}")
    assert parse(text).metadata == {"theta": 0.5, "layers": 3, "flag": True}


def test_passes_refuse_module_attributes_of_the_wrong_kind():
    from aielower.errors import IRError
    from aielower.passes import PassManager

    text = 'module @m attributes {rope_theta = "abc", config = 5}\nfunc @f(%x: tensor<4xf32>) -> tensor<4xf32> {\n  return %x\n}\n'
    with pytest.raises(IRError, match="module attribute 'rope_theta' must be int or float, got 'abc'"):
        PassManager.parse("fuse-attention").run(parse(text))
    with pytest.raises(IRError, match="module attribute 'config' must be dict"):
        PassManager.parse("plan-aie-tiling").run(parse(text))


def _two_ops_sharing(value: str) -> str:
    return ("func @f(%x: tensor<3xf32>) -> tensor<3xf32> {\n"
            f"  %y = nn.mul_scalar %x {{value = 2, x.cfg = {value}}} : tensor<3xf32>\n"
            f"  %z = nn.mul_scalar %y {{value = 3, x.cfg = {value}, x.tag = 1}} : tensor<3xf32>\n"
            "  return %z\n}\n")


def test_long_discardable_values_used_twice_print_once_as_aliases():
    from aielower.ir.printer import ALIAS_MIN_CHARS, print_module

    long = "[" + ", ".join(str(i) for i in range(ALIAS_MIN_CHARS // 3)) + "]"
    module = parse(_two_ops_sharing(long))
    text = print_module(module, alias_attrs=True)
    assert text.startswith(f"#cfg0 = {long}\n\nfunc @f(")
    assert text.count("x.cfg = #cfg0") == 2 and text.count(long) == 1
    assert str(parse(text)) == str(module) == _two_ops_sharing(long)  # the plain printer writes values inline
    assert print_module(parse(text), alias_attrs=True) == text
    # a short value, or a long one used once, stays inline
    short = parse(_two_ops_sharing("[1, 2, 3]"))
    assert print_module(short, alias_attrs=True) == str(short)


def test_alias_names_are_unique_and_parse_whatever_the_attribute_key():
    from aielower.ir.printer import ALIAS_MIN_CHARS, print_module

    def value(i: int) -> str:
        return "[" + ", ".join(str(i * 1000 + j) for j in range(ALIAS_MIN_CHARS // 2)) + "]"

    # eleven 'plan' values (plan0 .. plan10) and one 'plan1' value (plan10 too, naively), one key 'x.a.0' (stem 0)
    keys = [("x.plan", i) for i in range(11)] + [("y.plan1", 11), ("x.a.0", 12)]
    lines = [f"  %v{n} = nn.mul_scalar %x {{value = 2, {key} = {value(i)}}} : tensor<3xf32>"
             for n, (key, i) in enumerate(keys + keys)]
    text = "func @f(%x: tensor<3xf32>) -> tensor<3xf32> {\n" + "\n".join(lines) + "\n  return %x\n}\n"
    module = parse(text)
    aliased = print_module(module, alias_attrs=True)
    names = [line.split(" = ")[0] for line in aliased.splitlines() if line.startswith("#")]
    assert len(names) == len(set(names)) == 13 and "#attr_00" in names and "#plan10" in names
    assert str(parse(aliased)) == str(module)
