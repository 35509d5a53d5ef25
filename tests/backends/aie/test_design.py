"""MLIR-AIE designs: FileCheck of rendered designs of a tiny planned model, the access-pattern compaction, DDR traffic
against the schedule, determinism, the text read back by the parser."""

from __future__ import annotations

import copy
import dataclasses
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aielower.backends.aie import schedule as sched
from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.designs.build import DesignBuilder, build_design, kv_sequence_for, render_design
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.dma import DmaLimits, box, canonical, compact, expand, hardware_dims
from aielower.backends.aie.device import NPU1, NPU2
from aielower.backends.aie.plan import AccessPattern
from aielower.backends.aie.families.attention import attention as attention_schedule
from aielower.backends.aie.families.attention import plan_attention
from aielower.backends.aie.families.linear_w4 import gemv_item_sizes, plan_linear
from aielower.backends.aie.families.rms_norm import plan_norm
from aielower.backends.aie.families.silu_mul import plan_silu_mul
from aielower.errors import CompileError

# A tiny Qwen2-like model, planned op by op: (op plan, bucket, launch role or None, device).
CASES = {
    "gemv": lambda: (plan_linear("test", 512, 256, 32, True, (1, 128), NPU2, bias_tiles=False), 1, None, NPU2),
    "gemm": lambda: (plan_linear("test", 96, 64, 32, True, (1, 128), NPU2, bias_tiles=False), 128, None, NPU2),
    "gemv_bias_tiles": lambda: (plan_linear("test", 512, 256, 32, True, (1, 128), NPU2), 1, None, NPU2),
    "gemm_bias_tiles": lambda: (plan_linear("test", 96, 64, 32, True, (1, 128), NPU2), 128, None, NPU2),
    "gemm_slots": lambda: (plan_linear("test", 224, 64, 32, False, (128,), NPU2), 128, None, NPU2),
    "add_rms_norm": lambda: (plan_norm("test", 64, 1e-6, True, (1, 128), NPU1), 128, None, NPU1),
    "attention": lambda: (plan_attention("test", 4, 2, 16, 0.25, True, 256, (1, 128), NPU2), 1, "attention", NPU2),
    "attention_prefill": lambda: (plan_attention("test", 2, 2, 128, 0.088, True, None, (128,), NPU2), 128,
                                  "attention", NPU2),
    "attention_prefill_loops": lambda: (plan_attention("test", 2, 2, 64, 0.125, True, None, (512,), NPU1), 512,
                                        "attention", NPU1),
    "rope": lambda: (plan_attention("test", 4, 2, 16, 0.25, True, 256, (1, 16), NPU2), 16, "rope", NPU2),
    "silu_mul": lambda: (plan_silu_mul("test", 176, (1,), NPU2), 1, None, NPU2),
    "rms_norm": lambda: (plan_norm("test", 64, 1e-6, False, (1,), NPU1), 1, None, NPU1),
}


def case(name: str):
    plan, bucket, role, device = CASES[name]()
    launch = next(x for x in plan.launches_for(bucket) if role is None or x.role == role)
    return launch, plan, device, kernel_spec(launch, device)


def render(name: str) -> str:
    launch, plan, device, spec = case(name)
    return render_design(launch, plan, device, spec, name)


# ------------------------------------------------------------------------------------------------ FileCheck

CHECKS = sorted((Path(__file__).parent / "filecheck").glob("*.check"))


