"""An emulated XRT device: the subset of XRT's Python bindings (``pyxrt``) that the host runtime uses, with kernel
runs executed by the host emulator.

:class:`EmulatedXrt` stands in for the ``pyxrt`` module: ``device``, ``xclbin``, ``hw_context``, ``kernel``,
``bo`` (with ``map`` / ``sync`` / ``write`` / ``read``), the run that a kernel call returns (``wait`` / ``state``),
``xclBOSyncDirection`` and ``ert_cmd_state``, with pyxrt's names and call shapes, so
:mod:`aielower.backends.aie.runtime` is the same code for both. What differs is what the device executes:

- an *emulated xclbin* (written by ``aielower build --emulate``) holds the design's MLIR text, the device it is for
  and its kernel name (``MLIR_AIE``, as aiecc names it), where a real xclbin holds the array configuration and the
  cores' ELFs; a real xclbin is refused, and so is one built for another device;
- an *emulated instruction stream* names the design and the runtime sequence to run, where a real one holds the
  NPU instructions that aiecc lowered from that sequence;
- a kernel run executes that runtime sequence of the design with
  :class:`~aielower.backends.aie.designs.simulate.DesignRun` over the buffer objects' device memory, calling the
  generated kernels compiled for this CPU (:class:`~aielower.backends.aie.kernels.KernelLibrary`).

Buffer objects keep host memory and device memory apart: the device sees only what ``sync(TO_DEVICE)`` copied,
and the host sees a result only after ``sync(FROM_DEVICE)``, so a runtime that forgets a sync reads stale data
here as it would on an NPU. Memory groups are those of the xclbin kernel aiecc makes (python/compiler/aiecc/main.py
``emit_design_kernel_json`` at 5ff2ab97): the instruction buffer (argument 1) in the ``SRAM`` group, the five
buffer arguments ``bo0`` .. ``bo4`` (arguments 3 to 7, the runtime sequence's arguments in order) in the ``HOST``
group, which a run checks, as XRT checks a buffer's group against its argument's; a run with more buffers than the
kernel's five is refused. Every figure measured on this device is emulated: it is the time of this CPU running the
emulation, not of an NPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from aielower import names
from aielower.backends.aie.designs.model import MAX_SEQUENCE_ARGS, MemrefType
from aielower.backends.aie.designs.parse import parse_design
from aielower.backends.aie.designs.simulate import NUMPY_DTYPES, DesignRun
from aielower.backends.aie.runtime import KERNEL_NAME, OPCODE
from aielower.errors import AielowerError, CompileError

XCLBIN_FORMAT = "aielower-emulated-xclbin/1"
HOST_GROUP, SRAM_GROUP = 0, 1  # the memory groups of aiecc's mem_topology: HOST, SRAM
INSTRUCTIONS_MAGIC = b"aielower-emulated-instructions/1\n"


def xclbin_text(design_name: str, design_text: str, device: str) -> str:
    """The contents of the emulated xclbin of a design (JSON)."""
    return json.dumps({"format": XCLBIN_FORMAT, "design": design_name, "device": device, "kernels": [KERNEL_NAME],
                       "design_sha256": hashlib.sha256(design_text.encode()).hexdigest(),
                       "mlir": design_text}, indent=1) + "\n"


def instruction_words(design_name: str, sequence: str) -> np.ndarray:
    """The emulated instruction stream of runtime sequence ``sequence`` (``""``: the only one) of a design, as the
    uint32 words an instruction file holds."""
    body = INSTRUCTIONS_MAGIC + json.dumps({"design": design_name, "sequence": sequence}).encode()
    body += b"\0" * (-len(body) % 4)
    return np.frombuffer(body, "<u4").copy()


class xclBOSyncDirection:  # noqa: N801 - pyxrt's names
    XCL_BO_SYNC_BO_TO_DEVICE = 0
    XCL_BO_SYNC_BO_FROM_DEVICE = 1


class ert_cmd_state:  # noqa: N801
    ERT_CMD_STATE_COMPLETED = 4
    ERT_CMD_STATE_ERROR = 5


class EmulatedDevice:
    """``pyxrt.device``: an NPU of model ``name`` (``npu1``, ``npu2``) whose cores run ``kernels``."""

    def __init__(self, name: str, kernels):
        self.name, self.kernels = name, kernels
        self.xclbins: dict[str, EmulatedXclbin] = {}

    def register_xclbin(self, xclbin: "EmulatedXclbin") -> None:
        if xclbin.device != self.name:
            raise AielowerError(f"{xclbin.path} is built for {xclbin.device}; this (emulated) device is a {self.name}")
        self.xclbins[xclbin.get_uuid()] = xclbin

    def __repr__(self) -> str:
        return f"<emulated XRT device {self.name}>"


class EmulatedXclbin:
    """``pyxrt.xclbin(path)``: an emulated xclbin file."""

    def __init__(self, path: str):
        self.path = Path(path)
        raw = self.path.read_bytes()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != XCLBIN_FORMAT:
                raise ValueError
        except ValueError:
            raise AielowerError(f"{self.path} is not an emulated xclbin ({XCLBIN_FORMAT}): a real xclbin runs on an "
                                "NPU (device='npu'); for the emulator, build with 'aielower build --emulate'") from None
        text = data["mlir"]
        if hashlib.sha256(text.encode()).hexdigest() != data["design_sha256"]:
            raise AielowerError(f"{self.path}: the design text does not match its checksum")
        self.name, self.device, self.kernel_names = data["design"], data["device"], list(data["kernels"])
        names.check("module", self.name, "design", CompileError)
        self.design = parse_design(text, f"{self.name}.mlir")
        self._uuid = data["design_sha256"]

    def get_uuid(self) -> str:
        return self._uuid

    def get_kernels(self) -> list["_KernelInfo"]:
        return [_KernelInfo(n) for n in self.kernel_names]


class _KernelInfo:
    def __init__(self, name: str):
        self._name = name

    def get_name(self) -> str:
        return self._name


class EmulatedHwContext:
    """``pyxrt.hw_context(device, uuid)``: the device configured with a registered xclbin."""

    def __init__(self, device: EmulatedDevice, uuid: str):
        if uuid not in device.xclbins:
            raise AielowerError("hw_context: the xclbin is not registered with the device (register_xclbin first)")
        self.device, self.xclbin = device, device.xclbins[uuid]


class EmulatedBo:
    """``pyxrt.bo(device, size, flags, group)``: host memory and device memory of ``size`` bytes."""

    normal, cacheable, host_only = 0, 1, 2  # pyxrt.bo.flags

    def __init__(self, device: EmulatedDevice, size: int, flags: int, group: int):
        if size <= 0:
            raise AielowerError(f"a buffer object needs a positive size, got {size}")
        self.device, self.flags, self.group = device, flags, group
        self._host = bytearray(size)
        self._device = bytearray(size)

    def size(self) -> int:
        return len(self._host)

    def map(self) -> memoryview:
        return memoryview(self._host)

    def write(self, data, offset: int) -> None:
        raw = memoryview(np.ascontiguousarray(data)).cast("B")
        self._check(offset, len(raw))
        self._host[offset : offset + len(raw)] = raw

    def read(self, size: int, offset: int) -> np.ndarray:
        self._check(offset, size)
        return np.frombuffer(bytes(self._host[offset : offset + size]), np.int8)

    def sync(self, direction: int, size: int | None = None, offset: int = 0) -> None:
        size = self.size() - offset if size is None else size
        self._check(offset, size)
        if direction == xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE:
            self._device[offset : offset + size] = self._host[offset : offset + size]
        elif direction == xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE:
            self._host[offset : offset + size] = self._device[offset : offset + size]
        else:
            raise AielowerError(f"unknown sync direction {direction!r}")

    def _check(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.size():
            raise AielowerError(f"bytes {offset}..{offset + size} are outside a buffer object of {self.size()}")

    def device_view(self, memref: MemrefType) -> np.ndarray:
        """The device memory as the flat array a runtime-sequence argument of type ``memref`` addresses."""
        return np.frombuffer(self._device, NUMPY_DTYPES[memref.element], count=memref.size)


class EmulatedRun:
    """What a kernel call returns: the run has finished (the emulation is synchronous); ``wait`` gives its state.
    ``detail`` says why a run ended in an error (emulated device only)."""

    def __init__(self, state: int, detail: str = ""):
        self._state, self.detail = state, detail

    def wait(self, timeout_ms: int = 0) -> int:
        return self._state

    def state(self) -> int:
        return self._state


class EmulatedKernel:
    """``pyxrt.kernel(context, name)``; calling it submits a run: ``kernel(opcode, instructions, words, *buffers)``."""

    def __init__(self, context: EmulatedHwContext, name: str):
        xclbin = context.xclbin
        if name not in xclbin.kernel_names:
            raise AielowerError(f"{xclbin.path} has no kernel {name!r} (it has {', '.join(xclbin.kernel_names)})")
        self.context, self.name, self.design = context, name, xclbin.design
        self._run = DesignRun(self.design, context.device.kernels.function)
        self.runs = 0

    def group_id(self, argument: int) -> int:
        """The memory group of kernel argument ``argument`` (see the module docs)."""
        if argument == 1:
            return SRAM_GROUP
        if 3 <= argument < 3 + MAX_SEQUENCE_ARGS:
            return HOST_GROUP
        raise AielowerError(f"kernel {self.name} has no buffer argument {argument} (opcode 0, instructions 1, their "
                            f"count 2, buffers 3 to {2 + MAX_SEQUENCE_ARGS})")

    def __call__(self, opcode: int, instructions: EmulatedBo, words: int, *buffers: EmulatedBo) -> EmulatedRun:
        try:
            self._submit(opcode, instructions, words, buffers)
        except AielowerError as e:
            return EmulatedRun(ert_cmd_state.ERT_CMD_STATE_ERROR, str(e))
        self.runs += 1
        return EmulatedRun(ert_cmd_state.ERT_CMD_STATE_COMPLETED)

    def _submit(self, opcode, instructions, words, buffers) -> None:
        d = self.design
        if opcode != OPCODE:
            raise AielowerError(f"design {d.name}: opcode {opcode}, expected {OPCODE}")
        if len(buffers) > MAX_SEQUENCE_ARGS:
            raise AielowerError(f"design {d.name}: {len(buffers)} buffers; the kernel takes {MAX_SEQUENCE_ARGS}")
        if instructions.group != self.group_id(1) or words * 4 > instructions.size():
            raise AielowerError(f"design {d.name}: the instruction buffer must be in group_id(1) and hold {words} words")
        sequence = _decode_instructions(bytes(instructions._device[: words * 4]), d.name)
        expected = d.runtime_sequence(sequence or None).args
        if len(buffers) != len(expected):
            raise AielowerError(f"design {d.name}: {len(buffers)} buffers for {len(expected)} runtime-sequence "
                                f"arguments ({', '.join('%' + a.name for a in expected)})")
        args = {}
        for i, (bo, arg) in enumerate(zip(buffers, expected)):
            if bo.group != self.group_id(3 + i):
                raise AielowerError(f"design {d.name}: the buffer of %{arg.name} is not in group_id({3 + i})")
            if bo.size() < arg.type.bytes:
                raise AielowerError(f"design {d.name}: the buffer of %{arg.name} has {bo.size()} bytes, the argument "
                                    f"needs {arg.type.bytes}")
            args[arg.name] = bo.device_view(arg.type)
        self._run.run(args, sequence=sequence or None)

    @property
    def calls(self) -> int:
        """Kernel calls made on the cores by all runs so far."""
        return self._run.calls


def _decode_instructions(raw: bytes, design: str) -> str:
    if not raw.startswith(INSTRUCTIONS_MAGIC):
        raise AielowerError(f"design {design}: the instruction buffer does not hold an emulated instruction stream "
                            "(real NPU instructions run only on an NPU)")
    data = json.loads(raw[len(INSTRUCTIONS_MAGIC):].rstrip(b"\0"))
    if data.get("design") != design:
        raise AielowerError(f"the instruction stream is for design {data.get('design')!r}, the kernel runs {design}")
    return data["sequence"]


class EmulatedXrt:
    """The ``pyxrt`` names the host runtime uses, bound to one emulated device: an NPU of model ``device_name``
    (``npu1``, ``npu2``) whose cores run the functions of ``kernels`` (a
    :class:`~aielower.backends.aie.kernels.KernelLibrary`)."""

    xclbin = EmulatedXclbin
    hw_context = EmulatedHwContext
    kernel = EmulatedKernel
    bo = EmulatedBo
    xclBOSyncDirection = xclBOSyncDirection
    ert_cmd_state = ert_cmd_state
    emulated = True

    def __init__(self, device_name: str, kernels):
        self.device_name, self.kernels = device_name, kernels

    def device(self, index: int = 0) -> EmulatedDevice:
        if index != 0:
            raise AielowerError(f"the emulated XRT has one device (index 0), not {index}")
        return EmulatedDevice(self.device_name, self.kernels)


__all__ = ["EmulatedXrt", "INSTRUCTIONS_MAGIC", "XCLBIN_FORMAT", "instruction_words", "xclbin_text"]
