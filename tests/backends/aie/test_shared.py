"""Shared device configurations (designs/shared.py): decode linears with one tile format, GEMMs of every prompt
bucket with one tile format, and norms of every prompt bucket run on one design each, one runtime sequence per
launch, selected by the header that starts every launch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.catalog import Placement, collect, design_name
from aielower.backends.aie.designs import DesignRun, build_design, check_design, parse_design, render
from aielower.backends.aie.designs.model import For
from aielower.backends.aie.designs.shared import HEADER_ARG, build_shared_design, header_words
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.families.linear_w4 import bias_tile_rows, plan_linear
from aielower.backends.aie.families.rms_norm import plan_norm
from aielower.backends.aie.host_arrays import query_records, step_header
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.aie.plan import plan_of
from aielower.backends.aie.weights import interleave_gate_up, pretile_linear
from aielower.errors import AielowerError, CompileError
from aielower.quant.groupwise import quantize_rtn

GEMV = NPU2.mmul["bf16"]
FAMILY = KERNEL_FAMILIES.for_kernel("linear_w4_gemv")
K = 256


def _linears():
    """(name, plan) of three GEMV-only linears with one tile format: a plain 512 x 256, a silu_mul gate/up
    2 x 512 x 256 and a plain 1024 x 256; and a biased one (its tiles are bigger)."""
    return {
        "o": plan_linear("o", 512, K, 32, False, (1,), NPU2),
        "gate_up": plan_linear("gate_up", 1024, K, 32, False, (1,), NPU2, "silu_mul"),
        "down": plan_linear("down", 1024, K, 32, False, (1,), NPU2),
        "qkv": plan_linear("qkv", 512, K, 32, True, (1,), NPU2, bias_tiles=False),  # the bias in its weight tiles
        "qkv_bt": plan_linear("qkv_bt", 512, K, 32, True, (1,), NPU2),  # the bias in tiles of its own
        # biased, two K tiles of 1024, one of them padded (1000 rows): a second shared configuration
        "o_b": plan_linear("o_b", 1000, 2048, 32, True, (1,), NPU2),
        "gate_up_b": plan_linear("gate_up_b", 1024, 2048, 32, True, (1,), NPU2, "silu_mul"),
        "down_b": plan_linear("down_b", 1536, 2048, 32, True, (1,), NPU2),
        # prompt-bucket GEMMs (M = 128) with one tile format and grid, K 256 and 512
        "g_o": plan_linear("g_o", 512, 256, 32, False, (128,), NPU2),
        "g_down": plan_linear("g_down", 512, 512, 32, False, (128,), NPU2),
        # the same tile format at another bucket (M = 256): one configuration serves both buckets
        "g_o_256": plan_linear("g_o_256", 512, 256, 32, False, (256,), NPU2),
    }


def _members(names=("o", "gate_up")):
    plans = _linears()
    return [(design_name(plans[n].launches[0], plans[n]), plans[n].launches[0], plans[n]) for n in names]


def _shared(names=("o", "gate_up")):
    members = _members(names)
    spec = FAMILY.shared_spec([(launch, plan) for _, launch, plan in members], NPU2)
    return members, spec, build_shared_design(members, NPU2, spec, "shared")


def test_linears_with_one_tile_format_have_one_configuration_key_and_a_biased_one_another():
    keys = {n: FAMILY.configuration_key(p.launches[0], p) for n, p in _linears().items()}
    assert keys["o"] == keys["gate_up"] == keys["down"] is not None
    assert keys["qkv"] != keys["o"]  # its weight tiles carry the bias
    assert keys["qkv_bt"] == keys["o"]  # its bias is in bias tiles: its weight tiles are the format without bias
    # GEMMs share with GEMMs of their tiles, grid and epilogue at any bucket, never with GEMVs
    assert keys["g_o"] == keys["g_down"] == keys["g_o_256"] and keys["g_o"][0] == "linear_w4_gemm"
    assert keys["g_o"] != keys["o"]
    silu = plan_linear("g_gu", 256, 512, 32, False, (128,), NPU2, "silu_mul")
    assert FAMILY.configuration_key(silu.launches[0], silu) != keys["g_o"]  # its C blocks are half as wide
    gemm = _linears()["g_o"].launches[0]
    other = dataclasses.replace(gemm, params={**gemm.params, "tm": 2 * gemm.params["tm"]})
    assert FAMILY.configuration_key(other, _linears()["g_o"]) != keys["g_o"]  # other C tiles
    spec = FAMILY.shared_spec([(gemm, _linears()["g_o"])] * 2, NPU2)
    assert spec.family == "linear_w4_gemm" and spec.p["members"] == 2
    assert spec.signature(spec.symbol + "_header")[0].size == _linears()["g_o"].shape["tile_bytes"]


def test_the_shared_kernel_has_the_most_accumulators_both_stores_and_the_header():
    members, spec, _ = _shared(("o", "gate_up", "down"))
    assert spec.p["nb"] == max(launch.params["nb"] for _, launch, _ in members)
    assert spec.p["members"] == 3 and spec.p["mixed"] and spec.p["epilogue"] == "silu_mul"
    assert spec.p["ys"] == spec.p["tn"] // 2
    assert [f[len(spec.symbol):] for f in spec.functions] == ["_init", "_step", "_store", "_store_silu_mul",
                                                             "_header"]
    plain = FAMILY.shared_spec([(launch, plan) for _, launch, plan in _members(("o", "down"))], NPU2)
    assert "mixed" not in plain.p and "epilogue" not in plain.p and plain.p["members"] == 2


SHARED_CHECK = """
// CHECK: // aielower design shared: a shared configuration of 2 linear launches (gemv) at bucket 1, kernel [[K:linear_w4_gemv_tn16_tk256_g32_r4s8t8_nb2_ys8_x2_mixed_silu_mul_aie2p]] on 8x4 cores of npu2
// CHECK-NEXT: // @[[O:gemv_b1_[0-9a-f]+]] (header word 0): bucket 1, n=512, k=256, group=32, bias=False
// CHECK-NEXT: // @[[GU:gemv_b1_[0-9a-f]+]] (header word 1): bucket 1, n=1024, k=256, group=32, bias=False, epilogue silu_mul
// CHECK: func.func private @[[K]]_store_silu_mul(memref<32xf32>, i32, memref<8xbf16>)
// CHECK-NEXT: func.func private @[[K]]_header(memref<256xbf16>, memref<2xi32>)
// CHECK: %rtp_0_2 = aie.buffer(%tile_0_2) {sym_name = "rtp_0_2"} : memref<2xi32>
// CHECK: // core (0, 2): work items 1 for @[[O]], 1 for @[[GU]]
// CHECK: scf.for %run = %c0 to %c4294967295 step %c1 {
// CHECK-NEXT: %hdr_sub = aie.objectfifo.acquire @x_c0_cores(Consume, 1)
// CHECK-NEXT: %hdr = aie.objectfifo.subview.access %hdr_sub[0]
// CHECK-NEXT: func.call @[[K]]_header(%hdr, %rtp_0_2) : (memref<256xbf16>, memref<2xi32>) -> ()
// CHECK-NEXT: aie.objectfifo.release @x_c0_cores(Consume, 1)
// CHECK-NEXT: %run0 = memref.load %rtp_0_2[%c0] : memref<2xi32>
// CHECK-NEXT: %run1 = memref.load %rtp_0_2[%c1] : memref<2xi32>
// CHECK-NEXT: %[[C0:.*]] = arith.index_cast %run0 : i32 to index
// CHECK-NEXT: scf.for %{{.*}} = %c0 to %[[C0]] step %c1 {
// CHECK-NOT: _store_silu_mul
// CHECK: func.call @[[K]]_store(%acc_0_2_0
// CHECK-NOT: _store_silu_mul
// CHECK: arith.index_cast %run1 : i32 to index
// CHECK-NOT: func.call @[[K]]_store(
// CHECK: func.call @[[K]]_store_silu_mul(%acc_0_2_0
// CHECK: } {dynamic_objfifo_lowering = true, link_with = "[[K]].o", stack_size = 1024 : i32}
// CHECK: aie.runtime_sequence @[[O]](%x: memref<256xbf16>, %w: memref<{{[0-9]+}}xi8>, %y: memref<512xbf16>, %hdr: memref<256xbf16>) {
// CHECK-NEXT: aiex.npu.dma_memcpy_nd(%hdr[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1]) {id = 0 : i64, metadata = @x_c0} : memref<256xbf16>
// CHECK: aie.runtime_sequence @[[GU]](%x: memref<256xbf16>, %w: memref<{{[0-9]+}}xi8>, %y: memref<512xbf16>, %hdr: memref<256xbf16>) {
// CHECK-NEXT: aiex.npu.dma_memcpy_nd(%hdr[0, 0, 0, 0][1, 1, 1, 256][0, 0, 0, 1]) {id = 0 : i64, metadata = @x_c0} : memref<256xbf16>
"""


def test_filecheck_shared_design(tmp_path):
    _, _, design = _shared()
    text = render(design)
    check = tmp_path / "shared.check"
    check.write_text(SHARED_CHECK)
    result = subprocess.run([sys.executable, "-m", "filecheck", str(check)], input=text, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr + "\n--- design ---\n" + text[:6000]
    assert parse_design(text, "shared.mlir") == design  # reads back: per-sequence arguments, dynamic loops
    assert not [v for v in check_design(design)]


def test_members_that_move_other_tiles_or_too_few_are_refused():
    members = _members(("o", "qkv"))
    spec = FAMILY.shared_spec([(launch, plan) for _, launch, plan in members[:1]] * 2, NPU2)
    with pytest.raises(CompileError, match=r"@gemv_b1_[0-9a-f]+ moves other tiles than @gemv_b1_[0-9a-f]+"):
        build_shared_design(members, NPU2, spec, "bad")
    with pytest.raises(CompileError, match="runs two or more launches, not 1"):
        build_shared_design(members[:1], NPU2, spec, "bad")
    with pytest.raises(CompileError, match="two members share a runtime-sequence name"):
        build_shared_design(members[:1] * 2, NPU2, spec, "bad")
    with pytest.raises(CompileError, match="with epilogues"):
        gu = _members(("gate_up",))[0]
        other = dataclasses.replace(gu[1], params={**gu[1].params, "epilogue": "other"})
        FAMILY.shared_spec([(gu[1], gu[2]), (other, gu[2])], NPU2)


def test_a_sequence_without_its_header_first_breaks_the_header_rule():
    """check_design derives from the cores which FIFO carries the header (an acquire, then _header) and requires
    every sequence to send one element first on its shim channel, from an argument read for nothing else there."""
    _, _, design = _shared()
    assert not [v for v in check_design(design) if v.rule == "header"]
    first = design.sequences[0]
    heads = [op for op in first.ops if getattr(op, "arg", None) == HEADER_ARG]
    rest = [op for op in first.ops if op not in heads]
    for ops, message in ((rest, "reads %x, not the header %hdr"), (rest[:1] + heads + rest[1:], "reads %x, not"),
                         ([op for op in first.ops if getattr(op, "fifo", "") != "x_c3"], "sends nothing")):
        broken = dataclasses.replace(design, sequences=(dataclasses.replace(first, ops=tuple(ops)),)
                                     + design.sequences[1:])
        problems = [str(v) for v in check_design(broken) if v.rule == "header"]
        assert problems and message in problems[0], (message, problems)
    # a header of the right size read with a pattern (word 0 repeated: every linear would run) is refused
    twisted = tuple(dataclasses.replace(op, sizes=(1, 1, K // 2, 2), strides=(0, 0, 0, 1))
                    if getattr(op, "arg", None) == HEADER_ARG else op for op in first.ops)
    problems = [str(v) for v in check_design(dataclasses.replace(
        design, sequences=(dataclasses.replace(first, ops=twisted),) + design.sequences[1:])) if v.rule == "header"]
    assert problems and "read plainly from element 0 of %hdr" in problems[0]
    # a core fed by a header channel that does not read the header would take it for activations
    core = design.cores[1]
    headless = dataclasses.replace(core, body=core.body[3:])
    problems = [str(v) for v in check_design(dataclasses.replace(
        design, cores=design.cores[:1] + (headless,) + design.cores[2:])) if v.rule == "header"]
    assert problems and f"core {core.tile.name}: takes @x_c0_cores, which carries a header first" in problems[0]
    # activations after the header on every channel are what a run carries; one element alone is refused
    lone = tuple(op for op in first.ops if not (getattr(op, "fifo", "") == "x_c0" and op.arg == "x"))
    problems = [str(v) for v in check_design(dataclasses.replace(
        design, sequences=(dataclasses.replace(first, ops=lone),) + design.sequences[1:])) if v.rule == "header"]
    assert problems and "carries headers only" in problems[0]


def test_header_words_select_one_sequence():
    members, _, design = _shared()
    for i, (name, _, _) in enumerate(members):
        words = header_words(design, name).view(np.int32)
        assert words.size == K // 2 and words[i] == 1 and words.sum() == 1
    with pytest.raises(CompileError, match="no runtime sequence @nope"):
        header_words(design, "nope")
    own = build_design(members[0][1], members[0][2], NPU2, kernel_spec(members[0][1], NPU2), "own")
    with pytest.raises(CompileError, match="takes no header"):
        header_words(own, "")


EMULATED = [("o", "gate_up"), ("o_b", "gate_up_b", "down_b"), ("g_o", "g_down", "g_o_256")]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    specs = {}
    for names in EMULATED:
        members, spec, _ = _shared(names)
        specs[spec.symbol] = spec
        specs.update({kernel_spec(launch, NPU2).symbol: kernel_spec(launch, NPU2) for _, launch, _ in members})
    return KernelLibrary.build(list(specs.values()), tmp_path_factory.mktemp("kernels"))


def _bf16_bits(rng, shape):
    """Random normal values as bf16 bits (the upper halves of their float32 bits)."""
    return (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _tensors(launch, plan, rng):
    s = plan.shape
    w = quantize_rtn(rng.standard_normal((s["n"], s["k"])).astype(np.float32) * np.float32(0.1), bits=4,
                     group=s["group"])
    bias = rng.standard_normal(s["n"]).astype(np.float32) if s["bias"] else None
    if s.get("epilogue"):
        w, bias = interleave_gate_up(w, bias, s["n_pad"], s["tn"])
    blob = pretile_linear(w, bias, s["n_pad"], s["k_pad"], s["tn"], s["tk"], s["w_columns"], s["w_rows"],
                          s["w_block"], mmul=GEMV, bias_tiles=bias_tile_rows(s) if "gemv_bias_tiles" in s else None)
    assert len(blob) == s["weight_bytes"]
    rows = launch.bucket
    x = _bf16_bits(rng, rows * s["k_pad"])
    out = rows * (s["n_pad"] // 2 if s.get("epilogue") else s["n_pad"])
    if launch.kernel == "linear_w4_gemm":
        return {"a": x, "w": blob, "c": np.zeros(out, np.uint16)}
    return {"x": x, "w": blob, "y": np.zeros(out, np.uint16)}


def _runs_as_its_own_design(own, shared, name, args, out, function) -> None:
    """Run ``own`` on ``args``, then ``shared``'s sequence ``name`` behind its header on the same inputs: the output
    tensor ``out`` (not all zeros) is bit for bit the same."""
    DesignRun(own, function).run(args)
    expected = args[out].copy()
    assert expected.any()
    args[out][:] = 0
    DesignRun(shared, function).run({**args, HEADER_ARG: header_words(shared, name)}, sequence=name)
    np.testing.assert_array_equal(args[out], expected)


@pytest.mark.parametrize("names", EMULATED, ids=["o-gate_up", "biased-two-k-tiles", "gemm-128-and-256"])
def test_each_sequence_of_the_shared_design_computes_what_the_members_own_design_computes(library, names):
    """Run on the emulator (what each core receives derived from the design): a member's sequence, with its header,
    writes bit for bit what its own design writes; the same data behind another member's header does not."""
    members, _, shared = _shared(names)
    if names == ("g_o", "g_down", "g_o_256"):  # one linear at two buckets, another at one: one body for all three
        assert sum(isinstance(n, For) for n in shared.cores[0].body) == 1
    rng = np.random.default_rng(3)
    for name, launch, plan in members:
        own = build_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "own")
        args = _tensors(launch, plan, rng)
        _runs_as_its_own_design(own, shared, name, args, "c" if "c" in args else "y", library.function)
    name, launch, plan = members[0]
    args = _tensors(launch, plan, rng)
    other = header_words(shared, members[1][0])
    with pytest.raises(AielowerError):  # the cores run the gate/up linear on the o_proj's data: they starve
        DesignRun(shared, library.function).run({**args, HEADER_ARG: other}, sequence=name)


