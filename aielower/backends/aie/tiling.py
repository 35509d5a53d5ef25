"""plan-aie-tiling: choose how every compute op runs on the NPU and store it in the op's ``aie.plan`` attribute.

A target pass: it lives with the AIE backend and is imported when a pipeline names it
(``aielower.passes.base.BACKEND_PASS_MODULES``).

Which ops are planned, and how, is up to the kernel families (:mod:`aielower.backends.aie.families`). Planned ops: every
linear-like op with a quantized weight (:class:`~aielower.ir.core.LinearLike`: ``quant.linear``,
or a fused op with an epilogue, whose linear runs on the NPU and epilogue on the host; GEMV for decode steps, GEMM
for prompt buckets), ``fused.rms_norm``, ``fused.add_rms_norm``, ``fused.silu_mul`` and ``fused.attention`` (rotary +
flash attention). Everything else runs on the host (embedding lookup, rotary tables, layout changes). Ops are planned for their
function's row buckets; an op on one row per sequence (its activation has no sequence dim: the lm_head of ``decode``,
which keeps the last token) for one row and batches only (:func:`~aielower.backends.aie.plan.op_buckets`). A linear-like op
left with a dense weight runs on the host too: the pipeline warns naming it (``leftovers``,
:class:`~aielower.passes.base.PipelineWarning`), and the AIE report lists it. An op that cannot be tiled is a CompileError naming the op and the budget it breaks.
"""

from __future__ import annotations

import dataclasses

from aielower.backends.aie.device import get_device
from aielower.backends.aie.families import KERNEL_FAMILIES
from aielower.backends.aie.plan import DECODE_BUCKETS, PLAN_ATTR, PREFILL_BUCKETS, OpPlan, op_buckets
from aielower.errors import CompileError
from aielower.ir import Module, QTensorType, Sym, Weight
from aielower.ir.core import LinearLike
from aielower.ir.types import SEQ_SYMBOL
from aielower.passes.base import ModulePass, option, register_pass


def op_label(fn, index: int, op) -> str:
    weight = op.linear_weight if isinstance(op, LinearLike) else getattr(op, "weight", None)
    named = f" @{weight.name}" if isinstance(weight, Weight) else ""
    return f"@{fn.name} op #{index} ({op.name}{named})"


def tensor_bytes(t, rows: int) -> int:
    """Bytes of a tensor in DDR as the NPU holds it in one launch: bf16 elements (a qtensor: its packed codes, bf16
    scales and u4 zero points). Activations (with the sequence dim ``?s``) hold one launch's ``rows`` (the largest
    bucket: batch x tokens run in chunks of it); other symbolic dims (the batch of a KV cache) count once, since the
    host runs one batch row per launch."""
    if isinstance(t, QTensorType):
        return t.nbytes
    n = rows if any(isinstance(d, Sym) and d.name == SEQ_SYMBOL for d in t.shape) else 1
    for d in t.shape:
        n *= d if isinstance(d, int) else 1
    return n * 2


def check_addressable(op, label: str, device, rows: int) -> None:
    """Every tensor ``op`` reads or writes must be addressable by the device's DMA (``Device.max_buffer_bytes``);
    checked from the types alone, before any plan or array is made."""
    for value in [*op.operands, *op.results]:
        size = tensor_bytes(value.type, rows)
        if size > device.max_buffer_bytes:
            raise CompileError(f"cannot tile {label} on {device.name}: a {value.type} operand takes {size:,} bytes, "
                               f"more than the {device.max_buffer_bytes:,} bytes one NPU transfer can address in a "
                               "DDR buffer (a signed 32-bit offset)")


def function_buckets(module: Module, function: str) -> tuple[int, ...]:
    """The row buckets a function's launches are planned for: every bucket up to the first that holds the most
    tokens the function can see in one call (``decode``: its KV cache, ``max_seq_len``; ``prefill``: the model's
    ``max_position_embeddings``), so that a small model is not planned for 2048-token prompts it cannot take. Without
    that information (IR read from text) every bucket."""
    buckets = DECODE_BUCKETS if function == "decode" else PREFILL_BUCKETS
    if function == "decode":
        limit = module.attribute("max_seq_len", int)
    else:
        limit = module.config_value("max_position_embeddings", int)
    if not isinstance(limit, int) or limit < 1:
        return buckets
    kept = tuple(b for b in buckets if b < limit)
    return kept + tuple(b for b in buckets if b >= limit)[:1]


