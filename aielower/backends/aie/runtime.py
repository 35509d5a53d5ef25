"""The XRT host runtime of an AIE artifact: its ``prefill`` / ``decode`` and ``generate()`` on a Ryzen AI NPU through
XRT's Python bindings (``pyxrt``), or on the emulated XRT device (:mod:`aielower.backends.aie.emulated_xrt`).

:class:`AieRuntime` opens the device and reads the artifact: ``manifest.json`` (which build to load: the record of
``aielower build``), ``module.ir`` (the planned program: which ops run on the host, which launch which design),
``design/`` (each design's runtime-sequence arguments and sequences) and ``weights/``. It runs the planned module
with a :class:`~aielower.backends.aie.host_program.HostProgram` whose launches go to an :class:`XrtLauncher`:

- per design, on first use: its xclbin registered with the device, a hardware context and the kernel
  (``MLIR_AIE``); per runtime sequence, its instruction file in a buffer object (``group_id(1)``), written once;
- per design and runtime-sequence argument, one buffer object (``group_id(3 + i)``) allocated once at the
  argument's padded size and reused by every launch; inputs are copied in and synced to the device, outputs synced
  back after the run;
- resident DDR tensors, allocated and written once: every 4-bit weight (pre-tiled) and, per decoder layer and batch
  row, the KV cache blocked by KV tile (:class:`~aielower.backends.aie.kv_cache.BlockedKvCache`), to which the host
  sends only the rows it changed since the last launch (the rows of the step before, appended to the cache after
  its launch; a decode step's own keys and values come in its query records);
- per launch: ``kernel(3, instructions, words, *buffers)``, ``wait()``, and an error naming the design if the run
  did not complete.

Per step, the host writes the step's keys and values, the rotary row and the step header (position, valid KV
length) after each query tile in the attention designs' ``q`` buffer and submits the runtime sequence that reads the
cache tiles before the step; no instruction is patched. The code is the same for
the NPU and the emulated device: only the ``xrt`` object differs. Timings (``last_stats``) are *measured* on an NPU
and *emulated* on the emulated device (this CPU running the emulation); :attr:`AieRuntime.timing` says which.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from aielower.backends.aie.designs.model import Design
from aielower.backends.aie.designs.simulate import NUMPY_DTYPES
from aielower.backends.aie.launcher import Resident
from aielower.errors import AielowerError
from aielower.output import safe_path

DEVICES = ("npu", "emulator")
KERNEL_NAME = "MLIR_AIE"  # the kernel of every xclbin aiecc generates
OPCODE = 3  # the first argument of a kernel run in mlir-aie's host code: a transaction of NPU instructions
_CACHE_ARG = re.compile(r"([kv])_cache_(\d+)", re.ASCII)


def open_xrt(device: str, placement, out_dir: Path, record: dict):
    """The XRT module for ``device``: ``pyxrt`` for ``"npu"``, an :class:`EmulatedXrt` running this artifact's
    emulated build for ``"emulator"`` (the kernels of ``placement``, the artifact's
    :class:`~aielower.backends.aie.catalog.Placement`)."""
    if device == "npu":
        try:
            import pyxrt  # noqa: PLC0415 - shipped with XRT, absent everywhere else
        except ImportError:
            raise AielowerError(
                "running on the NPU needs XRT's Python bindings (pyxrt), which are not installed here: install the "
                "Ryzen AI NPU driver and XRT (README: 'Running on a Ryzen AI laptop'), build the artifact with "
                "'aielower build DIR --peano ... --mlir-aie ...'; or run on the emulated device (device='emulator', "
                "'--emulate')") from None
        return pyxrt
    from aielower.backends.aie.emulated_xrt import EmulatedXrt
    from aielower.backends.aie.kernels import KernelLibrary

    return EmulatedXrt(record["device"], KernelLibrary(safe_path(out_dir, record["kernels"]),
                                                       placement.kernels.values()))


class _Program:
    """One design on the device: its xclbin, hardware context, kernel and instruction buffers."""

    def __init__(self, xrt, device, out_dir: Path, name: str, files: dict):
        self.xrt, self.device, self.out_dir, self.name, self.files = xrt, device, out_dir, name, files
        xclbin = xrt.xclbin(str(safe_path(out_dir, files["xclbin"])))
        kernels = [k.get_name() for k in xclbin.get_kernels()]
        if KERNEL_NAME not in kernels:
            raise AielowerError(f"{files['xclbin']} has no kernel {KERNEL_NAME} (it has {', '.join(kernels)})")
        device.register_xclbin(xclbin)
        self.context = xrt.hw_context(device, xclbin.get_uuid())
        self.kernel = xrt.kernel(self.context, KERNEL_NAME)
        self._instructions: dict[str, tuple[object, int]] = {}

    def instructions(self, sequence: str):
        """(buffer object, words) of the instruction stream of ``sequence`` (``""``: the design's only one)."""
        found = self._instructions.get(sequence)
        if found is None:
            path = self.files["instructions"].get(sequence)
            if path is None:
                raise AielowerError(f"design {self.name}: the build has no instruction file for sequence "
                                    f"{sequence or '(unnamed)'!r}; rebuild the artifact")
            words = np.fromfile(safe_path(self.out_dir, path), "<u4")
            bo = self.xrt.bo(self.device, max(4, words.nbytes), self.xrt.bo.cacheable, self.kernel.group_id(1))
            bo.write(words, 0)
            bo.sync(self.xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)
            found = self._instructions[sequence] = (bo, int(words.size))
        return found


class XrtLauncher:
    """Launches through an XRT device (see the module docstring for the buffers it keeps)."""

    calls = 0  # the NPU does not report kernel calls

    def __init__(self, xrt, device, out_dir: Path, record: dict):
        self.xrt, self.device, self.out_dir, self.record = xrt, device, out_dir, record
        self.submissions = 0
        self.bytes_to_device = 0  # host -> device copies (syncs) made by the runtime
        self._programs: dict[str, _Program] = {}
        self._scratch: dict[tuple, tuple[object, np.ndarray]] = {}
        self._resident: dict[str, tuple[object, np.ndarray]] = {}
        self._outputs: dict[str, tuple[frozenset[str], frozenset[str]]] = {}  # design -> (outputs, inputs)

    def program(self, design: str) -> _Program:
        found = self._programs.get(design)
        if found is None:
            files = self.record["designs"].get(design)
            if files is None:
                raise AielowerError(f"the build has no design {design}: rebuild the artifact")
            found = self._programs[design] = _Program(self.xrt, self.device, self.out_dir, design, files)
        return found

    def _view(self, bo, dtype) -> np.ndarray:
        return np.frombuffer(bo.map(), dtype=dtype)

    def _to_device(self, bo, nbytes: int, offset: int = 0) -> None:
        bo.sync(self.xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE, nbytes, offset)
        self.bytes_to_device += nbytes

    def _resident_buffer(self, tensor: Resident, group: int, needed: int):
        found = self._resident.get(tensor.key)
        if found is not None and found[1].nbytes != tensor.array.nbytes:
            raise AielowerError(f"DDR tensor {tensor.key} was allocated with {found[1].nbytes} bytes and now has "
                                f"{tensor.array.nbytes}")
        new = found is None
        if new:
            bo = self.xrt.bo(self.device, tensor.array.nbytes, self.xrt.bo.host_only, group)
            found = self._resident[tensor.key] = (bo, self._view(bo, tensor.array.dtype))
        bo, view = found
        if view.dtype != tensor.array.dtype:  # one DDR tensor read as other elements by another design (the KV
            view = self._view(bo, tensor.array.dtype)  # cache: bf16 by attention's designs, bytes by the GEMVs')
        if new or tensor.changed is None:
            view[:] = tensor.array
            self._to_device(bo, tensor.array.nbytes)
        else:
            item = tensor.array.itemsize
            for start, count in tensor.changed:
                view[start : start + count] = tensor.array[start : start + count]
                self._to_device(bo, count * item, start * item)
        if found[0].size() < needed:
            raise AielowerError(f"DDR tensor {tensor.key} has {found[0].size()} bytes; the design reads {needed}")
        return found[0]

    def _scratch_buffer(self, design: Design, arg, group: int):
        """The buffer object of a design's argument (one per design, argument name, element type and buffer group,
        grown when a sequence of a shared configuration needs more) and its view of the argument's elements."""
        key = (design.name, arg.name, arg.type.element, group)
        found = self._scratch.get(key)
        if found is None or found[0].size() < arg.type.bytes:
            bo = self.xrt.bo(self.device, arg.type.bytes, self.xrt.bo.host_only, group)
            found = self._scratch[key] = (bo, self._view(bo, NUMPY_DTYPES[arg.type.element]))
        return found[0], found[1][: arg.type.size]

    def launch(self, design: Design, sequence: str | None, tensors: Mapping[str, np.ndarray | Resident]) -> None:
        program = self.program(design.name)
        instructions, words = program.instructions(sequence or "")
        found = self._outputs.get(design.name)
        if found is None:
            found = self._outputs[design.name] = (design.output_args(), design.input_args())
        outputs, inputs = found
        buffers, results = [], []
        for i, arg in enumerate(design.runtime_sequence(sequence).args):
            tensor = tensors.get(arg.name)
            if tensor is None:
                raise AielowerError(f"design {design.name}: no tensor for runtime-sequence argument %{arg.name}")
            group = program.kernel.group_id(3 + i)
            if isinstance(tensor, Resident):
                buffers.append(self._resident_buffer(tensor, group, arg.type.bytes))
                continue
            bo, view = self._scratch_buffer(design, arg, group)
            if tensor.size < arg.type.size or tensor.dtype != view.dtype:
                raise AielowerError(f"design {design.name}: %{arg.name} needs {arg.type.size} {view.dtype} elements, "
                                    f"got {tensor.size} {tensor.dtype}")
            if arg.name in outputs:
                results.append((bo, view, tensor))
            if arg.name in inputs or arg.name not in outputs:  # (a chain's %io is both: see designs/shared.py)
                view[:] = tensor[: arg.type.size]
                self._to_device(bo, arg.type.bytes)
            buffers.append(bo)
        run = program.kernel(OPCODE, instructions, words, *buffers)
        state = run.wait()
        self.submissions += 1
        if state != self.xrt.ert_cmd_state.ERT_CMD_STATE_COMPLETED:
            detail = getattr(run, "detail", "")
            raise AielowerError(f"the run of design {design.name} ended in state {state}"
                                + (f": {detail}" if detail else ""))
        for bo, view, tensor in results:
            bo.sync(self.xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE, view.nbytes, 0)
            tensor[: view.size] = view


class AieRuntime:
    """An AIE artifact loaded on an XRT device: ``decode`` steps and ``generate()`` with the reference backend's
    signature. ``device`` is ``"npu"`` (pyxrt, the artifact built by ``aielower build``) or ``"emulator"`` (the
    emulated device, the artifact built by ``aielower build --emulate``); ``xrt`` replaces the XRT module (tests)."""

    def __init__(self, out_dir: str | Path, device: str = "npu", *, xrt=None):
        from aielower.backends.aie.artifact import design_reader, read_artifact_weights
        from aielower.backends.aie.catalog import Placement
        from aielower.backends.aie.device import get_device
        from aielower.backends.aie.device_build import build_record
        from aielower.backends.aie.host_program import HostProgram
        from aielower.backends.aie.toolchain import read_manifest
        from aielower.ir import parse_file

        if device not in DEVICES:
            raise AielowerError(f"unknown device {device!r}: choose 'npu' (a Ryzen AI NPU through XRT) or 'emulator'")
        self.out_dir, self.device = Path(out_dir), device
        self.manifest = read_manifest(self.out_dir)
        self.module = parse_file(safe_path(self.out_dir, "module.ir"))
        aie_device = get_device(self.manifest["device"]["name"])
        record = build_record(self.manifest, device, self.out_dir)
        if record["device"] != aie_device.name:
            raise AielowerError(f"{self.out_dir} was built for {record['device']} but compiled for {aie_device.name}: "
                                "rebuild it")
        missing = [p for f in record["designs"].values() for p in (f["xclbin"], *f["instructions"].values())
                   if not safe_path(self.out_dir, p).is_file()]
        if missing:
            raise AielowerError(f"{len(missing)} file(s) of the build are missing, e.g. {missing[0]}: rebuild with "
                                f"'aielower build {self.out_dir}{' --emulate' if device == 'emulator' else ''}'")
        self.placement = Placement(self.module, aie_device)  # where each launch runs: design and sequence
        self._check_schedule(record)
        if "decode" not in self.module.functions:
            raise AielowerError(f"{self.out_dir} has no decode function: compile with functions=('prefill', 'decode')")
        blobs, arrays = read_artifact_weights(self.out_dir, self.module, "run")
        self.xrt = xrt if xrt is not None else open_xrt(device, self.placement, self.out_dir, record)
        self.timing = "emulated" if getattr(self.xrt, "emulated", False) else "measured"
        self.xrt_device = self.xrt.device(0)
        self.launcher = XrtLauncher(self.xrt, self.xrt_device, self.out_dir, record)
        self.program = HostProgram(self.module, aie_device, blobs, arrays,
                                   design_reader(self.out_dir, self.placement), self.launcher, self.placement.chains)
        self.last_stats = None
        tables = [op.table.type.shape[0] for op in self.module.functions["decode"].ops if op.name == "nn.embedding"]
        self._vocab = tables[0] if tables else None

    def _check_schedule(self, record: dict) -> None:
        """The program run here (``module.ir``) must be the one the manifest's launch schedule describes, and the
        build must hold every design that schedule launches."""
        from aielower.backends.aie.artifact import schedule

        if schedule(self.module, self.placement) != self.manifest.get("schedule"):
            raise AielowerError(f"{self.out_dir}: module.ir and the launch schedule of manifest.json differ (a file "
                                "was changed or replaced): recompile the artifact")
        launched = {d.split("@")[0] for steps in self.manifest["schedule"].values() for step in steps
                    for names in step.get("designs", {}).values() for d in names}
        unbuilt = sorted(launched - set(record["designs"]))
        if unbuilt:
            raise AielowerError(f"the schedule launches {len(unbuilt)} design(s) the build does not have, e.g. "
                                f"{unbuilt[0]}: rebuild the artifact")

    @property
    def max_seq_len(self) -> int:
        return self.module.functions["decode"].args[2].type.shape[2]

    @property
    def prompt_rows(self) -> int:
        """The most tokens one ``decode`` call runs: its largest planned bucket (a longer prompt runs in chunks)."""
        from aielower.backends.aie.plan import largest_bucket

        return largest_bucket(self.module.functions["decode"].ops)

    def new_cache(self, batch: int) -> list:
        """The KV caches of ``decode``, in its argument order: per layer one
        :class:`~aielower.backends.aie.kv_cache.BlockedKvCache` (DDR storage allocated on the first step), passed
        as the layer's key and value cache."""
        from aielower.backends.aie.kv_cache import BlockedKvCache, kv_tail_bytes

        layers: dict[int, BlockedKvCache] = {}
        tail = kv_tail_bytes(self.module.functions["decode"])
        out = []
        for arg in self.module.functions["decode"].args[2:]:
            m = _CACHE_ARG.fullmatch(arg.name_hint or "")
            if m is None:
                raise AielowerError(f"decode argument %{arg.name_hint} is not a KV cache (k_cache_<i> / v_cache_<i>)")
            layer = int(m.group(2))
            if layer not in layers:
                _, kv_heads, rows, head_dim = arg.type.shape
                layers[layer] = BlockedKvCache(f"layer{layer}", batch, kv_heads, rows, head_dim, tail)
            out.append(layers[layer])
        return out

    def decode(self, input_ids, position: int, cache: list) -> np.ndarray:
        """Run tokens at ``position ...`` over ``cache`` (from :meth:`new_cache`, updated in DDR); returns the last
        token's logits [batch, 1, vocab]. More tokens than one call runs (:attr:`prompt_rows`; a 7B artifact's
        cache holds 4096 positions, its largest bucket 2048) run in chunks of that many, one call each, in order:
        each chunk attends to the cache the ones before it filled, as the cost model charges a long prompt."""
        ids = self._check_ids(input_ids)
        if position + ids.shape[1] > self.max_seq_len:
            raise AielowerError(f"sequence of {position + ids.shape[1]} tokens does not fit the KV cache of "
                                f"{self.max_seq_len} (compile with a larger max_seq_len)")
        rows = self.prompt_rows
        for start in range(0, ids.shape[1], rows):
            logits, *_ = self.program.run("decode", ids[:, start : start + rows],
                                          np.array([position + start], np.int64), *cache)
        return logits

    def generate(self, input_ids, max_new_tokens: int = 60, *, do_sample: bool = False, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                 eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None) -> np.ndarray:
        """Prefill the prompt, then one decode step per new token, as the reference backend's ``generate()``
        (greedy unless ``do_sample``; EOS handling and ``last_stats`` the same). Times in ``last_stats`` are
        :attr:`timing` (``"measured"`` on an NPU, ``"emulated"`` on the emulated device)."""
        from aielower.backends.ref.generation import SamplingConfig, eos_ids, generate_tokens

        ids = self._check_ids(input_ids)
        sampling = SamplingConfig(do_sample, temperature, top_k, top_p, seed)
        eos = eos_ids(eos_token_id, self.module.metadata.get("config", {}))
        tokens, self.last_stats = generate_tokens(self.decode, self.new_cache(ids.shape[0]), ids, max_new_tokens,
                                                  self.max_seq_len, sampling, eos, pad_token_id)
        return tokens

    def _check_ids(self, input_ids) -> np.ndarray:
        from aielower.backends.ref.runtime import checked_input_ids

        return checked_input_ids(input_ids, self._vocab)

    def __repr__(self) -> str:
        return f"<AieRuntime {self.module.name} on {self.device} from {self.out_dir}>"


__all__ = ["AieRuntime", "DEVICES", "KERNEL_NAME", "OPCODE", "XrtLauncher", "open_xrt"]
