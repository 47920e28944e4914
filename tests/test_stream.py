"""StepRunner and `edgelstm stream`: state carried across pushes, reset, save/restore, bad input."""

from __future__ import annotations

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
    from edgelstm.convert.orchestrate import convert_model
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
