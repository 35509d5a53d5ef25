"""The kernel-family registry (issue 14, item 1): one family per kind of planned op, looked up by the drivers."""

from __future__ import annotations

import pytest

from aielower.backends.aie import plan as plan_schema
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import KERNEL_FAMILIES, FamilyRegistry, KernelFamily, gemv_attention, gemv_norm
from aielower.backends.aie.families.attention import ROPE_KERNEL, Attention
from aielower.backends.aie.families.linear_w4 import LinearW4
from aielower.backends.aie.plan import plan_of
from aielower.errors import CompileError


def test_the_registry_covers_exactly_the_plan_schema():
    """Every plan kind and kernel an ``aie.plan`` may name has one family, and no family claims anything else."""
    assert sorted(KERNEL_FAMILIES.kinds) == sorted(plan_schema.KINDS)
    assert sorted(KERNEL_FAMILIES.kernels) == sorted(plan_schema.KERNELS)
    assert [f.name for f in KERNEL_FAMILIES] == ["linear_w4", "rms_norm", "silu_mul", "attention"]
    assert KERNEL_FAMILIES.for_kind("add_rms_norm") is KERNEL_FAMILIES.for_kind("rms_norm")
    assert KERNEL_FAMILIES.for_kernel("rope") is KERNEL_FAMILIES.for_kind("attention")
    assert KERNEL_FAMILIES.for_kernel("linear_w4_gemm") is KERNEL_FAMILIES.for_kind("linear")


def test_unknown_kinds_and_kernels_name_the_registered_ones():
    with pytest.raises(CompileError, match=r"no kernel family runs plans of kind 'conv' \(registered: add_rms_norm, "
                                           r"attention, linear, rms_norm, silu_mul\)"):
        KERNEL_FAMILIES.for_kind("conv")
    with pytest.raises(CompileError, match=r"no kernel family runs the kernel 'gelu' \(registered: attention, "):
        KERNEL_FAMILIES.for_kernel("gelu")


def test_two_families_cannot_claim_one_kernel():
    class Rotary(KernelFamily):
        name, kinds, kernel_defs = "rotary", ("rotary",), {"rope": ROPE_KERNEL}

    with pytest.raises(CompileError, match="kernel families attention and rotary both claim the kernel 'rope'"):
        FamilyRegistry((Attention(), Rotary()))
    with pytest.raises(CompileError, match="kernel families linear_w4 and linear_w4 both claim the kind 'linear'"):
        FamilyRegistry((LinearW4(), LinearW4()))


def test_each_planned_op_is_claimed_by_one_family_and_host_ops_by_none(planned):
    """What plan-aie-tiling planned, op by op: the family that claims the op is the one its plan's kind names, and
    no other family claims it; host ops are claimed by none."""
    buckets = (1, 128)
    seen = set()
    for fn in planned.functions.values():
        for op in fn.ops:
            claims = [f.name for f in KERNEL_FAMILIES if f.plan_key(op, buckets, buckets) is not None]
            plan = plan_of(op)
            if plan is None:
                assert claims == [], op.name
                continue
            assert claims == [KERNEL_FAMILIES.for_kind(plan.kind).name], op.name
            seen.add(claims[0])
            for launch in plan.launches:  # decode's norm and attention join the GEMVs' configuration: their kernel
                joined = gemv_norm.is_norm(launch) or gemv_attention.is_attention(launch)  # runs them
                runs = "linear_w4" if joined else claims[0]
                assert KERNEL_FAMILIES.for_kernel(launch.kernel).name == runs
                if runs != claims[0]:
                    seen.add("joined")
    assert seen == {"linear_w4", "rms_norm", "silu_mul", "attention", "joined"}


def test_a_registry_asks_its_families_in_order():
    """The drivers only ask the registry: a family placed first claims the ops it wants."""

    class Claims(KernelFamily):
        name, kinds = "claims", ("claims",)

        def plan_key(self, op, buckets, linear_buckets):
            return ("claimed", op), None

    class Never(KernelFamily):
        name, kinds = "never", ("never",)

        def plan_key(self, op, buckets, linear_buckets):
            return None

    op = object()
    assert FamilyRegistry((Never(), Claims())).plan_key(op, (1,), (1,)) == (("claimed", op), None)
    assert FamilyRegistry((Never(),)).plan_key(op, (1,), (1,)) is None
    assert repr(Claims()) == "<kernel family claims: kinds claims; kernels >"


