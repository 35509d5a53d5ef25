"""What a decode token costs as the generated designs issue it, counted from the designs themselves (not the plan).

For every launch a decode step makes (each planned op of ``@decode``, its bucket-1 launches), the design that runs
it is built exactly as the artifact writes it, and its runtime sequence is walked: DDR bytes read (shim MM2S
transfers) and written (S2MM), transfers (one buffer descriptor each), waits, run-time-parameter writes, and the
words of the NPU instruction stream they lower to. Every launch is one submission of its design's runtime sequence
(the launch's own design, or its sequence of a shared configuration, :mod:`.designs.shared`), but a chain of
launches is one submission of the chain's sequence (:mod:`.chains`); the distinct designs a token uses are the
device configurations it switches between, and a launch whose design is the one before's needs no switch.

Instruction words per op, from mlir-aie at :data:`~aielower.backends.aie.toolchain.MLIR_AIE_COMMIT`
(``lib/Targets/AIETargetNPU.cpp`` encodings, ``lib/Dialect/AIEX/Transforms/AIEDmaToNpu.cpp`` lowering; checked
against upstream's ``test/Targets/NPU/npu_instgen.mlir`` header sizes): a sequence header 4, an MM2S
``dma_memcpy_nd`` 30 (a buffer-descriptor blockwrite 12 + address patch 12 + queue push 6), +7 when it issues a
token (S2MM always does: 37), ``dma_wait`` 4 (a sync), ``rtp_write`` 6 (a write32).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.catalog import Placement
from aielower.backends.aie.design_jobs import build_planned
from aielower.backends.aie.designs.build import kv_sequence_for
from aielower.backends.aie.designs import model as m
from aielower.backends.aie.device import Device
from aielower.backends.aie.plan import largest_bucket, plan_of, rows_follow_tokens
from aielower.errors import CompileError
from aielower.ir import Function, Module

# 32-bit words of the NPU instruction stream per runtime-sequence op (sources in the module docs).
WORDS_HEADER = 4
WORDS_TRANSFER = 30
WORDS_TOKEN = 7
WORDS_WAIT = 4
WORDS_RTP_WRITE = 6


@dataclass(frozen=True)
class SequenceCount:
    """One runtime sequence (one submission of one design), counted op by op."""

    ddr_read_bytes: int = 0
    ddr_write_bytes: int = 0
    transfers: int = 0
    waits: int = 0
    rtp_writes: int = 0
    instruction_words: int = 0

    @property
    def ddr_bytes(self) -> int:
        return self.ddr_read_bytes + self.ddr_write_bytes

    def __add__(self, other: "SequenceCount") -> "SequenceCount":
        return SequenceCount(*(a + b for a, b in zip(self._values(), other._values())))

    def times(self, n: int) -> "SequenceCount":
        return SequenceCount(*(n * a for a in self._values()))

    def _values(self) -> tuple[int, ...]:
        return (self.ddr_read_bytes, self.ddr_write_bytes, self.transfers, self.waits, self.rtp_writes,
                self.instruction_words)


def count_sequence(design: m.Design, sequence: str | None = None) -> SequenceCount:
    """Walk the runtime sequence ``sequence`` of ``design`` (default: the one ``Design.runtime_sequence()`` gives):
    a transfer whose FIFO the shim produces reads DDR, one it consumes writes DDR; bytes are the transfer's elements
    times its argument's element size."""
    walked = design.runtime_sequence(sequence)
    element_bytes = {a.name: a.type.element_bytes for a in walked.args}
    read = write = transfers = waits = rtps = 0
    words = WORDS_HEADER
    for op in walked.ops:
        if isinstance(op, m.DmaMemcpy):
            size = op.elements * element_bytes[op.arg]
            from_ddr = design.fifo(op.fifo).producer.kind == "shim"
            read, write = (read + size, write) if from_ddr else (read, write + size)
            transfers += 1
            words += WORDS_TRANSFER + (WORDS_TOKEN if op.issue_token or not from_ddr else 0)
        elif isinstance(op, m.DmaWait):
            waits += 1
            words += WORDS_WAIT
        elif isinstance(op, m.RtpWrite):
            rtps += 1
            words += WORDS_RTP_WRITE
    return SequenceCount(read, write, transfers, waits, rtps, words)


@dataclass
class TokenCount:
    """A decode step as its designs issue it: the sum of its launches' sequences, the launches (= submissions
    today), the distinct designs it runs, and the device configurations (designs) of the whole model."""

    total: SequenceCount = field(default_factory=SequenceCount)
    submissions: int = 0
    reconfigurations: int = 0  # launches whose design differs from the launch before (the token repeats)
    designs_per_token: int = 0
    device_configurations: int = 0
    chains: int = 0  # submissions that run several launches (a chain's sequence)
    by_role: Counter = field(default_factory=Counter)  # launch role -> DDR bytes per token

    def as_dict(self) -> dict:
        t = self.total
        return {"ddr_bytes": t.ddr_bytes, "ddr_read_bytes": t.ddr_read_bytes, "ddr_write_bytes": t.ddr_write_bytes,
                "transfers": t.transfers, "buffer_descriptors": t.transfers, "waits": t.waits,
                "rtp_writes": t.rtp_writes, "instruction_words": t.instruction_words,
                "submissions": self.submissions, "chained_submissions": self.chains,
                "reconfigurations": self.reconfigurations,
                "designs_per_token": self.designs_per_token,
                "device_configurations": self.device_configurations,
                "ddr_bytes_by_role": dict(sorted(self.by_role.items()))}


