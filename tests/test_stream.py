"""StepRunner and `edgelstm stream`: state carried across pushes, reset, save/restore, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import BadInputError
from edgelstm.runtime.stream import StepRunner

REPO = Path(__file__).resolve().parent.parent
ECHO = REPO / "models" / "echo"


@pytest.fixture(scope="module")
def echo_step(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    out = tmp_path_factory.mktemp("echo")
    cfg = ConvertConfig(
        variants=[Variant.STEP, Variant.SEQUENCE],
        quantizations=[Quantization.INT8],
        calibration=str(ECHO / "calibration.npz"),
    )
    convert_model(ECHO / "model.keras", out, cfg)
    return out


def test_runner_echoes_the_stream_and_resets(echo_step: Path) -> None:
    runner = StepRunner(echo_step / "model_step_int8.tflite")
    bits = np.random.default_rng(7).integers(0, 2, 200).astype(np.float32)
    outs = np.array([runner.push([b])[0] for b in bits])
    # A 200-step stream, far longer than the 32-step training windows: still echoes with delay 3.
    assert np.mean((outs[3:] > 0.5) == (bits[:-3] > 0.5)) >= 0.99
    saved = runner.get_state()
    nxt = runner.push([1.0])
    runner.reset()
    first = runner.push([1.0])
    runner.reset()
    assert np.array_equal(runner.push([1.0]), first)  # same input after reset -> same output
    runner.set_state(saved)
    assert np.array_equal(runner.push([1.0]), nxt)  # restored state resumes the stream


def test_runner_refuses_sequence_models_and_bad_samples(echo_step: Path) -> None:
    with pytest.raises(BadInputError, match="not a step model"):
        StepRunner(echo_step / "model_sequence_int8.tflite")
    runner = StepRunner(echo_step / "model_step_int8.tflite")
    with pytest.raises(BadInputError, match="needs 1 value"):
        runner.push([1.0, 2.0])


def test_stream_cli_stdin_blank_line_resets(echo_step: Path) -> None:
    text = "1\n0\n1\n1\n\n1\n0\n1\n1\n"
    proc = subprocess.run(
        [sys.executable, "-m", "edgelstm", "stream", str(echo_step / "model_step_int8.tflite")],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 8 and lines[:4] == lines[4:]  # the blank line reset the state
    bad = subprocess.run(
        [sys.executable, "-m", "edgelstm", "stream", str(echo_step / "model_step_int8.tflite")],
        input="1\nabc\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        bad.returncode == 2
        and "not a row of numbers" in bad.stderr
        and "Traceback" not in bad.stderr
    )


# --- `edgelstm stream` on the committed fixtures (tests/data) ---------------------------------

DATA = REPO / "tests" / "data"
STEP_F = DATA / "tiny_step_float.tflite"
STEP_Q = DATA / "tiny_step_int8.tflite"
SEQ_F = DATA / "tiny_sequence_float.tflite"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from edgelstm.cli import cli
    from edgelstm.cli._app import run_cli

    code = run_cli(cli, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return np.load(DATA / "tiny_eval.npz")["x"][:2].reshape(16, 3)  # one stream of 16 steps


@pytest.mark.parametrize("model", [STEP_F, STEP_Q])
def test_stream_npy_to_npy_with_reset_every(
    model: Path, samples: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp, out = tmp_path / "in.npy", tmp_path / "sub" / "out.npy"
    np.save(inp, samples)
    code, stdout, err = _cli(
        capsys,
        "stream",
        str(model),
        "--input",
        str(inp),
        "--output",
        str(out),
        "--reset-every",
        "8",
    )
    assert code == 0, err
    assert stdout == ""  # data went to the file
    got = np.load(out)
    runner = StepRunner(model)
    want = np.concatenate([runner.run(samples[:8]), runner.run(samples[8:])])  # run() resets
    np.testing.assert_array_equal(got, want)
    assert np.abs(got[8:] - runner.run(samples[:8], reset=False)).max() > 0  # reset mattered
    assert not list(out.parent.glob(".*"))  # no temp file left behind


def test_stream_csv_file_and_csv_output(
    samples: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp, out = tmp_path / "in.csv", tmp_path / "out.csv"
    inp.write_text("".join(",".join(f"{v:.9g}" for v in row) + "\n" for row in samples[:6]))
    code, _, err = _cli(capsys, "stream", str(STEP_F), "--input", str(inp), "--output", str(out))
    assert code == 0, err
    got = np.loadtxt(out, delimiter=",")
    want = StepRunner(STEP_F).run(samples[:6])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # %.6g text
    code, stdout, err = _cli(
        capsys, "stream", str(STEP_F), "--input", str(inp), "--runtime", "tflm"
    )
    if "tflite-micro" not in err:
        assert code == 0, err
        np.testing.assert_allclose(
            np.loadtxt(stdout.splitlines(), delimiter=","), want, rtol=1e-5, atol=1e-6
        )


def test_stream_bad_input(
    samples: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_line_error(
        *_cli(capsys, "stream", str(SEQ_F), "--input", "/dev/null")[::2], "not a step model"
    )
    notes = tmp_path / "notes.tflite"
    notes.write_text("some text, not a model\n")
    _one_line_error(*_cli(capsys, "stream", str(notes))[::2], "not a TFLite flatbuffer")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(STEP_F.read_bytes()[:2000])
    _one_line_error(*_cli(capsys, "stream", str(cut))[::2], "cut.tflite")
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((5, 4), np.float32))
    _one_line_error(
        *_cli(capsys, "stream", str(STEP_F), "--input", str(wide))[::2], "needs 3 value(s), got 4"
    )
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((2, 5, 3), np.float32))
    _one_line_error(*_cli(capsys, "stream", str(STEP_F), "--input", str(cube))[::2], "[N, D]")
    short = tmp_path / "short.csv"
    short.write_text("1,2,3\n4,5\n")
    _one_line_error(*_cli(capsys, "stream", str(STEP_F), "--input", str(short))[::2], "short.csv:2")
    _one_line_error(
        *_cli(capsys, "stream", str(STEP_F), "--input", str(tmp_path / "nope.csv"))[::2],
        "nope.csv",
    )
    _one_line_error(
        *_cli(capsys, "stream", str(STEP_F), "--output", str(tmp_path / "o.txt"))[::2],
        "--output must end in .npy or .csv",
    )


@pytest.fixture(scope="module")
def token_step(keras_model_file, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Embedding(20) -> LSTM step model (input: one int32 token id per step)."""
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    out = tmp_path_factory.mktemp("emb")
    cfg = ConvertConfig(variants=[Variant.STEP], quantizations=[Quantization.FLOAT])
    convert_model(keras_model_file("emb"), out, cfg)
    return next(out.glob("*_step_float.tflite"))


def test_stream_token_model(
    token_step: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    runner = StepRunner(token_step)
    assert runner.token_input and runner.vocab == 20 and runner.input_size == 1
    tokens = [3, 5, 19, 0, 7]
    want = runner.run(np.array(tokens))
    assert want.shape == (5, 20)
    text = "\n".join(map(str, tokens)) + "\n\n" + "\n".join(map(str, tokens[:2])) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, out, err = _cli(capsys, "stream", str(token_step))
    assert code == 0, err
    got = np.loadtxt(out.splitlines(), delimiter=",")
    np.testing.assert_allclose(got[:5], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got[5:], got[:2])  # blank line = reset
    for bad, needle in (("25\n", "outside [0, 20)"), ("2.5\n", "integer token ids")):
        monkeypatch.setattr("sys.stdin", io.StringIO(bad))
        _one_line_error(*_cli(capsys, "stream", str(token_step))[::2], needle)
    # profile feeds seeded token ids inside the vocabulary when no --data is given
    code, out, err = _cli(capsys, "-q", "profile", str(token_step), "--runs", "10", "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0]["latency"]["runs"] == 10
