"""Decode speed of the ref backend against HF eager generate, on the real checkpoint.

Qwen2.5-Coder-0.5B-Instruct (the GGUF from the optional ``gguf`` extra, dequantized to
fp32), a ~30-token prompt, 60 new tokens, greedy: ms/token of the ref backend (fp32)
and of ``model.generate`` in the same run, as a ratio (target: ref / torch <= 1.0),
whether the tokens agree, and the w4 g128 (dequantize-once) ms/token.

    python benchmarks/decode_vs_torch.py [--new-tokens 60] [--model qwen2.5-coder-0.5b-instruct]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

PROMPT = (
    "Write a Python function that checks whether a string is a palindrome, ignoring case, spaces and "
    "punctuation, and add a docstring with two examples."
)


def hf_ms_per_token(model, ids, new_tokens: int) -> tuple[float, np.ndarray]:
    """Mean time of the decode steps of HF greedy generate (the prefill step timed apart)."""
    times = []

    class Clock:
        def __call__(self, input_ids, scores, **kwargs):
            times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    from transformers import StoppingCriteriaList

    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False,
                             stopping_criteria=StoppingCriteriaList([Clock()]))
    steps = np.diff(times)  # one interval per decode step after the first token
    return 1e3 * float(steps.mean()), out.numpy()


def main() -> None:
    import aielower

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--new-tokens", type=int, default=60)
    args = parser.parse_args()

    t0 = time.perf_counter()
    model = aielower.load_model(args.model)
    tokenizer = aielower.load_tokenizer(args.model)
    load_s = time.perf_counter() - t0
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    print(f"model: {args.model} (fp32, loaded in {load_s:.1f} s); prompt {ids.shape[1]} tokens, "
          f"{args.new_tokens} new tokens, greedy; torch threads {torch.get_num_threads()}")

    cm = aielower.compile(model, max_seq_len=512)
    ours = cm.generate(ids, max_new_tokens=args.new_tokens, eos_token_id=[])
    ref_ms = cm.last_stats.ms_per_token
    torch_ms, theirs = hf_ms_per_token(model, ids, args.new_tokens)
    same = theirs.shape == ours.shape and bool((theirs == ours).all())
    print(f"tokens identical to HF generate: {same}")
    print(f"torch eager generate: {torch_ms:8.1f} ms/token")
    print(f"ref backend (fp32):   {ref_ms:8.1f} ms/token   prefill {cm.last_stats.prefill_s * 1e3:.0f} ms")
    print(f"ratio ref / torch: {ref_ms / torch_ms:.3f} (target <= 1.0)")

    cq = aielower.compile(model, quant=aielower.QuantConfig(bits=4, group_size=128), max_seq_len=512)
    cq.generate(ids, max_new_tokens=args.new_tokens, eos_token_id=[])
    print(f"ref backend (w4 g128, dequantized once): {cq.last_stats.ms_per_token:8.1f} ms/token")


if __name__ == "__main__":
    main()
