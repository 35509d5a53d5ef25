"""aielower: compile Hugging Face Qwen2-family models for the AMD Ryzen AI NPU (AIE).

    import aielower
    cm = aielower.compile(model, target="ref")   # NumPy reference backend
    logits = cm(input_ids)                       # numpy [batch, seq, vocab]
    print(cm.ir)                                 # the IR
"""

from aielower.api import QuantConfig, compile, default_pipeline
from aielower.errors import AielowerError, CompileError, ConversionError, IRError, ModelError, ParseError, VerifyError
from aielower.frontend import bundled_configs, load_model, load_tokenizer
from aielower.ir import parse

__version__ = "0.1.0"

__all__ = [
    "AielowerError",
    "CompileError",
    "ConversionError",
    "IRError",
    "ModelError",
    "ParseError",
    "QuantConfig",
    "VerifyError",
    "bundled_configs",
    "compile",
    "default_pipeline",
    "load_model",
    "load_tokenizer",
    "parse",
]
