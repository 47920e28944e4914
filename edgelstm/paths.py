"""Where the bundled data lives: `firmware_export/` and `models/`.

In a checkout (or an editable install) they sit beside the package; a wheel carries them as the
`edgelstm_data` data packages (see pyproject.toml), installed next to `edgelstm/`.
"""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def bundled_dir(name: str) -> Path:
    """The checkout's `name` directory when there is one, else the copy the wheel installed."""
    checkout = _ROOT / name
    return checkout if checkout.is_dir() else _ROOT / "edgelstm_data" / name
