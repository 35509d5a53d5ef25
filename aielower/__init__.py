"""aielower: compile Hugging Face Qwen2-family models for the AMD Ryzen AI NPU (AIE).

    import aielower
    cm = aielower.compile(model, target="ref")   # NumPy reference backend
    logits = cm(input_ids)                       # numpy [batch, seq, vocab]
    print(cm.ir)                                 # the IR

The public names are loaded on first use (PEP 562): ``import aielower.ir``, ``import aielower.passes`` and
``aielower opt`` do not import torch or transformers; ``aielower.compile`` and ``aielower.load_model`` do.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "QuantConfig": "aielower.api",
    "compile": "aielower.api",
    "default_pipeline": "aielower.api",
    "AielowerError": "aielower.errors",
    "CompileError": "aielower.errors",
    "ConversionError": "aielower.errors",
    "IRError": "aielower.errors",
    "ModelError": "aielower.errors",
    "ParseError": "aielower.errors",
    "VerifyError": "aielower.errors",
    "bundled_configs": "aielower.frontend.models",
    "load_model": "aielower.frontend.models",
    "load_tokenizer": "aielower.frontend.models",
    "parse": "aielower.ir",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from aielower.api import QuantConfig, compile, default_pipeline  # noqa: F401
    from aielower.errors import (AielowerError, CompileError, ConversionError, IRError, ModelError,  # noqa: F401
                                 ParseError, VerifyError)
    from aielower.frontend.models import bundled_configs, load_model, load_tokenizer  # noqa: F401
    from aielower.ir import parse  # noqa: F401


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        # a subpackage not imported yet (``import aielower; aielower.passes``), as when this file imported them all
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(target), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
