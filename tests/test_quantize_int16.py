"""int16x8 sequence models with the fused LSTM (issue #4 B): real converter, real TFLite Micro.

The converter refuses 16x8 for UNIDIRECTIONAL_SEQUENCE_LSTM; `edgelstm convert` then requantizes
its int8 model (edgelstm/tflite/int16x8.py). These tests run the result in the tflite-micro
interpreter and compare it with the Keras model on inputs it was not calibrated on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgelstm.convert import int16x8 as int16
from edgelstm.errors import BadInputError
from edgelstm.tflite.int16x8 import _pot_scale
from edgelstm.tflite_info import read_tflite
from edgelstm.types import ConvertConfig, Quantization, Variant

T, D = 12, 4  # tests/conftest.py's model shape

pytest.importorskip("tflite_micro")


def _convert(model: Path, out: Path, cal: Path, quants: list[Quantization]):
    from edgelstm.convert import convert_model

    cfg = ConvertConfig(
        variants=[Variant.SEQUENCE], quantizations=quants, calibration=str(cal), verify_fail=False
    )
    return convert_model(model, out, cfg)


def _keras_and_inputs(model_path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh seeded inputs (not the calibration data) and the Keras model's outputs on them."""
    import keras

    from edgelstm.convert.verify import keras_reference

    xs = np.random.default_rng(seed).standard_normal((n, T, D)).astype(np.float32)
    model = keras.saving.load_model(model_path, compile=False)
    return xs, keras_reference(model, xs)


def _run(path: Path, runtime: str, xs: np.ndarray) -> np.ndarray:
    from edgelstm.runtime.backends import load_backend

    backend = load_backend(path, runtime)
    outs = []
    for x in xs:
        backend.reset()
        outs.append(backend.run({"x": x[None]})["y"][0])
    return np.stack(outs)


