"""`edgelstm stream` refuses nan/inf samples (they poison the carried state) unless asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
STEP_F = DATA / "tiny_step_float.tflite"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from edgelstm.cli import cli
    from edgelstm.cli._app import run_cli

    code = run_cli(cli, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_nonfinite_csv_sample_is_refused_by_line(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "s.csv"
    src.write_text(f"1,2,3\n0.5,0.5,0.5\n1,{bad},3\n1,2,3\n")
    code, out, err = _cli(capsys, "stream", str(STEP_F), "--input", str(src))
    assert code == 2, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "s.csv:3" in line and "not finite" in line and "--allow-nonfinite" in line
    assert len(out.splitlines()) == 2  # the samples before it were still run and printed
    code, out, err = _cli(capsys, "stream", str(STEP_F), "--input", str(src), "--allow-nonfinite")
    assert code == 0, err
    rows = [ln.split(",") for ln in out.splitlines()]
    assert len(rows) == 4 and all(v != "nan" for v in rows[1])


def test_nonfinite_npy_sample_is_refused_by_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.zeros((6, 3), np.float32)
    x[4, 1] = np.nan
    src = tmp_path / "s.npy"
    np.save(src, x)
    code, _out, err = _cli(capsys, "stream", str(STEP_F), "--input", str(src))
    assert code == 2 and "s.npy[4]" in err and "Traceback" not in err, err
