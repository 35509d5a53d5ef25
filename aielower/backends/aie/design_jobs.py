"""Building the designs of an artifact: one after the other, or in worker processes when there is enough work.

The biggest designs of a 7B model take seconds each to build (the generator checks every core's calls against the
schedule); they do not depend on each other, so with more than one CPU they are built by worker processes. The
workers are started with ``spawn``: the compiling process has usually imported torch, whose threads make ``fork``
unsafe. The work of a design is estimated by its kernel calls (the cost model's calls per core, times the cores);
below :data:`PARALLEL_CALLS` in all, starting workers costs more than it saves and everything is built in this
process. Designs are handed out biggest first and come back in the order given, so the artifact is the same whatever
the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from aielower.backends.aie.catalog import Design as Planned
from aielower.backends.aie.cost import calls_per_core
from aielower.backends.aie.designs import build_design, render
from aielower.backends.aie.designs import model as m
from aielower.backends.aie.device import Device

PARALLEL_CALLS = 1_000_000  # kernel calls in all the designs below which they are built in this process
MAX_JOBS = 4


def default_jobs() -> int:
    """Workers for building designs: the CPUs this process may run on, at most :data:`MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def design_calls(planned: Planned) -> int:
    """The kernel calls a design's cores make, as the cost model counts them: the work of building it."""
    launch = planned.launch
    return sum(calls_per_core(launch, planned.plan.shape).values()) * launch.cores


def _build(planned: Planned, device: Device) -> tuple[m.Design, str]:
    design = build_design(planned.launch, planned.plan, device, planned.spec, planned.name)
    return design, render(design)


def build_designs(designs: Sequence[Planned], device: Device, jobs: int | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> list[tuple[m.Design, str]]:
    """Every design built and rendered, in the order of ``designs``; ``jobs`` workers (default:
    :func:`default_jobs`) when the designs make at least :data:`PARALLEL_CALLS` kernel calls in all.
    ``progress(done, total, name)`` after each design."""
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    work = [design_calls(d) for d in designs]
    results: list[tuple[m.Design, str] | None] = [None] * len(designs)
    done = 0
    if jobs == 1 or len(designs) < 2 or sum(work) < PARALLEL_CALLS:
        for i, planned in enumerate(designs):
            results[i] = _build(planned, device)
            done += 1
            if progress is not None:
                progress(done, len(designs), planned.name)
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(designs)), mp_context=context) as pool:
        biggest_first = sorted(range(len(designs)), key=lambda i: -work[i])
        futures = {pool.submit(_build, designs[i], device): i for i in biggest_first}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()  # a worker's error is raised here, as it would be in this process
            done += 1
            if progress is not None:
                progress(done, len(designs), designs[i].name)
    return results


__all__ = ["PARALLEL_CALLS", "build_designs", "default_jobs", "design_calls"]
