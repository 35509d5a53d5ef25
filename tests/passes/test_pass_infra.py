"""The pass and IR infrastructure for people who extend it: dataclass passes, the worklist driver and its counts,
traits and interfaces, typed attributes, leftovers warnings."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from aielower.errors import CompileError, IRError
from aielower.ir import Module, QTensorType, TensorType, parse
from aielower.ir.core import Commutative, LinearLike, ViewOf, WritesInPlace
from aielower.ir.dialects import fused, nn, quant
from aielower.passes import (
    ModulePass,
    PassManager,
    PatternPass,
    PipelineWarning,
    RewritePattern,
    match_commutative,
    option,
    register_pass,
)
from aielower.passes.base import PASS_REGISTRY

ADDS = """\
func @f(%a: tensor<4xf32>, %b: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) {
  %x = nn.add %a, %b : tensor<4xf32>
  %y = nn.add %b, %a : tensor<4xf32>
  %z = nn.sub %a, %b : tensor<4xf32>
  %w = nn.sub %b, %a : tensor<4xf32>
  %s = nn.add %z, %w : tensor<4xf32>
  return %x, %y, %s
}
"""


@pytest.fixture
def scratch_registry():
    before = dict(PASS_REGISTRY)
    yield
    PASS_REGISTRY.clear()
    PASS_REGISTRY.update(before)


# --------------------------------------------------------------------------- passes as dataclasses


def test_a_pass_is_a_frozen_dataclass_whose_fields_are_its_options(scratch_registry):
    @register_pass("test-opts")
    class Opts(ModulePass):
        """Options only."""

        width: int = option(8, "a width", minimum=1)
        scale: float = option(1.0, "a scale")
        name_: str = option("x", "a name", choices=("x", "y"))
        flag: bool = option(False, "a flag")

        def run(self, module):
            return 0

    assert [o.name for o in Opts.options] == ["width", "scale", "name_", "flag"]
    p = PassManager.parse("test-opts{width=3 scale=2 flag=true}").passes[0]
    assert (p.width, p.scale, p.flag) == (3, 2.0, True) and isinstance(p.scale, float)
    assert p.spec() == "test-opts{width=3 scale=2.0 name_=x flag=true}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.width = 4
    assert Opts(width=3, scale=2.0, flag=True) == p  # keyword construction runs the same checks
    with pytest.raises(CompileError, match="option 'width' must be >= 1, got 0"):
        Opts(width=0)
    with pytest.raises(CompileError, match="option 'name_' must be one of x, y, got 'z'"):
        PassManager.parse("test-opts{name_=z}")
    with pytest.raises(CompileError, match="pass 'test-opts' has no option 'depth'; valid: width=8"):
        PassManager.parse("test-opts{depth=1}")


def test_options_must_have_a_plain_type(scratch_registry):
    with pytest.raises(CompileError, match="option 'sizes' must be int, float, bool or str"):
        @register_pass("test-bad-option")
        class Bad(ModulePass):
            sizes: list = option((1, 2), "sizes")


def test_registering_another_class_under_a_taken_name_is_an_error(scratch_registry):
    class Other(ModulePass):
        pass

    with pytest.raises(CompileError, match="pass 'dce' is registered twice"):
        register_pass("dce")(Other)
    with pytest.raises(CompileError, match="pass name 'Bad Name'"):
        register_pass("Bad Name")(Other)


def test_quant_config_is_the_passes_options():
    import aielower

    q = aielower.QuantConfig(lm_head_group_size=32)
    assert [p.name for p in q.passes()] == ["quantize-linear", "quantize-lm-head"]
    assert q.group_size == q.passes()[0].group == 128  # the default is the pass's
    with pytest.raises(CompileError, match="option 'bits' must be one of 2, 4, 8, got 3"):
        aielower.QuantConfig(bits=3)
    with pytest.raises(CompileError, match="option 'group' must be >= 1"):
        aielower.QuantConfig(group_size=0)


# --------------------------------------------------------------------------- the worklist driver


class SwapSub(RewritePattern):
    """sub(a, b) -> sub(b, a): undoes itself, never terminates."""

    root = nn.Sub

    def match_and_rewrite(self, op, rw):
        rw.replace_op(op, [rw.add(nn.Sub(op.rhs, op.lhs))])


def test_patterns_that_never_terminate_are_stopped_with_an_error(scratch_registry):
    @register_pass("test-swap")
    class Swap(PatternPass):
        patterns = (SwapSub(),)

    with pytest.raises(CompileError, match=r"pass 'test-swap': more than [0-9,]+ rewrites on @f .* do not terminate "
                                           r"\(last: SwapSub on nn.sub\)"):
        PassManager.parse("test-swap").run(parse(ADDS))


class FoldAddOfSubs(RewritePattern):
    """add(sub(a, b), sub(b, a)) -> a - a (in either operand order): exercises match_commutative."""

    root = nn.Add

    def match_and_rewrite(self, op, rw):
        for left, right in match_commutative(op):
            from aielower.passes import producer

            s, t = producer(left, nn.Sub), producer(right, nn.Sub)
            if s is not None and t is not None and (s.lhs, s.rhs) == (t.rhs, t.lhs):
                rw.replace_op(op, [rw.add(nn.Sub(s.lhs, s.lhs))])
                return


def test_rewrite_counts_reach_the_timings_and_the_dumps(tmp_path, scratch_registry):
    @register_pass("test-fold")
    class Fold(PatternPass):
        patterns = (FoldAddOfSubs(),)

    manager = PassManager.parse("test-fold,dce,test-fold", dump_dir=tmp_path)
    manager.run(parse(ADDS))
    assert [(t.name, t.rewrites) for t in manager.timings] == [("test-fold", 1), ("dce", 2), ("test-fold", 0)]
    assert (tmp_path / "01-test-fold.ir").read_text().startswith("// after pass test-fold: ")
    assert ", 0 rewrites, " in (tmp_path / "03-test-fold.ir").read_text().splitlines()[0]
    parse((tmp_path / "03-test-fold.ir").read_text())  # the header is a comment: a dump still parses


def test_match_commutative_needs_the_trait():
    m = parse(ADDS)
    add, sub = m.functions["f"].ops[0], m.functions["f"].ops[2]
    assert add.has_trait(Commutative) and not sub.has_trait(Commutative)
    assert [tuple(v.name_hint for v in pair) for pair in match_commutative(add)] == [("a", "b"), ("b", "a")]
    with pytest.raises(IRError, match="match_commutative needs a binary op with the Commutative trait, got nn.sub"):
        match_commutative(sub)


def test_cse_merges_commutative_operands_in_either_order():
    m = PassManager.parse("cse,dce").run(parse(ADDS))
    names = [op.name for op in m.functions["f"].ops]
    assert names.count("nn.add") == 2 and names.count("nn.sub") == 2  # a+b == b+a, but a-b != b-a


def test_the_driver_is_linear_in_the_ops_it_visits():
    """The old driver searched the op list per rewrite; a chain of n foldable ops must cost O(n) visits."""
    lines = ["func @f(%x: tensor<4xf32>) -> tensor<4xf32> {", "  %v0 = nn.mul_scalar %x {value = 1.0} : tensor<4xf32>"]
    n = 4000
    lines += [f"  %v{i} = nn.mul_scalar %v{i - 1} {{value = 1.0}} : tensor<4xf32>" for i in range(1, n)]
    lines += [f"  return %v{n - 1}", "}"]
    module = parse("\n".join(lines))
    manager = PassManager.parse("canonicalize")
    manager.run(module)
    assert manager.timings[0].rewrites == n and len(module.functions["f"].ops) == 0


# --------------------------------------------------------------------------- traits, interfaces, attributes


def test_traits_say_what_aliases_what():
    m = parse("""\
