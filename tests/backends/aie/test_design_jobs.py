"""Building an artifact's designs in worker processes: the same designs and texts, in the same order, as one
after the other; a worker's error reaches the caller."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from aielower.backends.aie import design_jobs
from aielower.backends.aie.catalog import collect
from aielower.backends.aie.device import NPU2
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.errors import CompileError


@pytest.fixture(scope="module")
def designs(planned):
    _, found = collect(planned, NPU2)
    return list(found.values())


def test_what_goes_to_a_worker_pickles(designs):
    assert pickle.loads(pickle.dumps(NPU2)) == NPU2
    spec = designs[0].spec
    assert spec.symbol  # caches the kernel's definition, which holds functions that do not pickle
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_designs_are_dealt_biggest_first_to_the_least_loaded_worker():
    assert design_jobs.deal([5, 1, 9, 3, 3], 2) == [[2, 1], [0, 3, 4]]  # loads 10 and 11
    assert design_jobs.deal([7], 4) == [[0]]


def test_designs_checked_on_arrays_weigh_less_when_dealt(designs):
    """Dealing estimates the generator's work: a linear's calls are checked on arrays, a thousand times cheaper
    than the attention's, checked call by call; so are a norm's on a GEMV configuration (families/gemv_norm.py)."""
    mixed = 0
    for d in designs:
        calls, work = design_jobs.design_calls(d), design_jobs.design_work(d)
        on_arrays = [KERNEL_FAMILIES.for_kernel(x.launch.kernel).scheduled_as_arrays(x.launch) for x in d.members]
        if all(on_arrays):
            assert d.spec.family.startswith("linear_w4") and work == pytest.approx(calls * design_jobs.ARRAY_CALL_WORK)
        elif not any(on_arrays):
            assert work == calls
        else:  # the decode GEMVs' configuration with the norms: their calls weigh one each
            mixed += 1
            assert calls * design_jobs.ARRAY_CALL_WORK < work < calls
    assert {d.spec.family for d in designs} >= {"linear_w4_gemv", "attention"} and mixed == 1


def test_small_artifacts_are_built_here(designs):
    total = sum(design_jobs.design_calls(d) for d in designs)
    assert 0 < total < design_jobs.PARALLEL_CALLS  # the tiny model: starting workers would cost more
    assert design_jobs.default_jobs() >= 1
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        design_jobs.build_designs(designs, NPU2, jobs=0)


def test_workers_build_the_same_designs_in_the_same_order(designs, monkeypatch):
    chosen = designs[:6]
    serial = design_jobs.build_designs(chosen, NPU2, jobs=1)
    monkeypatch.setattr(design_jobs, "PARALLEL_CALLS", 0)  # workers even for a tiny model
    seen = []
    parallel = design_jobs.build_designs(chosen, NPU2, jobs=2, progress=lambda done, total, name: seen.append(
        (done, total, name)))
    assert [text for _, text in parallel] == [text for _, text in serial]
    assert [design for design, _ in parallel] == [design for design, _ in serial]
    assert [done for done, _, _ in seen] == list(range(1, 7)) and {total for _, total, _ in seen} == {6}
    assert sorted(name for _, _, name in seen) == sorted(d.name for d in chosen)

    own = next(d for d in designs if not d.shared)
    wrong = dataclasses.replace(own, spec=next(d.spec for d in designs if d.spec.family != own.spec.family))
    with pytest.raises(CompileError, match="the launch runs a"):
        design_jobs.build_designs([chosen[1], wrong], NPU2, jobs=2)


def test_designs_already_built_are_only_rendered(designs, monkeypatch):
    """The report builds the decode step's designs to count them; the artifact renders those without building them
    again."""
    chosen = designs[:3]
    serial = design_jobs.build_designs(chosen, NPU2, jobs=1)
    rebuilt = []
    build = design_jobs._build
    monkeypatch.setattr(design_jobs, "_build", lambda planned, device: rebuilt.append(planned.name) or build(planned,
                                                                                                              device))
    again = design_jobs.build_designs(chosen, NPU2, jobs=1, built={chosen[1].name: serial[1][0]})
    assert again == serial and rebuilt == [chosen[0].name, chosen[2].name]


@pytest.mark.parametrize("jobs", [1, 2])
def test_meanwhile_builds_the_deferred_designs_while_the_workers_build_the_others(designs, monkeypatch, jobs):
    """The artifact makes its report while the workers build: the designs the report builds (``deferred``) are
    not given to them, and one it leaves unbuilt is built after it."""
    chosen = designs[:4]
    serial = design_jobs.build_designs(chosen, NPU2, jobs=1)
    monkeypatch.setattr(design_jobs, "PARALLEL_CALLS", 0)
    built: dict = {}
    order = []

    def meanwhile():
        order.append("meanwhile")
        built[chosen[1].name] = serial[1][0]  # the report built one of its two

    rebuilt = []
    build = design_jobs._build
    monkeypatch.setattr(design_jobs, "_build", lambda planned, device: rebuilt.append(planned.name) or build(planned,
                                                                                                              device))
    got = design_jobs.build_designs(chosen, NPU2, jobs=jobs, built=built, meanwhile=meanwhile,
                                    deferred=[chosen[1].name, chosen[3].name])
    assert got == serial and order == ["meanwhile"]
    # in this process: the deferred design meanwhile left, and with one job the others too
    assert rebuilt == ([chosen[0].name, chosen[2].name] if jobs == 1 else []) + [chosen[3].name]
