"""Chains (aielower/backends/aie/chains.py): consecutive launches of one shared configuration run as one submission,
each reading the one before's result where it wrote it. Found on a function's ops; one runtime sequence per chain
(designs/shared.py chain_sequence), checked by the design rules and by aie-opt; the emulator runs it as the device
would (the cores loop, one iteration per launch); the host program and the counts from the designs take it as one
submission; decode with chains computes bit for bit what it computes without."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import aielower
from aielower.backends.aie import cost
from aielower.backends.aie.binding import kernel_spec
from aielower.backends.aie.catalog import Placement, design_name
from aielower.backends.aie.chains import ChainLink, find_chains
from aielower.backends.aie.counted import decode_token_count
from aielower.backends.aie.designs import DesignRun, build_design, check_design, render
from aielower.backends.aie.designs import model as m
from aielower.backends.aie.designs.shared import (HEADER_ARG, IO_ARG, build_shared_design, chain_sequence,
                                                  header_words)
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.families.linear_w4 import plan_linear
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.aie.plan import plan_of
from aielower.backends.aie.toolchain import check_designs, find_aie_opt
from aielower.errors import AielowerError, CompileError
from aielower.ir.dialects import nn
from tests.backends.aie.test_emulator import MODELS, QUANT
from tests.backends.aie.test_shared import _tensors
from tests.conftest import tiny_qwen2

FAMILY = KERNEL_FAMILIES.for_kernel("linear_w4_gemv")
LINK = ChainLink("y", 0, "x", 512)  # the gate/up GEMV's 512 outputs are the next GEMV's 512 inputs


def _members():
    """A gate/up GEMV with the silu_mul epilogue (2 x 512 rows, K 512) and a 512 x 512 GEMV: one tile format."""
    plans = [plan_linear("gate_up", 1024, 512, 32, False, (1,), NPU2, "silu_mul"),
             plan_linear("down", 512, 512, 32, False, (1,), NPU2)]
    return [(design_name(p.launches[0], p), p.launches[0], p) for p in plans]


def _chained(links=(LINK,)):
    members = _members()
    spec = FAMILY.shared_spec([(launch, plan) for _, launch, plan in members], NPU2)
    chain = ("chain_0_1", _chain(members, links))
    return members, build_shared_design(members, NPU2, spec, "shared", (chain,))


def _chain(members, links):
    from aielower.backends.aie.chains import Chain

    return Chain("shared", tuple(name for name, _, _ in members), tuple(links))


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    members = _members()
    specs = {kernel_spec(launch, NPU2).symbol: kernel_spec(launch, NPU2) for _, launch, _ in members}
    shared = FAMILY.shared_spec([(launch, plan) for _, launch, plan in members], NPU2)
    specs[shared.symbol] = shared
    return KernelLibrary.build(list(specs.values()), tmp_path_factory.mktemp("kernels"))


def test_a_chain_sequence_runs_its_members_one_after_the_other():
    """Its arguments fit the kernel's five: the members' weights, their activations and results in one %io (the
    second member's operand is the first one's result there), one header per member; each member's header comes
    from its own element of %hdr, and the first member's transfers from DDR are waited for before the second
    member's start; the design rules pass it."""
    members, design = _chained()
    seq = design.runtime_sequence("chain_0_1")
    assert [a.name for a in seq.args] == ["w0", "w1", IO_ARG, HEADER_ARG]
    assert seq.arg(IO_ARG).type == m.MemrefType(3 * 512, "bf16")  # x0, y0 (= x1), y1
    header = design.runtime_sequence(members[0][0]).arg(HEADER_ARG).type
    assert seq.arg(HEADER_ARG).type == m.MemrefType(2 * header.size, header.element)
    transfers = [op for op in seq.ops if isinstance(op, m.DmaMemcpy)]
    headers = [op.offset for op in transfers if op.arg == HEADER_ARG]
    columns = members[0][1].columns
    assert headers == [0] * columns + [header.size] * columns
    second = next(i for i, op in enumerate(seq.ops) if getattr(op, "arg", "") == HEADER_ARG and op.offset)
    waited = {op.fifo for op in seq.ops[:second] if isinstance(op, m.DmaWait)}
    assert {f"x_c{c}" for c in range(columns)} | {f"w_c{c}" for c in range(columns)} <= waited
    reads = [op for op in seq.ops[second:] if isinstance(op, m.DmaMemcpy) and op.fifo.startswith("x")
             and op.arg == IO_ARG]
    assert reads and all(op.offset == 512 for op in reads)  # the first GEMV's result, after its activations
    assert not check_design(design)
    words = header_words(design, "chain_0_1").view(np.int32)
    own = [header_words(design, name).view(np.int32) for name, _, _ in members]
    np.testing.assert_array_equal(words, np.concatenate(own))
    # four members would take six arguments: more than the kernel's five buffers
    down = design.runtime_sequence(members[1][0])
    long = chain_sequence("chain_1_1_1_1", [down] * 4, (ChainLink("y", 0, "x", 512),) * 3, set())
    assert len(long.args) == 6
    d = dataclasses.replace(design, sequences=design.sequences + (long,))
    assert [str(v) for v in check_design(d) if v.rule == "sequence-args"] == [
        "[sequence-args] shared @chain_1_1_1_1: 6 arguments; the xclbin kernel takes 5 buffers"]