def test_the_host_program_runs_planned_ops_through_their_family(planned):
    from aielower.backends.aie.device import NPU2
    from aielower.backends.aie.host_program import HostProgram
    from aielower.backends.aie.plan import OpPlan

    host = HostProgram(planned, NPU2, {}, {}, design_for=None, launcher=None)
    with pytest.raises(CompileError, match="no kernel family runs plans of kind 'conv'"):
        host.npu(object(), OpPlan("conv", "npu2", {}), ())


def test_launches_that_differ_only_where_their_design_does_not_read_share_it(planned):
    """Prompt attention and attention over the cache rotate their rows alike: at a bucket both are planned for,
    their rope launches are one design (one xclbin, one device configuration); their attention launches are two."""
    from aielower.backends.aie.catalog import collect, design_name

    prefill, decode = ([plan for op in planned.functions[fn].ops if (plan := plan_of(op)) and plan.kind == "attention"][0]
                       for fn in ("prefill", "decode"))
    assert prefill.shape != decode.shape
    common = sorted(set(prefill.buckets) & set(decode.buckets))
    assert common
    for bucket in common:
        def role(plan, name):
            return next(launch for launch in plan.launches_for(bucket) if launch.role == name)

        assert design_name(role(prefill, "rope"), prefill) == design_name(role(decode, "rope"), decode)
        assert design_name(role(prefill, "attention"), prefill) != design_name(role(decode, "attention"), decode)
    names = [d.name for d in collect(planned, NPU2)[1].values()]
    assert len(names) == len(set(names))


def test_a_linear_whose_plan_computes_another_epilogue_is_refused():
    """The host takes a fused op's launches as its result only when plan and op agree on the epilogue: a plain
    linear given the fused gate/up projection's plan (as IR edited by hand could) is an error, not half a result."""
    from pathlib import Path

    from aielower.ir import parse
    from aielower.passes import PassManager

    text = (Path(__file__).parents[2] / "passes" / "filecheck" / "fuse-aie-epilogues.ir").read_text()
    module = PassManager.parse("fuse-aie-epilogues,plan-aie-tiling").run(parse(text))
    fused_op, down = module.functions["decode"].ops[:2]
    assert fused_op.name == "fused.linear_silu_mul" and down.name == "quant.linear"
    with pytest.raises(CompileError, match="quant.linear: its plan's kernels compute epilogue 'silu_mul', the op "
                                           "needs None"):
        LinearW4().run(None, down, plan_of(fused_op), ())
    with pytest.raises(CompileError, match="fused.linear_silu_mul: its plan's kernels compute epilogue None"):
        LinearW4().run(None, fused_op, plan_of(down), ())


def test_one_weight_planned_with_two_tilings_is_refused():
    """One pre-tiled blob per weight: two ops reading one weight with different tilings (one with its gate and up
    rows interleaved, one without) cannot both be served, and writing the artifact's weights says so."""
    import dataclasses
    from pathlib import Path

    from aielower.backends.aie.artifact import weight_files
    from aielower.backends.aie.plan import PLAN_ATTR
    from aielower.ir import parse
    from aielower.passes import PassManager

    from aielower.passes.base import PipelineWarning

    text = (Path(__file__).parents[2] / "passes" / "filecheck" / "fuse-aie-epilogues-negative.ir").read_text()
    with pytest.warns(PipelineWarning, match="@dense op #0 .* dense weight"):
        module = PassManager.parse("fuse-aie-epilogues,plan-aie-tiling").run(parse(text))
    assert weight_files(module)["shared.gate_up_proj"].get("rows") is None  # neither reader was fused
    op = next(op for op in module.functions["linear_read_twice"].ops if op.name == "quant.linear")
    plan = plan_of(op)
    op.set_attr(PLAN_ATTR, dataclasses.replace(plan, shape=dict(plan.shape, epilogue="silu_mul", arch="aie2p")))
    with pytest.raises(CompileError, match="weight @shared.gate_up_proj is planned with two tilings"):
        weight_files(module)
