"""The one jinja2 environment of the AIE backend: kernels, designs, the build file and the report render from
``aielower/backends/aie/templates`` through :func:`aielower.templating.environment` (strict, single-line guard,
one name renderer per language)."""

from __future__ import annotations

from aielower.templating import environment

ENV = environment("aielower.backends.aie")

__all__ = ["ENV"]
