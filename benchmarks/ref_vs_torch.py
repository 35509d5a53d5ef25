"""Prefill speed of the ref backend against torch eager, measured side by side.

A Qwen2-0.5B-shaped model (bundled config ``qwen2-0.5b``) with random fp32 weights,
one prompt of 512 tokens. Prints both times and their ratio (target: ref / torch <= 1.2),
the largest logit difference, and the time to capture the 7B config on ``meta``.

    python benchmarks/ref_vs_torch.py [--seq 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    import aielower
    from aielower.frontend import bundled_configs
    from aielower.frontend.models import bundled_config
    from transformers import Qwen2ForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="qwen2-0.5b", choices=bundled_configs())
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = bundled_config(args.config)
    model = Qwen2ForCausalLM(config).eval()
    ids = torch.randint(0, config.vocab_size, (1, args.seq))

    t0 = time.perf_counter()
    cm = aielower.compile(model, target="ref")
    compile_s = time.perf_counter() - t0

    with torch.no_grad():
        expected = model(ids).logits.numpy()
    got = cm(ids)
    err = float(np.abs(got - expected).max())

    def run_torch():
        with torch.no_grad():
            model(ids)

    t_ref = best_of(lambda: cm(ids), args.repeats)
    t_torch = best_of(run_torch, args.repeats)

    t0 = time.perf_counter()
    aielower.compile("qwen1.5-7b-chat", target="ref")
    meta_s = time.perf_counter() - t0

    print(f"model: {args.config} (random fp32 weights), prefill of {args.seq} tokens, best of {args.repeats}")
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"compile (capture + codegen): {compile_s:.2f} s")
    print(f"max |logit difference| ref vs torch: {err:.3e} (max |logit| {float(np.abs(expected).max()):.3f})")
    print(f"torch eager: {t_torch * 1e3:8.1f} ms")
    print(f"ref backend: {t_ref * 1e3:8.1f} ms")
    print(f"ratio ref / torch: {t_ref / t_torch:.3f} (target <= 1.2)")
    print(f"qwen1.5-7b-chat capture + codegen on meta: {meta_s:.2f} s")


if __name__ == "__main__":
    main()
