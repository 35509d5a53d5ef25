"""Code generation for the AIE backend, and the compiled artifact ``compile(target="aie")`` returns.

``write_artifact`` turns a planned module into a directory::

    kernels/<symbol>.cc      one AIE API kernel per family and constants (docs/aie-kernels.md)
    design/<name>.mlir       one MLIR-AIE design per kernel, shape and bucket, or per shared configuration of
                             several launches (designs/shared.py); checked by designs.check
    weights/                 pre-tiled 4-bit weights (<name>.w4.bin, in DMA order), bf16 / fp32 tensors, index.json
    module.ir                the planned IR (every plan printed as an ``aie.plan`` attribute)
    manifest.json            model, device, pipeline, kernels, designs, buffers, the launch schedule per function
    Makefile                 builds kernels (Peano) and designs (aiecc.py) with the mlir-aie toolchain
    report.md, report.json   modelled latency and DDR traffic (see :mod:`aielower.backends.aie.report`)

Everything is written in a fixed order with sorted keys and no timestamps, so compiling twice gives byte-identical
files. On the meta device (no weights) everything but ``weights/`` is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from aielower.backends.aie import toolchain
from aielower.backends.aie.buildfile import render_build_file
from aielower.backends.aie.cost import decode_function
from aielower.backends.aie.counted import decode_design_names
from aielower.backends.aie.design_jobs import build_designs
from aielower.backends.aie.designs import read_design, require_valid
from aielower.backends.aie.device import Device
from aielower.backends.aie.kernels import KernelSpec
from aielower.backends.aie.catalog import Design, Placement, collect, design_name
from aielower.backends.aie.families.linear_w4 import bias_tile_rows, blob_grid
from aielower.backends.aie.plan import plan_of
from aielower.backends.aie.report import report_files
from aielower.backends.aie.weights import interleave_gate_up, pretile_linear
from aielower.backends.ref.numerics import bf16_weight_names
from aielower.errors import CompileError, ModelError
from aielower.ir import Module, QTensorType, Weight, print_module
from aielower.ir.printer import Namer
from aielower.output import ArtifactWriter, json_text, safe_path
from aielower.quant.bf16 import bf16_bits

# Bumped when what the host does around a launch changes for designs of an older artifact (2: decode attention
# reads the step's keys and values from the KV cache's step tiles, rotating them itself; 3: from its query records,
# and the KV cache has no step tiles; 4: launches of a shared configuration send a header, designs/shared.py; 5: a
# design lists its row buckets, "buckets", as a shared configuration may serve several).
MANIFEST_FORMAT = "aielower-aie-manifest/5"


# --------------------------------------------------------------------------- weights


def weight_files(module: Module) -> dict[str, dict]:
    """What ``weights/`` holds for each weight: file, layout, and (for 4-bit linears) the tiling it was cut for."""
    tilings: dict[str, dict] = {}
    bias_of: dict[str, str | None] = {}
    for fn in module.functions.values():
        for op in fn.ops:
            plan = plan_of(op)
            if plan is not None and plan.kind == "linear":
                weight, bias = op.linear_weight, op.linear_bias  # a planned linear is LinearLike
                if tilings.setdefault(weight.name, plan.shape) != plan.shape:
                    raise CompileError(f"weight @{weight.name} is planned with two tilings ({op.name} in @{fn.name} "
                                       "differs from an earlier op): one pre-tiled blob per weight serves one")
                bias_of[weight.name] = bias.name if isinstance(bias, Weight) else None
    stored_bf16 = bf16_weight_names(module)
    files = {}
    for name, w in sorted(module.weights.items()):
        if isinstance(w.type, QTensorType):
            shape = tilings[name]
            files[name] = {"file": f"{name}.w4.bin", "layout": "linear_w4 tiles (docs/aie-kernels.md)",
                           "bias": bias_of[name], "bytes": shape["weight_bytes"],
                           **{k: shape[k] for k in ("n", "k", "n_pad", "k_pad", "tn", "tk", "group")},
                           **dict(zip(("w_columns", "w_rows", "w_block"), blob_grid(shape)))}
            if shape.get("epilogue") == "silu_mul":  # each tile: tn / 2 gate rows, then the matching up rows
                files[name]["rows"] = "gate/up interleaved by half tile"
            if "gemv_bias_tiles" in shape:  # the bias in tiles of its own after the weight tiles
                files[name].update({k: shape[k] for k in ("gemv_bias_tiles", "gemm_bias_tiles")})
        else:
            dtype = "bf16" if name in stored_bf16 else "f32"
            files[name] = {"file": f"{name}.{dtype}.bin", "layout": f"{dtype} row-major",
                           "shape": list(w.type.shape), "bytes": int(np.prod(w.type.shape)) * (2 if dtype == "bf16" else 4)}
    return files


def write_weights(module: Module, files: dict[str, dict], writer: ArtifactWriter, device: Device) -> None:
    """Every weight file of ``files`` and ``weights/index.json``, through ``writer`` (one weight at a time)."""
    for name, entry in files.items():
        w = module.weights[name]
        if isinstance(w.type, QTensorType):
            bias = module.weights[entry["bias"]].data if entry["bias"] else None
            weight = w.data
            if "rows" in entry:
                weight, bias = interleave_gate_up(weight, bias, entry["n_pad"], entry["tn"])
            tiles = bias_tile_rows(entry) if "gemv_bias_tiles" in entry else None
            data = pretile_linear(weight, bias, entry["n_pad"], entry["k_pad"], entry["tn"], entry["tk"],
                                  entry["w_columns"], entry["w_rows"], entry["w_block"], mmul=device.mmul["bf16"],
                                  bias_tiles=tiles)
        elif entry["file"].endswith(".bf16.bin"):
            data = bf16_bits(np.asarray(w.data, np.float32)).astype("<u2")
        else:
            data = np.asarray(w.data, "<f4")
        data.tofile(writer.path(f"weights/{entry['file']}"))
    writer.write_text("weights/index.json", json_text(files))


def read_artifact_weights(out_dir: str | Path, module: Module, purpose: str):
    """:func:`read_weights` of the artifact in ``out_dir``, or a ModelError saying that an artifact compiled on the
    meta device has none (``purpose``: what the caller wanted them for, e.g. "emulate", "run")."""
    directory = Path(out_dir) / "weights"
    if not (directory / "index.json").is_file():
        raise ModelError(f"{out_dir} has no weights/: the model was compiled without weights (the meta device), which "
                         f"is enough to plan and report but not to {purpose}; compile a checkpoint to {purpose} it")
    return read_weights(directory, module)


def read_weights(directory: Path, module: Module) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(pre-tiled blobs of the 4-bit linears, float32 arrays of the other weights) from ``weights/``."""
    from aielower.quant.bf16 import from_bf16_bits

    files = json.loads((directory / "index.json").read_text())
    blobs, arrays = {}, {}
    for name, entry in files.items():
        path = safe_path(directory, entry["file"])
        if entry["file"].endswith(".w4.bin"):
            blobs[name] = np.fromfile(path, np.uint8)
        elif entry["file"].endswith(".bf16.bin"):
            arrays[name] = from_bf16_bits(np.fromfile(path, "<u2")).reshape(entry["shape"])
        else:
            arrays[name] = np.fromfile(path, "<f4").reshape(entry["shape"])
    return blobs, arrays


