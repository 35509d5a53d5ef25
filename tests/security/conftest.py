"""Hostile inputs: shared pieces.

Every payload in this corpus is harmless: it creates a marker file named :data:`MARKER` in the current directory,
which each test sets to its own temporary directory. A test that feeds a payload asserts that the marker was never
created (the payload did not run) and that nothing was written outside the output directory it gave.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MARKER = "pwned_marker"
# Python that creates MARKER when executed; no '/' so that it fits in a file or directory name.
PY_PAYLOAD = f"__import__('pathlib').Path('{MARKER}').touch()"
# A name that ends a generated comment or string and runs PY_PAYLOAD on the next line.
PY_INJECTION = f"q\n{PY_PAYLOAD}\n#"


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A fresh working directory for one hostile case; ``sandbox.check()`` asserts the payload never ran and
    returns the files that exist under it (to compare against what the test expects)."""
    monkeypatch.chdir(tmp_path)

    class Sandbox:
        root = tmp_path

        def marker_created(self) -> bool:
            return any(p.name == MARKER for p in tmp_path.rglob("*")) or Path(MARKER).exists()

        def files(self) -> set[str]:
            return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}

        def check(self) -> None:
            assert not self.marker_created(), "the payload ran"

    return Sandbox()


def only_inside(files: set[str], *allowed: str) -> bool:
    """Every file lies under one of the ``allowed`` relative directories."""
    return all(any(f == a or f.startswith(a.rstrip("/") + "/") for a in allowed) for f in files)


def save_tiny_model_dir(directory: Path, **overrides) -> Path:
    """A local Hugging Face directory with a tiny Qwen2 (1 layer) at ``directory`` (created)."""
    from tests.conftest import save_tiny_tokenizer, tiny_qwen2

    directory.mkdir(parents=True, exist_ok=True)
    tiny_qwen2(num_hidden_layers=1, **overrides).save_pretrained(directory)
    save_tiny_tokenizer(directory)
    return directory


def write_gguf(path: Path, *, arch: str = "qwen2", tokenizer: bool = True, tensors: bool = False,
               heads: int = 4, kv_heads: int = 4) -> Path:
    """A small GGUF file: a model header (``arch``), optionally a tokenizer and one tensor."""
    gguf = pytest.importorskip("gguf", reason="GGUF cases need the optional 'gguf' extra")
    import numpy as np

    writer = gguf.GGUFWriter(os.fspath(path), arch)
    writer.add_context_length(64)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(96)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    if tokenizer:
        tokens = ["\u0120"] + [chr(c) for c in range(33, 127)]
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("qwen2")
        writer.add_token_list(tokens)
        writer.add_token_types([1] * len(tokens))
        writer.add_token_merges([])
        writer.add_eos_token_id(1)
    if tensors:
        writer.add_tensor("token_embd.weight", np.zeros((95, 64), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