@pytest.mark.parametrize("path", CHECKS, ids=[p.stem for p in CHECKS])
def test_filecheck(path):
    text = render(path.stem)
    result = subprocess.run([sys.executable, "-m", "filecheck", str(path)], input=text, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr + "\n--- design ---\n" + text


def test_every_family_renders_and_is_deterministic():
    for name in CASES:
        first, second = render(name), render(name)
        assert first == second, name
        assert first.startswith(f"// aielower design {name}: "), name
        assert first.count("aie.core(") == case(name)[0].cores


# ------------------------------------------------------------------------------------------------ compaction

LIMITS = DmaLimits(element_bytes=2)


def _offsets(aps) -> np.ndarray:
    return np.concatenate([expand(ap) for ap in aps]) if aps else np.zeros(0, np.int64)


def _random_tiles(rng: random.Random) -> list[AccessPattern]:
    """Tiles of a random nested walk (with noise), as a schedule produces them."""
    tile = rng.choice([(16,), (8, 16), (4, 2, 8), (2, 64)])
    strides = {1: (1,), 2: (64, 1), 3: (256, 32, 1)}[len(tile)]
    outer = [rng.randint(1, 5) for _ in range(rng.randint(1, 3))]
    steps = [rng.choice([0, 16, 64, 512, 4096, 100000]) for _ in outer]
    aps = []
    for index in np.ndindex(*outer):
        offset = 2 * sum(i * s for i, s in zip(index, steps))
        if rng.random() < 0.1:
            offset += 2 * rng.randint(1, 1000)  # an irregular tile
        aps.append(AccessPattern(offset, tile, strides))
    return aps


@pytest.mark.parametrize("seed", range(200))
def test_compaction_keeps_the_element_sequence(seed):
    rng = random.Random(seed)
    aps = _random_tiles(rng)
    compacted = compact(aps, LIMITS)
    assert len(compacted) <= len(aps)
    assert np.array_equal(_offsets(compacted), _offsets(aps))
    for ap in compacted:
        assert hardware_dims(ap, LIMITS) is not None


def test_compaction_folds_nested_structure_into_one_transfer():
    # 4 rows interleaved tile by tile (a split stream's memory-tile element), 32 tiles each, contiguous per row.
    tile, rows, n, row_stride = 1024, 4, 32, 32 * 1024
    aps = [AccessPattern(r * row_stride + i * tile, (tile,), (1,)) for i in range(n) for r in range(rows)]
    (one,) = compact(aps, DmaLimits(element_bytes=1))
    assert one == AccessPattern(0, (n, rows, tile), (tile, row_stride, 1))
    # The same activation vector read once per output tile: the repeat dimension (stride 0) holds it.
    (rep,) = compact([AccessPattern(0, (256,), (1,))] * 8, LIMITS)
    assert rep.sizes == (8, 256) and rep.strides == (0, 1)
    assert hardware_dims(rep, LIMITS) == ((8, 1, 1, 256), (0, 0, 0, 1))


def test_compaction_respects_the_shim_limits():
    # 100 repeats exceed the 64 of d3; strides past 4 MiB cannot be walked; a row of 4096 bf16 is cut into rows.
    assert len(compact([AccessPattern(0, (256,), (1,))] * 100, LIMITS)) == 2
    far = [AccessPattern(i * (3 << 20), (64,), (1,)) for i in range(3)]
    assert len(compact(far, LIMITS)) == 3
    rows = [AccessPattern(r * 262144, (4096,), (1,)) for r in range(4)]
    (linear,) = compact(rows, LIMITS)  # rows of 8 KiB: only as a linear transfer repeated by d3
    assert hardware_dims(linear, LIMITS) == ((4, 1, 1, 4096), (262144, 0, 0, 1))
    (cut,) = compact([AccessPattern(e * 4096, (4, 4096), (262144, 1)) for e in range(2)], LIMITS)
    assert hardware_dims(cut, LIMITS) == ((2, 4, 4, 1024), (4096, 262144, 1024, 1))  # d0 wrap: 512 words
    with pytest.raises(CompileError, match="cannot be walked"):
        compact([AccessPattern(1, (8,), (1,))], LIMITS)  # 2-byte offset: not word aligned


def test_canonical_and_box():
    assert canonical(AccessPattern(5, (1, 4, 8), (99, 8, 1))) == AccessPattern(5, (32,), (1,))
    # The GEMM's mmul-blocked activation tile is a 32 x 64 box of a row-major [., 256] matrix, reordered.
    outer, order = box(AccessPattern(0, (8, 8, 4, 8), (4 * 256, 8, 256, 1)))
    assert outer == AccessPattern(0, (32, 64), (256, 1))
    assert order == AccessPattern(0, (8, 8, 4, 8), (256, 8, 64, 1))
    assert box(AccessPattern(7, (2, 16), (100, 1)))[1] is None


# ------------------------------------------------------------------------------------------------ traffic


def _moved_by_schedule(name: str) -> dict[str, int]:
    """Elements per stream the schedule moves between DDR and the array: a split stream every core's distinct
    tiles; a broadcast stream, per column, one row's (the memory tile copies it to the others)."""
    launch, plan, device, spec = case(name)
    programs, _ = KERNEL_FAMILIES.for_kernel(launch.kernel).schedule(launch, plan)
    ins = [s for s in launch.streams if s.direction == "in"]
    outs = [s for s in launch.streams if s.direction == "out"]
    moved = {s.name: 0 for s in launch.streams}

    def on_stream(args, streams):
        """(stream, argument) pairs: by tensor name when every argument names a stream, else by position."""
        names = {s.name: s for s in streams}
        if all(a.tiles[0].tensor in names for a in args):
            return [(names[a.tiles[0].tensor], a) for a in args]
        return list(zip(streams, args))

    for p in programs:
        for streams, kind in ((ins, sched.In), (outs, sched.Out)):
            last = {s.name: None for s in streams}
            previous = None
            for call in p.calls:
                if call.function == "init" and previous != "init":
                    last = dict.fromkeys(last)  # a new work item: its first tile is a new transfer even if repeated
                previous = call.function
                for stream, arg in on_stream([a for a in call.args if isinstance(a, kind)], streams):
                    if stream.to_cores == "broadcast" and p.row != 0:
                        continue
                    if arg.tiles != last[stream.name]:
                        moved[stream.name] += sum(t.ap.elements for t in arg.tiles)
                        last[stream.name] = arg.tiles
    return moved


@pytest.mark.parametrize("name", ["gemv", "gemm", "add_rms_norm", "attention", "rms_norm"])
def test_runtime_sequence_moves_what_the_schedule_moves(name):
    launch, plan, device, spec = case(name)
    builder = DesignBuilder(launch, plan, device, spec, name)
    by_stream = {s.plan.name: 0 for s in builder.streams}
    for t in builder.transfers():
        by_stream[builder.streams[t.stream].plan.name] += t.ap.elements
    assert by_stream == _moved_by_schedule(name)
    # and the rendered text carries exactly these transfers (decode attention: in its sequence for the whole cache,
    # the last one)
    text = render(name).split("aie.runtime_sequence")[-1]
    rendered = 0
    for sizes in re.findall(r"dma_memcpy_nd\(%\w+\[[^\]]*\]\[([^\]]*)\]", text):
        rendered += int(np.prod([int(x) for x in sizes.split(",")]))
    assert rendered == sum(by_stream.values())


def test_gemv_reads_every_weight_byte_once():
    launch, plan, device, spec = case("gemv")
    builder = DesignBuilder(launch, plan, device, spec, "gemv")
    w = sum(t.ap.elements for t in builder.transfers() if t.tensor == "w")
    assert w == plan.shape["weight_bytes"]


def _transfers_per_column(n, k, group, bucket, buckets=None):
    plan = plan_linear("test", n, k, group, False, buckets or (1, bucket), NPU2)
    launch = next(x for x in plan.launches if x.bucket == bucket)
    builder = DesignBuilder(launch, plan, NPU2, kernel_spec(launch, NPU2), "big")
    counts = {}
    for t in builder.transfers():
        if t.column == 0:
            counts[builder.streams[t.stream].plan.name] = counts.get(builder.streams[t.stream].plan.name, 0) + 1
    return launch, plan, counts


def test_a_7b_lm_head_gemv_reads_its_weights_in_one_transfer_per_item():
    # 9504 output tiles on 8 x 4 cores, 297 per core. The blob stores a column's tiles in blocks of 4 per core (for
    # the GEMM's N blocks), each block K outer with the 4 rows side by side. A GEMV item is 16 whole blocks (64
    # accumulators): per K tile, 16 runs of 4 tiles, one 4-dim transfer per item; the short last block (1 tile per
    # core) is an item of its own. The activation streams once per item (6: one transfer, 6 repeats).
    launch, plan, counts = _transfers_per_column(151936, 4096, 32, 1, (1, 128))
    assert plan.shape["w_block"] == 4 and launch.params["nb"] == 64
    assert gemv_item_sizes(297, 4) == [64] * 4 + [40, 1]
    assert counts == {"w": 6, "y": 1, "x": 1}


def test_a_gemv_only_linear_takes_items_as_large_as_the_accumulators_allow():
    # Without a GEMM launch the block is the GEMV's item: 5 items of up to 64 of the 297 tiles, of equal size.
    launch, plan, counts = _transfers_per_column(151936, 4096, 32, 1, (1,))
    assert plan.shape["w_block"] == launch.params["nb"] == 60
    assert counts == {"w": 1, "y": 1, "x": 1}


@pytest.mark.parametrize("n, group, a, c", [(22016, 128, 16, 16), (151936, 32, 32, 80)])
def test_large_gemms_read_each_columns_weights_in_one_transfer(n, group, a, c):
    # At M = 2048: 16 M passes of 4 rows x 32. A column's weights are one contiguous run in the order its cores take
    # them (an N block of 16 tiles is one block of the blob per row), read once per pass: one transfer, the passes
    # its repeat dimension. The activation rows of a pass are one box per up to 64 N blocks (74 for the lm_head);
    # the output of a pass comes back in a few transfers.
    launch, plan, counts = _transfers_per_column(n, 4096, group, 2048)
    assert launch.params["nb"] == plan.shape["w_block"] * plan.shape["w_rows"] == 16
    assert counts == {"a": a, "w": 1, "c": c}


def test_a_row_short_of_work_repeats_another_rows_item():
    # 11 silu_mul tiles on 3 columns x 4 rows: the last column's fourth row runs its first row's tile again.
    text = render("silu_mul")
    assert "// core (2, 5): 1 work item, of which 1 repeats another row's item" in text
    core = text.split("// core (2, 5)")[1].split("aie.end")[0]
    assert "@gu_c2_r3(Consume, 1)" in core and "func.call @silu_mul_t16_tr1_aie2p(" in core


def test_prefill_attention_drains_kv_tiles_past_the_causal_limit():
    # Two query tiles of one KV head share the broadcast KV tiles; the first needs only the first of two: it takes
    # the second and releases it unread (a drain of one, written out: the core's FIFOs are lowered statically, and
    # an acquiring loop of fewer than 4 iterations is written out, designs/build.py MIN_ACQUIRING_LOOP).
    text = render("attention_prefill")
    core = text.split("// core (0, 2)")[1].split("aie.end")[0]
    drain = re.search(r"\n\s+%(\w+)_sub = aie.objectfifo.acquire @kv_c0_cores\(Consume, 1\).*\n.*\n"
                      r"\s+aie.objectfifo.release @kv_c0_cores\(Consume, 1\)\n\s+%\w+_sub = aie.objectfifo.acquire "
                      r"@out_c0_r0\(Produce, 1\)", core)
    assert drain and "scf.for %i" not in core, core


def test_rotated_keys_leave_contiguous_and_no_transfer_depends_on_the_position():
    # One rope launch rotates q's heads, then k's: k's rows leave like q's, and the host puts them into the cache.
    launch, plan, device, spec = case("rope")
    design = build_design(launch, plan, device, spec, "rope")
    outputs = [op for op in design.sequence if getattr(op, "arg", None) == "y"]
    heads, d, tr = plan.shape["heads"] + plan.shape["kv_heads"], plan.shape["d_pad"], launch.params["tr"]
    assert sum(op.elements for op in outputs) == heads * tr * d
    assert {a.name for a in design.sequence_args} == {"x", "cs", "y"}


def test_every_design_reads_back_as_rendered():
    from aielower.backends.aie.designs import parse_design, render

    for name in CASES:
        launch, plan, device, spec = case(name)
        design = build_design(launch, plan, device, spec, name)
        assert parse_design(render(design), f"{name}.mlir") == design, name


def test_decode_attention_sequences_read_back_and_bad_ones_are_refused():
    from aielower.backends.aie.designs import parse_design

    text = render("attention")
    design = parse_design(text, "attention.mlir")
    assert [s.name for s in design.sequences] == ["kv_tiles_0", "kv_tiles_1", "kv_tiles_2"]
    assert all(c.dynamic_objfifo_lowering for c in design.cores)
    with pytest.raises(CompileError, match="distinct names"):
        parse_design(text.replace("@kv_tiles_2(", "@kv_tiles_1("), "attention.mlir")
    # each sequence has its own arguments (a shared configuration's ops move tensors of other sizes)
    other = parse_design(text.replace("@kv_tiles_2(%q: memref<168xbf16>", "@kv_tiles_2(%q: memref<200xbf16>"),
                         "attention.mlir")
    assert other.runtime_sequence("kv_tiles_2").arg("q").type.size == 200
    assert other.runtime_sequence("kv_tiles_1").arg("q").type.size == 168
    with pytest.raises(CompileError, match="names an argument twice"):
        parse_design(text.replace("@kv_tiles_2(%q: memref<168xbf16>", "@kv_tiles_2(%q: memref<168xbf16>, %q: "
                                  "memref<168xbf16>"), "attention.mlir")
    # the dynamic object-FIFO lowering is asked for exactly where a loop bound is read at run time
    with pytest.raises(CompileError, match="dynamic_objfifo_lowering"):
        parse_design(text.replace("dynamic_objfifo_lowering = true, ", "", 1), "attention.mlir")
    with pytest.raises(CompileError, match="dynamic_objfifo_lowering"):
        parse_design(render("rope").replace("} {link_with", "} {dynamic_objfifo_lowering = true, link_with", 1),
                     "rope.mlir")


def test_each_kv_sequence_reads_its_tiles_and_the_emulator_picks_by_length():
    launch, plan, device, spec = case("attention")
    design = build_design(launch, plan, device, spec, "attention")
    tkv, heads, d = launch.params["tkv"], plan.shape["kv_heads"], plan.shape["d_pad"]
    for n in (0, 1, 2):  # n cache tiles of every head (the step's rows come with the queries)
        ops = design.runtime_sequence(f"kv_tiles_{n}").ops
        kv = sum(op.elements for op in ops if getattr(op, "arg", None) == "kv")
        assert kv == n * heads * 2 * tkv * d
        assert {op.value for op in ops if getattr(op, "index", None) == 2} == {n}
    # picked by the cache rows before the step
    assert kv_sequence_for(design, 0, tkv) == "kv_tiles_0"
    assert kv_sequence_for(design, 1, tkv) == kv_sequence_for(design, tkv, tkv) == "kv_tiles_1"
    assert kv_sequence_for(design, tkv + 1, tkv) == "kv_tiles_2"
    with pytest.raises(CompileError, match="no runtime sequence reads the 3 KV tiles of 128 rows that 257 cache rows "
                                           r"need \(its sequences read at most 2\)"):
        kv_sequence_for(design, 2 * tkv + 1, tkv)
    with pytest.raises(CompileError, match="a step cannot follow -1 cache rows"):
        kv_sequence_for(design, -1, tkv)
    prefill = case("attention_prefill")
    assert kv_sequence_for(build_design(*prefill[:4], "p"), 128, prefill[0].params["tkv"]) is None


def test_every_kv_sequence_is_the_schedule_at_its_tile_count():
    # 8 KV tiles: sequences 0, 1, 2 are built from the schedule and checked when the design is built (8 is the full
    # builder); the others are cut from the full one. Each reads exactly its tiles, and a middle one equals the
    # scheduled one.
    from aielower.backends.aie.designs.build import _variant, sequence_ops

    plan = plan_attention("test", 4, 2, 16, 0.25, True, 1024, (1,), NPU2)
    launch = next(x for x in plan.launches if x.role == "attention")
    spec = kernel_spec(launch, NPU2)
    design = build_design(launch, plan, NPU2, spec, "a")
    tkv = launch.params["tkv"]
    assert len(design.sequences) == 1024 // tkv + 1 == 9
    for n, seq in enumerate(design.sequences):
        assert sum(op.elements for op in seq.ops if getattr(op, "arg", None) == "kv") == n * 2 * 2 * tkv * 16
    full = DesignBuilder(launch, plan, NPU2, spec, "a")
    cores = [full.core(c, r) for c in range(launch.columns) for r in range(launch.rows)]
    assert design.runtime_sequence("kv_tiles_4").ops == sequence_ops(*_variant(full, cores, 4), NPU2)


# ------------------------------------------------------------------------------------------------ errors


def test_broadcast_kv_rows_of_a_column_share_their_head():
    # Qwen1.5-7B-sized prefill attention: the plan broadcasts KV to the rows of a column, so the schedule must give
    # those rows query tiles of the same KV head (the design generator refuses anything else).
    plan = plan_attention("test", 32, 32, 128, 0.088, True, None, (128,), NPU2)
    launch = next(x for x in plan.launches if x.role == "attention")
    assert next(st for st in launch.streams if st.name == "kv").to_cores == "broadcast"
    programs = attention_schedule(launch, 32, 128, 128, 128, 128, 0, True)
    for column in range(launch.columns):
        heads = {call.args[1].tiles[0].ap.offset // (2 * 128 * 128)  # kv: [head][block][K|V][tkv][d]
                 for p in programs if p.column == column for call in p.calls if call.function == "step"}
        assert len(heads) <= -(-32 // launch.columns)  # the column's own heads only, shared by its rows
    render_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "attn")




# ------------------------------------------------------------------------------------------------ the core check


def _drop_last_call(nodes: list) -> bool:
    """Remove the last kernel call of a core body (inside loops too); True if one was removed."""
    from aielower.backends.aie.designs.build import Call, Loop

    for i in range(len(nodes) - 1, -1, -1):
        node = nodes[i]
        if isinstance(node, Loop) and _drop_last_call(node.body):
            return True
        if isinstance(node, Call) and node.function != "params":
            del nodes[i]
            return True
    return False


@pytest.mark.parametrize("last", [False, True], ids=["first-core", "last-core"])
@pytest.mark.parametrize("name", ["gemv", "gemm", "add_rms_norm", "attention", "attention_prefill", "silu_mul"])
def test_a_core_body_that_misses_a_call_of_the_schedule_is_refused(name, last, monkeypatch):
    """The generator checks every core body against the schedule, call by call (a body traced on arrays for the
    linears, symbolically for the others): a body that loses one kernel call is an internal error, also on a core
    checked after others with the correct body (the linears share one array trace between cores with one body)."""
    original = DesignBuilder.core
    launch, plan, device, spec = case(name)
    target = (launch.columns - 1, launch.rows - 1) if last else (0, 0)

    def broken(self, column, row, prefix="v"):
        core = original(self, column, row, prefix)
        if (column, row) == target:
            assert _drop_last_call(core.body)
        return core

    monkeypatch.setattr(DesignBuilder, "core", broken)
    with pytest.raises(CompileError, match=rf"internal: the design of core \({target[0]}, {target[1]}\) does not "
                                           "reproduce the schedule"):
        build_design(launch, plan, device, spec, name)


def test_an_acquiring_slot_run_loops_over_a_multiple_of_the_fifo_depth_and_writes_out_the_rest():
    # A GEMV-only 2560 x 256 linear: 5 output tiles per core, one item of 5 accumulators. The step run acquires
    # from depth-2 FIFOs: a loop of 4, then slot 4 written out (mlir-aie's object-FIFO lowering unrolls by 2 and
    # crashes on a remainder it peels from a loop of 3: designs/build.py, MIN_ACQUIRING_LOOP). The store run is
    # 10 half-tile stores: one loop.
    plan = plan_linear("test", 2560, 256, 32, False, (1,), NPU2)
    launch = plan.launches[0]
    assert launch.params["nb"] == plan.shape["w_block"] == 5
    core = render_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "slots").split("// core (0, 2)")[1]
    core = core.split("aie.end")[0]
    assert "scf.for %i0 = %c0 to %c5 step %c1" in core  # init acquires nothing: one loop of 5
    assert "scf.for %i1 = %c0 to %c4 step %c1" in core and "scf.for %i2 = %c0 to %c10 step %c1" in core
    assert re.search(r"_step\(%v1, %v\d+, %acc_0_2_0, %c4_i32\)", core)
    assert not re.search(r"_store\(%acc_0_2_0, %c\d+_i32", core)