@pytest.fixture(scope="module")
def planned_gqa():
    return plan_tiny_gqa()


def plan_tiny_gqa():
    """The tiny GQA model (hidden 112, intermediate 160) planned for npu2: its o_proj and down linears have one
    tile format and core grid."""
    from aielower.api import QuantConfig, default_pipeline
    from aielower.frontend import import_model
    from aielower.passes import PassManager
    from tests.conftest import CONFIGS, tiny_qwen2

    module = import_model(tiny_qwen2(**CONFIGS["gqa-14x2"]), "tiny", max_seq_len=128)
    quant = QuantConfig(bits=4, group_size=16, lm_head_group_size=16)  # 112 inputs: groups of 16
    PassManager.parse(default_pipeline("ref", quant) + ",plan-aie-tiling{device=npu2}").run(module)
    return module


def test_the_tiny_models_decode_linears_share_a_configuration(planned_gqa):
    """On a tiny model's plans: the launches of each shared design are linears of one kind with one tile format
    (decode GEMVs, the prompt buckets' GEMMs: one configuration for every bucket), each placed on its sequence; the
    token count sees one design fewer (the emulator and runtime tests run this model's prefill and decode against
    the reference)."""
    from aielower.backends.aie.counted import decode_token_count

    planned = planned_gqa

    kernels, designs = collect(planned, NPU2)
    shared = [d for d in designs.values() if d.shared]
    assert shared, sorted(designs)
    placement = Placement(planned, NPU2)
    for d in shared:
        assert d.spec.symbol in kernels
        assert len({x.launch.kernel for x in d.members}) == 1
        if len(d.buckets) > 1:  # prompt buckets (decode's GEMVs have their own)
            assert 1 not in d.buckets and d.name.startswith(
                f"{d.launch.role}_b{d.buckets[0]}to{d.buckets[-1]}_x{len(d.members)}_")
        family = KERNEL_FAMILIES.for_kernel(d.launch.kernel)
        assert len({family.configuration_key(x.launch, x.plan) for x in d.members}) == 1
        for x in d.members:
            assert placement.place(x.launch, x.plan) == (d.name, x.name)
    token = decode_token_count(planned, NPU2, planned.functions["decode"])
    decode = [(launch, plan) for op in planned.functions["decode"].ops if (plan := plan_of(op)) is not None
              for launch in plan.launches_for(1)]
    own = {design_name(launch, plan) for launch, plan in decode}  # one design per distinct launch, as before
    placed = {placement.place(launch, plan)[0] for launch, plan in decode}
    assert token.designs_per_token == len(placed) < len(own)
    assert token.device_configurations == len(designs) < len({x.name for d in designs.values() for x in d.members})
    # the norms (both on the add kernel) and the rope of the prompt buckets (128, 256) run on one configuration each
    norms = next(d for d in shared if d.buckets == (128, 256) and d.launch.kernel == "rms_norm")
    assert {x.launch.role for x in norms.members} == {"rms_norm", "add_rms_norm"}
    assert {d.launch.role for d in shared if d.buckets == (128, 256)} >= {"add_rms_norm", "rope"}


