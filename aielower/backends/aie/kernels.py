"""AIE kernels: what one kernel is (:class:`KernelSpec`), its C++ source, and its host build.

A kernel is a family (docs/aie-kernels.md) plus the constants baked into it. The spec checks the contract's
divisibility rules once, at construction, so a template never sees constants it cannot handle; the symbol carries
every constant so that two specs with different constants can live in one shared library.

The host emulator compiles the rendered sources with g++ against ``host_include/aie_api/aie.hpp`` (our host
implementation of the AIE API subset the kernels use) into one shared library, cached by a hash of everything
that goes into it, and calls the kernels through ctypes with NumPy buffers: bf16 as ``uint16`` bit patterns, fp32
as ``float32``, packed weights as ``uint8``.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aielower.backends.aie.device import DEVICES, Device, MMulShape
from aielower.backends.aie.weights import UNIT_ROWS, linear_tile_bytes
from aielower.errors import CompileError
from aielower.backends.aie.templating import ENV
from aielower.output import safe_path


HOST_INCLUDE = Path(__file__).parent / "host_include"
CXX_FLAGS = ("-std=c++20", "-O2", "-fPIC")  # plus -c per object and -shared for the link
_STDERR_LINES = 20

# Family -> the extern "C" functions it defines, as suffixes of the symbol ("" = the symbol itself).
_FUNCTIONS = {
    "linear_w4_gemv": ("_init", "_step", "_store"),
    "linear_w4_gemm": ("_init", "_step", "_store"),
    "rms_norm": ("",),
    "silu_mul": ("",),
    "rope": ("",),
    "attention": lambda p: ("_init", "_step", "_store") + (("_params",) if p["header"] else ()),
}
# bf16 slots of a query tile's step header (attention over a KV cache): two int32, the position of the bucket's
# first query token and the valid KV length, written by the host into a DDR buffer each step.
STEP_HEADER = 4
# int32 words of an attention core's parameter buffer: position, valid KV length, KV tiles to read.
ATTENTION_WORDS = 3
FAMILIES = tuple(_FUNCTIONS)


# ------------------------------------------------------------------------------------------------- spec


def _fp32(x: float) -> float:
    """``x`` rounded to fp32: the kernel bakes fp32 constants, so the spec holds exactly what the kernel uses."""
    return float(np.float32(x))


def _encode_float(x: float) -> str:
    """Shortest fp32 repr as an identifier fragment: 1e-06 -> 1em06, 0.0883883 -> 0p0883883."""
    text = str(np.float32(x))
    return text.replace(".", "p").replace("-", "m").replace("+", "")


def _c_float(x: float) -> str:
    """An exact C++ literal for an fp32 value (hex float)."""
    return f"{float(x).hex()}f"


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: its family and its constants, ``params`` a sorted tuple of ``(name, value)``.

    Build specs with the ``*_spec`` constructors below; constructing one directly runs the same checks.
    """

    family: str
    params: tuple[tuple[str, object], ...]

    def __post_init__(self) -> None:
        if self.family not in _FUNCTIONS:
            raise CompileError(f"unknown AIE kernel family {self.family!r}: choose one of {', '.join(FAMILIES)}")
        object.__setattr__(self, "params", tuple(sorted(tuple(p) for p in self.params)))
        _CHECKS[self.family](self.family, self.p)

    @property
    def p(self) -> dict[str, object]:
        """The constants by name."""
        return dict(self.params)

    @property
    def symbol(self) -> str:
        """The kernel's C name: family plus every constant, e.g. ``linear_w4_gemv_tn16_tk128_g32_bias``."""
        return _SYMBOLS[self.family](self.p)

    @property
    def filename(self) -> str:
        return f"{self.symbol}.cc"

    @property
    def functions(self) -> tuple[str, ...]:
        """The ``extern "C"`` functions the source defines."""
        suffixes = _FUNCTIONS[self.family]
        return tuple(self.symbol + suffix for suffix in (suffixes(self.p) if callable(suffixes) else suffixes))

    @property
    def stack_bytes(self) -> int:
        """The core stack this kernel needs: mlir-aie's default 1 KiB (call frames, scalars) plus the arrays its
        functions declare on the stack, rounded up to 64 bytes. Designs set the core's ``stack_size`` to it."""
        return -(-(DEFAULT_STACK + _STACK_ARRAYS[self.family](self.p)) // 64) * 64

    @property
    def static_bytes(self) -> int:
        """Bytes of the kernel's static arrays in core data memory (next to the stack and the FIFO buffers)."""
        return _STATIC_ARRAYS[self.family](self.p)

    def render(self) -> str:
        """The kernel's C++ source."""
        context = dict(self.p, symbol=self.symbol)
        for name in ("eps", "scale"):
            if name in context:
                context[f"{name}_literal"] = _c_float(context[name])
                context[f"{name}_text"] = str(np.float32(context[name]))
        if "scale" in context:  # attention keeps its scores in log2 units
            context["scale_log2_literal"] = _c_float(_fp32(context["scale"] * LOG2E))
        return ENV.get_template(f"kernels/{self.family}.cc.j2").render(**context)

    def signature(self, function: str) -> tuple[Arg, ...]:
        """The arguments of one of :attr:`functions`, with buffer sizes in elements (docs/aie-kernels.md)."""
        if function not in self.functions:
            defined = ", ".join(self.functions)
            raise CompileError(f"{self.symbol} defines no function {function!r}: it defines {defined}")
        suffix = function[len(self.symbol):]
        return _SIGNATURES[self.family](self.p)[suffix]

    def cycles(self, function: str) -> int:
        """Estimated core cycles of one call of ``function`` (one of :attr:`functions`): the vector instructions the
        template's loops issue, one per cycle, loads and stores co-issued (:class:`Ops`; the per-instruction figures
        in the "cycles" section cite a source or say ASSUMPTION). Attention steps are costed for a full tile (every
        KV row visible)."""
        self.signature(function)  # names the defined functions if ``function`` is not one of them
        ops = _CYCLES[self.family](self.p, _vector_model(self))[function[len(self.symbol):]]
        return ops.cycles


@dataclass(frozen=True)
class Arg:
    """One kernel argument: ``kind`` is bf16 / f32 / u8 / words (buffers, ``size`` elements; words are int32) or
    i32 (a scalar)."""

    name: str
    kind: str
    size: int = 0
    out: bool = False


# Stack and static arrays each template declares (keep in step with templates/kernels/*.cc.j2).
DEFAULT_STACK = 1024  # aie.core stack_size default (AIEOps.td, 0x400)
_STACK_ARRAYS = {
    "linear_w4_gemv": lambda p: 0,
    "linear_w4_gemm": lambda p: 0,
    "rms_norm": lambda p: 0,
    "silu_mul": lambda p: 0,
    "rope": lambda p: 0,
    "attention": lambda p: 6 * (-(-p["tkv"] // 16) * 16),  # float s[TKV_PAD], bfloat16 p[TKV_PAD]
}
_STATIC_ARRAYS = {
    "linear_w4_gemv": lambda p: 0,
    "linear_w4_gemm": lambda p: 2 * p["tk"] * UNIT_ROWS,  # bfloat16 b_col[TK * UR]: one dequantized unit column
    "rms_norm": lambda p: 0,
    "silu_mul": lambda p: 0,
    "rope": lambda p: 0,
    "attention": lambda p: 0,
}


# ----------------------------------------------------------------------------------------- constructors


# Architectures a kernel can be generated for: __AIE_ARCH__ of each, and the name Device.arch gives it.
ARCHS = {"aie2": 20, "aie2p": 21}
_ARCH_OF_DEVICE = {"AIE-ML": "aie2", "AIE2P": "aie2p"}
LOG2E = 1.4426950408889634


def arch_of(device: Device) -> str:
    """The kernel architecture (a key of :data:`ARCHS`) of a device: ``aie2`` for npu1, ``aie2p`` for npu2."""
    try:
        return _ARCH_OF_DEVICE[device.arch]
    except KeyError:
        raise CompileError(f"no AIE kernels for the {device.arch} architecture of {device.name}") from None


def gemv_spec(tn: int, tk: int, group: int, bias: bool, mmul: MMulShape) -> KernelSpec:
    params = (("tn", tn), ("tk", tk), ("group", group), ("bias", bool(bias)), ("r", mmul.m), ("s", mmul.k),
              ("t", mmul.n))
    return KernelSpec("linear_w4_gemv", params)


def gemm_spec(tm: int, tn: int, tk: int, group: int, bias: bool, mmul: MMulShape) -> KernelSpec:
    params = (("tm", tm), ("tn", tn), ("tk", tk), ("group", group), ("bias", bool(bias)),
              ("r", mmul.m), ("s", mmul.k), ("t", mmul.n))
    return KernelSpec("linear_w4_gemm", params)


def rms_norm_spec(d: int, d_real: int, tr: int, eps: float, add: bool) -> KernelSpec:
    params = (("d", d), ("d_real", d_real), ("tr", tr), ("eps", _fp32(eps)), ("add", bool(add)))
    return KernelSpec("rms_norm", params)


def silu_mul_spec(t: int, tr: int, arch: str) -> KernelSpec:
    return KernelSpec("silu_mul", (("t", t), ("tr", tr), ("arch", arch)))


def rope_spec(d: int, tr: int) -> KernelSpec:
    return KernelSpec("rope", (("d", d), ("tr", tr)))


def attention_spec(d: int, gq: int, tq: int, tkv: int, scale: float, causal: bool, arch: str,
                   header: bool = False) -> KernelSpec:
    """``header``: each query tile carries the step header (:data:`STEP_HEADER` slots after its rows), which
    ``_params`` copies into the core's parameter words (attention over a KV cache: per-step values come from DDR)."""
    params = (("d", d), ("gq", gq), ("tq", tq), ("tkv", tkv), ("scale", _fp32(scale)), ("causal", bool(causal)),
              ("arch", arch), ("header", bool(header)))
    return KernelSpec("attention", params)


# --------------------------------------------------------------------------------------------- checks


def _require(family: str, ok: bool, rule: str, fix: str) -> None:
    if not ok:
        raise CompileError(f"{family} kernel: {rule}; {fix}")


def _positive(family: str, p: dict, *names: str) -> None:
    for name in names:
        v = p.get(name)
        ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
        _require(family, ok, f"{name.upper()} must be a positive integer, got {v!r}", "fix the tile plan")


def _check_arch(family: str, p: dict) -> None:
    _require(family, p.get("arch") in ARCHS, f"unknown architecture ARCH={p.get('arch')!r}",
             f"choose one of {', '.join(ARCHS)} (kernels.arch_of(device))")


def _check_linear(family: str, p: dict) -> None:
    _positive(family, p, "tn", "tk", "group", "r", "s", "t")
    tn, tk, g, s, t = p["tn"], p["tk"], p["group"], p["s"], p["t"]
    _require(family, tk % g == 0, f"TK={tk} is not a multiple of the group size G={g} (contract: TK % G == 0)",
             f"choose TK as a multiple of {g}")
    _require(family, g % 16 == 0, f"group size G={g} is not a multiple of 16 (contract: G % 16 == 0)",
             "quantize with a group of 16, 32, 64 or 128")
    _require(family, tk % 32 == 0, f"TK={tk} is not a multiple of 32 (contract: TK % 32 == 0)",
             "choose TK as a multiple of 32")
    _require(family, tn % 16 == 0, f"TN={tn} is not a multiple of 16 (contract: TN % 16 == 0, so that every part "
             "of a weight tile starts on a 32-byte boundary)", "choose TN as a multiple of 16")
    _require(family, t in (4, 8), f"the mmul's T={t} is neither 4 nor 8 (contract: a code unit of {UNIT_ROWS} rows "
             "is one or two mmul B blocks)", "use the device's bf16 mmul shape")
    _require(family, s == 8 and g % s == 0, f"the mmul's S={s} must be 8, dividing G={g} (contract: a code unit "
             "is 8 x S codes, 32 bytes, of one group)", "use the device's bf16 mmul shape")


def _check_gemm(family: str, p: dict) -> None:
    _check_linear(family, p)
    _positive(family, p, "tm")
    for dim, blk, rule in (("tm", "r", "TM % R"), ("tk", "s", "TK % S"), ("tn", "t", "TN % T")):
        _require(family, p[dim] % p[blk] == 0,
                 f"{dim.upper()}={p[dim]} is not a multiple of the mmul's {blk.upper()}={p[blk]} "
                 f"(contract: {rule} == 0, mmul {p['r']}x{p['s']}x{p['t']})",
                 f"choose {dim.upper()} as a multiple of {p[blk]}")


def _check_rms_norm(family: str, p: dict) -> None:
    _positive(family, p, "d", "d_real", "tr")
    _require(family, p["d"] % 16 == 0, f"D={p['d']} is not a multiple of 16 (contract)", "pad D to a multiple of 16")
    _require(family, p["d_real"] <= p["d"], f"D_REAL={p['d_real']} exceeds the padded width D={p['d']}",
             "D is D_REAL padded up")
    _require(family, math.isfinite(p["eps"]) and p["eps"] >= 0, f"EPS={p['eps']} must be finite and >= 0",
             "use the model's rms_norm_eps")


def _check_silu_mul(family: str, p: dict) -> None:
    _check_arch(family, p)
    _positive(family, p, "t", "tr")
    _require(family, p["t"] % 16 == 0, f"T={p['t']} is not a multiple of 16 (contract)", "pad T to a multiple of 16")


def _check_rope(family: str, p: dict) -> None:
    _positive(family, p, "d", "tr")
    _require(family, p["d"] % 2 == 0, f"D={p['d']} is odd (contract: the head dim is even)", "rotate an even D")


def _check_attention(family: str, p: dict) -> None:
    _check_arch(family, p)
    _positive(family, p, "d", "gq", "tq", "tkv")
    _require(family, p["d"] % 8 == 0, f"D={p['d']} is not a multiple of 8 (contract)", "pad the head dim to 8")
    _require(family, math.isfinite(p["scale"]) and p["scale"] > 0, f"SCALE={p['scale']} must be finite and > 0",
             "use 1/sqrt(real head dim)")


_CHECKS = {
    "linear_w4_gemv": _check_linear,
    "linear_w4_gemm": _check_gemm,
    "rms_norm": _check_rms_norm,
    "silu_mul": _check_silu_mul,
    "rope": _check_rope,
    "attention": _check_attention,
}


# -------------------------------------------------------------------------------------------- symbols


def _bias(p: dict) -> str:
    return "_bias" if p["bias"] else ""


_SYMBOLS = {
    "linear_w4_gemv": lambda p: (f"linear_w4_gemv_tn{p['tn']}_tk{p['tk']}_g{p['group']}"
                                 f"_r{p['r']}s{p['s']}t{p['t']}{_bias(p)}"),
    "linear_w4_gemm": lambda p: (f"linear_w4_gemm_tm{p['tm']}_tn{p['tn']}_tk{p['tk']}_g{p['group']}"
                                 f"_r{p['r']}s{p['s']}t{p['t']}{_bias(p)}"),
    "rms_norm": lambda p: (f"{'add_' if p['add'] else ''}rms_norm_d{p['d']}_dr{p['d_real']}_tr{p['tr']}"
                           f"_eps{_encode_float(p['eps'])}"),
    "silu_mul": lambda p: f"silu_mul_t{p['t']}_tr{p['tr']}_{p['arch']}",
    "rope": lambda p: f"rope_d{p['d']}_tr{p['tr']}",
    "attention": lambda p: (f"attention_d{p['d']}_gq{p['gq']}_tq{p['tq']}_tkv{p['tkv']}"
                            f"_s{_encode_float(p['scale'])}{'_causal' if p['causal'] else ''}"
                            f"{'_hdr' if p['header'] else ''}_{p['arch']}"),
}


# ----------------------------------------------------------------------------------------- signatures


def _linear_signature(p: dict) -> dict[str, tuple[Arg, ...]]:
    rows = p.get("tm", 1)
    acc = rows * p["tn"]
    tile = linear_tile_bytes(p["tn"], p["tk"], p["group"], p["bias"])
    return {
        "_init": (Arg("acc", "f32", acc, out=True),),
        "_step": (Arg("x", "bf16", rows * p["tk"]), Arg("w", "u8", tile), Arg("acc", "f32", acc, out=True)),
        "_store": (Arg("acc", "f32", acc), Arg("y", "bf16", acc, out=True)),
    }


def _rms_norm_signature(p: dict) -> dict[str, tuple[Arg, ...]]:
    n = (2 if p["add"] else 1) * p["tr"] * p["d"]
    return {"": (Arg("x", "bf16", n), Arg("w", "bf16", p["d"]), Arg("y", "bf16", n, out=True))}


def _attention_signature(p: dict) -> dict[str, tuple[Arg, ...]]:
    rows = p["gq"] * p["tq"]
    state = rows * p["d"] + 2 * rows
    q = rows * p["d"] + (STEP_HEADER if p["header"] else 0)
    out = {
        "_init": (Arg("state", "f32", state, out=True),),
        "_step": (Arg("q", "bf16", q), Arg("kv", "bf16", 2 * p["tkv"] * p["d"]),
                  Arg("state", "f32", state, out=True), Arg("q_pos0", "i32"), Arg("kv_pos0", "i32"),
                  Arg("kv_valid", "i32")),
        "_store": (Arg("state", "f32", state), Arg("out", "bf16", rows * p["d"], out=True)),
    }
    if p["header"]:
        out["_params"] = (Arg("q", "bf16", q), Arg("words", "words", ATTENTION_WORDS, out=True))
    return out


_SIGNATURES = {
    "linear_w4_gemv": _linear_signature,
    "linear_w4_gemm": _linear_signature,
    "rms_norm": _rms_norm_signature,
    "silu_mul": lambda p: {"": (Arg("gu", "bf16", 2 * p["tr"] * p["t"]), Arg("y", "bf16", p["tr"] * p["t"], out=True))},
    "rope": lambda p: {"": tuple(Arg(n, "bf16", p["tr"] * p["d"], out=(n == "y")) for n in ("x", "cs", "y"))},
    "attention": _attention_signature,
}


# --------------------------------------------------------------------------------------------- cycles
#
# KernelSpec.cycles counts the instructions each template's loops issue in one call, the way device.py counts MACs:
# every per-instruction figure names its source or says ASSUMPTION and why. Sources (as in device.py):
#   [API2]  / [API2P]  the AIE API's aie2 / aie2p implementation (jgmelber/aie_api include/aie_api/detail/aie2{,p}/)
#   [VEC]   include/aie_api/vector.hpp: native vectors of 512 bits on AIE-ML and AIE2P
# The issue model itself is an ASSUMPTION: one vector instruction per cycle, beside (VLIW slots) two 256-bit loads
# and one 256-bit store, as AMD describes the AI Engine cores' load / store units; no public AIE2P manual confirms
# the widths, and software pipelining's prologue and epilogue are not counted.

CALL_CYCLES = 30  # ASSUMPTION: call, return, prologue and loop setup of one kernel call; nothing public measures it
VECTOR_BITS = 512  # [VEC] one bitwise / shift / shuffle / select / compare instruction per 512-bit result
LOAD_BITS, LOADS_PER_CYCLE, STORE_BITS = 256, 2, 256  # ASSUMPTION (the issue model above)
REDUCE_16 = 8  # ASSUMPTION: reduce_add / reduce_max of 16 fp32 lanes = 4 halving steps of shuffle + add
SCALAR_ELEMENTARY = 20  # ASSUMPTION: a scalar fp32 inverse, inverse square root or division (no scalar fp unit)


@dataclass(frozen=True)
class VectorModel:
    """What one vector instruction does on one architecture."""

    arch: str
    mac_lanes: int  # lanes of one bf16 x bf16 -> fp32 elementwise mul / mac / msc
    acc_lanes: int  # fp32 accumulator lanes one accumulator add / sub / conversion (to or from vectors) handles
    exp2_16: int  # instructions of exp2_bf16 (templates/kernels/_exp2.cc.j2) on 16 lanes


VECTOR_MODELS = {
    "aie2": VectorModel(
        arch="aie2",
        mac_lanes=16,  # [API2] mul_acc32_fp.hpp: bf16 elementwise mul / mac / msc is mul_elem_16_2, 16 lanes
        acc_lanes=16,  # ASSUMPTION: one 512-bit accumulator register (16 fp32 lanes), the mul's output, per instruction
        # DERIVED from the AIE-ML branch of _exp2.cc.j2: max, 3 fp32 add / sub, 2 integer ops, 2 roundings,
        # 3 x (MAC + rounding), MUL + rounding, compare, select
        exp2_16=18,
    ),
    "aie2p": VectorModel(
        arch="aie2p",
        mac_lanes=32,  # [API2P] mul_acc32_fp.hpp: mul_elem_32 up to 32 lanes (ASSUMPTION: 64 lanes count as two)
        acc_lanes=32,  # ASSUMPTION: as mac_lanes (mul_elem_32 writes a v32accfloat)
        exp2_16=4,  # [API2P] elementary.hpp: one ::exp2(v16accfloat) per 16 lanes; plus max, compare, select
    ),
}
_ARCH_OF_BF16_MMUL = {(d.mmul["bf16"].m, d.mmul["bf16"].k, d.mmul["bf16"].n): _ARCH_OF_DEVICE[d.arch]
                      for d in DEVICES.values()}


def _vector_model(spec: KernelSpec) -> VectorModel:
    """The architecture a spec's costs depend on: its ARCH, or (linear kernels) the device whose bf16 mmul it uses.
    rms_norm and rope work on 16-lane vectors, one instruction each on both architectures: AIE-ML's model serves."""
    p = spec.p
    if "arch" in p:
        return VECTOR_MODELS[p["arch"]]
    if "t" in p and "r" in p:
        arch = _ARCH_OF_BF16_MMUL.get((p["r"], p["s"], p["t"]))
        if arch is None:
            raise CompileError(f"{spec.symbol}: no device has a {p['r']}x{p['s']}x{p['t']} bf16 mmul to cost it on")
        return VECTOR_MODELS[arch]
    return VECTOR_MODELS["aie2"]


def _n(x: int, per: int) -> int:
    return -(-x // per)


@dataclass(frozen=True)
class Ops:
    """Instruction counts: vector instructions, 256-bit loads and stores (co-issued with them), and serial scalar
    cycles. ``cycles`` = CALL_CYCLES + max(vector, loads / 2, stores) + scalar."""

    vec: int = 0
    ld: int = 0
    st: int = 0
    scalar: int = 0

    def __add__(self, other: Ops) -> Ops:
        return Ops(self.vec + other.vec, self.ld + other.ld, self.st + other.st, self.scalar + other.scalar)

    def __mul__(self, times: int) -> Ops:
        return Ops(self.vec * times, self.ld * times, self.st * times, self.scalar * times)

    @property
    def cycles(self) -> int:
        return CALL_CYCLES + max(self.vec, _n(self.ld, LOADS_PER_CYCLE), self.st) + self.scalar


def _ld(bits: int) -> Ops:
    return Ops(ld=_n(bits, LOAD_BITS))


def _st(bits: int) -> Ops:
    return Ops(st=_n(bits, STORE_BITS))


def _v(bits: int) -> int:
    """Instructions of a bitwise / shuffle op whose result has ``bits`` bits."""
    return _n(bits, VECTOR_BITS)


def _w4_ops(p: dict, m: VectorModel) -> tuple[Ops, Ops]:
    """(per unit column and group: group_lanes, per unit: dequant_unit) of _w4_dequant.cc.j2."""
    unit, t = UNIT_ROWS * p["s"], p["t"]
    spread = _v(unit * 16) if t == UNIT_ROWS else 1 + 2 * _v(unit * 8)  # one unit_lanes: (zip,) grow_replicate
    lanes = (_ld(UNIT_ROWS * 16) + Ops(scalar=1)  # 8 scales; the zero-point word
             + Ops(vec=5 + 2 * spread + _v(unit * 16) + _n(unit, m.mac_lanes)))  # bcast, and, shift, 2 zips; neg; mul
    # load, and, shift, two zips (128 + q); MAC with the zero-point accumulator; rounding to bf16
    unit_ops = _ld(unit * 4) + Ops(vec=2 + 2 * _v(unit * 8) + _n(unit, m.mac_lanes) + _n(unit, m.acc_lanes))
    return lanes, unit_ops


def _gemv_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    tn, tk, r, s, t = p["tn"], p["tk"], p["r"], p["s"], p["t"]
    jb, units = UNIT_ROWS // t, tk // s
    lanes, unit_ops = _w4_ops(p, m)
    column = _ld(UNIT_ROWS * 32) + Ops(vec=jb)  # acc[8], as row 0 of JB zeroed C blocks
    if p["bias"]:
        column += _ld(UNIT_ROWS * 16) + Ops(vec=3 * _n(UNIT_ROWS, m.acc_lanes))  # + bias in fp32, back to a vector
    column += lanes * (tk // p["group"])
    column += (unit_ops + _ld(s * 16) + Ops(vec=1 + jb)) * units  # x block into A's row 0; JB mmuls
    column += Ops(vec=jb * _n(r * t, m.acc_lanes)) + _st(UNIT_ROWS * 32)
    vf = Ops(vec=_n(16, m.acc_lanes))
    return {"_init": _st(16 * 32) * (tn // 16), "_step": column * (tn // UNIT_ROWS),
            "_store": (_ld(16 * 32) + vf + vf + _st(16 * 16)) * (tn // 16)}


def _gemm_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    tm, tn, tk, r, s, t = p["tm"], p["tn"], p["tk"], p["r"], p["s"], p["t"]
    units, c_lanes = tk // s, r * t
    lanes, unit_ops = _w4_ops(p, m)
    column = lanes * (tk // p["group"]) + (unit_ops + _st(UNIT_ROWS * s * 16)) * units  # into b_col
    block = Ops(vec=2 * _n(c_lanes, m.acc_lanes)) + _ld(c_lanes * 32) + _st(c_lanes * 32)  # acc in and out
    if p["bias"]:
        block += Ops(vec=_n(c_lanes, m.acc_lanes))
    block += (Ops(vec=1) + _ld(r * s * 16) + _ld(s * t * 16)) * units  # one mmul, its A and B blocks
    bias = _ld(UNIT_ROWS * 16) + Ops(vec=1 if t == UNIT_ROWS else 2) if p["bias"] else Ops()
    blocks = (tm // r) * (tn // t)
    to_bf16 = _ld(c_lanes * 32) + Ops(vec=2 * _n(c_lanes, m.acc_lanes)) + _st(c_lanes * 16)
    return {"_init": _st(tm * tn * 32), "_step": column * (tn // UNIT_ROWS) + bias * (tn // t) + block * blocks,
            "_store": to_bf16 * blocks}


def _rms_norm_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    tr, chunks = p["tr"], p["d"] // 16
    if p["add"]:  # s = a + b as bf16 head + tail (widen, add, round, sub, round); s^2 from 3 MACs
        first = _ld(256) * 2 + Ops(vec=5 + 3)
        second = _ld(256) * 3 + Ops(vec=5 + 2 + 7) + _st(256) * 2  # s w (MUL + MAC), times r
    else:
        first = _ld(256) + Ops(vec=1)
        second = _ld(256) * 2 + Ops(vec=1 + 7) + _st(256)  # x w, times r
    # times r: split p (round, sub, round), MUL + 2 MACs, round. Per row: r from the reduced sum (a division, an
    # inverse square root, the split into r_hi + r_lo).
    row = first * chunks + Ops(vec=1 + REDUCE_16, scalar=2 * SCALAR_ELEMENTARY + 3) + second * chunks
    return {"": row * tr}


def _rope_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    h = p["d"] // 2
    vec_pairs = h - h % 16
    # MUL, MSC, rounding, MUL, MAC, rounding; ASSUMPTION: a scalar pair is 12 cycles (4 fp32 products, 2 sums, 2
    # conversions to bf16, loads and stores on the scalar unit)
    row = (_ld(256) * 4 + Ops(vec=6) + _st(256) * 2) * (vec_pairs // 16) + Ops(scalar=12 * (h - vec_pairs))
    return {"": row * p["tr"]}


def _silu_mul_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    # abs; -|g| log2 e (MUL, MAC, to fp32); exp2; 1 / (1 + E) (MSC + round, 2 x (sub, MSC, round, widen, MAC, round));
    # split r (round, sub, round); the E-or-1 factor (compare, select); sigmoid (MUL, MAC) and its split; g u (MUL)
    # and its split; the product (MUL, 2 MACs) and its rounding
    lane16 = _ld(256) * 2 + Ops(vec=1 + 3 + m.exp2_16 + 14 + 3 + 2 + 2 + 3 + 4 + 4) + _st(256)
    return {"": lane16 * (p["tr"] * p["t"] // 16)}


def _attention_cycles(p: dict, m: VectorModel) -> dict[str, Ops]:
    d, tkv, rows = p["d"], p["tkv"], p["gq"] * p["tq"]
    wd = 16 if d % 16 == 0 else 8
    chunks, tkv_pad = d // wd, _n(tkv, 16) * 16
    scale_f32 = Ops(vec=8)  # split v (2 roundings, a sub), MUL, 2 MACs, conversion of v to an accumulator
    scores = ((_ld(wd * 16) * 2 + Ops(vec=1)) * chunks + Ops(vec=1 + REDUCE_16, scalar=2)) * tkv
    scores += Ops(scalar=tkv_pad - tkv)  # -inf padding
    max_of = (_ld(16 * 32) + Ops(vec=1)) * (tkv_pad // 16) + Ops(vec=REDUCE_16)
    exp_sum = (_ld(16 * 32) + Ops(vec=2 + m.exp2_16) + _st(16 * 16)) * (tkv_pad // 16) + Ops(vec=1 + REDUCE_16)
    update_o = (_ld(wd * 32) + scale_f32 + (_ld(wd * 16) + Ops(vec=1)) * tkv + Ops(vec=1) + _st(wd * 32)) * chunks
    row = scores + max_of + Ops(vec=m.exp2_16, scalar=8) + exp_sum + update_o  # alpha, m, l bookkeeping
    store_row = (_ld(wd * 32) + scale_f32 + Ops(vec=1) + _st(wd * 16)) * chunks + Ops(scalar=SCALAR_ELEMENTARY)
    return {"_init": _st(rows * d * 32) + Ops(scalar=2 * rows), "_step": row * rows, "_store": store_row * rows,
            "_params": Ops(scalar=4)}


_CYCLES = {
    "linear_w4_gemv": _gemv_cycles,
    "linear_w4_gemm": _gemm_cycles,
    "rms_norm": _rms_norm_cycles,
    "silu_mul": _silu_mul_cycles,
    "rope": _rope_cycles,
    "attention": _attention_cycles,
}


# ---------------------------------------------------------------------------------------------- build


def _sources(specs_or_sources: Iterable[KernelSpec | tuple[str, str]]) -> dict[str, str]:
    """File name -> source text; a spec listed twice is built once, two texts under one name are an error."""
    out: dict[str, str] = {}
    for item in specs_or_sources:
        name, text = (item.filename, item.render()) if isinstance(item, KernelSpec) else item
        if out.get(name, text) != text:
            raise CompileError(f"two different kernel sources are named {name}: give them distinct names")
        out[name] = text
    if not out:
        raise CompileError("no kernels to build: pass at least one KernelSpec or (filename, source) pair")
    return dict(sorted(out.items()))


def _host_headers() -> list[tuple[str, str]]:
    return sorted((str(p.relative_to(HOST_INCLUDE)), p.read_text()) for p in HOST_INCLUDE.rglob("*.hpp"))


def _build_key(sources: dict[str, str], cxx: str) -> str:
    """sha256 over the compiler, flags, host headers and sources: the library is rebuilt iff one changes."""
    h = hashlib.sha256()
    for part in [cxx, *CXX_FLAGS, *(x for pair in _host_headers() for x in pair),
                 *(x for pair in sources.items() for x in pair)]:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        shown = "\n".join(lines[:_STDERR_LINES]) + (f"\n... ({len(lines) - _STDERR_LINES} more lines)"
                                                    if len(lines) > _STDERR_LINES else "")
        raise CompileError(f"g++ failed on {what}:\n{shown}")


def build_library(specs_or_sources: Iterable[KernelSpec | tuple[str, str]], build_dir: str | os.PathLike,
                  cxx: str = "g++") -> Path:
    """Compile kernels into one shared library under ``build_dir`` and return its path.

    Items are :class:`KernelSpec` or ``(filename, source)`` pairs. The library's name holds a hash of the
    sources, host headers, compiler and flags, so an unchanged set is never rebuilt. Objects compile in parallel
    (one per kernel) with ``g++ -std=c++20 -O2 -fPIC -I host_include``, then link with ``-shared``.
    """
    sources = _sources(specs_or_sources)
    compiler = shutil.which(cxx)
    if compiler is None:
        raise CompileError(f"the AIE host emulator needs g++ (C++20) to compile the generated kernels, and {cxx!r} "
                           "is not on PATH: install g++ (e.g. apt-get install g++)")
    build_dir = Path(build_dir)
    key = _build_key(sources, cxx)
    library = safe_path(build_dir, f"libaiekernels-{key}.so")
    if library.exists():
        return library
    src_dir = safe_path(build_dir, f"src-{key}")
    src_dir.mkdir(parents=True, exist_ok=True)
    objects = []
    for name, text in sources.items():
        safe_path(src_dir, name).write_text(text)
        objects.append(safe_path(src_dir, Path(name).stem + ".o"))

    def compile_one(name: str, obj: Path) -> None:
        cmd = [compiler, *CXX_FLAGS, "-I", str(HOST_INCLUDE), "-c", str(src_dir / name), "-o", str(obj)]
        _run(cmd, f"kernel {name} (source: {src_dir / name})")

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for f in [pool.submit(compile_one, n, o) for n, o in zip(sources, objects)]:
            f.result()
    partial = library.with_suffix(f".{os.getpid()}.tmp")
    _run([compiler, *CXX_FLAGS, "-shared", *map(str, objects), "-o", str(partial)], f"linking {library.name}")
    os.replace(partial, library)
    return library


# ---------------------------------------------------------------------------------------------- load

_DTYPES = {"bf16": np.dtype(np.uint16), "f32": np.dtype(np.float32), "u8": np.dtype(np.uint8),
           "words": np.dtype(np.int32)}
_DTYPE_NAMES = {"bf16": "uint16 (bf16 bit patterns)", "f32": "float32", "u8": "uint8", "words": "int32"}


class KernelFunction:
    """One kernel function callable with NumPy buffers; checks dtype, size and layout before calling into C."""

    def __init__(self, name: str, args: tuple[Arg, ...], cfunc) -> None:
        self.name, self.args, self._cfunc = name, args, cfunc
        cfunc.restype = None
        cfunc.argtypes = [ctypes.c_int32 if a.kind == "i32" else ctypes.c_void_p for a in args]

    def __call__(self, *values) -> None:
        if len(values) != len(self.args):
            raise TypeError(f"{self.name} takes {len(self.args)} arguments ({self._names()}), got {len(values)}")
        self._cfunc(*(self._convert(a, v) for a, v in zip(self.args, values)))

    def _names(self) -> str:
        return ", ".join(a.name for a in self.args)

    def _convert(self, arg: Arg, value):
        if arg.kind == "i32":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{self.name}: argument {arg.name} must be an int, got {type(value).__name__}")
            if not -(2**31) <= int(value) < 2**31:
                raise ValueError(f"{self.name}: argument {arg.name}={value} does not fit in int32")
            return int(value)
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{self.name}: argument {arg.name} must be a NumPy array, got {type(value).__name__}")
        problems = []
        if value.dtype != _DTYPES[arg.kind]:
            problems.append(f"dtype {value.dtype} (expected {_DTYPE_NAMES[arg.kind]})")
        if value.size != arg.size:
            problems.append(f"{value.size} elements (expected {arg.size})")
        if not value.flags.c_contiguous:
            problems.append("not C-contiguous (use np.ascontiguousarray)")
        if arg.out and not value.flags.writeable:
            problems.append("read-only (the kernel writes it)")
        if problems:
            raise ValueError(f"{self.name}: argument {arg.name}: {'; '.join(problems)}")
        return value.ctypes.data

    def __repr__(self) -> str:
        return f"<kernel {self.name}({self._names()})>"


class KernelLibrary:
    """A built kernel library loaded with ctypes; :meth:`function` wraps a kernel function for NumPy callers."""

    def __init__(self, path: str | os.PathLike, specs: Iterable[KernelSpec]) -> None:
        self.path = Path(path)
        self._dll = ctypes.CDLL(str(self.path))
        self._specs = {fn: spec for spec in specs for fn in spec.functions}

    @classmethod
    def build(cls, specs: Iterable[KernelSpec], build_dir: str | os.PathLike, cxx: str = "g++") -> KernelLibrary:
        specs = list(specs)
        return cls(build_library(specs, build_dir, cxx), specs)

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(sorted(self._specs))

    def function(self, name: str) -> KernelFunction:
        spec = self._specs.get(name)
        if spec is None:
            raise CompileError(f"{self.path.name} has no kernel function {name!r}; it has: {', '.join(self.functions)}")
        try:
            cfunc = getattr(self._dll, name)
        except AttributeError:
            raise CompileError(f"{self.path.name} does not export {name}: rebuild it from the same specs") from None
        return KernelFunction(name, spec.signature(name), cfunc)
