"""Names for weights that passes create, derived from Hugging Face names."""

from __future__ import annotations

import os


def fused_weight_name(names: list[str], fused: str) -> str:
    """``[...q_proj.weight, ...k_proj.weight, ...v_proj.weight], "qkv_proj"`` -> ``....qkv_proj.weight``."""
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind(".") + 1] if "." in prefix else ""
    leaf = names[0].rsplit(".", 1)[-1] if "." in names[0] else ""
    return f"{prefix}{fused}" + (f".{leaf}" if leaf in ("weight", "bias") else "")
