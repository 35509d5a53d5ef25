"""The XRT host runtime on the emulated device against the host emulator it drives, in one run.

Uses the tiny test models of tests/conftest.py. Both run the same designs and kernels (the runtime's tokens equal
the emulator's bit for bit); the runtime adds what a host program does on an NPU: buffer objects allocated once,
inputs copied in and synced, instruction buffers, kernel runs, outputs synced back, the KV cache kept in DDR with
only each step's rows written. The ratio is that layer's cost on this CPU (1.03-1.10 on 2 cores, 2026-12-06). All times are emulated (this CPU running the design files), not NPU times.

    python benchmarks/runtime_emulated.py [--config mha|gqa-14x2] [--new-tokens 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aielower  # noqa: E402
from aielower.backends.ref.generation import SamplingConfig, generate_tokens  # noqa: E402
from tests.conftest import CONFIGS, tiny_qwen2  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gqa-14x2", choices=sorted(CONFIGS))
    parser.add_argument("--new-tokens", type=int, default=40)
    args = parser.parse_args()
    model = tiny_qwen2(**CONFIGS[args.config])
    quant = aielower.QuantConfig(group_size=16, lm_head_group_size=16)
    ids = np.random.default_rng(0).integers(0, 128, size=(1, 9))
    with tempfile.TemporaryDirectory() as tmp:
        art = aielower.compile(model, target="aie", quant=quant, max_seq_len=64, out_dir=Path(tmp) / "aie")
        t0 = time.perf_counter()
        art.build(emulate=True)
        build_s = time.perf_counter() - t0
        art.generate(ids, 2, device="emulator")  # warm: buffers, programs, parsed designs
        art.emulate_decode(ids, 0, art.new_cache(1))
        launcher = art.runtime("emulator").launcher
        before = launcher.submissions
        t0 = time.perf_counter()
        mine = art.generate(ids, args.new_tokens, device="emulator")
        runtime_s = time.perf_counter() - t0
        submissions = launcher.submissions - before
        t0 = time.perf_counter()
        theirs, _ = generate_tokens(art.emulate_decode, art.new_cache(1), ids, args.new_tokens, 64,
                                    SamplingConfig(), [])
        emulator_s = time.perf_counter() - t0
    print(f"tiny {args.config}, {args.new_tokens} new tokens, batch 1 (emulated build {build_s:.1f} s)")
    print(f"  host emulator (DesignLauncher):         {emulator_s:.2f} s")
    print(f"  XRT host runtime on the emulated device: {runtime_s:.2f} s "
          f"({submissions} submissions)")
    print(f"  runtime / emulator: {runtime_s / emulator_s:.2f}   (tokens equal: {bool(np.array_equal(mine, theirs))})")


if __name__ == "__main__":
    main()
