"""The CLI speaks one language: the same option names everywhere, --json on every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelstm.cli import COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_offers_json(run_cli, name: str) -> None:
    code, out, err = run_cli(name, "--help")
    assert code == 0, err
    if name == "zoo":
        code, out, err = run_cli("zoo", "list", "--help")
    assert "--json" in out, f"`edgelstm {name}` has no --json"


@pytest.mark.parametrize("name", ["convert", "train", "pipeline", "quantize", "export", "explain",
                                  "search"])  # fmt: skip
def test_output_directory_is_o_outdir(run_cli, name: str) -> None:
    code, out, _ = run_cli(name, "--help")
    assert code == 0 and "-o, --outdir" in out, out


def test_quantize_lists_repeat_or_comma(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli("convert", "m.keras", "-o", str(tmp_path / "o"), "--quantize",
                           "int8,bogus")  # fmt: skip
    assert code == 2 and "'bogus' is not one of" in err
    code, _, err = run_cli("quantize", "m.keras", "-o", str(tmp_path / "o"), "--quantize", "nope")
    assert code == 2 and "'nope' is not one of" in err
    assert not (tmp_path / "o").exists()


def test_step_variant_needs_no_sequence_length(run_cli, tmp_path: Path) -> None:
    """A step model has no sequence length: `--variant step` of a model with a None length
    converts without --seq-len, verified over the calibration windows' length."""
    import numpy as np

    from edgelstm._tf import import_tf

    import_tf()
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4), keras.layers.Dense(1)])
    m.save(tmp_path / "free.keras")
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).standard_normal((8, 7, 3)).astype("f4"))
    code, out, err = run_cli("convert", str(tmp_path / "free.keras"), "-o", str(tmp_path / "o"),
                             "--variant", "step", "--quantize", "float,int8", "--calibration",
                             str(tmp_path / "cal.npy"))  # fmt: skip
    assert code == 0, err[-2000:]
    assert "verified over sequences of 7 steps" in out
    assert sorted(p.name for p in (tmp_path / "o").glob("*.tflite")) == [
        "free_step_float.tflite", "free_step_int8.tflite"
    ]  # fmt: skip
    # the sequence variant still needs a length: it is part of the deployed graph
    code, _, err = run_cli("convert", str(tmp_path / "free.keras"), "-o", str(tmp_path / "s"),
                           "--variant", "sequence")  # fmt: skip
    assert code == 2 and "--seq-len" in err


def test_dynamic_range_says_why_weights_stay_float(keras_model_file, tmp_path: Path) -> None:
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    m = convert_model(
        keras_model_file("lstm_seq"),
        tmp_path,
        ConvertConfig(variants=[Variant.SEQUENCE], quantizations=[Quantization.DYNAMIC]),
    )
    (art,) = m.artifacts
    assert art.fused_lstm
    assert any("only tensors of 1024 elements or more" in n for n in art.notes), art.notes


def test_int16x8_to_c_names_the_layer_and_what_to_export(
    keras_model_file, calibration_file, tmp_path: Path
) -> None:
    from edgelstm.convert import convert_model
    from edgelstm.errors import EdgeLSTMError
    from edgelstm.export.cengine import export_c
    from edgelstm.types import ConvertConfig, Quantization, Variant

    m = convert_model(
        keras_model_file("lstm_seq"),
        tmp_path / "a",
        ConvertConfig(
            variants=[Variant.STEP],
            quantizations=[Quantization.INT16X8],
            calibration=str(calibration_file),
            verify_fail=False,
        ),
    )
    with pytest.raises(EdgeLSTMError) as err:
        export_c(tmp_path / "a" / m.artifacts[0].file, tmp_path / "c", name="m", verify=[],
                 manifest=m.to_dict())  # fmt: skip
    text = str(err.value)
    assert "not int16x8 (int16 activations)" in text and "hybrid" not in text
    assert "lstm_seq_step_int8.tflite" in text  # what to export instead
    assert not (tmp_path / "c").exists()


def test_engine_benchmark_module_runs(run_cli) -> None:
    """README cites `python -m benchmarks.cengine`: it is a command, not a no-op."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cengine", "--help"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert proc.returncode == 0 and "--units" in proc.stdout and "--core" in proc.stdout


def test_convert_output_fits_120_columns_on_a_terminal(keras_model_file, tmp_path: Path) -> None:
    """On a terminal (script(1) gives the command a pty) every line fits 120 columns; piped
    output keeps one note per line."""
    import shutil
    import subprocess
    import sys

    if shutil.which("script") is None:
        pytest.skip("script(1) not installed (apt install bsdutils)")
    cmd = f"{sys.executable} -m edgelstm -q convert {keras_model_file('gru')} -o {tmp_path / 'o'}"
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    lines = proc.stdout.replace("\r", "").splitlines()
    assert any(line.startswith("parity:") for line in lines), lines
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)


@pytest.mark.parametrize(
    ("target", "option", "owner"),
    [("tflm", ["--core", "m55"], "c"), ("tflm", ["--verify", "host"], "c"),
     ("c", ["--progmem"], "tflm")],
    ids=["tflm-core", "tflm-verify", "c-progmem"],
)  # fmt: skip
def test_export_option_of_another_target_is_refused(
    run_cli, target: str, option: list[str], owner: str, tmp_path: Path
) -> None:
    """Export targets come from the registry: --target lists them, and an option that belongs
    to another target is one line naming that target, exit 2, before anything is written."""
    from edgelstm.export import TARGETS

    code, out, _ = run_cli("export", "--help")
    assert code == 0 and f"[{'|'.join(TARGETS)}]" in out
    model = Path(__file__).parent / "data" / "tiny_step_int8.tflite"
    code, _, err = run_cli("export", str(model), "--target", target, "-o", str(tmp_path / "o"),
                           *option)  # fmt: skip
    assert code == 2 and err.strip() == f"error: {option[0]} applies to --target {owner} only"
    assert not (tmp_path / "o").exists()
