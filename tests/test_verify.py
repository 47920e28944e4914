"""Parity that means something: held-out data, streamed step models, masked positions, partial
`--variant all` results; real converter, real LiteRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgelstm.convert import convert_model, verify
from edgelstm.errors import BadInputError
from edgelstm.tflite_info import read_tflite
from edgelstm.types import ConvertConfig, Quantization, Variant

INT8 = [Quantization.INT8]


def test_split_is_deterministic_disjoint_and_bounded() -> None:
    x = np.arange(40, dtype=np.float32).reshape(40, 1, 1)
    cal, held = verify.split_heldout(x, 16, seed=3)
    cal2, held2 = verify.split_heldout(x, 16, seed=3)
    assert held is not None and held2 is not None
    assert np.array_equal(held, held2) and np.array_equal(cal, cal2)
    assert len(held) == 10  # a quarter at most, though 16 were asked for
    assert not set(held.ravel()) & set(cal.ravel())
    assert sorted(np.concatenate([held, cal]).ravel()) == list(range(40))
    assert verify.split_heldout(x[:5], 16, seed=3)[1] is None  # too few to split


def test_degenerate_calibration_is_named() -> None:
    zeros = np.zeros((10, 4, 2), np.float32)
    (w_const, w_few) = verify.calibration_warnings(zeros, 128, token_input=False)
    assert "constant" in w_const and "far fewer" in w_few
    x = np.random.default_rng(0).standard_normal((64, 4, 2)).astype(np.float32)
    x[..., 1] = 0.5
    (w_dead,) = verify.calibration_warnings(x, 64, token_input=False)
    assert "feature(s) 1 have zero range" in w_dead
    assert verify.calibration_warnings(x[..., :1], 64, token_input=False) == []


def _short_window_model(tmp_path: Path):
    """LSTM(16) -> Dense(1) trained-shape T = 1 (the streaming-denoiser pattern), and a twin with
    T = None and the same weights for a stateful reference over any length."""
    import keras

    from edgelstm._tf import import_tf

    import_tf()
    keras.utils.set_random_seed(3)

    def make(t: int | None):
        inp = keras.Input((t, 1))
        y = keras.layers.LSTM(16, return_sequences=True)(inp)
        return keras.Model(inp, keras.layers.Dense(1)(y))

    model = make(1)
    twin = make(None)
    twin.set_weights(model.get_weights())
    path = tmp_path / "t1.keras"
    model.save(path)
    t = np.arange(400)
    sig = np.sin(t * 0.3) + 0.3 * np.random.default_rng(0).standard_normal(400)
    return path, twin, sig.astype(np.float32)


def test_short_window_model_streams_correctly_in_int8(tmp_path: Path) -> None:
    """Calibrated window by window from a zero state, the state scale of a T = 1 model collapses
    to ~1e-8 and streaming 20 samples is off by ~0.28; calibrated over the stream it holds."""
    path, twin, sig = _short_window_model(tmp_path)
    cal = tmp_path / "cal.npy"
    np.save(cal, sig[:200].reshape(200, 1, 1))
    manifest = convert_model(
        path,
        tmp_path / "out",
        ConvertConfig(variants=[Variant.STEP], quantizations=INT8, calibration=str(cal)),
    )
    (art,) = manifest.artifacts
    data = (tmp_path / "out" / art.file).read_bytes()
    info = read_tflite(data)
    c = next(t for t in info.inputs if t.name.endswith("_c"))
    c_range = c.scale * {"int8": 128, "int16": 32768}[c.dtype]  # (int16: tflite.cell16)
    assert c_range > 0.0128, (c.dtype, c.scale)
    stream = sig[200:220].reshape(20, 1)  # fresh samples, state carried across all of them
    got = verify.run_step_stream(data, info, stream, token_input=False).reshape(20)
    want = np.asarray(twin(stream[None]))[0].reshape(20)
    assert np.max(np.abs(got - want)) < 0.1
    p = art.parity
    assert p is not None and p.passed and p.stream is not None and p.stream["passed"]
    assert p.stream["steps"] >= verify.MIN_STREAM
    assert "held-out" in p.data and p.calibration_set is not None


def test_calibration_stream_option_is_checked(tmp_path: Path) -> None:
    path, _twin, sig = _short_window_model(tmp_path)
    cal = tmp_path / "cal.npy"
    np.save(cal, sig[:40].reshape(40, 1, 1))
    bad = tmp_path / "stream.npy"
    np.save(bad, sig[:50].reshape(50, 1, 1))
    cfg = ConvertConfig(
        variants=[Variant.STEP],
        quantizations=INT8,
        calibration=str(cal),
        calibration_stream=str(bad),
    )
    with pytest.raises(BadInputError, match=r"calibration stream has shape \(50, 1, 1\)"):
        convert_model(path, tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def test_constant_calibration_fails_int8_keeps_float(
    keras_model_file, tmp_path: Path, run_cli
) -> None:
    """An all-zero calibration file: int8 verified on it alone would report error 0. Held-out
    parity on real-looking inputs fails it; the float artifact, which passed, is written."""
    from conftest import D, T

    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros((32, T, D), np.float32))
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "convert",
        str(keras_model_file("lstm_seq")),
        "-o",
        str(out),
        "--variant",
        "sequence",
        "--quantize",
        "float,int8",
        "--calibration",
        str(zeros),
    )
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert "lstm_seq_sequence_int8.tflite" in stderr and "not written" in stderr, stderr
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == ["lstm_seq_sequence_float.tflite", "manifest.json"]
    man = json.loads((out / "manifest.json").read_text())
    assert [a["file"] for a in man["artifacts"]] == ["lstm_seq_sequence_float.tflite"]
    assert any(n.startswith("warning: calibration data is constant") for n in man["notes"])
    assert "synthetic" in man["artifacts"][0]["parity"]["data"]
    assert "parity: held-out data:" in stdout


def test_verify_data_is_used_and_both_figures_reported(
    keras_model_file, calibration_file, tmp_path: Path
) -> None:
    from conftest import D, T

    held = tmp_path / "held.npy"
    np.save(held, np.random.default_rng(9).standard_normal((6, T, D)).astype(np.float32))
    manifest = convert_model(
        keras_model_file("gru"),
        tmp_path / "out",
        ConvertConfig(
            variants=[Variant.SEQUENCE],
            quantizations=INT8,
            calibration=str(calibration_file),
            verify_data=str(held),
        ),
    )
    p = manifest.artifacts[0].parity
    assert p is not None and p.samples == 6 and "--verify-data held.npy" in p.data
    assert p.calibration_set is not None and p.calibration_set["samples"] == 16
    assert p.stream is None  # a sequence model is not streamed


def test_masked_positions_are_not_compared(tmp_path: Path) -> None:
    """Embedding(mask_zero=True), many-to-many: padded steps' outputs are undefined, and the
    verifier says it skipped them; real steps still have to match."""
    import keras

    from edgelstm._tf import import_tf

    import_tf()
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((10,), dtype="int32"),
            keras.layers.Embedding(12, 4, mask_zero=True),
            keras.layers.LSTM(6, return_sequences=True),
            keras.layers.Dense(2),
        ]
    )
    path = tmp_path / "emb_mask.keras"
    model.save(path)
    manifest = convert_model(path, tmp_path / "out", ConvertConfig(verify_samples=8))
    assert {a.variant for a in manifest.artifacts} == {Variant.SEQUENCE, Variant.STEP}
    for art in manifest.artifacts:
        assert art.parity is not None and art.parity.passed, (art.file, art.parity)
        assert "masked steps not compared" in art.parity.note
    assert any("unmasked positions only" in n for n in manifest.notes)
    # Differences at masked steps are ignored; at real steps they still fail the check.
    ref, got = np.zeros((1, 3, 2)), np.zeros((1, 3, 2))
    got[0, 1:] = 5.0
    mask = np.array([[True, False, False]])
    kind = manifest.model.output_kind
    assert verify.compare(ref, got, Quantization.FLOAT, Variant.SEQUENCE, kind, False, mask).passed
    got[0, 0] = 5.0
    p = verify.compare(ref, got, Quantization.FLOAT, Variant.SEQUENCE, kind, False, mask)
    assert not p.passed


def test_masking_int8_with_padded_calibration(tmp_path: Path) -> None:
    """Padded calibration windows (zero tails): a Masking model passes int8, sequence and step,
    with the masked steps left out of the comparison."""
    import keras

    from edgelstm._tf import import_tf

    import_tf()
    keras.utils.set_random_seed(1)
    L = keras.layers
    model = keras.Sequential(
        [keras.Input((12, 4)), L.Masking(0.0), L.LSTM(8, return_sequences=True), L.Dense(2)]
    )
    path = tmp_path / "masking.keras"
    model.save(path)
    x = np.random.default_rng(0).standard_normal((48, 12, 4)).astype(np.float32)
    for i in range(48):
        x[i, 12 - (i % 5) * 2 :] = 0.0  # 0-8 padded steps at the end
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=x)
    manifest = convert_model(
        path,
        tmp_path / "out",
        ConvertConfig(quantizations=INT8, calibration=str(cal), verify_samples=8),
    )
    assert len(manifest.artifacts) == 2
    for art in manifest.artifacts:
        assert art.parity is not None and art.parity.passed, (art.file, art.parity)
        assert "masked steps not compared" in art.parity.note


@pytest.mark.parametrize(
    ("ref_hi", "named"), [(0.66, True), (0.50, False)], ids=["past-range", "inside-range"]
)
def test_output_saturation_is_named_only_when_it_is_the_error(ref_hi: float, named: bool) -> None:
    """int8 output range [-0.363, 0.493] (the converter's, from calibration data): held-out
    outputs reaching 0.66 explain a 0.16 error; outputs inside it (0.50 is one step past) do not."""
    from edgelstm.types import TensorInfo

    out = TensorInfo("y", 0, 9, [1, 1], "int8", scale=0.00335648818872869, zero_point=-20)
    reference = np.array([[-0.27], [0.1], [ref_hi]])
    why = verify.output_saturation(reference, out, max_abs=0.16)
    assert bool(why) is named
    if named:
        assert "[-0.27, 0.66]" in why and "[-0.363, 0.493]" in why
    float_out = TensorInfo("y", 0, 9, [1, 1], "float32")
    assert verify.output_saturation(reference, float_out, max_abs=0.16) == ""
