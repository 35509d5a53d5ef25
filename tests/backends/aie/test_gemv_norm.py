"""Decode's norms as members of the GEMV configuration (families/gemv_norm.py): planned in the format of the
decode GEMVs without bias, placed on their shared design, and on the emulator bit for bit the norm's own design."""

from __future__ import annotations

import numpy as np
import pytest

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.catalog import Placement, design_name
from aielower.backends.aie.designs import DesignRun, build_design, check_design, parse_design, render
from aielower.backends.aie.designs.shared import HEADER_ARG, build_shared_design, header_words
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import KERNEL_FAMILIES, gemv_norm
from aielower.backends.aie.families.linear_w4 import gemv_spec, plan_linear
from aielower.backends.aie.families.rms_norm import plan_norm
from aielower.backends.aie.host_arrays import from_bf16, from_tile_records, tile_records, to_bf16
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.aie.plan import plan_of
from aielower.backends.aie.planner import Unplannable
from aielower.errors import AielowerError, CompileError
from tests.backends.aie.test_shared import _tensors, plan_tiny_gqa

GEMV = KERNEL_FAMILIES.for_kernel("linear_w4_gemv")
NORM = KERNEL_FAMILIES.for_kernel("rms_norm")
D = 200  # padded to whole slices of the 8 x 4 grid: 512 columns


def _linear(name: str, n: int, epilogue: str | None = None, k: int = 256):
    plan = plan_linear(name, n, k, 32, False, (1,), NPU2, epilogue)
    return design_name(plan.launches[0], plan), plan.launches[0], plan


def _offer(linear):
    """The configuration a linear (as :func:`_linear` gives it) offers."""
    (offer,) = GEMV.offers(linear[2])
    return offer


def _norm(add: bool, linear, d: int = D):
    """The norm planned for decode on its own kernel, and joined to ``gemv``'s configuration (a plain norm runs
    the residual-add kernel with a residual of -0, as plan-aie-tiling plans it)."""
    own = plan_norm("norm", d, 1e-6, add, (1,), NPU2, zero_residual=not add)
    joined = NORM.joined(own, [_offer(linear)], NPU2)
    (member,) = joined.launches
    return own, (design_name(member, joined), member, joined)


