"""The CLI shell: fast help, one-line errors with exit code 2, no partial output, --json."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


def test_help_and_version_do_not_import_tensorflow() -> None:
    code = (
        "import sys; from edgelstm.cli import main\n"
        "for args in (['--help'], ['--version'], ['convert', '--help'], ['inspect', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n        assert e.code == 0, (args, e.code)\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "convert" in proc.stdout and "0.1.0" in proc.stdout


def _assert_one_line_error(code: int, out: str, err: str, needle: str) -> None:
    assert code == 2, (code, out, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and needle in lines[-1], err
    assert "Traceback" not in err
    assert not [
        line for line in lines if line.startswith(("I0000", "W0000", "INFO:", "WARNING:"))
    ], err


def test_bad_inputs_exit_2(run_cli, tmp_path: Path, keras_model_file, calibration_file) -> None:
    out = tmp_path / "out"
    # missing file
    _assert_one_line_error(
        *run_cli("convert", str(tmp_path / "nope.keras"), "-o", str(out)), "no such file"
    )
    # not a model
    txt = tmp_path / "notes.keras"
    txt.write_text("hello")
    _assert_one_line_error(*run_cli("convert", str(txt), "-o", str(out)), "not a valid .keras file")
    # truncated .keras
    good = keras_model_file("lstm")
    trunc = tmp_path / "trunc.keras"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _assert_one_line_error(
        *run_cli("convert", str(trunc), "-o", str(out)), "not a valid .keras file"
    )
    # corrupt .h5
    h5 = tmp_path / "bad.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    _assert_one_line_error(*run_cli("convert", str(h5), "-o", str(out)), "bad.h5")
    # output path is a file
    f = tmp_path / "file.txt"
    f.write_text("x")
    _assert_one_line_error(*run_cli("convert", str(good), "-o", str(f)), "is a file")
    # calibration of the wrong shape
    bad_cal = tmp_path / "cal.npy"
    import numpy as np

    np.save(bad_cal, np.zeros((3, 12), np.float32))
    _assert_one_line_error(
        *run_cli(
            "convert",
            str(good),
            "-o",
            str(out),
            "--quantize",
            "int8",
            "--calibration",
            str(bad_cal),
        ),
        "calibration data has shape",
    )
    # a layer edgelstm cannot lower
    _assert_one_line_error(
        *run_cli("convert", str(keras_model_file("unsupported")), "-o", str(out)),
        "UnitNormalization",
    )
    # inspect: not a tflite / truncated tflite
    _assert_one_line_error(*run_cli("inspect", str(f.with_suffix(".tflite"))), "no such file")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\0" * 64)
    _assert_one_line_error(*run_cli("inspect", str(fake)), "not a TFLite flatbuffer")
    assert not out.exists(), "nothing may be written when conversion fails"


def test_lambda_layer_refused_unless_unsafe(run_cli, tmp_path: Path) -> None:
    from edgelstm._tf import import_tf

    import_tf()
    import keras

    model = keras.Sequential(
        [
            keras.Input((5, 2)),
            keras.layers.Lambda(lambda v: v * 2.0, name="double"),
            keras.layers.LSTM(3),
        ]
    )
    path = tmp_path / "lam.keras"
    model.save(path)
    _assert_one_line_error(
        *run_cli("convert", str(path), "-o", str(tmp_path / "o")),
        "layer 'double' is a Lambda layer",
    )
    code, _, err = run_cli("convert", str(path), "-o", str(tmp_path / "o"), "--unsafe")
    # Loaded now, but a Lambda cannot be lowered: named again, still exit 2.
    _assert_one_line_error(code, "", err, "double")


def test_convert_json_and_inspect_roundtrip(run_cli, keras_model_file, tmp_path: Path) -> None:
    out = tmp_path / "o"
    code, stdout, err = run_cli(
        "convert", str(keras_model_file("gru")), "-o", str(out), "--variant", "step", "--json"
    )
    assert code == 0, err
    manifest = json.loads(stdout)
    assert manifest == json.loads((out / "manifest.json").read_text())
    art = manifest["artifacts"][0]
    assert art["variant"] == "step" and art["states"][0]["input"] == "state0_h"
    code, stdout, err = run_cli("inspect", str(out / art["file"]), "--json")
    assert code == 0, err
    info = json.loads(stdout)
    assert info["macs_per_invoke"] == art["macs_per_invoke"] > 0
    assert info["states"][0]["output"] == "state0_h_out"
    code, stdout, _ = run_cli("inspect", str(keras_model_file("bidi")))
    assert code == 0 and "streamable: no" in stdout and "Bidirectional" in stdout


@pytest.mark.parametrize("bad", ["--variant=nope", "--quantize=int4"])
def test_bad_option_values(run_cli, keras_model_file, tmp_path: Path, bad: str) -> None:
    code, _, err = run_cli("convert", str(keras_model_file("lstm")), "-o", str(tmp_path / "o"), bad)
    assert code == 2 and "Invalid value" in err


def test_corrupt_keras_zip_member(tmp_path: Path, run_cli) -> None:
    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{not json")
    _assert_one_line_error(
        *run_cli("convert", str(path), "-o", str(tmp_path / "o")), "not a valid .keras file"
    )


def test_inspect_tflite_without_tensorflow(run_cli, keras_model_file, tmp_path: Path) -> None:
    """The runtime side: inspecting a .tflite must work where TensorFlow cannot be imported."""
    out = tmp_path / "o"
    code, _, err = run_cli(
        "convert", str(keras_model_file("gru")), "-o", str(out), "--variant", "step"
    )
    assert code == 0, err
    tflite = next(out.glob("*.tflite"))
    script = (
        "import sys, json\n"
        "sys.modules['tensorflow'] = None; sys.modules['tf_keras'] = None; sys.modules['keras'] = None\n"
        "from edgelstm.cli import main\n"
        f"main(['inspect', {str(tflite)!r}, '--json'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["states"][0]["input"] == "state0_h"