def test_aie_opt_lowers_a_design_with_a_chain(tmp_path):
    """mlir-aie's own passes (verify, addressing, routing, the NPU lowering of the runtime sequences) take the
    chain's sequence: waits on object FIFOs from DDR, its headers from one %hdr, the members' data in one %io."""
    try:
        tool = find_aie_opt()
    except CompileError as e:
        pytest.skip(f"needs mlir-aie's aie-opt: {e}")
    _, design = _chained()
    path = tmp_path / "chained.mlir"
    path.write_text(render(design))
    report = check_designs([path], tool)
    assert report.ok, report.summary()
    [result] = report.results
    # every sequence lowered to NPU instructions, the chain's too (a transfer is a few of them, a wait one)
    assert result.npu_ops > sum(len(seq.ops) for seq in design.sequences)


def test_a_chain_computes_what_its_members_compute_one_by_one(library):
    """On the emulator (the cores loop over runs, one iteration per launch): the chain's two outputs are bit for bit
    those of the members' own designs, the second run on the first one's output."""
    members, design = _chained()
    rng = np.random.default_rng(5)
    (_, gu_launch, gu_plan), (_, d_launch, d_plan) = members
    first, second = _tensors(gu_launch, gu_plan, rng), _tensors(d_launch, d_plan, rng)
    DesignRun(build_design(gu_launch, gu_plan, NPU2, kernel_spec(gu_launch, NPU2), "own0"),
              library.function).run(first)
    second["x"] = first["y"].copy()
    DesignRun(build_design(d_launch, d_plan, NPU2, kernel_spec(d_launch, NPU2), "own1"),
              library.function).run(second)
    assert first["y"].any() and second["y"].any()
    io = np.concatenate([first["x"], np.zeros(1024, np.uint16)])
    args = {"w0": first["w"], "w1": second["w"], IO_ARG: io, HEADER_ARG: header_words(design, "chain_0_1")}
    run = DesignRun(design, library.function)
    run.run(args, sequence="chain_0_1")
    np.testing.assert_array_equal(io[512:1024], first["y"])
    np.testing.assert_array_equal(io[1024:], second["y"])
    # the calls of the two launches (each member's sequence run on its own), and not those a core makes in its next
    # iteration before it waits for data
    calls = {}
    for i, (name, _, _) in enumerate(members):
        alone = DesignRun(design, library.function)
        tensors = first if i == 0 else second
        alone.run({**tensors, HEADER_ARG: header_words(design, name)}, sequence=name)
        calls[i] = alone.calls
    assert run.calls == calls[0] + calls[1]
    # without the second member's data the cores stop inside their second iteration: the run cannot end
    seq = design.runtime_sequence("chain_0_1")
    cut = dataclasses.replace(seq, ops=tuple(op for op in seq.ops if getattr(op, "arg", "") != "w1"))
    broken = dataclasses.replace(design, sequences=tuple(cut if s.name == seq.name else s for s in design.sequences))
    with pytest.raises(AielowerError, match="cannot finish"):
        DesignRun(broken, library.function).run(args, sequence="chain_0_1")


