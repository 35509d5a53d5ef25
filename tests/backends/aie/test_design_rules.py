"""The rules mlir-aie's verifiers miss (designs.check) and the emulator's mlir-aie semantics (designs.simulate): each
rule gets a design that breaks it, and a layout bug planted in a design makes the emulator's output wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aielower.backends.aie.designs import DesignRun, build_design, check_design, parse_design, render
from aielower.backends.aie.designs import model as m
from aielower.backends.aie.kernels import KernelLibrary
from aielower.errors import AielowerError
from tests.backends.aie.test_design import CASES, case


def _design(name: str) -> m.Design:
    launch, plan, device, spec = case(name)
    return build_design(launch, plan, device, spec, name)


def _rules(design: m.Design, **kwargs) -> set[str]:
    return {v.rule for v in check_design(design, **kwargs)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_designs_keep_every_rule(name):
    launch, plan, device, spec = case(name)
    design = build_design(launch, plan, device, spec, name)
    assert check_design(design, static_bytes=lambda _: spec.static_bytes, stack_needed=lambda _: spec.stack_bytes) == []


def _with_link_offsets(design: m.Design, offsets_for) -> m.Design:
    links = tuple(dataclasses.replace(link, destination_offsets=offsets_for(link)) if link.kind == "distribute"
                  and link.sources[0].startswith("x_") else link for link in design.links)
    return dataclasses.replace(design, links=links)


def _parts_as_rows(link: m.FifoLink) -> tuple[int, ...]:
    """The offsets of the joined-stream bug: one part per row instead of the row's whole tile."""
    step = link.destination_offsets[1] // 2
    return tuple(r * step for r in range(len(link.destinations)))


def test_link_offsets_that_mlir_aie_would_misread_are_a_violation():
    planted = _with_link_offsets(_design("add_rms_norm"), _parts_as_rows)
    violations = [v for v in check_design(planted) if v.rule == "link-lengths"]
    assert violations and "mlir-aie gives @x_c0_r0's part 512 elements (from the offsets), its FIFO element holds 1024" \
        in str(violations[0])


@pytest.fixture(scope="module")
def norm_kernels(tmp_path_factory):
    launch, plan, device, spec = case("add_rms_norm")
    return KernelLibrary.build([spec], tmp_path_factory.mktemp("kernels"))


def _run_norm(design: m.Design, library) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    args = {a.name: np.zeros(a.type.size, np.uint16) for a in design.sequence_args}
    for name in ("ab", "w"):  # the a | b row-tile records, and the norm weight
        args[name][:] = (rng.standard_normal(args[name].size).astype(np.float32).view(np.uint32) >> 16)
    DesignRun(design, library.function).run(args)
    return args


def test_the_emulator_runs_the_design_text_and_a_planted_layout_bug_breaks_it(norm_kernels):
    good = parse_design(render(_design("add_rms_norm")), "add_rms_norm.mlir")
    expected = _run_norm(good, norm_kernels)
    assert not np.isnan(expected["sy"].view(np.uint16).astype(np.float32)).any()
    planted = _with_link_offsets(good, _parts_as_rows)
    try:
        got = _run_norm(planted, norm_kernels)
    except AielowerError as e:  # or it cannot even finish: the cores wait for data the link never sends them
        assert "cannot finish" in str(e) or "left undelivered" in str(e)
    else:
        assert not np.array_equal(got["sy"], expected["sy"])


def test_a_consumer_that_waits_for_more_than_is_sent_is_reported(norm_kernels):
    design = _design("add_rms_norm")
    seq = tuple(op for op in design.sequence if not (isinstance(op, m.DmaMemcpy) and op.arg == "ab"
                                                      and op.fifo == "x_c3"))
    with pytest.raises(AielowerError, match="cannot finish .*tile_3_"):
        _run_norm(design.with_sequence(seq), norm_kernels)


# --- one broken design per rule ---------------------------------------------------------------------------------


def test_dims_beyond_the_buffer_descriptor_limits():
    design = _design("gemm")
    fifos = tuple(dataclasses.replace(f, to_stream=((2, 1024), (1024, 1))) if f.name == "a_c0_r0" else f
                  for f in design.fifos)
    problems = [str(v) for v in check_design(dataclasses.replace(design, fifos=fifos)) if v.rule == "bd-dims"]
    assert any("dim size 1024 > 512 (memory tile)" in p for p in problems)