def test_a_norm_planned_in_a_gemvs_format_shares_its_configuration_key():
    o_linear = _linear("o", 512)
    _, o, o_plan = o_linear
    own, (_, member, plan) = _norm(True, o_linear)
    assert own.launches[0].kernel == "rms_norm" and gemv_norm.is_norm(member)
    assert member.kernel == "linear_w4_gemv" and member.streams == o.streams
    assert (member.columns, member.rows) == (o.columns, o.rows)
    assert GEMV.configuration_key(member, plan) == GEMV.configuration_key(o, o_plan)
    p = member.params
    assert p["norm_d"] % (p["tk"] // 2) == 0 and p["norm_d"] == p["norm_slice"] * member.cores >= D
    assert p["nb"] * p["tn"] >= gemv_norm.accumulator_floats(p["norm_d"], p["norm_slice"])
    assert GEMV.calls_per_core(member, plan.shape) == {"norm_init": 1, "norm_row": p["norm_d"] // 128,
                                                      "norm_store": 2 * p["norm_slice"] // p["ys"]}


def test_a_norm_whose_weight_slice_does_not_fit_a_weight_tile_keeps_its_own_configuration():
    narrow = _offer(_linear("o", 512, k=32))  # K = 32: 296-byte weight tiles
    wide = 6144  # 192 columns per core of 32: 384 bytes of norm weight
    with pytest.raises(Unplannable, match="norm-weight slice of 384 bytes exceeds the 296-byte weight tile"):
        gemv_norm.plan_member(narrow, wide, 1e-6, "add_rms_norm", NPU2)
    own = plan_norm("norm", wide, 1e-6, True, (1,), NPU2)
    assert NORM.joined(own, [narrow], NPU2) is own
    assert gemv_norm.is_norm(NORM.joined(own, [narrow, _offer(_linear("o", 512))], NPU2).launches[0])  # the next one
    inline = plan_linear("qkv", 512, 256, 32, True, (1,), NPU2, bias_tiles=False)
    assert GEMV.offers(inline) == ()  # its weight tiles carry the bias: no norm joins it
    biased = plan_linear("qkv", 512, 256, 32, True, (1,), NPU2)
    assert [x.launch for x in GEMV.offers(biased)] == list(biased.launches)  # its bias is in bias tiles


def test_norms_of_other_widths_cannot_share_one_kernel_and_a_kernel_needs_room_for_the_row():
    o = _linear("o", 512)
    _, (_, a, _) = _norm(True, o)
    b = gemv_norm.plan_member(_offer(o), 2 * D, 1e-6, "add_rms_norm", NPU2)
    with pytest.raises(CompileError, match="norms of other widths or eps cannot share one GEMV configuration"):
        gemv_norm.spec_entries([a.params, b.params])
    for broken in ({"norm_slice": 0}, {"norm_d": -128}):  # a plan read from IR text: an error, not a crash
        with pytest.raises(CompileError, match="must be a positive"):
            gemv_spec(16, 256, 32, False, NPU2.mmul["bf16"], nb=40, ys=8, norm={**gemv_norm.norm_params(a.params),
                                                                                 **broken})
    with pytest.raises(CompileError, match=r"the norm's row needs \d+ floats, the accumulator buffer holds NB x TN"):
        gemv_spec(16, 256, 32, False, NPU2.mmul["bf16"], nb=1, ys=8, norm=gemv_norm.norm_params(a.params))


@pytest.mark.parametrize("add", [True, False], ids=["add_rms_norm", "rms_norm"])
def test_a_norm_member_computes_bit_for_bit_what_its_own_design_computes(tmp_path, add):
    """On the emulator (what each core receives derived from the design): the norm's sequence of the shared GEMV
    design, behind its header, writes the sum and the norm its own rms_norm design writes, bit for bit; behind the
    o_proj's header the cores starve."""
    linears = [_linear("o", 512), _linear("gate_up", 1024, "silu_mul")]
    own, norm = _norm(add, linears[0])
    members = linears + [norm]
    spec = GEMV.shared_spec([(launch, plan) for _, launch, plan in members], NPU2)
    assert [f[len(spec.symbol):] for f in spec.functions] == [
        "_init", "_step", "_store", "_store_silu_mul", "_norm_init", "_norm_row", "_norm_store", "_header"]
    shared = build_shared_design(members, NPU2, spec, "g")
    assert not list(check_design(shared))
    assert parse_design(render(shared), "g.mlir") == shared
    own_launch = own.launches[0]
    own_design = build_design(own_launch, own, NPU2, kernel_spec(own_launch, NPU2), "own")
    o_name, o_launch, o_plan = linears[0]
    library = KernelLibrary.build([spec, kernel_spec(own_launch, NPU2), kernel_spec(o_launch, NPU2)],
                                  tmp_path / "kernels")
    rng = np.random.default_rng(7)
    a, b, weight = (rng.standard_normal(D).astype(np.float32) * s for s in (3.0, 1.0, 0.5))
    if not add:
        b = np.full(D, -0.0, np.float32)
    d_pad = own.shape["d_pad"]
    rows = [np.zeros((1, d_pad), np.uint16) for _ in range(2)]
    rows[0][0, :D], rows[1][0, :D] = to_bf16(a), to_bf16(b)
    w_pad = np.zeros(d_pad, np.uint16)
    w_pad[:D] = to_bf16(weight)
    args = {"ab": tile_records(rows, 1), "w": w_pad, "sy": np.zeros(2 * d_pad, np.uint16)}
    DesignRun(own_design, library.function).run(args)
    want = [from_bf16(part[0, :D]) for part in from_tile_records(args["sy"], 2, 1, d_pad, 1)]
    assert np.abs(want[1]).max() > 0
    name, member, _ = norm
    tensors = gemv_norm.tensors(member, a, b, weight)
    DesignRun(shared, library.function).run({**tensors, HEADER_ARG: header_words(shared, name)}, sequence=name)
    got = gemv_norm.results(member, tensors["y"], D)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))
    tensors = gemv_norm.tensors(member, a, b, weight)
    with pytest.raises(AielowerError, match="cannot finish"):  # the o_proj's body on the norm's data: starved
        DesignRun(shared, library.function).run({**tensors, HEADER_ARG: header_words(shared, linears[0][0])},
                                                sequence=name)
    o_args = _tensors(o_launch, o_plan, rng)
    DesignRun(build_design(o_launch, o_plan, NPU2, kernel_spec(o_launch, NPU2), "o"), library.function).run(o_args)
    expected, o_args["y"][:] = o_args["y"].copy(), 0
    DesignRun(shared, library.function).run({**o_args, HEADER_ARG: header_words(shared, o_name)}, sequence=o_name)
    np.testing.assert_array_equal(o_args["y"], expected)  # the linears' sequences still compute theirs


