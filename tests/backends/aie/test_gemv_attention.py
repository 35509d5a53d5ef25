"""Decode attention as a member of the GEMV configuration (families/gemv_attention.py): planned in the format of the
decode GEMVs, placed on their shared design with one runtime sequence per cache tile count, and on the emulator bit
for bit decode attention's own design."""

from __future__ import annotations

import re

import numpy as np
import pytest

from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.catalog import design_name
from aielower.backends.aie.designs import DesignRun, build_design, check_design, parse_design, render
from aielower.backends.aie.designs.build import kv_sequence_for
from aielower.backends.aie.designs.shared import HEADER_ARG, build_shared_design, header_words, member_names
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import KERNEL_FAMILIES, gemv_attention
from aielower.backends.aie.families.attention import kv_read_counts, plan_attention
from aielower.backends.aie.families.linear_w4 import gemv_spec, plan_linear
from aielower.backends.aie.host_arrays import kv_blocks, pad2, pad3, query_records, step_header, to_bf16
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.aie.launcher import Resident
from aielower.backends.aie.planner import Unplannable
from aielower.errors import AielowerError, CompileError
from tests.backends.aie.test_shared import _tensors

GEMV = KERNEL_FAMILIES.for_kernel("linear_w4_gemv")
CACHE = 128


def _linear(name: str, n: int, k: int = 256):
    plan = plan_linear(name, n, k, 32, False, (1,), NPU2)
    return design_name(plan.launches[0], plan), plan.launches[0], plan


def _attention(heads: int, kv_heads: int, d: int):
    """Decode attention's own plan (bucket 1 over a cache of :data:`CACHE`), and its launch."""
    plan = plan_attention("attn", heads, kv_heads, d, 1 / np.sqrt(d), True, CACHE, (1,), NPU2)
    (launch,) = plan.launches_for(1)
    return plan, launch


def _member(linear, heads=16, kv_heads=8, d=64):
    own_plan, own = _attention(heads, kv_heads, d)
    (offer,) = GEMV.offers(linear[2])
    member = gemv_attention.plan_member(offer, own, own_plan.shape, NPU2)
    plan = own_plan.__class__(own_plan.kind, own_plan.device, own_plan.shape, (member,))
    return own_plan, own, (design_name(member, plan), member, plan)


def test_decode_attention_planned_in_a_gemvs_format_shares_its_configuration_key():
    o = _linear("o", 512)
    _, own, (_, member, plan) = _member(o)
    assert gemv_attention.is_attention(member) and member.kernel == "linear_w4_gemv"
    assert member.streams == o[1].streams and (member.columns, member.rows) == (o[1].columns, o[1].rows)
    assert GEMV.configuration_key(member, plan) == GEMV.configuration_key(o[1], o[2])
    p = member.params
    assert p["attn_rows"] * p["attn_d"] * 2 <= o[2].shape["tile_bytes"] and p["attn_tkv"] % p["attn_rows"] == 0
    assert GEMV.reads_valid_tiles(member, plan) and not GEMV.scheduled_as_arrays(member)
    calls = GEMV.calls_per_core(member, plan.shape, kv_len=65)  # 64 cache rows before the step: two tiles of 32
    chunks = p["attn_tkv"] // p["attn_rows"]
    assert calls["attn_kv"] == 64 // p["attn_tkv"] * 2 * chunks and calls["attn_new"] == 1


def test_decode_attention_that_does_not_fill_whole_columns_or_tiles_keeps_its_own_design():
    o = _linear("o", 512)
    (offer,) = GEMV.offers(o[2])
    plan, own = _attention(6, 6, 64)  # 6 KV heads on rows of 4
    with pytest.raises(Unplannable, match="6 KV heads do not fill whole columns"):
        gemv_attention.plan_member(offer, own, plan.shape, NPU2)
    narrow = GEMV.offers(_linear("o", 512, k=32)[2])[0]  # 296-byte weight tiles: a 64-wide KV row is 128 bytes
    plan, own = _attention(16, 8, 256)  # a 512-byte KV row
    with pytest.raises(Unplannable, match="a KV row of 512 bytes exceeds the 296-byte weight tile"):
        gemv_attention.plan_member(narrow, own, plan.shape, NPU2)


