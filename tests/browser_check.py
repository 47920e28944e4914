"""Look at a generated HTML report the way a reader does: headless Chromium renders it, we keep
a screenshot and measure the laid-out page (horizontal overflow, images that failed to load)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Flags for a closed network: no background fetches, no first-run or sync traffic.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
WIDTH, HEIGHT = 1280, 900

_PROBE = """<script>window.addEventListener('load', () => {
  const w = window.innerWidth, imgs = [...document.images];
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > w + 1).map(e => e.tagName);
  document.title = 'PROBE' + JSON.stringify({scroll_width: document.documentElement.scrollWidth,
    width: w, images: imgs.length, broken: imgs.filter(i => !i.complete || !i.naturalWidth).length,
    too_wide: [...new Set(wide)].slice(0, 8), height: document.documentElement.scrollHeight});
});</script>"""


@dataclass
class Rendered:
    png: bytes
    scroll_width: int
    width: int
    images: int
    broken: int
    too_wide: list[str]
    height: int

    @property
    def overflows(self) -> bool:
        return self.scroll_width > self.width or bool(self.too_wide)


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (apt install chromium)")
    return exe


def render(html: Path, png: Path | None = None) -> Rendered:
    """Screenshot `html` at 1280 px wide and measure its layout after load."""
    exe = chromium()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html.read_text().replace("</body>", _PROBE + "</body>", 1))
        common = [exe, *FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={WIDTH},{HEIGHT}"]
        dom = subprocess.run(
            [*common, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        m = re.search(r"<title>PROBE(.*?)</title>", dom.stdout, re.S)
        assert m, f"chromium did not run the layout probe: {dom.stderr[-800:]}"
        probe = json.loads(m.group(1).replace("&quot;", '"'))
        shot = Path(tmp) / "shot.png"
        subprocess.run(
            [*common, f"--screenshot={shot}", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        data = shot.read_bytes()
    if png is not None:
        png.write_bytes(data)
    return Rendered(png=data, **probe)


def distinct_colours(png: bytes) -> int:
    """How many colours a screenshot has (a blank or failed render has one or two)."""
    import io

    from matplotlib import image

    arr = image.imread(io.BytesIO(png), format="png")
    flat = (arr[..., :3] * 255).astype("uint8").reshape(-1, 3)
    import numpy as np

    return len(np.unique(flat, axis=0))


def assert_readable(html: Path, min_images: int = 1) -> Rendered:
    """The page renders, is not blank, every image loads, nothing overflows 1280 px."""
    r = render(html)
    assert r.png[:8] == b"\x89PNG\r\n\x1a\n" and distinct_colours(r.png) > 20, html
    assert r.broken == 0 and r.images >= min_images, (r.images, r.broken)
    assert not r.overflows, f"{html.name} overflows {r.width} px: {r.scroll_width}, {r.too_wide}"
    return r