def test_the_tiny_models_decode_norms_run_on_the_gemv_configuration():
    """plan-aie-tiling joins decode's norms (the plain and the residual-add one) to the configuration the decode
    GEMVs without bias share, and the catalog places them on it: a decode layer switches between fewer
    configurations."""
    planned = plan_tiny_gqa()
    placement = Placement(planned, NPU2)
    decode = planned.functions["decode"]
    norms = [(launch, plan) for op in decode.ops if (plan := plan_of(op)) is not None
             and plan.kind in NORM.kinds for launch in plan.launches_for(1)]
    assert {launch.role for launch, _ in norms} == {"rms_norm", "add_rms_norm"}
    for launch, plan in norms:
        assert gemv_norm.is_norm(launch)
        design = placement.designs[placement.place(launch, plan)[0]]
        roles = {x.launch.role for x in design.members}
        assert "gemv" in roles and design.spec.family == "linear_w4_gemv", roles
    prompt = [launch for op in decode.ops if (plan := plan_of(op)) is not None and plan.kind in NORM.kinds
              for launch in plan.launches if launch.bucket > 1]
    assert prompt and all(launch.kernel == "rms_norm" for launch in prompt)  # prompt buckets keep their own


def test_a_joined_plan_survives_the_ir_text():
    """The joined launch is data in the op's plan attribute like any other: it reads back equal."""
    from aielower.backends.aie.plan import OpPlan

    _, (_, member, plan) = _norm(True, _linear("o", 512))
    assert OpPlan.from_attr(plan.to_attr()) == plan


def test_a_norm_joins_a_gemv_with_the_silu_mul_epilogue_in_its_store_format(tmp_path):
    """A GEMV with the epilogue stores TN/2 outputs per call without a ``ys`` constant: the norm takes that store
    size (its key is the GEMV's), and their shared design builds and passes the design rules."""
    gate_up = _linear("gate_up", 1024, "silu_mul")
    own, norm = _norm(True, gate_up)
    _, member, plan = norm
    assert member.params["ys"] == gate_up[1].params["tn"] // 2 and "ys" not in gate_up[1].params
    assert GEMV.configuration_key(member, plan) == GEMV.configuration_key(gate_up[1], gate_up[2])
    members = [gate_up, norm]
    shared = build_shared_design(members, NPU2, GEMV.shared_spec([(x, p) for _, x, p in members], NPU2), "g")
    assert not list(check_design(shared))


def test_a_norm_on_a_32_row_tile_format_stores_16_outputs_a_call_bit_for_bit(tmp_path):
    """The 16-lane store (YS = 16, tiles of 32 rows on a 7 x 4 grid), against the norm's own design."""
    o = _linear("o", 896)
    assert o[1].params["tn"] == 32 and (o[1].columns, o[1].rows) == (7, 4)
    own, norm = _norm(True, o, d=448)
    name, member, plan = norm
    assert member.params["ys"] == 16
    spec = GEMV.shared_spec([(o[1], o[2]), (member, plan)], NPU2)
    shared = build_shared_design([o, norm], NPU2, spec, "g")
    own_launch = own.launches[0]
    library = KernelLibrary.build([spec, kernel_spec(own_launch, NPU2)], tmp_path / "kernels")
    rng = np.random.default_rng(2)
    a, b, weight = (rng.standard_normal(448).astype(np.float32) for _ in range(3))
    d_pad = own.shape["d_pad"]
    rows = [np.zeros((1, d_pad), np.uint16) for _ in range(2)]
    rows[0][0, :448], rows[1][0, :448] = to_bf16(a), to_bf16(b)
    w_pad = np.zeros(d_pad, np.uint16)
    w_pad[:448] = to_bf16(weight)
    args = {"ab": tile_records(rows, 1), "w": w_pad, "sy": np.zeros(2 * d_pad, np.uint16)}
    DesignRun(build_design(own_launch, own, NPU2, kernel_spec(own_launch, NPU2), "own"), library.function).run(args)
    want = [from_bf16(part[0, :448]) for part in from_tile_records(args["sy"], 2, 1, d_pad, 1)]
    tensors = gemv_norm.tensors(member, a, b, weight)
    DesignRun(shared, library.function).run({**tensors, HEADER_ARG: header_words(shared, name)}, sequence=name)
    for got, expected in zip(gemv_norm.results(member, tensors["y"], 448), want):
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


