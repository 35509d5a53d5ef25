"""Building the designs of an artifact: one after the other, or in worker processes when there is enough work.

The biggest designs of a 7B model take seconds each to build (the generator checks every core's calls against the
schedule); they do not depend on each other, so with more than one CPU they are built by worker processes. A worker
is a fresh interpreter running this module (``python -m aielower.backends.aie.design_jobs``): it reads its designs
as a pickle on stdin and writes each result back on stdout as soon as it is built. Fresh interpreters, not
``multiprocessing``: they do not re-run the caller's main script (a script calling ``aielower.compile`` needs no
``if __name__ == "__main__"`` guard) and do not fork a process that torch's threads run in.

The work of a design is estimated by its kernel calls (the cost model's calls per core, times the cores); below
:data:`PARALLEL_CALLS` in all, starting workers costs more than it saves and everything is built in this process.
Designs are dealt to the workers biggest first (:func:`design_work`: calls the generator checks on arrays weigh
:data:`ARRAY_CALL_WORK`), each to the least loaded, and the results are put back in the order given, so the artifact
is the same whatever the number of workers.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence

from aielower.backends.aie.catalog import Design as Planned
from aielower.backends.aie.cost import calls_per_core
from aielower.backends.aie.designs import build_design, render
from aielower.backends.aie.designs import model as m
from aielower.backends.aie.designs.shared import build_shared_design
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.device import Device
from aielower.errors import AielowerError, CompileError

PARALLEL_CALLS = 1_000_000  # kernel calls in all the designs below which they are built in this process
MAX_JOBS = 4
WORKER = "aielower.backends.aie.design_jobs"


def default_jobs() -> int:
    """Workers for building designs: the CPUs this process may run on, at most :data:`MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def _member_calls(member) -> int:
    """The calls of a member's cores as the generator schedules them (over the whole cache, if it reads one)."""
    kv_len = KERNEL_FAMILIES.for_kernel(member.launch.kernel).scheduled_kv_len(member.launch, member.plan)
    return sum(calls_per_core(member.launch, member.plan.shape, kv_len).values()) * member.launch.cores


def design_calls(planned: Planned) -> int:
    """The kernel calls a design's cores make, as the cost model counts them."""
    return sum(_member_calls(x) for x in planned.members)


# What checking one kernel call costs the generator when its family is scheduled on arrays (the linears,
# KernelFamily.scheduled_as_arrays), relative to a call checked one by one. Measured on the 7B main job's designs on
# this project's 2-core machine, with attention counted over the cache it is scheduled for: about 0.1 us a call on
# arrays, 11-17 us a call checked call by call (the big attention designs).
ARRAY_CALL_WORK = 7e-3


def design_work(planned: Planned) -> float:
    """What building a design costs, to deal the designs to workers: its kernel calls, those the generator checks on
    arrays at :data:`ARRAY_CALL_WORK` each."""
    return sum(_member_calls(x) * (ARRAY_CALL_WORK if _on_arrays(x.launch) else 1.0) for x in planned.members)


def _on_arrays(launch) -> bool:
    return KERNEL_FAMILIES.for_kernel(launch.kernel).scheduled_as_arrays(launch)


def build_planned(planned: Planned, device: Device) -> m.Design:
    """The design of a catalog entry: a launch's own, or a shared configuration of its members."""
    if planned.shared:
        return build_shared_design([(x.name, x.launch, x.plan) for x in planned.members], device, planned.spec,
                                   planned.name, planned.chains)
    return build_design(planned.launch, planned.plan, device, planned.spec, planned.name)


def deal(work: Sequence[float], jobs: int) -> list[list[int]]:
    """Indices of ``work`` dealt to ``jobs`` workers: biggest first, each to the least loaded (empty ones dropped)."""
    loads = [0] * jobs
    bins: list[list[int]] = [[] for _ in range(jobs)]
    for i in sorted(range(len(work)), key=lambda i: -work[i]):
        least = loads.index(min(loads))
        bins[least].append(i)
        loads[least] += work[i]
    return [b for b in bins if b]


def _build(planned: Planned, device: Device) -> tuple[m.Design, str]:
    design = build_planned(planned, device)
    return design, render(design)


def build_designs(designs: Sequence[Planned], device: Device, jobs: int | None = None,
                  progress: Callable[[int, int, str], None] | None = None,
                  built: Mapping[str, m.Design] | None = None, meanwhile: Callable[[], None] | None = None,
                  deferred: Collection[str] = ()) -> list[tuple[m.Design, str]]:
    """Every design built and rendered, in the order of ``designs``; ``jobs`` workers (default:
    :func:`default_jobs`) when the designs make at least :data:`PARALLEL_CALLS` kernel calls in all.
    ``built`` holds designs already built, by name: they are only rendered. ``meanwhile()``, if given, runs in
    this process while the workers build (the report, which builds the decode step's designs into ``built``);
    the designs named in ``deferred`` are left to it, and built here after it if it did not.
    ``progress(done, total, name)`` after each design."""
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    built = {} if built is None else built
    results: list[tuple[m.Design, str] | None] = [None] * len(designs)
    done = 0

    def finished(i: int, result: tuple[m.Design, str]) -> None:
        nonlocal done
        results[i] = result
        done += 1
        if progress is not None:
            progress(done, len(designs), designs[i].name)

    def render_built() -> None:
        for i, planned in enumerate(designs):
            if results[i] is None and planned.name in built:
                finished(i, (built[planned.name], render(built[planned.name])))

    render_built()
    rest = [i for i, planned in enumerate(designs) if results[i] is None and planned.name not in deferred]
    calls = sum(design_calls(designs[i]) for i in rest)
    if jobs == 1 or len(rest) < 2 or calls < PARALLEL_CALLS:
        if meanwhile is not None:
            meanwhile()
        for i in rest:
            finished(i, _build(designs[i], device))
    else:
        bins = [[rest[k] for k in b] for b in deal([design_work(designs[i]) for i in rest], jobs)]
        _in_workers(designs, device, bins, finished, meanwhile)
    render_built()  # what meanwhile built
    for i, result in enumerate(results):
        if result is None:  # deferred, and meanwhile did not build it
            finished(i, _build(designs[i], device))
    return results


def _in_workers(designs: Sequence[Planned], device: Device, bins: list[list[int]],
                finished: Callable[[int, tuple[m.Design, str]], None],
                meanwhile: Callable[[], None] | None = None) -> None:
    """Build ``designs[i]`` for the indices of each bin in a worker of its own; ``finished(i, result)`` as each
    comes back; ``meanwhile()`` once the workers have their designs."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # where this process found aielower
    messages: queue.Queue = queue.Queue()
    workers = []
    try:
        for indices in bins:
            worker = subprocess.Popen([sys.executable, "-m", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=env)
            workers.append(worker)
            threading.Thread(target=_read, args=(worker, messages), daemon=True).start()
            pickle.dump((device, [(i, designs[i]) for i in indices]), worker.stdin)
            worker.stdin.close()
        if meanwhile is not None:
            meanwhile()
        missing = {i for indices in bins for i in indices}
        ended = 0
        while ended < len(workers):
            message = messages.get()
            if message[0] == "done":
                ended += 1
                continue
            if message[0] == "error":
                raise message[1]
            _, i, result = message  # ("built", index, (design, text))
            missing.discard(i)
            finished(i, result)
        if missing:
            names = sorted(designs[i].name for i in missing)
            raise CompileError(f"the design workers exited without building {', '.join(names[:3])}"
                               f"{' and more' if len(names) > 3 else ''} (their errors are above)")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


def _read(worker: subprocess.Popen, messages: queue.Queue) -> None:
    """Forward a worker's results (and its error, if any) to ``messages``, then ``("done",)``."""
    try:
        while True:
            try:
                messages.put(pickle.load(worker.stdout))
            except EOFError:
                break
    except Exception as e:  # noqa: BLE001 - a worker that died mid-message: the caller reports what is missing
        messages.put(("error", CompileError(f"a design worker's output could not be read: {e}")))
    finally:
        messages.put(("done",))


def _worker() -> int:
    """A worker: builds the designs it reads on stdin, writing ``("built", index, (design, text))`` per design, or
    ``("error", exception)`` and stops."""
    out = sys.stdout.buffer
    device, items = pickle.load(sys.stdin.buffer)
    for i, planned in items:
        try:
            message = ("built", i, _build(planned, device))
        except AielowerError as e:  # sent as a CompileError: other error classes may not unpickle
            message = ("error", e if type(e) is CompileError else CompileError(str(e)))
        except Exception as e:  # noqa: BLE001 - sent as an internal error naming the design
            message = ("error", CompileError(f"internal: building design {planned.name} failed: "
                                             f"{type(e).__name__}: {e}"))
        pickle.dump(message, out)
        out.flush()
        if message[0] == "error":
            return 1
    return 0


__all__ = ["ARRAY_CALL_WORK", "PARALLEL_CALLS", "build_designs", "build_planned", "deal", "default_jobs",
           "design_calls", "design_work"]

if __name__ == "__main__":
    raise SystemExit(_worker())
