"""Pass time against op count: the default pipeline on tiny Qwen2 models of growing depth.

The issue's target: time linear in the number of ops, i.e. at most 2.2x per doubling at about 3k / 6k / 12k ops
(the old driver re-swept the op list and searched it per rewrite: fuse-norm took 1 / 4.6 / 22 s there). Capture
(torch.export) is timed apart and not counted; the figure is the sum of the passes' own times (PassTiming, without
the verifier).

    python benchmarks/pass_scaling.py [--targets 3000 6000 12000]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from aielower.api import default_pipeline
from aielower.frontend import import_model
from aielower.passes import PassManager

TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, tie_word_embeddings=False)


def capture(layers: int):
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=layers, **TINY)).eval()
    return import_model(model, "scaling", functions=("prefill",))


def ops(module) -> int:
    return sum(len(fn.ops) for fn in module.functions.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[3000, 6000, 12000])
    args = parser.parse_args()
    per_layer = (ops(capture(3)) - ops(capture(1))) / 2
    base = ops(capture(1)) - per_layer
    print(f"{per_layer:.0f} ops per decoder layer; pipeline: {default_pipeline('ref')}")
    rows = []
    for target in args.targets:
        layers = max(1, round((target - base) / per_layer))
        t0 = time.perf_counter()
        module = capture(layers)
        captured = time.perf_counter() - t0
        n = ops(module)
        manager = PassManager.parse(default_pipeline("ref"), verify_each=False)
        manager.run(module)
        seconds = sum(t.seconds for t in manager.timings)
        slowest = max(manager.timings, key=lambda t: t.seconds)
        rows.append((n, seconds))
        print(f"{layers:4d} layers, {n:6d} ops: passes {seconds:6.3f} s (slowest {slowest.name} {slowest.seconds:.3f} s; "
              f"capture {captured:.1f} s)")
    for (n0, s0), (n1, s1) in zip(rows, rows[1:]):
        ratio = s1 / s0
        print(f"  {n0} -> {n1} ops (x{n1 / n0:.2f}): time x{ratio:.2f} "
              f"({'within' if ratio <= 2.2 * (n1 / n0) / 2 else 'ABOVE'} the target 2.2x per doubling)")


if __name__ == "__main__":
    main()