def test_dims_on_a_shim_end():
    design = _design("gemv")
    fifos = tuple(dataclasses.replace(f, to_stream=((4, 16), (16, 1))) if f.name == "x_c0" else f for f in design.fifos)
    assert "bd-dims" in _rules(dataclasses.replace(design, fifos=fifos))


def _sequence(design: m.Design, ops) -> m.Design:
    return design.with_sequence(ops)


def test_more_than_four_tasks_on_one_shim_channel():
    design = _design("gemv")
    push = next(op for op in design.sequence if isinstance(op, m.DmaMemcpy) and op.fifo == "x_c0")
    pushes = [dataclasses.replace(push, bd_id=i) for i in range(5)]
    broken = _sequence(design, pushes + [op for op in design.sequence if op is not push])
    assert "shim-queue" in _rules(broken)


def test_a_buffer_descriptor_reused_while_in_flight():
    design = _design("gemv")
    x = next(op for op in design.sequence if isinstance(op, m.DmaMemcpy) and op.fifo == "x_c0")
    w = next(op for op in design.sequence if isinstance(op, m.DmaMemcpy) and op.fifo == "w_c0")
    broken = _sequence(design, [x, dataclasses.replace(w, bd_id=x.bd_id)]
                       + [op for op in design.sequence if op not in (x, w)])
    assert "shim-bd" in _rules(broken)


def test_a_wait_without_a_token_and_an_output_never_waited_for():
    design = _design("gemv")
    no_wait = [op for op in design.sequence if not isinstance(op, m.DmaWait)]
    assert "tokens" in _rules(_sequence(design, no_wait))
    stray = [m.DmaWait("x_c0")] + list(design.sequence)
    assert "tokens" in _rules(_sequence(design, stray))


def test_buffer_descriptor_ids_beyond_sixteen():
    design = _design("gemv")
    ops = [dataclasses.replace(op, bd_id=16) if isinstance(op, m.DmaMemcpy) and op.fifo == "w_c0" else op
           for op in design.sequence]
    assert "shim-bd" in _rules(_sequence(design, ops))


def test_shim_transfer_limits():
    design = _design("gemv")
    ops = [dataclasses.replace(op, sizes=(65, 1, 1, 4), strides=(0, 0, 0, 1)) if isinstance(op, m.DmaMemcpy)
           and op.fifo == "x_c0" else op for op in design.sequence]
    problems = [str(v) for v in check_design(_sequence(design, ops)) if v.rule == "shim-transfer"]
    assert any("d3 (repeat) size 65 > 64" in p for p in problems)


def test_stack_and_kernel_statics_count_against_core_memory():
    launch, plan, device, spec = case("gemm")
    design = build_design(launch, plan, device, spec, "gemm")
    small = dataclasses.replace(design, cores=tuple(dataclasses.replace(c, stack_size=512) for c in design.cores))
    assert "memory" in _rules(small, stack_needed=lambda _: spec.stack_bytes)
    assert "memory" in _rules(design, static_bytes=lambda _: 60 * 1024)


def test_too_many_dma_channels_on_a_core():
    design = _design("gemv")
    core = design.cores[0].tile
    extra = tuple(m.ObjectFifo(f"extra{i}", m.Tile(core.column, 1), (core,), 2, m.MemrefType(16, "bf16"))
                  for i in range(2))
    assert "dma-channels" in _rules(dataclasses.replace(design, fifos=design.fifos + extra))


def test_a_kernel_call_with_the_wrong_buffer():
    design = _design("gemv")

    def swap(nodes):
        out = []
        for n in nodes:
            if isinstance(n, m.For):
                out.append(dataclasses.replace(n, body=tuple(swap(n.body))))
            elif isinstance(n, m.CallKernel) and n.function.endswith("_step"):
                out.append(dataclasses.replace(n, args=(n.args[1], n.args[0]) + n.args[2:]))
            else:
                out.append(n)
        return out

    cores = (dataclasses.replace(design.cores[0], body=tuple(swap(design.cores[0].body))),) + design.cores[1:]
    problems = [str(v) for v in check_design(dataclasses.replace(design, cores=cores)) if v.rule == "calls"]
    assert problems and "argument 0 is memref<2400xi8>, the function takes memref<256xbf16>" in problems[0]