NORM_D = 200  # padded to 208: a norm width that needs padding


def _norms(add: bool):
    """The launches of one norm planned for decode and two prompt buckets, as (sequence name, launch, plan)."""
    plan = plan_norm("norm", NORM_D, 1e-6, add, (1, 128, 256), NPU2)
    return [(design_name(launch, plan), launch, plan) for launch in plan.launches]


@pytest.mark.parametrize("add", [False, True], ids=["rms_norm", "add_rms_norm"])
def test_norms_of_every_prompt_bucket_share_a_configuration_and_compute_what_their_own_designs_do(tmp_path, add):
    """The prompt buckets' launches of a norm take one row tile (the smallest bucket's per core), so they have one
    key; decode's (one row) another. On the emulator each member's sequence, with its header, writes bit for bit
    what its own design writes."""
    family = KERNEL_FAMILIES.for_kernel("rms_norm")
    decode, *prompts = _norms(add)
    keys = {family.configuration_key(launch, plan) for _, launch, plan in prompts}
    assert len(keys) == 1 and family.configuration_key(decode[1], decode[2]) not in keys
    assert {launch.params["tr"] for _, launch, _ in prompts} == {128 // 32}
    spec = family.shared_spec([(launch, plan) for _, launch, plan in prompts], NPU2)
    assert spec.p["members"] == 2 and spec.functions[-1] == spec.symbol + "_header"
    assert spec.signature(spec.symbol + "_header")[0].size == prompts[0][2].shape["d_pad"]  # the norm weight
    shared = build_shared_design(prompts, NPU2, spec, "norms")
    assert not list(check_design(shared))
    assert all(sum(isinstance(n, For) for n in core.body) == 1 for core in shared.cores)  # one body for both buckets
    assert parse_design(render(shared), "norms.mlir") == shared
    own_specs = {kernel_spec(launch, NPU2) for _, launch, _ in prompts}
    library = KernelLibrary.build([spec, *own_specs], tmp_path / "kernels")
    rng = np.random.default_rng(5)
    x_name, y_name = ("ab", "sy") if add else ("x", "y")
    for name, launch, plan in prompts:
        own = build_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "own")
        parts, d_pad = 2 if add else 1, plan.shape["d_pad"]
        args = {x_name: _bf16_bits(rng, parts * launch.bucket * d_pad), "w": _bf16_bits(rng, d_pad),
                y_name: np.zeros(parts * launch.bucket * d_pad, np.uint16)}
        _runs_as_its_own_design(own, shared, name, args, y_name, library.function)