def design_reader(out_dir: str | Path, placement: Placement):
    """``(launch, plan) -> (Design, runtime sequence or None)``: where ``placement`` runs a launch, its design parsed
    from the artifact's ``design/`` file (each read once)."""
    @lru_cache(maxsize=None)
    def read(name: str):
        return read_design(safe_path(out_dir, "design", f"{name}.mlir"))

    def design_for(launch, plan):
        name, sequence = placement.place(launch, plan)
        return read(name), sequence

    return design_for


# --------------------------------------------------------------------------- manifest


def schedule(module: Module, placement: Placement) -> dict[str, list[dict]]:
    """Per function, one step per op in order: where it runs and, for NPU ops, the designs per bucket (where
    ``placement`` runs each launch; a launch of a shared configuration as ``design@sequence``)."""
    out = {}
    for fn in module.functions.values():
        name = Namer(fn)
        steps = []
        for index, op in enumerate(fn.ops):
            plan = plan_of(op)
            step = {"step": index, "op": op.name, "operands": [name(v) for v in op.operands],
                    "results": [name(r) for r in op.results]}
            if plan is None:
                step["on"] = "host"
            else:
                step["on"] = "npu"
                step["kind"] = plan.kind
                launches: dict[str, list[str]] = {}
                for launch in plan.launches:
                    design, sequence = placement.place(launch, plan)
                    launches.setdefault(str(launch.bucket), []).append(design + (f"@{sequence}" if sequence else ""))
                step["designs"] = launches
            steps.append(step)
        out[fn.name] = steps
    return out


def instruction_files(design: str, sequences: list[str]) -> dict[str, str]:
    """The instruction binary of each runtime sequence of ``design`` as the Makefile names it (the only, unnamed
    sequence of most designs: ``""``)."""
    if sequences == [""]:
        return {"": f"build/{design}.insts.bin"}
    return {s: f"build/{design}.{s}.insts.bin" for s in sequences}