def decode_token_count(module: Module, device: Device, decode: Function, kv_len: int | None = None,
                       designs: dict[str, m.Design] | None = None,
                       placement: Placement | None = None) -> TokenCount:
    """Count one decode step of ``decode`` with ``kv_len`` valid cache positions after the step (default: the
    whole cache), see the module docs. An attention design with one runtime sequence per KV tile count is counted
    with the sequence the host submits at ``kv_len`` (the one reading the ``kv_len - 1`` cache rows before the
    step). ``designs`` caches built designs by name, ``placement`` where the module's launches run (pass the same
    ones to count several contexts)."""
    if kv_len is not None and kv_len < 1:
        raise CompileError(f"a decode step has at least one valid KV position (its own), not kv_len={kv_len}")
    designs = {} if designs is None else designs
    counts: dict[tuple[str, str | None], SequenceCount] = {}
    placement = Placement(module, device) if placement is None else placement
    result = TokenCount(device_configurations=len(placement.designs))
    order: list[str] = []
    chained = {id(op): (sequence, place) for sequence, c in placement.chains(decode) for place, op in enumerate(c.ops)}
    for op in decode.ops:
        plan = plan_of(op)
        if plan is None:
            continue
        for launch in plan.launches_for(1):
            name, sequence = placement.place(launch, plan)
            design = designs.get(name)
            if design is None:
                design = designs[name] = build_planned(placement.designs[name], device)
            family = KERNEL_FAMILIES.for_kernel(launch.kernel)
            if family.reads_valid_tiles(launch, plan):
                # the step's rows come with its queries: the sequence reads the cache rows before them
                cache = plan.shape.get("cache_len", 0)
                sequence = kv_sequence_for(design, (cache if kv_len is None else kv_len) - launch.bucket,
                                           family.kv_tile_rows(launch), member=sequence)
            own = _counted(counts, design, sequence)
            result.by_role[launch.role] += own.ddr_bytes  # a chain moves what its members move
            chain = chained.get(id(op))
            if chain is not None and chain[1]:  # in the chain's submission, counted at its first launch
                continue
            order.append(name)
            result.total = result.total + (own if chain is None else _counted(counts, design, chain[0]))
            result.submissions += 1
    result.designs_per_token = len(set(order))
    result.reconfigurations = reconfigurations(order)
    result.chains = sum(1 for _, place in chained.values() if not place)
    return result


def _counted(counts: dict, design: m.Design, sequence: str | None) -> SequenceCount:
    key = (design.name, sequence)
    if key not in counts:
        counts[key] = count_sequence(design, sequence)
    return counts[key]


def decode_design_names(decode: Function, placement: Placement) -> list[str]:
    """The designs the launches of ``decode``'s step run on (what :func:`decode_token_count` builds), each once."""
    names = (placement.place(launch, plan)[0] for op in decode.ops if (plan := plan_of(op)) is not None
             for launch in plan.launches_for(1))
    return list(dict.fromkeys(names))


def reconfigurations(order: list[str], repeated: bool = True) -> int:
    """How often the array switches designs in ``order`` (launch by launch): a launch whose design differs from the
    one before it. ``repeated`` (a decode token, token after token): the first launch is compared with the last
    (the previous token's). Else (one call, such as a prompt): the first launch loads its design too, as the array
    held another configuration before the call."""
    if not repeated:
        return sum(a != b for a, b in zip(order, order[1:])) + (1 if order else 0)
    if len(set(order)) <= 1:
        return 0
    return sum(a != b for a, b in zip(order, order[1:] + order[:1]))


def call_design_order(fn: Function, rows: int, placement: Placement) -> list[str]:
    """The designs one call of ``fn`` on ``rows`` rows of one sequence runs on, launch by launch, as the artifact's
    schedule places its launches: each op at the bucket of its rows (an op on one row per sequence, the last-token
    lm_head, at one row). A call holds at most the largest bucket's rows (the host program runs no more in one
    call): a CompileError for more."""
    planned = [(op, plan) for op in fn.ops if (plan := plan_of(op)) is not None]
    if not planned:
        return []
    largest = largest_bucket(fn.ops)
    if not 1 <= rows <= largest:
        raise CompileError(f"@{fn.name} runs 1 to {largest} rows in one call (its largest bucket), not {rows}")
    return [placement.place(launch, plan)[0] for op, plan in planned
            for launch in plan.launches_for(plan.bucket_for(rows if rows_follow_tokens(op) else 1))]


def counted_decode_ms(token: TokenCount, device: Device, reconfiguration_s: float | None = None) -> dict[str, float]:
    """Milliseconds of one decode step from what its designs issue: DDR bytes at the device's practical DDR rate,
    the instruction stream read the same way, and ``device.reconfiguration_s`` per design switch (both device
    figures are ASSUMPTIONs, see device.py), plus ``device.launch_overhead_s`` per submission. Compute is left out
    (at decode it hides under the DDR time; the plan's cost model shows it per launch). ``reconfiguration_s``:
    charge a switch that much instead (e.g. one of ``device.reconfiguration_bounds_s``)."""
    rate = device.ddr_practical_bytes_per_s
    parts = {
        "ddr": token.total.ddr_bytes / rate * 1e3,
        "instructions": token.total.instruction_words * 4 / rate * 1e3,
        "reconfigurations": token.reconfigurations * (device.reconfiguration_s if reconfiguration_s is None
                                                       else reconfiguration_s) * 1e3,
        "submissions": token.submissions * device.launch_overhead_s * 1e3,
    }
    return {"total": sum(parts.values()), **parts}


__all__ = ["SequenceCount", "TokenCount", "call_design_order", "count_sequence", "counted_decode_ms",
           "decode_design_names", "decode_token_count", "reconfigurations"]