def test_a_norm_kernel_refuses_a_header_it_cannot_hold():
    from aielower.backends.aie.families.rms_norm import rms_norm_spec

    with pytest.raises(CompileError, match=r"selects one of 2 \.\. 8 launches .* not 9"):
        rms_norm_spec(16, 16, 1, 1e-6, False, members=9)


def test_a_group_cut_in_two_places_every_launch_on_its_configuration(monkeypatch):
    """Three linears with one key and room for two per configuration: a shared design of the first two by name and
    the third on its own design; each launch placed on its design and sequence."""
    from aielower.backends.aie import catalog

    members = _members(("o", "gate_up", "down"))
    launches = {name: catalog.Member(name, launch, plan) for name, launch, plan in members}

    monkeypatch.setattr(type(FAMILY), "max_shared", lambda self, launch: 2)
    designs = catalog.designs_of(launches, NPU2)
    shared = [d for d in designs.values() if d.shared]
    first_two = sorted(launches)[:2]
    assert [[x.name for x in d.members] for d in shared] == [first_two]
    alone = sorted(launches)[2]
    assert alone in designs and not designs[alone].shared
    where = catalog.placements(designs)
    assert where[alone] == (alone, None)
    assert all(where[name] == (shared[0].name, name) for name in first_two)


def test_a_configuration_whose_cores_would_not_hold_its_header_words_is_halved_until_they_do():
    """A shared core holds a header word per member on top of the member's buffers: the catalog halves a group
    whose cores would not hold them, down to launches on their own designs when none would."""
    from aielower.backends.aie import catalog

    plan = plan_norm("norm", 4096, 1e-6, True, (1, 128, 256, 512, 1024, 2048), NPU2)
    launches = {design_name(x, plan): catalog.Member(design_name(x, plan), x, plan) for x in plan.launches}
    members = list(launches.values())
    spec = KERNEL_FAMILIES.for_kernel("rms_norm").shared_spec([(x.launch, x.plan) for x in members], NPU2)
    whole = catalog.shared_core_bytes(members, spec)
    assert [d.shared for d in catalog.designs_of(launches, NPU2).values()] == [True]
    for room, pieces in ((whole - 1, [3, 3]), (whole - 4 * len(members) + 7, [1] * len(members))):
        device = dataclasses.replace(NPU2, core_data_memory=room)
        designs = catalog.designs_of(launches, device)
        assert sorted(len(d.members) for d in designs.values()) == pieces
        assert sorted(x.name for d in designs.values() for x in d.members) == sorted(launches)
        for d in designs.values():
            if d.shared:
                assert catalog.shared_core_bytes(list(d.members), d.spec) <= room


