"""Where backends write: every file goes through :func:`safe_path`, and a whole artifact directory is written
atomically by :class:`ArtifactWriter`.

- :func:`safe_path` joins path components that each pass :func:`aielower.names.file_name` (no separators, no
  ``..``, no leading dot), resolves the result and refuses anything that does not stay inside the root.
- :class:`ArtifactWriter` writes into a staging directory beside ``out_dir`` and renames it into place only when
  every file was written: a compile that fails leaves no half-written artifact, and an earlier artifact in
  ``out_dir`` stays as it was. An existing ``out_dir`` is replaced only when it is empty or is itself an artifact
  (it holds a manifest of the expected format); anything else (a regular file, a directory of other files) is a
  :class:`~aielower.errors.CompileError` before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from aielower import names
from aielower.errors import CompileError


def safe_path(root: str | os.PathLike, *parts: str) -> Path:
    """``root / part / part ...`` after checking every part is a plain file name and the resolved result lies
    inside ``root``; a CompileError otherwise."""
    base = Path(root).resolve()
    path = base
    for part in parts:
        for piece in str(part).split("/"):
            path = path / names.file_name(piece)
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise CompileError(f"refusing to write {resolved}: it is outside {base}")
    return resolved


def replace_file(root: str | os.PathLike, relative: str, text: str) -> Path:
    """Write ``text`` to ``root/relative`` (a path checked as :func:`safe_path` checks it) through a partial file
    renamed into place, so that a reader never sees half of it. Returns the path."""
    path = safe_path(root, relative)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def is_artifact(directory: Path, manifest: str, format_prefix: str) -> bool:
    """True when ``directory`` holds ``manifest`` (JSON) whose ``format`` starts with ``format_prefix``."""
    try:
        data = json.loads((directory / manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith(format_prefix)


def json_text(data: dict, one_line_items_of: str | None = None) -> str:
    """``data`` as indented JSON with sorted keys; with ``one_line_items_of``, each item of the lists in
    ``data[one_line_items_of]`` (a dict of lists: an AIE manifest's launch schedules, a thousand steps for a 7B
    model) on one line."""
    items: dict[str, str] = {}
    token = secrets.token_hex(8)  # placeholders no value of ``data`` can equal

    def placeholder(item) -> str:
        key = f"\x00{token}:{len(items)}"
        items[json.dumps(key)] = json.dumps(item, sort_keys=True)
        return key

    if one_line_items_of and isinstance(data.get(one_line_items_of), dict):
        data = dict(data, **{one_line_items_of: {k: [placeholder(i) for i in v] if isinstance(v, list) else v
                                                  for k, v in data[one_line_items_of].items()}})
    text = json.dumps(data, indent=1, sort_keys=True)
    if items:
        text = re.sub(rf'"\\u0000{token}:[0-9]+"', lambda m: items[m.group(0)], text)
    return text + "\n"


class ArtifactWriter:
    """Writes one artifact directory atomically (see the module docs)::

        with ArtifactWriter(out_dir, "manifest.json", "aielower-aie-manifest/") as w:
            w.write_text("kernels/k.cc", source)
        # out_dir now holds exactly what was written; on an exception it is unchanged

    ``check()`` runs the checks on ``out_dir`` without writing (call it before long work).
    """

    def __init__(self, out_dir: str | os.PathLike, manifest: str, format_prefix: str):
        self.final = Path(out_dir)
        self.manifest, self.format_prefix = manifest, format_prefix
        self.staging: Path | None = None

    def check(self) -> None:
        final = self.final
        if final.is_symlink():
            raise CompileError(f"output directory {final} is a symbolic link: give a real directory")
        if final.exists() and not final.is_dir():
            raise CompileError(f"output directory {final} exists and is not a directory: choose another path")
        if final.is_dir() and any(final.iterdir()) and not is_artifact(final, self.manifest, self.format_prefix):
            raise CompileError(f"output directory {final} is not empty and holds no aielower artifact "
                               f"({self.manifest}); refusing to replace it: choose a new or empty directory")
        parent = final.resolve().parent
        if parent.exists() and not parent.is_dir():
            raise CompileError(f"cannot create {final}: {parent} is not a directory")

    def __enter__(self) -> "ArtifactWriter":
        self.check()
        parent = self.final.resolve().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".partial", dir=parent))
        except OSError as e:
            raise CompileError(f"cannot create the output directory {self.final}: {e.strerror or e}") from None
        return self

    def path(self, relative: str) -> Path:
        """Where ``relative`` (``dir/file`` made of plain names) goes in the staging directory; parents created."""
        if self.staging is None:
            raise CompileError("internal: ArtifactWriter used outside its with-block")
        path = safe_path(self.staging, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_text(self, relative: str, text: str) -> None:
        self.path(relative).write_text(text, encoding="utf-8")

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.path(relative).write_bytes(data)

    def __exit__(self, kind, error, traceback) -> None:
        staging, self.staging = self.staging, None
        if staging is None:
            return
        if kind is not None:
            shutil.rmtree(staging, ignore_errors=True)
            return
        old = None
        try:
            if self.final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".old", dir=staging.parent))
                os.rename(self.final, old / "previous")
            os.rename(staging, self.final)
        except OSError as e:
            if old is not None and (old / "previous").exists() and not self.final.exists():
                os.rename(old / "previous", self.final)
            shutil.rmtree(staging, ignore_errors=True)
            raise CompileError(f"cannot move the new artifact into {self.final}: {e.strerror or e}") from None
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)


__all__ = ["ArtifactWriter", "is_artifact", "replace_file", "safe_path"]
