"""Compile time and memory of the 7B config on ``meta``, stage by stage.

Capture (torch.export + import, per function: prefill and decode) and the default
pipeline with w4 g128 + lm_head g32 for ``qwen1.5-7b-chat``: seconds per stage and per
pass, and the process's peak RSS after each stage. Beside it, in the same run, torch-mlir's FX import of the
``qwen2-0.5b`` config (if the optional ``mlir`` extra is installed), in a subprocess,
and the ratio of the two. Targets: the 7B pipeline in < 10 s and < 1.5 GB.

    python benchmarks/compile_time.py
"""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


MLIR_CHILD = """
import json, resource, time
import aielower
from aielower.frontend.mlir_export import export_mlir
model = aielower.load_model("qwen2-0.5b")
t0 = time.perf_counter()
text = export_mlir(model, dialect="torch")
print(json.dumps({"seconds": time.perf_counter() - t0, "chars": len(text),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def torch_mlir_figures() -> dict | str:
    if importlib.util.find_spec("torch_mlir") is None:
        return "torch-mlir not installed (pip install -e '.[mlir]')"
    out = subprocess.run([sys.executable, "-c", MLIR_CHILD], capture_output=True, text=True)
    if out.returncode != 0:
        return "torch-mlir export failed: " + out.stderr.strip().splitlines()[-1]
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import aielower
    from aielower.frontend import import_model, load_model
    from aielower.passes import PassManager

    rows = []
    t0 = time.perf_counter()
    model = load_model("qwen1.5-7b-chat")
    rows.append(("build model on meta", time.perf_counter() - t0, peak_rss_mb()))
    module = import_model(model, "qwen1.5-7b-chat")
    for fn, seconds in module.timings.items():
        rows.append((f"capture @{fn} (torch.export + import)", seconds, peak_rss_mb()))
    quant = aielower.QuantConfig(bits=4, group_size=128, lm_head_group_size=32)
    pm = PassManager.parse(aielower.default_pipeline("ref", quant))
    t0 = time.perf_counter()
    pm.run(module)
    rows.append(("default pipeline (w4 g128 + lm_head g32)", time.perf_counter() - t0, peak_rss_mb()))
    total = sum(r[1] for r in rows)
    prefill_only = total - module.timings["decode"]

    print("qwen1.5-7b-chat on meta")
    print(f"{'stage':<44}{'seconds':>9}{'peak RSS MB':>13}")
    for name, seconds, rss in rows:
        print(f"{name:<44}{seconds:>9.2f}{rss:>13.0f}")
    print(f"{'total':<44}{total:>9.2f}{peak_rss_mb():>13.0f}")
    print(f"{'total without @decode':<44}{prefill_only:>9.2f}{'':>13}")
    print("targets: < 10 s and < 1536 MB (set for the prefill-only pipeline, before decode existed)")
    print("passes:")
    for t in pm.timings:
        print(f"  {t.name:<20}{t.seconds * 1e3:>8.1f} ms  {t.ops_after:>6} ops after")

    mlir = torch_mlir_figures()
    if isinstance(mlir, str):
        print(f"torch-mlir: {mlir}")
    else:
        print(f"torch-mlir fx.export_and_import of qwen2-0.5b (meta): {mlir['seconds']:.2f} s, "
              f"peak RSS {mlir['peak_rss_mb']:.0f} MB, {mlir['chars']} chars of MLIR")
        print(f"ratio aielower 7B total / torch-mlir 0.5B: {total / mlir['seconds']:.2f}")


if __name__ == "__main__":
    main()