def test_a_configuration_is_cut_at_a_bucket_boundary_so_that_a_buckets_launches_stay_together():
    from aielower.backends.aie import catalog

    buckets = (1, 128, 256)
    plans = (plan_norm("norm", 4096, 1e-6, False, buckets, NPU2, zero_residual=True),
             plan_norm("norm", 4096, 1e-6, True, buckets, NPU2))
    launches = {design_name(x, p): catalog.Member(design_name(x, p), x, p) for p in plans for x in p.launches}
    members = sorted(launches.values(), key=lambda x: (x.launch.bucket, x.name))
    spec = KERNEL_FAMILIES.for_kernel("rms_norm").shared_spec([(x.launch, x.plan) for x in members], NPU2)
    device = dataclasses.replace(NPU2, core_data_memory=catalog.shared_core_bytes(members, spec) - 1)
    designs = catalog.designs_of(launches, device)
    # six launches, two per bucket: cut after the first bucket (the boundary nearest the middle), not after three
    assert sorted([x.launch.bucket for x in d.members] for d in designs.values()) == [[1, 1], [128, 128, 256, 256]]


def test_the_norms_of_a_3584_wide_model_share_one_configuration_its_cores_hold():
    """Qwen2-7B's norms (3584 wide) fill a core to the byte without the header; the norm plan keeps room for the
    header words of every bucket's two norms, so all of them share one design that passes the memory rule."""
    plain = plan_norm("norm", 3584, 1e-6, False, (1, 128, 256, 512, 1024, 2048), NPU2, zero_residual=True)
    added = plan_norm("norm", 3584, 1e-6, True, (1, 128, 256, 512, 1024, 2048), NPU2)
    members = [(design_name(x, p), x, p) for p in (plain, added) for x in p.launches]
    family = KERNEL_FAMILIES.for_kernel("rms_norm")
    assert len({family.configuration_key(x, p) for _, x, p in members}) == 1
    spec = family.shared_spec([(x, p) for _, x, p in members], NPU2)
    shared = build_shared_design(members, NPU2, spec, "norms")
    assert not [v for v in check_design(shared) if v.rule == "memory"]


