"""pyproject.toml lists the packages explicitly (the data packages need it): keep it complete."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_every_subpackage_and_data_dir_is_in_the_wheel_config() -> None:
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgelstm").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    # the bundled data: what export (templates, kernels) and zoo (models) read at run time
    assert cfg["package-dir"] == {
        "edgelstm_data.firmware_export": "firmware_export",
        "edgelstm_data.models": "models",
    }
    assert all(cfg["package-data"][k] == ["**/*"] for k in cfg["package-dir"])
