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

from aielower.backends.aie.device import MMulShape
from aielower.backends.aie.weights import linear_tile_bytes
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
    "attention": ("_init", "_step", "_store"),
}
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
        return tuple(self.symbol + suffix for suffix in _FUNCTIONS[self.family])

    def render(self) -> str:
        """The kernel's C++ source."""
        context = dict(self.p, symbol=self.symbol)
        for name in ("eps", "scale"):
            if name in context:
                context[f"{name}_literal"] = _c_float(context[name])
                context[f"{name}_text"] = str(np.float32(context[name]))
        return ENV.get_template(f"kernels/{self.family}.cc.j2").render(**context)

    def signature(self, function: str) -> tuple[Arg, ...]:
        """The arguments of one of :attr:`functions`, with buffer sizes in elements (docs/aie-kernels.md)."""
        if function not in self.functions:
            defined = ", ".join(self.functions)
            raise CompileError(f"{self.symbol} defines no function {function!r}: it defines {defined}")
        suffix = function[len(self.symbol):]
        return _SIGNATURES[self.family](self.p)[suffix]


@dataclass(frozen=True)
class Arg:
    """One kernel argument: ``kind`` is bf16 / f32 / u8 (buffers, ``size`` elements) or i32 (a scalar)."""

    name: str
    kind: str
    size: int = 0
    out: bool = False


# ----------------------------------------------------------------------------------------- constructors


def gemv_spec(tn: int, tk: int, group: int, bias: bool) -> KernelSpec:
    return KernelSpec("linear_w4_gemv", (("tn", tn), ("tk", tk), ("group", group), ("bias", bool(bias))))


def gemm_spec(tm: int, tn: int, tk: int, group: int, bias: bool, mmul: MMulShape) -> KernelSpec:
    params = (("tm", tm), ("tn", tn), ("tk", tk), ("group", group), ("bias", bool(bias)),
              ("r", mmul.m), ("s", mmul.k), ("t", mmul.n))
    return KernelSpec("linear_w4_gemm", params)


def rms_norm_spec(d: int, d_real: int, tr: int, eps: float, add: bool) -> KernelSpec:
    params = (("d", d), ("d_real", d_real), ("tr", tr), ("eps", _fp32(eps)), ("add", bool(add)))
    return KernelSpec("rms_norm", params)


def silu_mul_spec(t: int, tr: int) -> KernelSpec:
    return KernelSpec("silu_mul", (("t", t), ("tr", tr)))


def rope_spec(d: int, tr: int) -> KernelSpec:
    return KernelSpec("rope", (("d", d), ("tr", tr)))


def attention_spec(d: int, gq: int, tq: int, tkv: int, scale: float, causal: bool) -> KernelSpec:
    params = (("d", d), ("gq", gq), ("tq", tq), ("tkv", tkv), ("scale", _fp32(scale)), ("causal", bool(causal)))
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


def _check_linear(family: str, p: dict) -> None:
    _positive(family, p, "tn", "tk", "group")
    tk, g = p["tk"], p["group"]
    _require(family, tk % g == 0, f"TK={tk} is not a multiple of the group size G={g} (contract: TK % G == 0)",
             f"choose TK as a multiple of {g}")
    _require(family, g % 16 == 0, f"group size G={g} is not a multiple of 16 (contract: G % 16 == 0, groups fill "
             "whole half vectors)", "quantize with a group of 16, 32, 64 or 128")
    _require(family, tk % 32 == 0, f"TK={tk} is not a multiple of 32 (contract: TK % 32 == 0, one vector of 32 "
             "codes at a time)", "choose TK as a multiple of 32")


def _check_gemm(family: str, p: dict) -> None:
    _check_linear(family, p)
    _positive(family, p, "tm", "r", "s", "t")
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
    _positive(family, p, "t", "tr")
    _require(family, p["t"] % 16 == 0, f"T={p['t']} is not a multiple of 16 (contract)", "pad T to a multiple of 16")


def _check_rope(family: str, p: dict) -> None:
    _positive(family, p, "d", "tr")
    _require(family, p["d"] % 2 == 0, f"D={p['d']} is odd (contract: the head dim is even)", "rotate an even D")


def _check_attention(family: str, p: dict) -> None:
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
    "linear_w4_gemv": lambda p: f"linear_w4_gemv_tn{p['tn']}_tk{p['tk']}_g{p['group']}{_bias(p)}",
    "linear_w4_gemm": lambda p: (f"linear_w4_gemm_tm{p['tm']}_tn{p['tn']}_tk{p['tk']}_g{p['group']}"
                                 f"_r{p['r']}s{p['s']}t{p['t']}{_bias(p)}"),
    "rms_norm": lambda p: (f"{'add_' if p['add'] else ''}rms_norm_d{p['d']}_dr{p['d_real']}_tr{p['tr']}"
                           f"_eps{_encode_float(p['eps'])}"),
    "silu_mul": lambda p: f"silu_mul_t{p['t']}_tr{p['tr']}",
    "rope": lambda p: f"rope_d{p['d']}_tr{p['tr']}",
    "attention": lambda p: (f"attention_d{p['d']}_gq{p['gq']}_tq{p['tq']}_tkv{p['tkv']}"
                            f"_s{_encode_float(p['scale'])}{'_causal' if p['causal'] else ''}"),
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
    return {
        "_init": (Arg("state", "f32", state, out=True),),
        "_step": (Arg("q", "bf16", rows * p["d"]), Arg("kv", "bf16", 2 * p["tkv"] * p["d"]),
                  Arg("state", "f32", state, out=True), Arg("q_pos0", "i32"), Arg("kv_pos0", "i32"),
                  Arg("kv_valid", "i32")),
        "_store": (Arg("state", "f32", state), Arg("out", "bf16", rows * p["d"], out=True)),
    }


_SIGNATURES = {
    "linear_w4_gemv": _linear_signature,
    "linear_w4_gemm": _linear_signature,
    "rms_norm": _rms_norm_signature,
    "silu_mul": lambda p: {"": (Arg("gu", "bf16", 2 * p["tr"] * p["t"]), Arg("y", "bf16", p["tr"] * p["t"], out=True))},
    "rope": lambda p: {"": tuple(Arg(n, "bf16", p["tr"] * p["d"], out=(n == "y")) for n in ("x", "cs", "y"))},
    "attention": _attention_signature,
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

_DTYPES = {"bf16": np.dtype(np.uint16), "f32": np.dtype(np.float32), "u8": np.dtype(np.uint8)}
_DTYPE_NAMES = {"bf16": "uint16 (bf16 bit patterns)", "f32": "float32", "u8": "uint8"}


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