def test_gemms_of_more_buckets_than_a_configuration_serves_are_cut_in_bucket_order(monkeypatch):
    """A GEMM configuration serves at most GEMM_SHARED_BUCKETS buckets (its design holds every member's sequence):
    with room for three, four buckets of two linears each become the first three buckets' six launches and the
    last's two."""
    from aielower.backends.aie import catalog
    from aielower.backends.aie.families import linear_w4

    assert linear_w4.GEMM_SHARED_BUCKETS >= 5  # the 7B's five prompt buckets on one configuration
    monkeypatch.setattr(linear_w4, "GEMM_SHARED_BUCKETS", 3)
    buckets = (128, 256, 512, 1024)
    plans = [plan_linear(n, 512, k, 32, False, buckets, NPU2) for n, k in (("o", 256), ("down", 512))]
    launches = {design_name(launch, plan): catalog.Member(design_name(launch, plan), launch, plan)
                for plan in plans for launch in plan.launches}
    assert len({FAMILY.configuration_key(x.launch, x.plan) for x in launches.values()}) == 1
    designs = catalog.designs_of(launches, NPU2)
    assert sorted((d.buckets, len(d.members)) for d in designs.values()) == [((128, 256, 512), 6), ((1024,), 2)]
    first = next(d for d in designs.values() if len(d.members) == 6)
    assert first.name.startswith("gemm_b128to512_x6_")
    assert [x.launch.bucket for x in first.members] == [128, 128, 256, 256, 512, 512]  # header order: by bucket


def test_a_group_larger_than_the_header_allows_is_split(planned_gqa, monkeypatch):
    """The catalog cuts a group of launches into configurations of at most ``max_shared`` (the header's words);
    with room for one, every launch has its own design again."""
    # one i32 word per linear in a TK-element header, one word kept for a member's KV tile count
    assert FAMILY.max_shared(_members()[0][1]) == K // 2 - 1
    _, shared = collect(planned_gqa, NPU2)
    assert any(d.shared for d in shared.values())
    for family in {FAMILY, KERNEL_FAMILIES.for_kernel("rms_norm"), KERNEL_FAMILIES.for_kernel("rope")}:
        monkeypatch.setattr(type(family), "max_shared", lambda self, launch: 1)
    _, designs = collect(planned_gqa, NPU2)
    assert not any(d.shared for d in designs.values())
    assert len(designs) == sum(len(d.members) for d in shared.values())


