"""A convert stage that runs long says so periodically (the CLI's heartbeat)."""

from __future__ import annotations

import time

from edgelstm.cli.convert import _Heartbeat


class _App:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)


def test_long_stage_reports_while_it_runs() -> None:
    app = _App()
    with _Heartbeat(app, every=0.05) as beat:  # type: ignore[arg-type]
        beat.stage("reference outputs")
        time.sleep(0.4)
    n = len(app.lines)
    assert n >= 3 and all("still reference outputs" in ln for ln in app.lines), app.lines
    time.sleep(0.2)
    assert len(app.lines) == n  # stops with the run