def _own_run(library, own_plan, own, q, k, v, k_cache, v_cache, position):
    """Decode attention's own design on one step: (out, rotated key) bf16 bits."""
    s = own_plan.shape
    kv_heads, d_pad, tkv = s["kv_heads"], s["d_pad"], own.params["tkv"]
    design = build_design(own, own_plan, NPU2, kernel_spec(own, NPU2), "own")
    cs = to_bf16(np.concatenate([q["cos"][:, : s["head_dim"] // 2], q["sin"][:, : s["head_dim"] // 2]], axis=1))
    step_kv = tuple(pad3(a, kv_heads, 1, d_pad).reshape(kv_heads, 1, d_pad) for a in (to_bf16(k), to_bf16(v)))
    queries = pad3(to_bf16(q["q"]), s["heads"], 1, d_pad).reshape(s["heads"], 1, d_pad)
    records = query_records(queries, kv_heads, 1, step_header(position, position + 1), pad2(cs, 1, d_pad)[0],
                            step_kv)
    kv = kv_blocks(to_bf16(k_cache), to_bf16(v_cache), kv_heads, CACHE, d_pad, tkv)
    out = np.zeros(s["heads"] * d_pad, np.uint16)
    k_new = np.zeros(kv_heads * d_pad, np.uint16)
    DesignRun(design, library.function).run({"q": records, "kv": kv, "out": out, "k_new": k_new},
                                            sequence=kv_sequence_for(design, position, tkv))
    return records, kv, out.reshape(s["heads"], d_pad), k_new.reshape(kv_heads, d_pad)


# (query heads, KV heads, head dim, the GEMV's N): MHA-like GQA 2; GQA 7 with a head dim of 8-lane vectors (24); a
# 7 x 4 grid of 32-row tiles (YS = 16) whose KV heads fill one column, the others idle
SHAPES = {"gq2-d64": (16, 8, 64, 512), "gq7-d24": (28, 4, 24, 512), "ys16-idle": (8, 4, 48, 896)}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("position", [0, 37, 96], ids=["first", "partial-tile", "block"])
def test_a_decode_attention_member_computes_bit_for_bit_what_its_own_design_computes(tmp_path, position, shape):
    """On the emulator (what each core receives derived from the design): the member's sequence for the step's
    cache rows, behind its header, writes the outputs and rotated keys decode attention's own design writes, bit
    for bit (cache rows past the position hold garbage); the linears' sequences of the same design still compute
    theirs. Built alone, the member's own design computes the same."""
    heads, kv_heads, d, n = SHAPES[shape]
    o = _linear("o", n)
    gate_up = _linear("down", n, k=768)  # another linear in its tile format
    own_plan, own, member = _member(o, heads, kv_heads, d)
    members = [o, gate_up, member]
    spec = GEMV.shared_spec([(launch, plan) for _, launch, plan in members], NPU2)
    assert spec.p["words_at"] == gemv_attention.WORDS_AT
    shared = build_shared_design(members, NPU2, spec, "g")
    assert not list(check_design(shared))
    assert parse_design(render(shared), "g.mlir") == shared
    name = member[0]
    assert member_names(shared) == [o[0], gate_up[0], name]
    tkv = member[1].params["attn_tkv"]
    counts = [s.name for s in shared.sequences if s.name.startswith(name)]
    assert counts == [f"{name}_kv_tiles_{n}" for n in kv_read_counts(tkv, CACHE // tkv)] and len(counts) >= 2
    library = KernelLibrary.build([spec, kernel_spec(own, NPU2), kernel_spec(o[1], NPU2)], tmp_path / "kernels")
    rng = np.random.default_rng(position)
    s = own_plan.shape
    heads, kv_heads, d = s["heads"], s["kv_heads"], s["head_dim"]
    angles = rng.uniform(0, 6, (1, d // 2)).astype(np.float32)
    q = {"q": rng.standard_normal((heads, 1, d)).astype(np.float32),
         "cos": np.cos(np.concatenate([angles, angles], 1)), "sin": np.sin(np.concatenate([angles, angles], 1))}
    k, v = (rng.standard_normal((kv_heads, 1, d)).astype(np.float32) for _ in range(2))
    # rows past the position hold garbage: a step must not read them (the own design masks them alike)
    k_cache, v_cache = (100 * rng.standard_normal((kv_heads, CACHE, d)).astype(np.float32) for _ in range(2))
    k_cache[:, :position], v_cache[:, :position] = (rng.standard_normal((kv_heads, position, d)) for _ in range(2))
    records, kv, want_out, want_k = _own_run(library, own_plan, own, q, k, v, k_cache, v_cache, position)
    assert np.abs(want_out).max() > 0
    _, launch, plan = member
    tail = gemv_attention.kv_tail_bytes(launch)
    assert tail == o[2].shape["tile_bytes"] - launch.params["attn_rows"] * d * 2
    cache_row = np.concatenate([kv, np.zeros(-(-tail // 2), np.uint16)])
    tensors = gemv_attention.tensors(launch, plan.shape, records, Resident("kv/l0/0", cache_row))
    sequence = kv_sequence_for(shared, position, launch.params["attn_tkv"], member=name)
    DesignRun(shared, library.function).run({**{k_: (t.array if isinstance(t, Resident) else t)
                                                for k_, t in tensors.items()},
                                             HEADER_ARG: header_words(shared, sequence)}, sequence=sequence)
    got_out, got_k = gemv_attention.results(launch, plan.shape, tensors["y"])
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_k, want_k)
    alone = build_design(launch, plan, NPU2, kernel_spec(launch, NPU2), "alone")  # its idle columns stay idle
    assert not list(check_design(alone))
    alone_library = KernelLibrary.build([kernel_spec(launch, NPU2)], tmp_path / "alone")
    tensors = gemv_attention.tensors(launch, plan.shape, records, Resident("kv/l0/0", cache_row))
    DesignRun(alone, alone_library.function).run({k_: (t.array if isinstance(t, Resident) else t)
                                            for k_, t in tensors.items()},
                                           sequence=kv_sequence_for(alone, position, launch.params["attn_tkv"]))
    np.testing.assert_array_equal(gemv_attention.results(launch, plan.shape, tensors["y"])[0], want_out)
    o_args = _tensors(o[1], o[2], rng)
    DesignRun(build_design(o[1], o[2], NPU2, kernel_spec(o[1], NPU2), "o"), library.function).run(o_args)
    expected, o_args["y"][:] = o_args["y"].copy(), 0
    DesignRun(shared, library.function).run({**o_args, HEADER_ARG: header_words(shared, o[0])}, sequence=o[0])
    np.testing.assert_array_equal(o_args["y"], expected)


def test_a_cache_row_without_the_tail_the_member_reads_is_refused():
    o = _linear("o", 512)
    _, _, (_, launch, plan) = _member(o)
    rows = plan.shape["kv_heads"] * CACHE * 2 * 64
    with pytest.raises(AielowerError, match=r"allocate the cache with \d+ bytes after its rows"):
        gemv_attention.tensors(launch, plan.shape, np.zeros((8, 8), np.uint16),
                               Resident("kv/l0/0", np.zeros(rows, np.uint16)))


def test_bad_attention_constants_in_a_gemv_kernel_are_refused_with_their_rule():
    o = _linear("o", 512)
    _, _, (_, launch, _) = _member(o)
    p = gemv_attention.attention_params(launch.params)
    spec = GEMV.kernel_spec(launch, NPU2).p
    base = dict(tn=spec["tn"], tk=spec["tk"], group=spec["group"], bias=False, mmul=NPU2.mmul["bf16"],
                nb=spec["nb"], ys=spec["ys"])
    cases = [({"attn_rows": 3}, "CR=3 KV rows of 64 bf16 per weight tile must divide TKV"),
             ({"attn_rows": 64}, "must divide TKV=64 and fit the 2368-byte tile"),
             ({"attn_record": 64}, "a query record of 64 bf16 is not the"),
             ({"attn_scale": float("inf")}, "ATTN_SCALE=inf must be a finite number > 0"),
             ({"attn_rope": 7}, "ATTN_ROPE=7 must be 0 or even"),
             ({"attn_arch": "aie3"}, "ATTN_ARCH='aie3' is not one of")]
    for change, message in cases:
        with pytest.raises(CompileError, match=re.escape(message)):
            gemv_spec(base["tn"], base["tk"], base["group"], False, base["mmul"], nb=base["nb"], ys=base["ys"],
                      attention={**p, **change})
    with pytest.raises(CompileError, match="is not the epilogue's ARCH='aie2'"):
        gemv_spec(32, base["tk"], base["group"], False, base["mmul"], "silu_mul", "aie2", nb=base["nb"], ys=16,
                  attention={**p, "attn_arch": "aie2p"})
    with pytest.raises(CompileError, match="decode attention needs .* floats of accumulators"):
        gemv_spec(base["tn"], base["tk"], base["group"], False, base["mmul"], nb=1, ys=base["ys"], attention=p)
    assert gemv_spec(base["tn"], base["tk"], base["group"], False, base["mmul"], nb=base["nb"], ys=base["ys"],
                     attention={**p, "attn_scale": 1}).p["attn_scale"] == 1.0  # an int from IR text is a number


def test_a_member_paired_with_another_ops_shape_is_refused():
    """A plan read from IR text may pair a member with an op it was not planned for: its schedule and the host
    refuse it instead of leaving heads unwritten."""
    o = _linear("o", 512)
    _, _, (_, launch, plan) = _member(o)  # 8 KV heads of 64, gq 2
    for change, message in (({"kv_heads": 6}, "6 KV heads do not fill whole columns of the 8x4 grid"),
                            ({"gq": 3}, "ATTN_GQ=2 is not the op's gq 3"),
                            ({"head_dim": 48}, "ATTN_ROPE=64 is not the op's head_dim 48"),
                            ({"cache_len": 96}, "its 64-row cache tiles do not divide the cache of 96")):
        with pytest.raises(CompileError, match=re.escape(message)):
            GEMV.schedule(launch, plan.__class__(plan.kind, plan.device, {**plan.shape, **change}, plan.launches))