def _random_args(design, sequence, outputs, rng):
    """Random bf16 bits for every argument of ``sequence`` of ``design`` but the header, zeros for ``outputs``."""
    args = {}
    for a in design.runtime_sequence(sequence).args:
        if a.name != HEADER_ARG:
            bits = _bf16_bits(rng, a.type.size)
            args[a.name] = np.zeros(a.type.size, np.uint16) if a.name in outputs else bits
    return args


def test_rope_of_every_prompt_bucket_shares_a_configuration_its_header_one_copy_per_core(tmp_path):
    """Rope's streams are all split over a column's cores, so its header goes first on the rows' stream, one copy
    per core (a repeat of stride 0). Each member's sequence writes bit for bit what its own design writes; a header
    sent once per column is refused."""
    from aielower.backends.aie.families.attention import plan_attention

    family = KERNEL_FAMILIES.for_kernel("rope")
    plan = plan_attention("attn", 4, 2, 40, 0.1, True, None, (128, 256), NPU2)
    ropes = [(design_name(launch, plan), launch, plan) for launch in plan.launches if launch.kernel == "rope"]
    assert len(ropes) == 2 and len({family.configuration_key(launch, plan) for _, launch, _ in ropes}) == 1
    keys = {family.configuration_key(launch, plan) for launch in plan.launches if launch.kernel != "rope"}
    assert len(keys) == 1 and next(iter(keys))[0] == "attention"  # prompt attention: a configuration of its own
    spec = family.shared_spec([(launch, plan) for _, launch, _ in ropes], NPU2)
    shared = build_shared_design(ropes, NPU2, spec, "ropes")
    assert not list(check_design(shared)) and parse_design(render(shared), "ropes.mlir") == shared
    assert all(sum(isinstance(n, For) for n in core.body) == 1 for core in shared.cores)  # one body for both buckets
    rows = ropes[0][1].rows
    assert rows > 1  # the header is repeated
    heads = [op for op in shared.sequences[0].ops if getattr(op, "arg", None) == HEADER_ARG]
    assert heads and all(op.sizes[0] == rows and op.strides[0] == 0 for op in heads)
    library = KernelLibrary.build([spec, *{kernel_spec(launch, NPU2) for _, launch, _ in ropes}], tmp_path / "k")
    rng = np.random.default_rng(7)
    for name, launch, _ in ropes:
        own = build_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "own")
        _runs_as_its_own_design(own, shared, name, _random_args(own, "", {"y"}, rng), "y", library.function)
    once = tuple(dataclasses.replace(op, sizes=(1,) + op.sizes[1:]) if op in heads else op
                 for op in shared.sequences[0].ops)
    broken = dataclasses.replace(shared, sequences=(dataclasses.replace(shared.sequences[0], ops=once),)
                                 + shared.sequences[1:])
    problems = [str(v) for v in check_design(broken) if v.rule == "header"]
    assert problems and "not one element per core it feeds" in problems[0]


@pytest.mark.parametrize("cache_len", [None, 512], ids=["prompt", "over-a-cache"])
def test_prompt_attention_of_every_bucket_shares_a_configuration_after_its_own_parameter_words(tmp_path, cache_len):
    """Prompt attention's cores have parameter words of their own (position, valid length; with a cache, also the
    tiles sent): a shared design keeps them first and puts the header's words after them (the kernel's WORDS_AT);
    each member's sequence writes its own words, then sends the header first on the broadcast KV stream. Each member
    runs bit for bit as its own design on the emulator (over a cache: query records with a real step header)."""
    from aielower.backends.aie.families.attention import plan_attention

    family = KERNEL_FAMILIES.for_kernel("attention")
    plan = plan_attention("attn", 4, 2, 40, 0.1, True, cache_len, (128, 256), NPU2)
    attns = [(design_name(launch, plan), launch, plan) for launch in plan.launches if launch.kernel == "attention"]
    assert len({family.configuration_key(launch, plan) for _, launch, _ in attns}) == 1
    spec = family.shared_spec([(launch, plan) for _, launch, _ in attns], NPU2)
    words_at = 3 if cache_len else 2
    assert spec.p["words_at"] == words_at and spec.p["members"] == 2
    assert spec.signature(spec.symbol + "_header")[1].size == words_at + 2
    shared = build_shared_design(attns, NPU2, spec, "attns")
    assert not list(check_design(shared)) and parse_design(render(shared), "attns.mlir") == shared
    # both buckets' bodies are one, whose constants the cores compute from the header
    assert all(sum(isinstance(n, For) for n in core.body) == 1 for core in shared.cores)
    for sequence in shared.sequences:  # its own words (none over a cache: the query records carry them), then
        ops = list(sequence.ops)       # the header on the KV stream
        writes = [op for op in ops if type(op).__name__ == "RtpWrite"]
        first = next(i for i, op in enumerate(ops) if getattr(op, "arg", None) is not None)
        assert all(ops.index(w) < first for w in writes) and ops[first].arg == HEADER_ARG
        assert {w.index for w in writes} == (set() if cache_len else {0, 1})
    library = KernelLibrary.build([spec, *{kernel_spec(launch, NPU2) for _, launch, _ in attns}], tmp_path / "k")
    rng = np.random.default_rng(11)
    for name, launch, _ in attns:
        own = build_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "own")
        args = _random_args(own, "", {"out"}, rng)
        if cache_len:  # query records of the step at the end of the cache: the positions its schedule has
            p, d_pad = launch.params, plan.shape["d_pad"]
            queries = _bf16_bits(rng, (4, launch.bucket, d_pad))
            blocks = (NPU2.mmul["bf16"].k, NPU2.mmul["bf16"].n) if p.get("mmul") else None
            args["q"] = query_records(queries, 2, p["tq"], step_header(cache_len - launch.bucket, cache_len),
                                      blocks=blocks)
        _runs_as_its_own_design(own, shared, name, args, "out", library.function)