NORMS_OF_TWO_EPS = """
weight @n1.weight : tensor<48xf32>
weight @n2.weight : tensor<48xf32>
weight @p1 : qtensor<48x48xu4, group=16, scale=bf16, zero=u4>
weight @p2 : qtensor<48x48xu4, group=16, scale=bf16, zero=u4>

func @decode(%x: tensor<?bx?sx48xf32>) -> tensor<?bx?sx48xf32> {
  %a = fused.rms_norm %x, @n1.weight {eps = 1e-06} : tensor<?bx?sx48xf32>
  %b = quant.linear %a, @p1 {bits = 4, group = 16} : tensor<?bx?sx48xf32>
  %c = fused.rms_norm %b, @n2.weight {eps = 1e-05} : tensor<?bx?sx48xf32>
  %d = quant.linear %c, @p2 {bits = 4, group = 16} : tensor<?bx?sx48xf32>
  return %d
}
"""


def test_norms_of_two_eps_do_not_both_join_one_configuration():
    """One GEMV configuration, one kernel, one set of norm constants: the first norm joins it, the second (another
    eps) keeps its own configuration, and the module's designs build."""
    from aielower.backends.aie.catalog import collect
    from aielower.ir import parse
    from aielower.passes import PassManager

    module = PassManager.parse("plan-aie-tiling{device=npu2}").run(parse(NORMS_OF_TWO_EPS))
    norms = [plan_of(op) for op in module.functions["decode"].ops if op.name == "fused.rms_norm"]
    assert [gemv_norm.is_norm(p.launches[0]) for p in norms] == [True, False]
    kernels, designs = collect(module, NPU2)
    decode = [d for d in designs.values() if d.shared and d.buckets == (1,)]
    assert len(decode) == 1 and sorted(x.launch.role for x in decode[0].members) == ["gemv", "rms_norm"]


def _schedule_with(monkeypatch, change):
    """The norm member's schedule with ``change(core)`` applied to every core's calls."""
    original = gemv_norm.schedule

    def schedule(launch):
        cores = original(launch)
        for core in cores:
            core.calls = change(core.calls)
        return cores

    monkeypatch.setattr(gemv_norm, "schedule", schedule)


def test_a_body_of_runs_holds_a_tile_two_calls_take_and_refuses_one_two_functions_take(monkeypatch):
    """DesignBuilder._body_runs: a tile that consecutive calls of a run take is one element, held for them (each x
    element serving two row calls); a tile that calls of two functions take cannot be held across the runs: a
    CompileError, not a body that takes other elements than the design delivers."""
    from aielower.backends.aie import schedule as sched

    _, (_, member, plan) = _norm(True, _linear("o", 512))
    spec = kernel_spec(member, NPU2)

    def pairs(calls):  # row call i takes x element i // 2
        rows = [c for c in calls if c.function == "norm_row"]
        return [c for c in calls if c.function == "norm_init"] + [
            sched.Call("norm_row", (rows[i // 2].args[0], c.args[1], c.args[2])) for i, c in enumerate(rows)] + [
            c for c in calls if c.function == "norm_store"]

    _schedule_with(monkeypatch, pairs)
    design = build_design(member, plan, NPU2, spec, "pairs")
    assert not list(check_design(design))

    def shared_tile(calls):  # row call 3 takes row call 2's tile, its slot out of step: two runs, one tile
        init, *rows = calls
        moved = sched.Call("norm_row", (rows[2].args[0], rows[3].args[1], 10))
        return [init, *rows[:3], moved, *rows[4:]]

    monkeypatch.undo()
    _schedule_with(monkeypatch, shared_tile)
    with pytest.raises(CompileError, match="take one tile, which a body of runs of calls cannot hold across them"):
        build_design(member, plan, NPU2, spec, "shared")