def test_a_chain_whose_link_does_not_fit_is_refused():
    members = _members()
    too_far = ChainLink("y", 8, "x", 512)  # the operand would run past the result's argument
    with pytest.raises(CompileError, match=r"chain @chain_0_1: @.*'s %x cannot read %y of @.* from element 8"):
        _chained((too_far,))
    own = (m.SequenceArg("x", m.MemrefType(8, "bf16")), m.SequenceArg("y", m.MemrefType(8, "bf16")),
           m.SequenceArg(HEADER_ARG, m.MemrefType(8, "bf16")))
    seqs = [m.RuntimeSequence("a", (m.RtpWrite("rtp", 0, 1),), own), m.RuntimeSequence("b", (), own)]
    with pytest.raises(CompileError, match="@a writes parameter words"):
        chain_sequence("chain_0_1", seqs, (ChainLink("y", 0, "x", 8),), set())
    with pytest.raises(CompileError, match="headers of other types"):
        chain_sequence("chain_0_1", [seqs[1], dataclasses.replace(seqs[1], args=())], (LINK,), set())
    with pytest.raises(CompileError, match="not a member of it"):
        spec = FAMILY.shared_spec([(launch, plan) for _, launch, plan in members], NPU2)
        build_shared_design(members, NPU2, spec, "shared", (("chain_0_1", _chain(members[:1] * 2, (LINK,))),
                                                            ("chain_9", _chain([("nope", None, None)] * 2, (LINK,)))))


def test_the_header_rule_takes_one_header_per_launch_of_a_chain():
    _, design = _chained()
    seq = design.runtime_sequence("chain_0_1")
    size = seq.arg(HEADER_ARG).type.size // 2
    # the second launch's header read from element 0 again: its cores would run the first launch twice
    again = tuple(dataclasses.replace(op, offset=0) if getattr(op, "arg", "") == HEADER_ARG else op for op in seq.ops)
    short = dataclasses.replace(seq, args=seq.args[:-1] + (m.SequenceArg(HEADER_ARG, m.MemrefType(size, "bf16")),))
    # both headers first: the cores would take the second header for the first launch's activations
    heads = [op for op in seq.ops if getattr(op, "arg", "") == HEADER_ARG]
    early = tuple(heads) + tuple(op for op in seq.ops if op not in heads)
    for broken, message in ((dataclasses.replace(seq, ops=again), "of header 1 is not one element per core"),
                            (short, "holds 1024 bytes, not the 2 header(s) of 1024 bytes"),
                            (dataclasses.replace(seq, ops=early), "header 1 on @x_c0 follows header 0 with no data")):
        d = dataclasses.replace(design, sequences=tuple(broken if s.name == seq.name else s for s in design.sequences))
        problems = [str(v) for v in check_design(d) if v.rule == "header"]
        assert problems and message in problems[0], (message, problems)


# A one-layer model wide enough that its decode GEMVs (gate/up and down too) share the norms' configuration: its
# second norm, gate/up and down GEMVs are one chain of three, as on Qwen1.5-7B.
WIDE = dict(hidden_size=512, intermediate_size=1024, num_attention_heads=8, num_key_value_heads=8,
            num_hidden_layers=1)


def _compiled(config, tmp_path_factory, name):
    return aielower.compile(tiny_qwen2(**config), target="aie", quant=QUANT, max_seq_len=64,
                            out_dir=tmp_path_factory.mktemp(name) / "aie")


@pytest.fixture(scope="module")
def mha(tmp_path_factory):
    return _compiled(MODELS["mha"], tmp_path_factory, "mha")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    return _compiled(WIDE, tmp_path_factory, "wide")


def test_chains_of_the_tiny_models_decode(mha):
    """Each decoder layer chains its first norm and the qkv GEMV, and its second norm and the gate/up GEMV (the
    down GEMV reads a padded K: the host pads its operand, so it runs on its own); nothing chains across attention
    or into a linear whose K is padded (the odd model: no chain at all)."""
    module = mha.ir
    placement = Placement(module, mha.device)
    decode = module.functions["decode"]
    chains = placement.chains(decode)
    layers = sum(op.name == "fused.attention" for op in decode.ops)
    assert [[op.name for op in c.ops] for _, c in chains] == [
        ["fused.rms_norm", "quant.linear"], ["fused.add_rms_norm", "fused.linear_silu_mul"]] + [
        ["fused.add_rms_norm", "quant.linear"], ["fused.add_rms_norm", "fused.linear_silu_mul"]] * (layers - 1)
    assert {name for name, _ in chains} <= {name for d in placement.designs.values() for name, _ in d.chains}
    norm = chains[1][1]
    assert norm.chain.links[0].result_offset > 0  # the gate/up GEMV reads the norm, after the sum in the norm's y
    # a reader of the first norm's sum placed between the norm and the qkv GEMV: that chain is no more
    first = chains[0][1].ops[0]
    probe = nn.Add(first.results[0], first.results[0])
    decode.ops.insert_after(first, probe)
    try:
        kept = find_chains(decode, placement.place)
        assert [[op.name for op in c.ops] for c in kept][0] == ["fused.add_rms_norm", "fused.linear_silu_mul"]
    finally:
        decode.ops.remove(probe)
        probe.drop_operands()