@register_pass("plan-aie-tiling")
class PlanAieTiling(ModulePass):
    """Tile every compute op for an NPU: L1 / memory-tile buffers, core grid, padding, DMA access patterns."""

    device: str = option("npu2", "the NPU to plan for", choices=("npu1", "npu2"))

    def run(self, module: Module) -> int:
        device = get_device(self.device)
        cache: dict[tuple, OpPlan] = {}  # same shape, same plan (the 7B model has 32 identical layers)
        per_function = {fn.name: function_buckets(module, fn.name) for fn in module.functions.values()}
        linear_buckets = tuple(sorted(set().union(*per_function.values()))) if per_function else DECODE_BUCKETS
        planned = 0
        for fn in module.functions.values():
            for index, op in enumerate(fn.ops):
                buckets = op_buckets(op, per_function[fn.name])
                key_plan = self.plan_key(op, buckets, linear_buckets)
                if key_plan is None:
                    continue
                check_addressable(op, op_label(fn, index, op), device, max(buckets))
                key, make = key_plan
                if key not in cache:
                    cache[key] = make(op_label(fn, index, op), device)
                plan = cache[key]
                if plan.kind == "linear":  # planned for both functions' buckets: keep this op's
                    plan = dataclasses.replace(plan, launches=tuple(x for x in plan.launches if x.bucket in buckets))
                op.set_attr(PLAN_ATTR, plan)
                planned += 1
        self.join(module, device)
        module.metadata["aie_device"] = device.name
        return planned

    @staticmethod
    def join(module: Module, device) -> None:
        """Re-plan launches that can join another family's device configuration (:meth:`KernelFamily.joined
        <aielower.backends.aie.families.base.KernelFamily.joined>`): the configurations the module's launches offer,
        the most offered first, each op plan once (ops share plans). A joined launch is kept only if its
        configuration key is one offered and the configuration's kernel runs it beside the launches already there
        (:meth:`~aielower.backends.aie.families.base.KernelFamily.shared_spec`); else its plan tries the next."""
        ops = [op for fn in module.functions.values() for op in fn.ops if PLAN_ATTR in op.attributes]
        offered: dict = {}  # configuration key -> [times offered, the offer, the members so far (launch, plan)]
        for op in ops:
            plan = op.attributes[PLAN_ATTR]
            for offer in KERNEL_FAMILIES.for_kind(plan.kind).offers(plan):
                entry = offered.setdefault(offer.key, [0, offer, {}])
                entry[0] += 1
                entry[2].setdefault(id(offer.launch), (offer.launch, offer.plan))
        offers = [offer for _, offer, _ in sorted(offered.values(), key=lambda e: -e[0])]
        joined: dict[int, tuple[OpPlan, OpPlan]] = {}  # id -> (the plan, kept alive so its id stays its, joined)
        for op in ops:
            plan = op.attributes[PLAN_ATTR]
            if id(plan) not in joined:
                joined[id(plan)] = plan, _joined(plan, offers, offered, device)
            op.set_attr(PLAN_ATTR, joined[id(plan)][1])

    def leftovers(self, module: Module) -> list[str]:
        return [f"{op_label(fn, index, op)} is linear-like with a dense weight ({op.linear_weight.type}): it runs on "
                "the host, not the NPU; quantize it (quantize-linear) before plan-aie-tiling"
                for fn in module.functions.values() for index, op in enumerate(fn.ops)
                if isinstance(op, LinearLike) and PLAN_ATTR not in op.attributes]

    @staticmethod
    def plan_key(op, buckets, linear_buckets=DECODE_BUCKETS):
        """(a hashable description of what the plan depends on, a function that plans it) from the kernel family
        that runs ``op`` (:mod:`aielower.backends.aie.families`), or None for host ops."""
        return KERNEL_FAMILIES.plan_key(op, buckets, linear_buckets)


def _joined(plan: OpPlan, offers: list, offered: dict, device) -> OpPlan:
    """``plan`` joined to the first of ``offers`` its family places it in whose configuration can run it (see
    :meth:`PlanAieTiling.join`); ``offered`` records each configuration's members."""
    family = KERNEL_FAMILIES.for_kind(plan.kind)
    candidates = list(offers)
    while candidates:
        new = family.joined(plan, candidates, device)
        moved = [x for x in new.launches if x not in plan.launches]
        if new is plan or not moved:
            return plan
        keys = {KERNEL_FAMILIES.for_kernel(x.kernel).configuration_key(x, new) for x in moved}
        if len(keys) != 1 or next(iter(keys)) not in {o.key for o in candidates}:
            raise CompileError(f"{plan.kind}: kernel family {family.name} joined launches to configurations not "
                               f"among those offered ({sorted(map(repr, keys))})")
        (key,) = keys
        members = offered[key][2]
        offer = offered[key][1]
        trial = list(members.values()) + [(x, new) for x in moved]
        try:
            KERNEL_FAMILIES.for_kernel(offer.launch.kernel).shared_spec(trial, device)
        except CompileError:  # its kernel cannot run this launch beside those it has (a norm of another width)
            candidates = [o for o in candidates if o.key != key]
            continue
        members.update({id(x): (x, new) for x in moved})
        return new
    return plan
