"""Shared and faulty output directories: manifests merged across runs, another model refused,
concurrent converts serialized by the lock, unwritable -o and a full disk reported up front."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgelstm.convert import convert_model
from edgelstm.errors import BadInputError
from edgelstm.types import ConvertConfig, Quantization, Variant

SEQ = [Variant.SEQUENCE]


def _cfg(*quants: Quantization, **kw) -> ConvertConfig:
    return ConvertConfig(variants=SEQ, quantizations=list(quants), verify_samples=2, **kw)


def test_second_run_merges_and_another_model_is_refused(
    keras_model_file, calibration_file, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    model = keras_model_file("lstm_seq")
    convert_model(model, out, _cfg(Quantization.FLOAT))
    m = convert_model(model, out, _cfg(Quantization.INT8, calibration=str(calibration_file)))
    files = ["lstm_seq_sequence_float.tflite", "lstm_seq_sequence_int8.tflite"]
    assert [a.file for a in m.artifacts] == files
    on_disk = json.loads((out / "manifest.json").read_text())
    assert [a["file"] for a in on_disk["artifacts"]] == files
    assert all((out / f).is_file() for f in files)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(BadInputError, match="different model"):
        convert_model(keras_model_file("gru"), out, _cfg(Quantization.FLOAT))
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*files, ".edgelstm.lock", "manifest.json"]
    )


def test_concurrent_converts_into_one_directory(keras_model_file, tmp_path: Path) -> None:
    out = tmp_path / "out"
    model = str(keras_model_file("lstm_seq"))
    quants = ["float16", "dynamic"]
    base = [sys.executable, "-m", "edgelstm", "convert", model, "-o", str(out)]
    procs = [
        subprocess.Popen(
            [*base, "--quantize", q, "--variant", "sequence", "--verify-samples", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for q in quants
    ]
    for p in procs:
        _o, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(a["file"] for a in man["artifacts"]) == sorted(
        f"lstm_seq_sequence_{q}.tflite" for q in quants
    )
    assert all((out / a["file"]).is_file() for a in man["artifacts"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_unusable_output_path_fails_before_loading(tmp_path: Path, run_cli) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    missing_model = tmp_path / "nope.keras"  # never reached: -o is checked first
    code, _out, err = run_cli("convert", str(missing_model), "-o", str(blocker / "out"))
    assert code == 2 and "cannot create the output directory" in err, err
    code, _out, err = run_cli("convert", str(missing_model), "-o", str(blocker))
    assert code == 2 and "exists and is a file" in err, err


def test_verify_samples_beyond_memory_is_refused(keras_model_file, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out"
    code, _out, err = run_cli(
        "convert", str(keras_model_file("lstm_seq")), "-o", str(out), "--verify-samples", "1e9"
    )
    assert code == 2 and "Traceback" not in err, err
    assert re.search(r"--verify-samples 1000000000 would need about [\d.]+ GiB of memory", err), err
    assert not out.exists()
    code, _out, err = run_cli("convert", "m.keras", "-o", str(out), "--verify-samples", "2.5")
    assert code == 2 and "not a whole number" in err, err


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_says_no_space_left(keras_model_file, tmp_path: Path, run_cli) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        code, _out, err = run_cli(
            "convert",
            str(keras_model_file("lstm_seq")),
            "-o",
            str(disk / "out"),
            "--variant",
            "sequence",
            "--verify-samples",
            "2",
        )
        assert code == 2, err
        assert "no space left on device" in err.lower() and "Traceback" not in err, err
        assert "JSONDecodeError" not in err
        assert [p.name for p in disk.iterdir()] == []  # nothing half-written
    finally:
        subprocess.run(["umount", str(disk)], check=False)
