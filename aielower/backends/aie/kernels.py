"""AIE kernels: what one kernel is (:class:`KernelSpec`), its C++ source, and its host build.

A kernel (docs/aie-kernels.md) is defined by its kernel family (:class:`KernelDef`, in
:mod:`aielower.backends.aie.families`); a spec is a kernel plus the constants baked into it. The spec checks the contract's
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
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from aielower.backends.aie.device import DEVICES, Device
from aielower.errors import CompileError
from aielower.backends.aie.templating import ENV
from aielower.output import safe_path


HOST_INCLUDE = Path(__file__).parent / "host_include"
CXX_FLAGS = ("-std=c++20", "-O2", "-fPIC")  # plus -c per object and -shared for the link
_STDERR_LINES = 20

# bf16 slots of a query tile's step header (attention over a KV cache): two int32, the position of the bucket's
# first query token and the valid KV length, written by the host after each query tile of the q tensor each step.
STEP_HEADER = 4
# int32 words of an attention core's parameter buffer: position, valid KV length, KV tiles to read.
ATTENTION_WORDS = 3


# ------------------------------------------------------------------------------------------------- spec


def fp32(x: float) -> float:
    """``x`` rounded to fp32: the kernel bakes fp32 constants, so the spec holds exactly what the kernel uses."""
    return float(np.float32(x))


def encode_float(x: float) -> str:
    """Shortest fp32 repr as an identifier fragment: 1e-06 -> 1em06, 0.0883883 -> 0p0883883."""
    text = str(np.float32(x))
    return text.replace(".", "p").replace("-", "m").replace("+", "")


def _c_float(x: float) -> str:
    """An exact C++ literal for an fp32 value (hex float)."""
    return f"{float(x).hex()}f"


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: its name (``family``: the kernel, e.g. ``linear_w4_gemv``) and its constants, ``params`` a sorted
    tuple of ``(name, value)``. What the kernel is (its functions, rules, symbol, signatures, cycles) is the
    :class:`KernelDef` its kernel family defines (:mod:`aielower.backends.aie.families`).

    Build specs with the ``*_spec`` constructors of the families; constructing one directly runs the same checks.
    """

    family: str
    params: tuple[tuple[str, object], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(sorted(tuple(p) for p in self.params)))
        self.definition.check(self.family, self.p)

    def __reduce__(self):  # pickled as its kernel and constants (the definition is looked up again)
        return (KernelSpec, (self.family, self.params))

    @cached_property  # looked up once per spec (symbol, functions, ... ask for it on every use)
    def definition(self) -> KernelDef:
        """The kernel's definition, from the family that defines it."""
        return kernel_definition(self.family)

    @property
    def p(self) -> dict[str, object]:
        """The constants by name."""
        return dict(self.params)

    @cached_property  # asked for on every use of the spec (functions, file name, design names)
    def symbol(self) -> str:
        """The kernel's C name: family plus every constant, e.g. ``linear_w4_gemv_tn16_tk128_g32_bias``."""
        return self.definition.symbol(self.p)

    @property
    def filename(self) -> str:
        return f"{self.symbol}.cc"

    @cached_property
    def functions(self) -> tuple[str, ...]:
        """The ``extern "C"`` functions the source defines."""
        return tuple(self.symbol + suffix for suffix in self.definition.functions(self.p))

    @property
    def stack_bytes(self) -> int:
        """The core stack this kernel needs: mlir-aie's default 1 KiB (call frames, scalars) plus the arrays its
        functions declare on the stack, rounded up to 64 bytes. Designs set the core's ``stack_size`` to it."""
        return -(-(DEFAULT_STACK + self.definition.stack_arrays(self.p)) // 64) * 64

    @property
    def static_bytes(self) -> int:
        """Bytes of the kernel's static arrays in core data memory (next to the stack and the FIFO buffers)."""
        return self.definition.static_arrays(self.p)

    def render(self) -> str:
        """The kernel's C++ source."""
        context = dict(self.p, symbol=self.symbol)
        for name in ("eps", "scale", "norm_eps", "attn_scale"):
            if name in context:
                context[f"{name}_literal"] = _c_float(context[name])
                context[f"{name}_text"] = str(np.float32(context[name]))
        for name in ("scale", "attn_scale"):  # attention keeps its scores in log2 units
            if name in context:
                context[f"{name}_log2_literal"] = _c_float(fp32(context[name] * LOG2E))
        return ENV.get_template(f"kernels/{self.family}.cc.j2").render(**context)

    def signature(self, function: str) -> tuple[Arg, ...]:
        """The arguments of one of :attr:`functions`, with buffer sizes in elements (docs/aie-kernels.md)."""
        if function not in self.functions:
            defined = ", ".join(self.functions)
            raise CompileError(f"{self.symbol} defines no function {function!r}: it defines {defined}")
        suffix = function[len(self.symbol):]
        return self.definition.signature(self.p)[suffix]

    def cycles(self, function: str) -> int:
        """Estimated core cycles of one call of ``function`` (one of :attr:`functions`): the vector instructions the
        template's loops issue, one per cycle, loads and stores co-issued (:class:`Ops`; the per-instruction figures
        in the "cycles" section cite a source or say ASSUMPTION). Attention steps are costed for a full tile (every
        KV row visible)."""
        if function not in self.functions:
            self.signature(function)  # the error naming the functions it defines
        return self._cycles[function[len(self.symbol):]]

    @cached_property  # the cost model asks for every launch at every decode step
    def _cycles(self) -> dict[str, int]:
        """Cycles of one call, by function suffix."""
        return {suffix: ops.cycles for suffix, ops in self.definition.cycles(self.p, _vector_model(self)).items()}


@dataclass(frozen=True)
class Arg:
    """One kernel argument: ``kind`` is bf16 / f32 / u8 / words (buffers, ``size`` elements; words are int32) or
    i32 (a scalar)."""

    name: str
    kind: str
    size: int = 0
    out: bool = False


def _no_arrays(p: dict) -> int:
    return 0


@dataclass(frozen=True)
class KernelDef:
    """One kernel of the catalog, as its family defines it (its C++ template is ``templates/kernels/<kernel>.cc.j2``).
    Each field is a function of the spec's constants ``p``."""

    functions: Callable[[dict], tuple[str, ...]]  # the extern "C" functions, as suffixes of the symbol ("": itself)
    check: Callable[[str, dict], None]  # the contract's rules on the constants (a CompileError naming the fix)
    symbol: Callable[[dict], str]  # every constant in the name, so specs with other constants can share a library
    signature: Callable[[dict], dict[str, tuple[Arg, ...]]]  # per function suffix, the arguments
    cycles: Callable[[dict, VectorModel], dict[str, Ops]]  # per function suffix, the instructions of one call
    stack_arrays: Callable[[dict], int] = _no_arrays  # bytes of the arrays its functions declare on the stack
    static_arrays: Callable[[dict], int] = _no_arrays  # bytes of its static arrays (keep both in step with the template)


def kernel_definition(kernel: str) -> KernelDef:
    """The definition of ``kernel``, from the kernel family that runs it."""
    from aielower.backends.aie.families import KERNEL_FAMILIES  # the families define their kernels with this module

    definition = KERNEL_FAMILIES.kernel_definition(kernel)
    if definition is None:
        raise CompileError(f"unknown AIE kernel family {kernel!r}: choose one of {', '.join(KERNEL_FAMILIES.kernels)}")
    return definition


DEFAULT_STACK = 1024  # aie.core stack_size default (AIEOps.td, 0x400)


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


# --------------------------------------------------------------------------------------------- checks


def require_rule(family: str, ok: bool, rule: str, fix: str) -> None:
    """A kernel's contract rule: a CompileError naming the kernel, the rule and the fix unless ``ok``."""
    if not ok:
        raise CompileError(f"{family} kernel: {rule}; {fix}")


def require_members(family: str, p: dict, words: int, what: str = "launches", element: str = "header element") -> None:
    """A shared kernel's ``MEMBERS`` (when it has one, designs/shared.py): 2 .. ``words``, one i32 word of its
    header each; ``what`` it shares, the ``element`` its header is."""
    if "members" in p:
        require_rule(family, isinstance(p["members"], int) and 2 <= p["members"] <= words,
                     f"a shared kernel's header selects one of 2 .. {words} {what} (one i32 word each of the "
                     f"{element}), not {p['members']!r}", f"share fewer {what}")


def header_ops(p: dict) -> Ops:
    """The instructions of a shared kernel's ``_header``: ``MEMBERS`` words loaded and stored."""
    return loads(p.get("members", 0) * 32) + stores(p.get("members", 0) * 32)


def require_positive(family: str, p: dict, *names: str) -> None:
    """Each of ``names`` must be a positive integer constant."""
    for name in names:
        v = p.get(name)
        ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
        require_rule(family, ok, f"{name.upper()} must be a positive integer, got {v!r}", "fix the tile plan")


def check_arch(family: str, p: dict) -> None:
    """ARCH must name a kernel architecture (:data:`ARCHS`)."""
    require_rule(family, p.get("arch") in ARCHS, f"unknown architecture ARCH={p.get('arch')!r}",
             f"choose one of {', '.join(ARCHS)} (kernels.arch_of(device))")


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


def ceil_div(x: int, per: int) -> int:
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
        return CALL_CYCLES + max(self.vec, ceil_div(self.ld, LOADS_PER_CYCLE), self.st) + self.scalar


def loads(bits: int) -> Ops:
    return Ops(ld=ceil_div(bits, LOAD_BITS))


def stores(bits: int) -> Ops:
    return Ops(st=ceil_div(bits, STORE_BITS))


def vector_ops(bits: int) -> int:
    """Instructions of a bitwise / shuffle op whose result has ``bits`` bits."""
    return ceil_div(bits, VECTOR_BITS)


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
