"""The build file of an AIE artifact directory: a Makefile for the mlir-aie / Peano toolchain, rendered from
``templates/build/Makefile.j2``.

Layout it expects (what the aie backend writes): ``kernels/<symbol>.cc`` and ``design/<name>.mlir`` next to the
Makefile; everything it builds goes to ``build/``: ``<symbol>.o`` per kernel (Peano ``clang++`` for
``aie2-none-unknown-elf`` on npu1, ``aie2p-none-unknown-elf`` on npu2, ``-I $(MLIR_AIE_DIR)/include`` for aie_api),
then per design ``<name>.xclbin`` and ``<name>.insts.bin`` from one ``aiecc`` run inside ``build/`` (where the
``link_with`` objects are).

The toolchain it targets is the one of :mod:`aielower.backends.aie.toolchain`: mlir-aie ``MLIR_AIE_COMMIT`` and the
llvm-aie nightly of that day, both named in the Makefile's header; ``make check-toolchain`` prints the versions it
finds (a missing tool is an error, another version a warning). All flags are upstream's at that commit:

- Peano: ``PEANOWRAP2_FLAGS`` (npu1) / ``PEANOWRAP2P_FLAGS`` (npu2) of ``programming_examples/makefile-common``
  (``-O2 -std=c++20 --target=... $(WARNING_FLAGS) -DNDEBUG -I $(MLIR_AIE_DIR)/include``);
- aiecc: the call of ``programming_examples/basic/vector_scalar_mul/Makefile`` (``--aie-generate-xclbin
  --no-compile-host --no-xchesscc --no-xbridge --aie-generate-npu-insts``) plus ``--alloc-scheme=basic-sequential``
  and ``--peano``. ``AIECC`` is the C++ ``aiecc`` (``tools/aiecc``) when the install has one, else the Python
  ``aiecc.py`` (``python/compiler/aiecc``, the full driver at that commit); both take these flags.

A Makefile rather than CMake: the mlir-aie examples build exactly this way (so the commands can be compared line by
line), there is no configure step or host code to find, and ``make -j`` compiles kernels and designs in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from aielower import names
from aielower.backends.aie import toolchain
from aielower.backends.aie.device import Device
from aielower.backends.aie.templating import ENV
from aielower.errors import CompileError


# Peano target triple per device architecture (mlir-aie makefile-common: aie2 for npu1, aie2p for npu2).
_TARGET = {"npu1": "aie2-none-unknown-elf", "npu2": "aie2p-none-unknown-elf"}

# What the header names and check-toolchain compares against (sources in aielower.backends.aie.toolchain).
TOOLCHAIN = MappingProxyType({
    "mlir_aie_commit": toolchain.MLIR_AIE_COMMIT,
    "mlir_aie_date": toolchain.MLIR_AIE_DATE,
    "peano_version": toolchain.PEANO_VERSION,
    "peano_nightly": toolchain.PEANO_NIGHTLY_DATE.replace("-", ""),
    "peano_index": toolchain.PEANO_WHEEL_INDEX,
})


def render_build_file(kernels: Iterable, designs: Iterable[tuple[str, str]], device: Device,
                      sequences: Mapping[str, Sequence[str]] = MappingProxyType({})) -> str:
    """A Makefile building every kernel (``KernelSpec``) into an object and every design ``(name, kernel symbol)``
    into an xclbin plus its instruction binaries: ``<name>.insts.bin`` for a design with one unnamed runtime
    sequence, ``<name>.<sequence>.insts.bin`` per sequence for a design whose ``sequences`` are named (aiecc's
    ``{1}`` in ``--npu-insts-name``). Each design depends on the object of its kernel."""
    symbols = sorted({k.symbol for k in kernels})
    designs = sorted(set(designs))
    if device.name not in _TARGET:
        raise CompileError(f"no Peano target for device {device.name!r}: choose one of {', '.join(_TARGET)}")
    for name, symbol in designs:
        if symbol not in symbols:
            raise CompileError(f"design {name} links kernel {symbol}, which is not among the kernels to build")
    named = {n: [s for s in sequences.get(n, ()) if s] for n, _ in designs}
    for name in [*symbols, *(n for n, _ in designs), *(s for seqs in named.values() for s in seqs)]:
        names.make_target(name)
    return ENV.get_template("build/Makefile.j2").render(
        device=device, target=_TARGET[device.name], symbols=symbols,
        designs=[dict(name=n, symbol=s, sequences=bool(named[n])) for n, s in designs], tc=TOOLCHAIN,
    )


__all__ = ["TOOLCHAIN", "render_build_file"]
