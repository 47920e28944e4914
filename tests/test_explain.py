"""edgelstm explain: gates located in real step graphs, checked by the cell's own identities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import BadInputError
from edgelstm.explain import colored_text, explain, locate, text_features
from edgelstm.tflite_info import read_tflite

KINDS = ["lstm", "gru", "rnn"]  # stacked LSTM(16) -> LSTM(8); GRU(8); SimpleRNN(8)


@pytest.fixture(scope="module")
def step_models(keras_model_file, calibration_file, tmp_path_factory) -> dict[str, Path]:
    """kind -> directory with <kind>_step_{float,int8}.tflite and manifest.json (real convert)."""
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    out = {}
    for kind in KINDS:
        d = tmp_path_factory.mktemp(f"explain_{kind}")
        cfg = ConvertConfig(
            variants=[Variant.STEP],
            quantizations=[Quantization.FLOAT, Quantization.INT8],
            calibration=str(calibration_file),
            verify_samples=4,
            verify_fail=False,
        )
        convert_model(keras_model_file(kind), d, cfg)
        out[kind] = d
    return out


def _xs(n: int = 30) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, 4)).astype(np.float32)


def _prev(a: np.ndarray) -> np.ndarray:
    return np.vstack([np.zeros((1, a.shape[1])), a[:-1]])


@pytest.mark.parametrize("kind", KINDS)
def test_gates_obey_the_cell_equations(kind: str, step_models) -> None:
    """If a gate were mislabelled (i for f, o for i, z for r) these identities would break."""
    res = explain(step_models[kind] / f"{kind}_step_int8.tflite", _xs())
    assert res.reference is not None and res.reference.quantization == "float"
    expected_layers = {"lstm": 2, "gru": 1, "rnn": 1}[kind]
    assert len(res.layers) == expected_layers
    for spec, sig in zip(res.layers, res.reference.layers, strict=True):
        assert all(v.shape == (30, spec.units) for v in sig.values())
        if spec.kind == "LSTM":
            assert set(sig) == {"i", "f", "g", "o", "h", "c"}
            c = sig["f"] * _prev(sig["c"]) + sig["i"] * sig["g"]
            np.testing.assert_allclose(c, sig["c"], atol=1e-5)
            np.testing.assert_allclose(sig["o"] * np.tanh(sig["c"]), sig["h"], atol=1e-5)
        elif spec.kind == "GRU":
            assert set(sig) == {"z", "r", "g", "h"}
            h = sig["z"] * _prev(sig["h"]) + (1 - sig["z"]) * sig["g"]
            np.testing.assert_allclose(h, sig["h"], atol=1e-5)
        else:
            assert set(sig) == {"pre", "h"}
            np.testing.assert_allclose(np.tanh(sig["pre"]), sig["h"], atol=1e-5)
    # the int8 artifact's own signals: the same identities within a few quantization steps
    for spec, sig in zip(res.layers, res.trace.layers, strict=True):
        if spec.kind == "LSTM":
            c = sig["f"] * _prev(sig["c"]) + sig["i"] * sig["g"]
            assert np.abs(c - sig["c"]).max() < 0.05
        ref = res.reference.layers[res.layers.index(spec)]
        for name in sig:  # within 10 % of the float signal's range (int8 parity bound)
            span = float(np.ptp(ref[name])) or 1.0
            err = float(np.abs(sig[name] - ref[name]).max())
            assert err <= 0.1 * span, (name, err, span)


def test_float_model_traces_equal_streaming_outputs(step_models) -> None:
    """The traced outputs are the step model's outputs (StepRunner over the same stream)."""
    from edgelstm.runtime.stream import StepRunner

    path = step_models["gru"] / "gru_step_float.tflite"
    res = explain(path, _xs())
    runner = StepRunner(path)
    ys = np.stack([runner.push(x) for x in _xs()])
    np.testing.assert_allclose(res.trace.outputs, ys, atol=1e-6)
    assert res.reference is None  # a float model has no float sibling to compare with


def test_cli_writes_html_json_and_pictures(run_cli, step_models, tmp_path: Path) -> None:
    d = step_models["lstm"]
    inp = tmp_path / "x.npy"
    np.save(inp, _xs(50))
    out = tmp_path / "explain"
    code, stdout, err = run_cli(
        "explain", str(d / "lstm_step_int8.tflite"), "--input", str(inp), "-o", str(out), "--json"
    )
    assert code == 0, err[-2000:]
    data = json.loads(stdout)
    assert data["steps"] == 50 and len(data["layers"]) == 2
    assert json.loads((out / "explain.json").read_text())["steps"] == 50
    pngs = sorted(out.glob("*.png"))
    # stream plot + per layer: heatmap and int8-minus-float heatmap
    assert len(pngs) == 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = (out / "explain.html").read_text()
    assert html.count("<img") == 5 and "gate saturation" in html
    code, stdout, _ = run_cli("explain", str(d / "lstm_step_int8.tflite"), "--input", str(inp))
    assert code == 0 and "steps saturated" in stdout and "max |int8 - float|" in stdout


def test_bad_inputs_exit_2(run_cli, step_models, tmp_path: Path) -> None:
    d = step_models["gru"]
    lone = tmp_path / "lone_step.tflite"
    lone.write_bytes((d / "gru_step_int8.tflite").read_bytes())
    cases = [
        ([str(lone), "--recipe", "echo"], "manifest.json"),
        ([str(d / "gru_step_int8.tflite")], "--input FILE or --recipe"),
        ([str(d / "gru_step_int8.tflite"), "--recipe", "no-such"], "unknown recipe"),
        ([str(tmp_path / "missing.tflite"), "--recipe", "echo"], "no such file"),
    ]
    for args, message in cases:
        code, _, err = run_cli("explain", *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)


def test_locate_refuses_a_graph_without_the_layer(step_models) -> None:
    info = read_tflite(step_models["rnn"] / "rnn_step_float.tflite")
    with pytest.raises(BadInputError, match="state1_h_out"):
        locate(info, [{"name": "a", "kind": "SimpleRNN", "units": 8}] * 2)


def test_text_features_and_colouring() -> None:
    text = 'x = f("a(b)")\nyy\n'
    f = text_features(text)
    assert f["inside quotes"][text.index("a")] == 1 and f["inside quotes"][0] == 0
    assert f["bracket depth"][text.index("b")] == 2
    assert f["position in line"][text.index("yy")] == 0 and f["after newline"][text.index("y")]
    html = colored_text("<a>", np.array([1.0, -1.0, 0.0]))
    assert "&lt;" in html and "<a>" not in html and html.count("<span") == 3
