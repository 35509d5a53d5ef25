"""The build file of an AIE artifact directory: a Makefile for the mlir-aie / Peano toolchain, rendered from
``templates/build/Makefile.j2``.

Layout it expects (what the aie backend writes): ``kernels/<symbol>.cc`` and ``design/<name>.mlir`` next to the
Makefile; everything it builds goes to ``build/``: ``<symbol>.o`` per kernel (Peano ``clang++`` for
``aie2-none-unknown-elf`` on npu1, ``aie2p-none-unknown-elf`` on npu2, ``-I $(MLIR_AIE_DIR)/include`` for aie_api),
then per design ``<name>.xclbin`` and ``<name>.insts.bin`` from ``aiecc.py`` run inside ``build/`` (where the
``link_with`` objects are). The flags follow Xilinx/mlir-aie programming_examples/makefile-common (PEANOWRAP2_FLAGS,
PEANOWRAP2P_FLAGS) and programming_examples/basic/matrix_multiplication/makefile-common (the aiecc.py call).

A Makefile rather than CMake: the mlir-aie examples build exactly this way (so the commands can be compared line by
line), there is no configure step or host code to find, and ``make -j`` compiles kernels and designs in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable

from aielower import names
from aielower.backends.aie.device import Device
from aielower.errors import CompileError
from aielower.backends.aie.templating import ENV


# Peano target triple per device architecture (mlir-aie makefile-common: aie2 for npu1, aie2p for npu2).
_TARGET = {"npu1": "aie2-none-unknown-elf", "npu2": "aie2p-none-unknown-elf"}


def render_build_file(kernels: Iterable, designs: Iterable[tuple[str, str]], device: Device) -> str:
    """A Makefile building every kernel (``KernelSpec``) into an object and every design ``(name, kernel symbol)``
    into an xclbin plus its instruction binary. Each design depends on the object of its kernel."""
    symbols = sorted({k.symbol for k in kernels})
    designs = sorted(set(designs))
    if device.name not in _TARGET:
        raise CompileError(f"no Peano target for device {device.name!r}: choose one of {', '.join(_TARGET)}")
    for name, symbol in designs:
        if symbol not in symbols:
            raise CompileError(f"design {name} links kernel {symbol}, which is not among the kernels to build")
    for name in [*symbols, *(n for n, _ in designs)]:
        names.make_target(name)
    return ENV.get_template("build/Makefile.j2").render(
        device=device, target=_TARGET[device.name], symbols=symbols,
        designs=[dict(name=n, symbol=s) for n, s in designs],
    )


__all__ = ["render_build_file"]
