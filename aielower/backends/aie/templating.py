"""The one jinja2 environment of the AIE backend: kernels, designs, the build file and the report render from
``aielower/backends/aie/templates`` with StrictUndefined, so a missing value is an error, never empty text."""

from __future__ import annotations

import jinja2

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("aielower.backends.aie", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

__all__ = ["ENV"]