func @f(%c: tensor<1x2x8x4xf32>, %i: tensor<1xi64>, %s: tensor<1x2x1x4xf32>) -> (tensor<1x2x8x4xf32>, tensor<2x8x4xf32>) {
  %w = tensor.index_copy %c, %i, %s {dim = 2} : tensor<1x2x8x4xf32>
  %r = tensor.reshape %w {shape = [2, 8, 4]} : tensor<2x8x4xf32>
  return %w, %r
}
""")
    write, view = m.functions["f"].ops
    assert write.get_trait(WritesInPlace).results == {0: "x"} and write.aliased_results() == {0: "x"}
    assert view.has_trait(ViewOf) and view.aliased_results() == {0: "x"}
    assert not nn.Add.has_trait(WritesInPlace)


def test_linear_like_ops_expose_their_linear():
    assert issubclass(nn.Linear, LinearLike) and issubclass(quant.QLinear, LinearLike)
    assert not issubclass(fused.RMSNorm, LinearLike)
    m = parse("""\
weight @w : tensor<8x4xf32>
weight @b : tensor<8xf32>
func @f(%x: tensor<2x4xf32>) -> tensor<2x8xf32> {
  %y = nn.linear %x, @w, @b : tensor<2x8xf32>
  return %y
}
""")
    lin = m.functions["f"].ops[0]
    assert (lin.linear_input.name_hint, lin.linear_weight.name, lin.linear_bias.name) == ("x", "w", "b")
    assert (lin.in_features, lin.out_features) == (4, 8) and lin.epilogue_operands() == []
    q = m.add_weight("wq", QTensorType((8, 4), bits=4, group=4))
    qlin = lin.with_linear_weight(q)
    assert isinstance(qlin, quant.QLinear) and (qlin.bits, qlin.group) == (4, 4)
    assert qlin.operand_group("bias") == [m.weights["b"]]
    with pytest.raises(IRError, match="nn.linear has no operand 'scale'"):
        lin.operand_group("scale")


def test_set_attr_checks_declared_and_discardable_attributes():
    m = parse("func @f(%x: tensor<4xf32>) -> tensor<4xf32> {\n  %y = nn.mul_scalar %x {value = 2} : tensor<4xf32>\n"
              "  return %y\n}\n")
    op = m.functions["f"].ops[0]
    op.set_attr("value", 3.5)
    op.set_attr("my.note", {"why": "a test", "keys": [1, 2]})
    with pytest.raises(IRError, match="attribute 'value' must be a number"):
        op.set_attr("value", "big")
    with pytest.raises(IRError, match="nn.mul_scalar: no attribute 'colour'"):
        op.set_attr("colour", 1)
    with pytest.raises(IRError, match="is not plain data"):
        op.set_attr("my.note", object())
    text = str(m)
    assert 'my.note = {why = "a test", keys = [1, 2]}' in text and str(parse(text)) == text


def test_the_aie_plan_attribute_is_the_plan_object_and_reads_back(tmp_path):
    from aielower.backends.aie.plan import OpPlan, plan_of

    text = (__import__("pathlib").Path(__file__).parent / "filecheck" / "plan-aie-tiling.ir").read_text()
    planned = PassManager.parse("plan-aie-tiling").run(parse(text))
    plans = [plan_of(op) for fn in planned.functions.values() for op in fn.ops if plan_of(op) is not None]
    assert plans and all(isinstance(p, OpPlan) for p in plans)
    again = parse(str(planned))  # printed as plain data, parsed back into plans (checked by OpPlan.from_attr)
    assert [plan_of(op) for fn in again.functions.values() for op in fn.ops if plan_of(op) is not None] == plans
    broken = str(planned).replace('kind = "linear"', 'kind = "lineer"', 1)
    with pytest.raises(IRError, match="malformed aie.plan attribute: the plan kind is 'lineer'"):
        parse(broken)


def test_names_in_the_aie_plan_attribute_are_checked_when_it_is_read():
    """A plan's shape and params may hold names (a kernel's epilogue and architecture), which reach kernel symbols,
    file names and C++: read from text, anything but a plan name is refused."""
    text = (__import__("pathlib").Path(__file__).parent / "filecheck" / "fuse-aie-epilogues.ir").read_text()
    planned = str(PassManager.parse("fuse-aie-epilogues,plan-aie-tiling").run(parse(text)))
    assert 'epilogue = "silu_mul"' in planned and str(parse(planned)) == planned
    for hostile in ('silu_mul\\"); system(\\"rm', "Silu", "../x", ""):
        broken = planned.replace('epilogue = "silu_mul"', f'epilogue = "{hostile}"', 1)
        with pytest.raises(IRError, match="malformed aie.plan attribute: shape.epilogue is"):
            parse(broken)
    # only those entries are names: a number given as one is refused too
    broken = planned.replace("n_pad = 192", 'n_pad = "nb"', 1)
    assert broken != planned
    with pytest.raises(IRError, match="malformed aie.plan attribute: shape.n_pad is 'nb', expected a number"):
        parse(broken)


def test_qtensor_bytes_are_counted_once():
    t = QTensorType((64, 256), bits=4, group=128)
    assert t.groups == 128 and t.nbytes == 64 * 256 // 2 + 128 * 2 + 64
    m = Module()
    m.add_weight("q", t)
    m.add_weight("d", TensorType((3, 5), "f32"))
    assert m.weight_bytes() == t.nbytes + 60


# --------------------------------------------------------------------------- leftovers


LINEAR_ADD_IR = """\
weight @w : tensor<8x64xf32>
func @prefill(%x: tensor<?bx?sx64xf32>) -> tensor<?bx?sx8xf32> {
  %y = nn.linear %x, @w : tensor<?bx?sx8xf32>
  %z = nn.add %y, %y : tensor<?bx?sx8xf32>
  return %z
}
"""


def test_a_linear_left_dense_after_quantization_is_warned_about(scratch_registry):
    class MakeLinear(RewritePattern):
        """x + x of a linear's output -> a new linear (dense: made after quantize-linear ran)."""

        root = nn.Add

        def match_and_rewrite(self, op, rw):
            from aielower.passes import producer

            lin = producer(op.lhs, nn.Linear, quant.QLinear)
            if lin is not None and op.lhs is op.rhs:
                w = rw.add_weight("w2", TensorType((8, 8), "f32"))
                rw.replace_op(op, [rw.add(nn.Add(rw.add(nn.Linear(op.lhs, w)), op.lhs))])  # not the lm_head

    @register_pass("test-make-linear")
    class Make(PatternPass):
        patterns = (MakeLinear(),)

    with pytest.warns(PipelineWarning, match=r"quantize-linear: nn.linear in @prefill \(weight @w2\) is linear-like "
                                             r"but was left unquantized"):
        PassManager.parse("quantize-linear{group=8},test-make-linear").run(parse(LINEAR_ADD_IR))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PassManager.parse("test-make-linear,quantize-linear{group=8}").run(parse(LINEAR_ADD_IR))


# --------------------------------------------------------------------------- dumps reproduce the pipeline


def test_opt_on_a_dump_reproduces_the_in_memory_pipeline(tmp_path):
    """The input dump carries the module's attributes (rope_theta, the config), so running the pipeline on it gives
    exactly the compiled IR (fuse-attention used to read rope_theta 0.0 from a dump)."""
    import aielower
    from tests.conftest import tiny_qwen2

    model = tiny_qwen2(num_hidden_layers=1, rope_theta=12345.0)
    cm = aielower.compile(model, dump_ir=tmp_path)
    dumped = parse((tmp_path / "00-input.ir").read_text(), "00-input.ir")
    assert dumped.metadata["rope_theta"] == 12345.0
    again = PassManager.parse(aielower.default_pipeline("ref")).run(dumped)

    def renumbered(module):  # numbered values keep their parsed numbers; compare up to that renaming
        for fn in module.functions.values():
            for op in fn.ops:
                for r in op.results:
                    if r.name_hint is not None and r.name_hint.isdigit():
                        r.name_hint = None
        return str(module)

    assert renumbered(again) == renumbered(cm.ir)
    assert "rope_theta = 12345.0" in str(again)
