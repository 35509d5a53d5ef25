"""Passes over the IR, pipeline strings and the PassManager.

Importing this package registers the built-in, target-neutral passes; a backend's passes (``plan-aie-tiling``) live
with the backend and are imported when a pipeline names them.
"""

from aielower.passes import (
    canonicalize,
    cse,
    dce,
    fuse_attention,
    fuse_mlp,
    fuse_norm,
    fuse_qkv,
    quantize_linear,
)
from aielower.passes.base import PASS_REGISTRY, ModulePass, Option, PipelineWarning, option, pass_class, register_pass
from aielower.passes.manager import PassManager, PassTiming
from aielower.passes.pipeline import available_passes, parse_pipeline
from aielower.passes.rewriter import (
    PatternPass,
    RewritePattern,
    Rewriter,
    defined_before,
    match_commutative,
    op_users,
    producer,
    single_user,
)

__all__ = [
    "PASS_REGISTRY",
    "ModulePass",
    "Option",
    "PassManager",
    "PassTiming",
    "PipelineWarning",
    "PatternPass",
    "RewritePattern",
    "Rewriter",
    "available_passes",
    "canonicalize",
    "cse",
    "dce",
    "defined_before",
    "match_commutative",
    "fuse_attention",
    "fuse_mlp",
    "fuse_norm",
    "fuse_qkv",
    "op_users",
    "option",
    "pass_class",
    "parse_pipeline",
    "producer",
    "quantize_linear",
    "register_pass",
    "single_user",
]
