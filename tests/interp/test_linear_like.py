"""A new op, as a user adds one: a linear fused with the residual add that follows it.

It takes its class (LinearLike, so quantization and AWQ see its linear), its pass, and its ``@impl`` (the epilogue:
``y + residual``), and nothing else: the reference backend imports the implementation, the interpreter and AWQ
calibration run it, dense and quantized, with no ``nn.linear`` left in the function.
"""

from __future__ import annotations

import numpy as np
import pytest

import aielower
from aielower.api import FUSIONS
from aielower.backends.ref import RefCompiledModel, generate
from aielower.frontend import import_model
from aielower.interp import Interpreter, impl
from aielower.ir import parse
from aielower.ir.core import LinearLike, Op, op, operand, require, tensor_type
from aielower.ir.dialects import fused, nn
from aielower.passes import PassManager
from aielower.passes.awq import AWQOptions, apply_awq
from aielower.passes.dce import DeadCodeElimination
from aielower.passes.rewriter import PatternPass, RewritePattern, producer, single_user
from tests.conftest import tiny_qwen2


@op("interp_test.linear_add")
class LinearAdd(LinearLike, Op):
    """x @ W^T + bias + residual."""

    x = operand()
    weight = operand()
    residual = operand()
    bias = operand(optional=True)

    def result_types(self):
        y = self.linear_result_type()
        r = tensor_type(self.residual, self.name, "residual")
        require(r.shape == y.shape and r.dtype == y.dtype, f"{self.name}: residual {r} must be {y}")
        return [y]


@impl(LinearAdd)
def linear_add(y, residual):
    return y + residual


class FuseLinearAdd(RewritePattern):
    """add_rms_norm(linear(x), r) -> rms_norm(linear_add(x, r)): the residual add joins the linear."""

    root = fused.AddRMSNorm

    def match_and_rewrite(self, op, rw):
        for product, residual in ((op.x, op.residual), (op.residual, op.x)):  # the add commutes
            linear = producer(product, nn.Linear)
            if linear is not None and single_user(product):
                total = rw.add(LinearAdd(linear.x, linear.weight, residual, bias=linear.bias))
                normed = rw.add(fused.RMSNorm(total, op.weight, eps=op.eps))
                rw.replace_op(op, [total, normed])
                return


class FuseLinearAddPass(PatternPass):
    patterns = (FuseLinearAdd(),)


SMALL = """\
weight @w : tensor<32x16xf32>
weight @b : tensor<32xf32>
func @f(%x: tensor<?bx?sx16xf32>, %r: tensor<?bx?sx32xf32>) -> tensor<?bx?sx32xf32> {
  %z = interp_test.linear_add %x, @w, %r, @b : tensor<?bx?sx32xf32>
  %a = nn.silu %z : tensor<?bx?sx32xf32>
  return %a
}
"""


def small_module():
    module = parse(SMALL)
    rng = np.random.default_rng(0)
    module.weights["w"].data = rng.standard_normal((32, 16)).astype(np.float32)
    module.weights["b"].data = rng.standard_normal(32).astype(np.float32)
    return module


def small_inputs():
    rng = np.random.default_rng(1)
    return rng.standard_normal((2, 5, 16)).astype(np.float32), rng.standard_normal((2, 5, 32)).astype(np.float32)


def silu(x):
    return x / (1 + np.exp(-x))


@pytest.mark.parametrize("pipeline", ["", "quantize-linear{group=16}"], ids=["dense", "w4"])
def test_the_ref_backend_imports_the_user_implementation(pipeline):
    cm = aielower.compile(small_module(), pipeline=pipeline)
    fn = cm.ir.functions["f"]
    assert [o.name for o in fn.ops] == ["interp_test.linear_add", "nn.silu"]  # no nn.linear left
    assert "from tests.interp.test_linear_like import linear_add as impl_interp_test_linear_add" in cm.source
    assert "impl_interp_test_linear_add(v0, r)" in cm.source
    x, r = small_inputs()
    w = cm.ir.functions["f"].ops[0].linear_weight
    dense = w.data.dequantize() if pipeline else w.data
    expected = silu(x @ dense.T + cm.ir.weights["b"].data + r)
    out = cm.run("f", x, r)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(Interpreter(cm.ir, "f")(x, r)[0], out)
    if pipeline:
        assert str(w.type).startswith("qtensor<32x16xu4, group=16")


def test_aie_numerics_round_the_linear_not_the_epilogue():
    cm = aielower.compile(small_module(), pipeline="quantize-linear{group=16}", numerics="aie")
    assert "v0 = nn_linear(bf16(x), W['w.2'], W['b'])\n    v0 = bf16(v0)\n" in cm.source.replace("W['w']", "W['w.2']")
    assert "v1 = impl_interp_test_linear_add(v0, r)\n    del v0, r\n" in cm.source


def fused_qwen2(seed: int = 5):
    model = tiny_qwen2(seed=seed)
    module = import_model(model, max_seq_len=32)
    PassManager.parse(FUSIONS).run(module)
    assert FuseLinearAddPass().run(module) == 8  # o_proj and down_proj of both layers, prefill and decode
    DeadCodeElimination().run(module)
    return model, module


def test_a_qwen2_with_linear_adds_runs_everywhere_and_calibrates():
    model, module = fused_qwen2()
    plain = import_model(model, max_seq_len=32)
    PassManager.parse(FUSIONS).run(plain)
    ids = np.random.default_rng(2).integers(0, 128, (2, 9))
    expected = RefCompiledModel(plain, generate(plain))(ids)
    cm = RefCompiledModel(module, generate(module))
    assert sum(o.name == "interp_test.linear_add" for o in module.functions["prefill"].ops) == 4
    np.testing.assert_allclose(cm(ids), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_array_equal(Interpreter(module)(ids)[0], cm(ids))
    logits, *_ = Interpreter(module, "decode")(ids, np.array([0]), *cm.new_cache(2))
    np.testing.assert_array_equal(logits, cm.decode(ids, 0, cm.new_cache(2)))

    # AWQ calibration runs the interpreter over the fused ops and folds scales into what feeds their linears.
    tokens = np.random.default_rng(0).integers(0, 128, (4, 16))
    report = apply_awq(module, tokens, AWQOptions(group=16, clip=False, progress=False))
    names = [g.name for g in report.groups]
    assert any("o_proj" in n for n in names) and any("down_proj" in n for n in names), names
    np.testing.assert_allclose(RefCompiledModel(module, generate(module))(ids), expected,
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())