def test_members_whose_parameter_words_differ_are_refused(monkeypatch):
    """A shared body reads the header's words after the members' own ones, so every member must have the same number
    of own words; the families' keys keep such members apart, so only a broken key could bring them together."""
    from aielower.backends.aie.designs import shared as shared_module
    from aielower.backends.aie.families.attention import plan_attention

    family = KERNEL_FAMILIES.for_kernel("attention")
    plan = plan_attention("attn", 4, 2, 40, 0.1, True, None, (128, 256), NPU2)
    attns = [(design_name(launch, plan), launch, plan) for launch in plan.launches if launch.kernel == "attention"]
    spec = family.shared_spec([(launch, plan) for _, launch, _ in attns], NPU2)

    class OneWordMore(shared_module.DesignBuilder):
        def __init__(self, launch, *args, **kwargs):
            super().__init__(launch, *args, **kwargs)
            if launch.bucket == 256:
                self.rtp = self.rtp + (0,)

    monkeypatch.setattr(shared_module, "DesignBuilder", OneWordMore)
    with pytest.raises(CompileError, match="parameter words of other layouts"):
        build_shared_design(attns, NPU2, spec, "attns")


def test_decode_norm_on_the_prompt_grid_leaves_columns_idle_and_computes_its_row(tmp_path):
    """When the prompt buckets' norm takes one row per tile, decode's one row is planned on their grid so that it
    shares their configuration: the columns without work only take the header (the header rule allows a lone header
    in a column the sequence moves nothing else through), and the row comes out as the kernel computes it."""
    from aielower.backends.aie.host_arrays import tile_records

    family = KERNEL_FAMILIES.for_kernel("rms_norm")
    plan = plan_norm("norm", NORM_D, 1e-6, True, (1, 32), NPU2)  # 32 rows over 32 cores: one row per tile
    (decode, launch_1, _), (_, launch_32, _) = [(design_name(x, plan), x, plan) for x in plan.launches]
    assert (launch_1.columns, launch_1.rows) == (launch_32.columns, launch_32.rows) == (8, 4)
    members = [(design_name(x, plan), x, plan) for x in plan.launches]
    assert len({family.configuration_key(x, plan) for x in plan.launches}) == 1
    spec = family.shared_spec([(x, plan) for x in plan.launches], NPU2)
    shared = build_shared_design(members, NPU2, spec, "norms")
    assert not list(check_design(shared))
    sequence = shared.runtime_sequence(decode)
    columns = {op.fifo.split("_c")[1] for op in sequence.ops if getattr(op, "arg", HEADER_ARG) != HEADER_ARG}
    assert columns == {"0"}  # the data of one row goes through column 0 only
    # a lone header where the column moves data is still refused
    lone = tuple(op for op in sequence.ops if getattr(op, "fifo", "") != "w_c0" or op.arg == HEADER_ARG)
    broken = dataclasses.replace(shared, sequences=tuple(
        dataclasses.replace(s, ops=lone) if s.name == decode else s for s in shared.sequences))
    assert any("carries headers only" in str(v) for v in check_design(broken))
    own_spec = kernel_spec(launch_1, NPU2)
    library = KernelLibrary.build([spec, own_spec], tmp_path / "k")
    rng = np.random.default_rng(13)
    d_pad = plan.shape["d_pad"]
    rows = [_bf16_bits(rng, (1, d_pad)), _bf16_bits(rng, (1, d_pad))]
    for row in rows:
        row[:, NORM_D:] = 0
    w = _bf16_bits(rng, d_pad)
    w[NORM_D:] = 0
    record = tile_records(rows, 1)
    expected = np.zeros_like(record)
    library.function(own_spec.symbol)(record.copy(), w, expected)
    args = {"ab": record, "w": w, "sy": np.zeros_like(record), HEADER_ARG: header_words(shared, decode)}
    DesignRun(shared, library.function).run(args, sequence=decode)
    np.testing.assert_array_equal(args["sy"], expected)
