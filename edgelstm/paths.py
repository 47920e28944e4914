"""Where the bundled data lives: `edgelstm/firmware_export/` and `edgelstm/models/`.

Both are plain data directories inside the package (a wheel carries them as package data), found
through `importlib.resources` so a checkout, an editable install and a wheel all resolve the same
way. The repository root has `models/` and `firmware_export/` symlinks to them for convenience.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_dir(name: str) -> Path:
    """The package's bundled data directory `name` ("firmware_export" or "models")."""
    path = Path(str(resources.files("edgelstm") / name))
    if not path.is_dir():
        raise FileNotFoundError(f"edgelstm's bundled '{name}' directory is missing: {path}")
    return path