@pytest.fixture(scope="module")
def lstm_seq_artifacts(keras_model_file, calibration_file, tmp_path_factory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("int16") / "out"
    man = _convert(
        keras_model_file("lstm_seq"),
        out,
        calibration_file,
        [Quantization.INT8, Quantization.INT16X8],
    )
    return out, man


def test_int16x8_sequence_runs_in_tflm_and_matches_keras(
    keras_model_file, lstm_seq_artifacts
) -> None:
    out, man = lstm_seq_artifacts
    art = {a.quantization: a for a in man.artifacts}[Quantization.INT16X8]
    assert art.file == "lstm_seq_sequence_int16x8.tflite"
    assert art.fused_lstm and "UNIDIRECTIONAL_SEQUENCE_LSTM" in art.ops
    assert int16.PATH_NOTE in art.notes
    # Verified by convert itself, in TFLite Micro, within the documented 2 % bound.
    assert art.parity.runtime == "tflm" and art.parity.passed
    assert [(t.dtype, t.zero_point) for t in art.inputs + art.outputs] == [("int16", 0)] * 2

    xs, ref = _keras_and_inputs(keras_model_file("lstm_seq"), n=12, seed=7)
    got16 = _run(out / art.file, "tflm", xs)
    got8 = _run(out / "lstm_seq_sequence_int8.tflite", "tflm", xs)
    err16, err8 = np.abs(got16 - ref).max(), np.abs(got8 - ref).max()
    span = float(ref.max() - ref.min())
    # Stated bound: 0.5 % of the output range on unseen inputs (the verify contract is 2 %).
    assert err16 <= 0.005 * span, (err16, span)
    # 16-bit activations must actually buy precision over int8 (measured: ~5x here).
    assert err16 < 0.5 * err8, (err16, err8)


def test_int16x8_tensor_types_are_what_the_tflm_kernel_needs(lstm_seq_artifacts) -> None:
    out, _ = lstm_seq_artifacts
    info = read_tflite(out / "lstm_seq_sequence_int16x8.tflite")
    t = info.tensors
    (lstm,) = [op for op in info.ops if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    x, h, c, y = (t[lstm.inputs[0]], t[lstm.inputs[18]], t[lstm.inputs[19]], t[lstm.outputs[0]])
    assert (x.dtype, h.dtype, c.dtype, y.dtype) == ("int16",) * 4
    assert h.is_variable and c.is_variable
    assert x.zero_point == h.zero_point == y.zero_point == 0
    assert h.scales == y.scales  # the kernel copies h into the output
    assert math.log2(c.scale).is_integer()  # power-of-two cell scale
    assert {t[i].dtype for i in lstm.inputs[1:9]} == {"int8"}
    assert {t[i].dtype for i in lstm.inputs[12:16]} == {"int64"}
    (fc,) = [op for op in info.ops if op.name == "FULLY_CONNECTED"]
    assert t[fc.outputs[0]].dtype == "int16"
    # Keras' zero-initialised Dense bias is dropped by the converter here; when there is one it
    # must be int64 (the zoo's echo and temporal-order models have one: measured in the report).
    assert len(fc.inputs) < 3 or fc.inputs[2] < 0 or t[fc.inputs[2]].dtype == "int64"


def test_cell_scale_covers_the_float_cell(keras_model_file, calibration_file) -> None:
    from edgelstm.convert.graph import parse_model
    from edgelstm.convert.load import load_keras_model

    model, fw = load_keras_model(keras_model_file("lstm"))
    ms = parse_model(model, fw, None)
    xs = np.load(calibration_file)["x"][:16]
    ranges = int16.lstm_state_ranges(ms, xs)
    assert ranges is not None and len(ranges) == 2
    for r in ranges:
        assert 0 < r.h_absmax < 1 and r.c_absmax > 0
        s = _pot_scale(int16.CELL_HEADROOM * r.c_absmax)
        assert math.log2(s).is_integer()
        assert r.c_absmax <= 32767 * s < 2 * int16.CELL_HEADROOM * r.c_absmax + 1e-9


def test_litert_cannot_run_it_so_tflm_verifies(lstm_seq_artifacts) -> None:
    # Why the verifier uses TFLite Micro: LiteRT's fused LSTM has no int16-activation path. If
    # this starts passing, LiteRT gained support and the artifact note should be revisited.
    out, _ = lstm_seq_artifacts
    with pytest.raises(BadInputError, match="UNIDIRECTIONAL_SEQUENCE_LSTM"):
        _run(out / "lstm_seq_sequence_int16x8.tflite", "litert", np.zeros((1, T, D), np.float32))


def test_requantization_is_deterministic_and_leaves_int8_weights(lstm_seq_artifacts) -> None:
    out, _ = lstm_seq_artifacts
    data = (out / "lstm_seq_sequence_int8.tflite").read_bytes()
    a, _ = int16.requantize_int8_to_int16x8(data)
    b, _ = int16.requantize_int8_to_int16x8(data)
    assert a == b
    before, after = read_tflite(data), read_tflite(a)
    w8 = [(x.name, x.scales) for x in before.tensors if x.dtype == "int8" and x.buffer_bytes]
    w16 = [(x.name, x.scales) for x in after.tensors if x.dtype == "int8" and x.buffer_bytes]
    assert w8 == w16 and w8  # weights untouched: same tensors, same scales


def test_stacked_lstm_classifier_int16x8(keras_model_file, calibration_file, tmp_path) -> None:
    """Two fused LSTMs, STRIDED_SLICE, FULLY_CONNECTED without bias, int16 SOFTMAX."""
    man = _convert(
        keras_model_file("lstm"), tmp_path / "o", calibration_file, [Quantization.INT16X8]
    )
    (art,) = man.artifacts
    assert art.op_counts["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 2 and "SOFTMAX" in art.ops
    assert art.parity.runtime == "tflm" and art.parity.passed
    xs, ref = _keras_and_inputs(keras_model_file("lstm"), n=12, seed=3)
    got = _run(tmp_path / "o" / art.file, "tflm", xs)
    assert np.abs(got - ref).max() <= 0.005  # softmax probabilities
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_unsupported_op_is_a_one_line_error(keras_model_file, calibration_file, run_cli, tmp_path):
    # A Bidirectional LSTM lowers to REVERSE_V2/CONCATENATION, which this pass does not
    # requantize (and the model has no step variant to fall back to): named, exit 2.
    code, _out, err = run_cli(
        "convert",
        str(keras_model_file("bidi")),
        "-o",
        str(tmp_path / "o"),
        "--variant",
        "sequence",
        "--quantize",
        "int16x8",
        "--calibration",
        str(calibration_file),
    )
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert "cannot be requantized to 16x8" in lines[0] and "int16x8 step model" in lines[0]
    assert not (tmp_path / "o").exists()


def test_zoo_echo_int16x8_keeps_float_accuracy_and_beats_int8(tmp_path) -> None:
    """The committed echo model: metric on its held-out data, error vs Keras, int8 vs int16x8."""
    from edgelstm.convert import convert_model
    from edgelstm.zoo.metrics import metric_value

    root = Path(__file__).resolve().parents[1] / "models" / "echo"
    cfg = ConvertConfig(
        variants=[Variant.SEQUENCE],
        quantizations=[Quantization.INT8, Quantization.INT16X8],
        calibration=str(root / "calibration.npz"),
    )
    man = convert_model(root / "model.keras", tmp_path / "o", cfg)
    files = {a.quantization: tmp_path / "o" / a.file for a in man.artifacts}
    info = read_tflite(files[Quantization.INT16X8])
    (fc,) = [op for op in info.ops if op.name == "FULLY_CONNECTED"]
    assert info.tensors[fc.inputs[2]].dtype == "int64"  # a real Dense bias, 16x8 style

    import keras

    data = np.load(root / "eval.npz")
    xs, ys = data["x"][:96], data["y"][:96]
    ref = np.asarray(keras.saving.load_model(root / "model.keras").predict(xs, verbose=0))
    got16 = _run(files[Quantization.INT16X8], "tflm", xs)
    got8 = _run(files[Quantization.INT8], "tflm", xs)
    metric = "per_step_accuracy_after_delay"
    # Target (issue #4): within 0.1 points of float accuracy. Measured: identical (1.0).
    assert metric_value(metric, got16, ys) >= metric_value(metric, ref, ys) - 0.001
    err16, err8 = np.abs(got16 - ref).max(), np.abs(got8 - ref).max()
    # Measured on all 256 eval sequences: 0.0067 (int16x8) vs 0.0138 (int8); the int16x8 floor
    # here is the int8 weights (the float model with those weights alone is off by 0.0064).
    assert err16 <= 0.01 and err16 < 0.6 * err8, (err16, err8)


@pytest.mark.parametrize("kind", ["conv", "emb"])
def test_front_ends_conv_and_embedding(kind, keras_model_file, calibration_file, tmp_path) -> None:
    """Conv1D (PAD + CONV_2D with int64 bias) and Embedding (int8 GATHER + QUANTIZE to int16)."""
    cal = calibration_file
    if kind == "emb":
        cal = tmp_path / "tokens.npz"
        rng = np.random.default_rng(0)
        np.savez(cal, x=rng.integers(0, 20, (48, T)).astype(np.int32))
    man = _convert(keras_model_file(kind), tmp_path / "o", cal, [Quantization.INT16X8])
    (art,) = man.artifacts
    assert art.parity.runtime == "tflm" and art.parity.passed, art.parity
    info = read_tflite(tmp_path / "o" / art.file)
    (lstm,) = [op for op in info.ops if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert info.tensors[lstm.inputs[0]].dtype == "int16"
    if kind == "conv":
        (conv,) = [op for op in info.ops if op.name == "CONV_2D"]
        assert info.tensors[conv.inputs[2]].dtype == "int64"
    else:
        gather, quant = info.ops[:2]
        assert (gather.name, quant.name) == ("GATHER", "QUANTIZE")  # TFLM has no int16 GATHER
        assert info.tensors[gather.outputs[0]].dtype == "int8"
        assert info.tensors[quant.outputs[0]].dtype == "int16"
        # Untrained: near-uniform softmax over 20 tokens, so argmax is noise; the probabilities
        # agree closely (measured 2e-5; int8 is off by 1.5e-3 on the same data).
        assert art.parity.max_abs < 2e-4


def test_evaluate_runs_each_artifact_where_its_parity_was_measured(
    keras_model_file, lstm_seq_artifacts
) -> None:
    """edgelstm.evaluate scores the int16x8 fused model in TFLite Micro, as its manifest says
    (LiteRT has no int16 fused LSTM kernel: the pipeline's own copy used to run it there)."""
    from edgelstm.evaluate import evaluate, predict

    out, man = lstm_seq_artifacts
    xs, ref = _keras_and_inputs(keras_model_file("lstm_seq"), n=8, seed=3)
    scores = evaluate(man, out, xs, ref, "mae")  # the error against Keras, per artifact
    assert set(scores) == {a.file for a in man.artifacts}
    mae16, mae8 = (
        scores["lstm_seq_sequence_int16x8.tflite"],
        scores["lstm_seq_sequence_int8.tflite"],
    )
    assert mae16 <= 0.005 * float(ref.max() - ref.min()) and mae16 < mae8, (mae16, mae8)
    data = (out / "lstm_seq_sequence_int16x8.tflite").read_bytes()
    with pytest.raises(BadInputError, match=r"UNIDIRECTIONAL_SEQUENCE_LSTM.*failed to prepare"):
        predict(data, xs, variant=Variant.SEQUENCE, runtime="litert")


def test_unrolled_gru_int16x8_steps_get_their_own_bias(tmp_path) -> None:
    """temporal-order-gru (the zoo's GRU(64), T = 110, inputs zero at most steps): the converter
    gives every step's copy of the recurrent FC one int16x8 bias, quantized for one step's input
    scale (and clamped there); convert gives each copy its own. Measured on the artifact and on
    its bytes with every copy pointed back at the shared bias."""
    from edgelstm.convert import convert_model
    from edgelstm.convert.verify import run_sequence
    from edgelstm.tflite.passes import load_model, pack_model

    zoo = Path(__file__).resolve().parent.parent / "models" / "temporal-order-gru"
    out = tmp_path / "o"
    cfg = ConvertConfig(
        variants=[Variant.SEQUENCE],
        quantizations=[Quantization.FLOAT, Quantization.INT16X8],
        calibration=str(zoo / "calibration.npz"),
        calibration_samples=64,
        verify_samples=8,
    )
    manifest = convert_model(zoo / "model.keras", out, cfg)
    art = manifest.artifact("sequence", "int16x8")
    assert any("got a bias of their own" in n for n in art.notes), art.notes
    assert art.parity is not None and art.parity.passed, art.parity
    data = (out / art.file).read_bytes()
    model = load_model(data)
    sg = model.subgraphs[0]
    names = {t.name: i for i, t in enumerate(sg.tensors)}
    undone = 0
    for op in sg.operators:
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            name = sg.tensors[op.inputs[2]].name
            if name.endswith(b"/per_step"):
                op.inputs = [*op.inputs[:2], names[name.removesuffix(b"/per_step")]]
                undone += 1
    assert undone == 109  # every step's recurrent FC but the first (its state is all zeros)
    xs = np.load(zoo / "eval.npz")["x"][:8].astype(np.float32)
    seq = (out / manifest.artifact("sequence", "float").file).read_bytes()
    ref = run_sequence(seq, read_tflite(seq), xs)
    err = lambda d: float(np.max(np.abs(run_sequence(d, read_tflite(d), xs) - ref)))  # noqa: E731
    shared = pack_model(model)
    assert err(data) <= art.parity.bound < err(shared), (err(data), err(shared))
