"""Modelled NPU latency of Qwen1.5-7B-Chat (w4 g128 + lm_head g32) on npu1 and npu2, beside the model card.

For each device: decode ms/token at short context (and with the launch overhead charged once per step, or not at
all), the DDR-bandwidth floor, DDR bytes per decode token against the minimum, padding waste, prefill ms per prompt
length, and the issue's targets (set for npu2). All aielower figures are modelled (aielower/backends/aie/cost.py);
the card's are measured on Strix (aielower/eval/model_card.py).

    python benchmarks/aie_cost.py
"""

from __future__ import annotations

import time

from aielower.api import QuantConfig, default_pipeline
from aielower.backends.aie.device import get_device
from aielower.backends.aie.report import build_report
from aielower.eval import model_card
from aielower.frontend import import_model, load_model
from aielower.passes import PassManager

MODEL = "qwen1.5-7b-chat"


def main() -> None:
    t0 = time.perf_counter()
    module = import_model(load_model(MODEL), MODEL)
    PassManager.parse(default_pipeline("ref", QuantConfig(lm_head_group_size=32))).run(module)
    print(f"{MODEL}, w4 g128 + lm_head g32, imported and quantized on meta in {time.perf_counter() - t0:.1f} s")
    card = {r.prompt_tokens: r for r in model_card.BENCHMARK_EXACT}
    card_decode = sum(r.ms_per_token for r in model_card.DECODE_SHORT_PROMPTS) / len(model_card.DECODE_SHORT_PROMPTS)
    for name in ("npu2", "npu1"):
        device = get_device(name)
        PassManager.parse(f"plan-aie-tiling{{device={name}}}").run(module)  # re-plans every op for this device
        r = build_report(module, device, quant="w4g128 + lm_head g32")
        by = r["decode_ms_per_token_by_overhead"]
        print(f"\n{name} ({device.product}), modelled; card measured on Strix (npu2)")
        print(f"  decode ms/token, short prompts: {r['decode_ms_per_token']:.2f} (overhead once per step "
              f"{by['submission']:.2f}, none {by['none']:.2f}; {r['launches_per_decode_token']} launches); "
              f"card {card_decode:.2f}, card/modelled {card_decode / r['decode_ms_per_token']:.2f}")
        print(f"  DDR floor {r['ddr_floor_ms_per_token']:.2f} ms/token; modelled / floor "
              f"{r['decode_ms_per_token'] / r['ddr_floor_ms_per_token']:.3f}")
        print(f"  DDR bytes per decode token counted from the designs {r['ddr_bytes_per_decode_token'] / 1e9:.4f} GB "
              f"(the plan charges {r['ddr_bytes_per_decode_token_planned'] / 1e9:.4f} GB), minimum "
              f"{r['min_ddr_bytes_per_decode_token'] / 1e9:.4f} GB, ratio "
              f"{r['ddr_bytes_per_decode_token'] / r['min_ddr_bytes_per_decode_token']:.4f}")
        t = r["decode_token_counted"]
        ms = r["decode_ms_per_token_counted"]
        print(f"  counted per decode token: {t['submissions']} submissions, {t['designs_per_token']} designs "
              f"({t['device_configurations']} in the model), {t['reconfigurations']} reconfigurations, "
              f"{t['transfers']} transfers, {t['waits']} waits, {t['instruction_words']} instruction words; "
              f"{ms['total']:.1f} ms/token (DDR {ms['ddr']:.1f}, instructions {ms['instructions']:.2f}, "
              f"reconfigurations {ms['reconfigurations']:.1f} ASSUMED, submissions {ms['submissions']:.1f})")
        for context, c in r["decode_counted_by_context"].items():
            print(f"  counted at context {context:>5}: DDR {c['ddr_bytes'] / 1e9:.4f} GB vs minimum "
                  f"{c['min_ddr_bytes'] / 1e9:.4f} GB ({c['ddr_vs_min']:.4f}x; target <= 1.05), "
                  f"{c['ms_counted']:.1f} ms/token vs floor {c['ddr_floor_ms']:.1f} ms "
                  f"({c['ms_counted'] / c['ddr_floor_ms']:.2f}x; target <= {1.15 if int(context) < 1024 else 1.25})")
        print(f"  padding waste {100 * r['padding_waste']:.3f}%")
        for row in r["latency"]["benchmark_exact"]:
            c = card[row["prompt_tokens"]]
            print(f"  prompt {row['prompt_tokens']:>4}: prefill {row['prefill_ms']:8.1f} ms (card {c.prefill_ms:8.1f}, "
                  f"card/modelled {c.prefill_ms / row['prefill_ms']:5.2f}), {row['ms_per_token']:6.2f} ms/token "
                  f"(card {c.ms_per_token:6.2f}, {c.ms_per_token / row['ms_per_token']:4.2f})")
        for t in r["targets"]:
            print(f"  target {t['text']}: {t['value']:.4f} <= {t['limit']}: {'pass' if t['pass'] else 'FAIL'}"
                  + ("" if name == "npu2" else " (set for npu2)"))


if __name__ == "__main__":
    main()
