"""The one Jinja2 setup for every generated C file (TFLite Micro export, C engine, native runtime).

    render(directory, "model.c.j2", ctx) -> str

Templates live beside the fixed sources they go with (firmware_export/tflm/,
firmware_export/cengine/templates/, firmware_export/cengine/native/). Undefined names are errors
(a typo must not print an empty string into C), block tags take their own line without leaving
blank lines behind (trim_blocks, lstrip_blocks), and the final newline is kept.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from edgelstm.codegen.c import c_float
from edgelstm.errors import MissingDependencyError


@functools.cache
def environment(directory: Path, extra: str = "export") -> Any:
    """A jinja2.Environment loading from `directory` (cached per directory). `extra` is the
    pip extra named when jinja2 is missing."""
    try:
        import jinja2
    except ImportError as exc:
        raise MissingDependencyError("jinja2", "rendering firmware templates", extra) from exc
    if not directory.is_dir():
        raise MissingDependencyError("firmware_export templates", f"export (looked in {directory})")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # C sources, not HTML
    )
    env.filters["cfloat"] = c_float
    return env


def render(directory: Path, template: str, ctx: dict[str, Any]) -> str:
    """`template` (a path relative to `directory`) rendered with `ctx`."""
    return environment(directory).get_template(template).render(**ctx)