def test_query_records_hold_each_query_tile_then_the_step_header():
    from aielower.backends.aie.host_arrays import query_records, step_header

    heads, s_pad, d, kv_heads, tq = 4, 4, 3, 2, 2  # gq 2: heads 0, 1 share KV head 0
    q = np.arange(heads * s_pad * d, dtype=np.uint16).reshape(heads, s_pad, d)
    header = step_header(5, 9)
    records = query_records(q, kv_heads, tq, header).reshape(kv_heads, s_pad // tq, -1)
    assert records.shape[2] == 2 * tq * d + len(header)
    # KV head 1, query tile 1: heads 2 and 3, rows 2..3, then the header
    np.testing.assert_array_equal(records[1, 1, :-4], np.concatenate([q[2, 2:4].reshape(-1), q[3, 2:4].reshape(-1)]))
    np.testing.assert_array_equal(records[1, 1, -4:], header)
    assert header.view("<i4").tolist() == [5, 9]


def test_prompt_rope_reads_each_columns_rotary_table_in_one_transfer():
    # 7B rope at 2048 rows: 64 heads x 128 row tiles on 8 x 2 cores. A column's rows take consecutive row tiles
    # (sched.column_interleaved), so a memory-tile element holds consecutive tiles of x and of the rotary table: per
    # column one transfer of x, one of y, and one of the table repeated for the column's 8 heads (was 512).
    plan = plan_attention("test", 32, 32, 128, 128**-0.5, True, 4096, (1, 2048), NPU2)
    launch = next(x for x in plan.launches if x.kernel == "rope" and x.bucket == 2048)
    builder = DesignBuilder(launch, plan, NPU2, kernel_spec(launch, NPU2), "rope")
    counts = {}
    for t in builder.transfers():
        if t.column == 0:
            counts[t.tensor] = counts.get(t.tensor, 0) + 1
    assert counts == {"x": 1, "cs": 1, "y": 1}
    assert sched.column_interleaved(10, 2, 2) == [range(0, 5, 2), range(1, 5, 2), range(5, 10, 2), range(6, 10, 2)]


def test_tile_records_put_each_row_tile_of_the_parts_side_by_side_and_come_back():
    from aielower.backends.aie.host_arrays import from_tile_records, tile_records

    a = np.arange(24, dtype=np.uint16).reshape(6, 4)
    b = a + 100
    records = tile_records([a, b], 3).reshape(2, 2, 12)  # 2 tiles of 3 rows: [tile][a | b][3 x 4]
    np.testing.assert_array_equal(records[1, 0], a[3:].reshape(-1))
    np.testing.assert_array_equal(records[1, 1], b[3:].reshape(-1))
    back = from_tile_records(records.reshape(-1), 2, 6, 4, 3)
    np.testing.assert_array_equal(back[0], a)
    np.testing.assert_array_equal(back[1], b)
    np.testing.assert_array_equal(tile_records([a], 3), a.reshape(-1))


def test_decode_attention_of_short_kv_tiles_reads_whole_blocks_of_64_rows():
    # 7B decode attention: 32-row KV tiles, one sequence per 2 tiles (KV_READ_BLOCK = 64 rows): 64 sequences, not
    # 128. The host submits the first that covers the valid rows; at most 32 rows past them are read, which the
    # kernel leaves out (a row with no valid KV row is unchanged: kernel tests).
    from aielower.backends.aie.families.attention import KV_READ_BLOCK

    plan = plan_attention("test", 32, 32, 128, 128**-0.5, True, 4096, (1,), NPU2)
    launch = next(x for x in plan.launches if x.role == "attention")
    design = build_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "a7b")
    tkv = launch.params["tkv"]
    assert (tkv, KV_READ_BLOCK) == (32, 64)
    assert [s.name for s in design.sequences] == [f"kv_tiles_{n}" for n in range(0, 129, 2)]
    assert [kv_sequence_for(design, rows, tkv) for rows in (0, 1, 64, 65, 96, 97, 4095)] == [
        "kv_tiles_0", "kv_tiles_2", "kv_tiles_2", "kv_tiles_4", "kv_tiles_4", "kv_tiles_4", "kv_tiles_128"]
    with pytest.raises(CompileError, match="no runtime sequence reads the 129 KV tiles"):
        kv_sequence_for(design, 4097, tkv)


