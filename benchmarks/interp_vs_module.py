"""The op-by-op interpreter (AWQ calibration's forward pass) against the generated module's prefill, same tokens.

A small random Qwen2 (hidden 512, 4 layers, GQA 8/2, vocab 4096; fp32 weights) is compiled with ``target="ref"``.
Over the same tokens, in the same run, it times:

- ``module``: the generated NumPy module's ``prefill`` (one call);
- ``interp``: :class:`aielower.interp.Interpreter` over ``prefill`` in one ``run``;
- ``interp+stops``: the interpreter as AWQ calibration drives it, stopping before every linear group and reading
  its input (``frame[x]``), on one frame per batch of ``--batch`` rows (default: all rows in one batch).

Runs are interleaved, each going first in turn, and the best of ``--repeats`` is kept for each, so that load from
other processes on the machine hits all three alike. Prints the times and the ratios to the module (target: <= 1.2) and checks that the
logits are bit-identical.

    python benchmarks/interp_vs_module.py [--seq 256] [--rows 2] [--batch ROWS] [--repeats 6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def small_qwen2(seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=4096, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_theta=10000.0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()


def calibration_pass(interp, fn, batches):
    """What AWQ's ``_run`` does minus the search: every batch to each group's first linear, reading its input."""
    from aielower.ir.core import LinearLike

    stops = sorted({i for i, op in enumerate(fn.ops) if isinstance(op, LinearLike)})
    frames = [interp.start(b) for b in batches]
    for stop in stops:
        x = fn.ops[stop].linear_input
        for frame in frames:
            interp.run(frame, stop)
            frame[x].sum()
    return [interp.run(frame).results[0] for frame in frames]


def main() -> None:
    import aielower
    from aielower.interp import Interpreter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=256, help="tokens per row")
    parser.add_argument("--rows", type=int, default=2, help="rows of tokens")
    parser.add_argument("--batch", type=int, default=None, help="rows per calibration batch (interp+stops)")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    model = small_qwen2()
    cm = aielower.compile(model, target="ref", functions=("prefill",))
    fn = cm.ir.functions["prefill"]
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (args.rows, args.seq))
    batch = args.batch or args.rows
    batches = [ids[i : i + batch] for i in range(0, args.rows, batch)]
    t0 = time.perf_counter()
    interp = Interpreter(cm.ir, "prefill")
    build_s = time.perf_counter() - t0

    expected = cm(ids)
    assert np.array_equal(interp(ids)[0], expected), "the interpreter differs from the generated module"
    stopped = np.concatenate(calibration_pass(interp, fn, batches))
    # Smaller batches may round differently in the GEMMs (other blocking), so only one batch must be bit-identical.
    assert np.array_equal(stopped, expected) if batch == args.rows else np.allclose(stopped, expected, atol=1e-4)

    runs = {"module": lambda: cm(ids), "interp": lambda: interp(ids),
            "interp+stops": lambda: calibration_pass(interp, fn, batches)}
    best = dict.fromkeys(runs, float("inf"))
    names = list(runs)
    for repeat in range(args.repeats):
        for name in names[repeat % 3 :] + names[: repeat % 3]:  # each goes first in turn
            t0 = time.perf_counter()
            runs[name]()
            best[name] = min(best[name], time.perf_counter() - t0)

    print(f"model: hidden 512, 4 layers, GQA 8/2, vocab 4096; {len(fn.ops)} ops in @prefill; "
          f"{args.rows} x {args.seq} tokens; best of {args.repeats}")
    print(f"interpreter built in {build_s * 1e3:.1f} ms")
    for name, seconds in best.items():
        ratio = "" if name == "module" else f"   {seconds / best['module']:.3f}x the module"
        print(f"  {name:<13} {seconds * 1e3:8.1f} ms{ratio}")


if __name__ == "__main__":
    main()
