"""Packaging: the bundled data ships inside the package and installs without setuptools warnings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgelstm.paths import bundled_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_packages_are_discovered_with_their_data() -> None:
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # namespace discovery picks up every subpackage and the data directories alike
    assert cfg["packages"]["find"] == {"include": ["edgelstm*"], "namespaces": True}
    assert cfg["package-data"] == {"*": ["*"]}
    assert "package-dir" not in cfg


@pytest.mark.parametrize("name", ["firmware_export", "models"])
def test_bundled_dirs_live_inside_the_package(name: str) -> None:
    d = bundled_dir(name)
    assert d.is_dir() and d.parent == ROOT / "edgelstm", d
    # the repository-root convenience link points at the same directory
    assert (ROOT / name).resolve() == d.resolve()