def manifest(module: Module, device: Device, pipeline: str, placement: Placement, files: dict[str, dict],
             sequences: dict[str, list[str]]) -> dict:
    kernels, designs = placement.kernels, placement.designs
    return {
        "format": MANIFEST_FORMAT,
        "model": module.name,
        "device": {"name": device.name, "arch": device.arch, "product": device.product,
                   "columns": device.columns, "core_rows": device.core_rows},
        "pipeline": pipeline,
        "numerics": "bf16 tensors, fp32 accumulation, 4-bit weights dequantized to bf16 (docs/aie-kernels.md)",
        "toolchain": {"mlir_aie_commit": toolchain.MLIR_AIE_COMMIT, "mlir_aie_date": toolchain.MLIR_AIE_DATE,
                      "peano": toolchain.PEANO_VERSION},
        "kernels": [{"symbol": s.symbol, "file": f"kernels/{s.filename}", "family": s.family,
                     "params": s.p, "functions": list(s.functions)} for s in kernels.values()],
        "designs": [{"name": d.name, "file": d.file, "kernel": d.spec.symbol, "role": d.launch.role,
                     "buckets": list(d.buckets), "cores": [d.launch.columns, d.launch.rows],
                     "l1_bytes": max(x.launch.l1_bytes() for x in d.members),
                     "l2_bytes": max(x.launch.l2_bytes() for x in d.members),
                     **({"shared_by": [x.name for x in d.members]} if d.shared else {}),
                     "xclbin": f"build/{d.name}.xclbin",
                     "instructions": instruction_files(d.name, sequences[d.name])} for d in designs.values()],
        "buffers": {
            "weights": files,
            "functions": {fn.name: {"arguments": [str(a.type) for a in fn.args],
                                    "results": [str(t) for t in fn.result_types]}
                          for fn in module.functions.values()},
        },
        "schedule": schedule(module, placement),
    }


def artifact_writer(out_dir: str | Path) -> ArtifactWriter:
    """The writer of an AIE artifact directory (replaces only an empty directory or an earlier artifact)."""
    return ArtifactWriter(out_dir, "manifest.json", MANIFEST_FORMAT.split("/")[0] + "/")


def write_artifact(module: Module, device: Device, out_dir: str | Path, pipeline: str,
                   report: dict | Callable[[dict, Placement], dict], progress=None, jobs: int | None = None,
                   built: dict | None = None, placement: Placement | None = None) -> tuple[dict, dict]:
    """Write the whole output directory; returns the manifest and the report. ``report``: the report, or
    ``report(built, placement)`` making it while the worker processes build the other designs (it builds the
    decode step's designs into ``built``, :func:`~aielower.backends.aie.counted.decode_design_names`).
    ``progress(done, total, design)``, if given, is called after each design is built; ``jobs`` worker processes
    build the designs when there is enough work (:mod:`aielower.backends.aie.design_jobs`; default: the CPUs, at
    most 4). ``built``: designs already built (name -> design), rendered without building them again;
    ``placement``: where the module's launches run, if the caller has it.

    Everything is rendered and every file name checked before the first byte is written; the files go to a
    staging directory that replaces ``out_dir`` only when all of them are written (:class:`ArtifactWriter`)."""
    writer = artifact_writer(out_dir)
    writer.check()
    placement = Placement(module, device) if placement is None else placement
    kernels, designs = placement.kernels, placement.designs
    files = weight_files(module)
    texts: dict[str, str] = {}
    for spec in kernels.values():
        texts[f"kernels/{spec.filename}"] = spec.render()
    built = {} if built is None else built
    made: dict = {} if callable(report) else report

    def make_report() -> None:
        made.update(report(built, placement))

    results = build_designs(list(designs.values()), device, jobs, progress, built,
                            meanwhile=make_report if callable(report) else None,
                            deferred=decode_design_names(decode_function(module), placement) if callable(report)
                            else ())
    report = made
    built = [design for design, _ in results]
    statics = {f"{spec.symbol}.o": spec for spec in kernels.values()}
    require_valid(built, static_bytes=lambda obj: statics[obj].static_bytes,
                  stack_needed=lambda obj: statics[obj].stack_bytes)  # the rules mlir-aie's verifiers miss
    for d, (_, text) in zip(designs.values(), results):
        texts[d.file] = text
    sequences = {d.name: [s.name for s in design.sequences] for d, design in zip(designs.values(), built)}
    texts["Makefile"] = render_build_file(list(kernels.values()), [(d.name, d.spec.symbol) for d in designs.values()],
                                          device, sequences)
    texts["module.ir"] = print_module(module, alias_attrs=True)  # the layers' identical plans printed once each
    data = manifest(module, device, pipeline, placement, files, sequences)
    texts[toolchain.MANIFEST] = toolchain.manifest_text(data)
    texts.update(report_files(report))
    with_weights = all(w.data is not None for w in module.weights.values())
    for relative in [*texts, *(f"weights/{e['file']}" for e in files.values() if with_weights)]:
        safe_path(".", relative)  # every name is checked before anything is written
    with writer:
        for relative, text in texts.items():
            writer.write_text(relative, text)
        if with_weights:
            write_weights(module, files, writer, device)
    return data, report


__all__ = ["Design", "MANIFEST_FORMAT", "Placement", "artifact_writer", "collect", "design_name", "design_reader",
           "manifest", "read_artifact_weights", "read_weights", "weight_files", "write_artifact", "write_weights"]
