"""The HTML reports as a reader sees them: rendered in headless Chromium at 1280 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from browser_check import assert_readable

DATA = Path(__file__).parent / "data"


def test_explain_report_renders(tmp_path: Path) -> None:
    from edgelstm.explain import explain, save

    xs = np.load(DATA / "tiny_eval.npz")["x"][:4].reshape(-1, 3)  # 4 windows as one stream
    res = explain(DATA / "tiny_step_int8.tflite", xs)
    save(res, tmp_path)
    r = assert_readable(tmp_path / "explain.html", min_images=3)
    assert r.height > 900  # heatmaps and tables below the fold, not squeezed


def test_explain_text_colouring_renders(tmp_path: Path) -> None:
    """A long unbroken line of coloured characters wraps instead of widening the page."""
    from edgelstm.explain import colored_text
    from edgelstm.report import Html, Report

    text = "x" * 3000 + "\n" + "def f(a, b):  # 'quoted'\n" * 20
    act = np.sin(np.arange(len(text)) / 7.0)
    page = tmp_path / "t.html"
    page.write_text(Report("t", sections=[Html("coloured", colored_text(text, act))]).to_html())
    r = assert_readable(page, min_images=0)
    assert r.height > 400


def test_profile_report_renders(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "profile.html"
    code, _, err = run_cli(
        "profile", *(str(p) for p in sorted(DATA.glob("*.tflite"))), "--runs", "20",
        "--warmup", "2", "--data", str(DATA / "tiny_eval.npz"), "--report", str(out),
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert_readable(out, min_images=1)


def test_profile_terminal_tables_fit_120_columns(run_cli) -> None:
    """Every runtime side by side still fits a 120-column terminal; one kind of value a column."""
    code, out, err = run_cli(
        "profile", *(str(p) for p in sorted(DATA.glob("*.tflite"))), "--runtime", "all",
        "--runs", "10", "--warmup", "1", "--data", str(DATA / "tiny_eval.npz"),
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert max(len(line) for line in out.splitlines()) <= 120, out
    headers = [line for line in out.splitlines() if line.startswith("model ")]
    assert len(headers) == 3 and "TFLM arena KB" in headers[2] and "peak RSS MB" in headers[2]
    assert "arena" not in headers[0] + headers[1]


def test_compared_numbers_show_their_difference() -> None:
    from edgelstm.report import distinct

    assert distinct(0.102, 0.104) == ["0.102", "0.104"]  # not "0.10 | 0.10"
    assert distinct(1.0, 1.0) == ["1.00", "1.00"]
    assert distinct(99.609, 100.0, 99.609) == ["99.61", "100.00", "99.61"]
    assert distinct(0.1000001, 0.1000002) == ["0.100000", "0.100000"]  # at most 6 decimals