def test_a_statically_lowered_acquiring_loop_of_an_odd_count_is_cut_and_its_rest_written_out():
    # rms_norm of width 64 at 1280 rows on npu1: 16 cores, 16-row tiles, 5 on a core. The item loop acquires from
    # depth-2 FIFOs: a loop of 4, then item 5 written out with its own names (mlir-aie's static lowering unrolls by
    # 2 and peels the remainder); the generator's check still sees every call of the schedule.
    plan = plan_norm("test", 64, 1e-6, False, (1280,), NPU1)
    launch = plan.launches[0]
    assert (launch.columns * launch.rows, launch.params["tr"]) == (16, 16)
    core = render_design(launch, plan, NPU1, kernel_spec(launch, NPU1), "norm").split("// core (0, 2)")[1]
    core = core.split("aie.end")[0]
    assert "scf.for %i0 = %c0 to %c4 step %c1" in core
    assert re.search(r"%v\d+_u0_sub = aie.objectfifo.acquire @x_c0_r0\(Consume, 1\)", core)
    assert core.count("func.call @rms_norm") == 2


def test_the_generator_refuses_a_core_body_that_does_not_reproduce_its_schedule(monkeypatch):
    """checked_core traces every core body against the launch's schedule (one trace per distinct body, the cores'
    own tiles put in): cores with one body trace to their own tiles; a body that calls another function, or
    takes one element more, is an internal error naming the core."""
    from aielower.backends.aie.designs.build import (Acquire, Call, DesignBuilder, _expected, _trace, checked_core,
                                                      walk_nodes)
    from aielower.backends.aie.families.rms_norm import plan_norm
    from aielower.backends.aie.binding import kernel_spec

    plan = plan_norm("test", 64, 1e-6, True, (128,), NPU2)
    launch = plan.launches[0]
    b = DesignBuilder(launch, plan, NPU2, kernel_spec(launch, NPU2), "test")
    traces: dict = {}
    cores = [b.core(c, r, "v") for c in range(launch.columns) for r in range(launch.rows)]
    for core in cores:
        assert _trace(core, b.streams, None, traces) == _expected(b.padded[(core.column, core.row)], 1)
    assert len(traces) < len(cores)  # one trace served several cores
    made = b.core

    def other_call(column, row, prefix="v"):  # the body's first kernel call to another function
        core = made(column, row, prefix)
        body = copy.deepcopy(core.body)
        next(n for n in walk_nodes(body) if isinstance(n, Call)).function = "other"
        return dataclasses.replace(core, body=body)

    monkeypatch.setattr(b, "core", other_call)
    with pytest.raises(CompileError, match=r"the design of core \(0, 0\) does not reproduce the schedule"):
        checked_core(b, 0, 0)

    def one_more(column, row, prefix="v"):  # an element of the body's first stream taken and never used
        core = made(column, row, prefix)
        first = next(n for n in walk_nodes(core.body) if isinstance(n, Acquire))
        return dataclasses.replace(core, body=[Acquire(first.stream, "extra")] + core.body)

    monkeypatch.setattr(b, "core", one_more)
    with pytest.raises(CompileError, match=r"core \(0, 0\) takes \d+ elements of stream"):
        checked_core(b, 0, 0)
