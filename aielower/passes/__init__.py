"""Passes over the IR, pipeline strings and the PassManager.

Importing this package registers the built-in passes.
"""

from aielower.passes import (
    canonicalize,
    cse,
    dce,
    fuse_attention,
    fuse_mlp,
    fuse_norm,
    fuse_qkv,
    plan_aie_tiling,
    quantize_linear,
)
from aielower.passes.base import PASS_REGISTRY, ModulePass, Option, register_pass
from aielower.passes.manager import PassManager, PassTiming
from aielower.passes.pipeline import available_passes, parse_pipeline
from aielower.passes.rewriter import (
    PatternPass,
    RewritePattern,
    Rewriter,
    defined_before,
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
    "PatternPass",
    "RewritePattern",
    "Rewriter",
    "available_passes",
    "canonicalize",
    "cse",
    "dce",
    "defined_before",
    "fuse_attention",
    "fuse_mlp",
    "fuse_norm",
    "fuse_qkv",
    "op_users",
    "parse_pipeline",
    "producer",
    "quantize_linear",
    "register_pass",
    "single_user",
]