def _decode(art, with_chains: bool, fail_once: bool = False):
    """Two decode steps after a 5-token prompt on the host emulator, with or without chains: (logits, caches,
    sequences launched). ``fail_once``: the first chain launch raises (an interrupted run)."""
    program = art.emulator
    launched = []
    submit = program.launcher.launch
    failing = [fail_once]

    def recording(design, sequence, tensors):
        if failing[0] and sequence and sequence.startswith("chain_"):
            failing[0] = False
            raise KeyboardInterrupt
        launched.append(sequence)
        return submit(design, sequence, tensors)

    chains = program.chains
    program.launcher.launch = recording
    program.chains = chains if with_chains else None
    program._interpreters.clear()
    program._chained.clear()
    try:
        ids = np.random.default_rng(0).integers(0, 128, size=(1, 5))
        cache = art.new_cache(1)
        if fail_once:  # the prompt's launches run at its bucket, unchained; a step's chains are interrupted
            art.emulate_decode(ids, 0, cache)
            with pytest.raises(KeyboardInterrupt):
                art.emulate_decode(np.array([[9]]), 5, cache)
            cache = art.new_cache(1)
        art.emulate_decode(ids, 0, cache)
        launched.clear()
        logits = [art.emulate_decode(np.array([[9 + i]]), 5 + i, cache) for i in range(2)]
        return logits, [c.copy() for c in cache], list(launched)
    finally:
        program.chains = chains
        program._interpreters.clear()
        program._chained.clear()
        program.launcher.launch = submit


@pytest.mark.parametrize("model", ["mha", "wide"])
def test_decode_with_chains_is_bit_for_bit_decode_without(model, request):
    """The host emulator with chains (held-back launches, one chain sequence, the held-back members' results read
    from what the device wrote) gives the logits and caches of one launch per op, with fewer launches; on the wide
    model with a chain of three (the middle member's operand and result both on the device only). A run interrupted
    at a chain's launch leaves nothing held back for the next."""
    art = request.getfixturevalue(model)
    chains = Placement(art.ir, art.device).chains(art.ir.functions["decode"])
    assert max(len(c.ops) for _, c in chains) == (3 if model == "wide" else 2)
    logits, caches, seqs = _decode(art, True, fail_once=model == "mha")
    plain, plain_caches, plain_seqs = _decode(art, False)
    for a, b in zip(logits + caches, plain + plain_caches):
        np.testing.assert_array_equal(a, b)
    chained = [s for s in seqs if s and s.startswith("chain_")]
    assert chained and len(seqs) == len(plain_seqs) - sum(s.count("_") - 1 for s in chained)


def test_counts_take_a_chain_as_one_submission(mha):
    module, device = mha.ir, mha.device
    placement = Placement(module, device)
    decode = module.functions["decode"]
    chains = placement.chains(decode)
    token = decode_token_count(module, device, decode, placement=placement)
    launches = sum(len(plan_of(op).launches_for(1)) for op in decode.ops if plan_of(op) is not None)
    assert token.submissions == launches - sum(len(c.ops) - 1 for _, c in chains)
    assert token.chains == len(chains)
    assert sum(token.by_role.values()) == token.total.ddr_bytes  # a chain moves what its members move
    # the plan cost model charges the launch overhead once per chain, as once per submission
    later = {id(op) for _, c in chains for op in c.ops[1:]}
    plain = cost.function_cost(cost.FunctionPlan.of(decode), device, 1, kv_len=8)
    chained = cost.function_cost(cost.FunctionPlan.of(decode, later), device, 1, kv_len=8)
    assert plain.seconds - chained.seconds == pytest.approx(len(later) * device.launch_overhead_s)
