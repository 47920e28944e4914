"""edgelstm convert: every layer kind, variant and quantization, against real converter + LiteRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgelstm.convert import convert_model
from edgelstm.errors import BadInputError, UnsupportedLayerError
from edgelstm.tflite_info import read_tflite
from edgelstm.types import ConvertConfig, Quantization, Variant

FLOAT = [Quantization.FLOAT]

# kind -> (expected variants, fused LSTM ops in the sequence model, state tensors in the step model)
MATRIX = {
    "lstm": ({"sequence", "step"}, 2, 4),
    "gru": ({"sequence", "step"}, 0, 1),
    "rnn": ({"sequence", "step"}, 0, 1),
    "bidi": ({"sequence"}, 3, 0),
    "conv": ({"sequence", "step"}, 1, 3),
    "emb": ({"sequence", "step"}, 1, 2),
    "mask": ({"sequence", "step"}, 0, 2),
    "back": ({"sequence"}, 1, 0),
    "gru_seq": ({"sequence", "step"}, 0, 1),
}


@pytest.mark.parametrize("kind", sorted(MATRIX))
def test_float_matrix(kind: str, keras_model_file, tmp_path: Path) -> None:
    variants, fused, n_states = MATRIX[kind]
    manifest = convert_model(
        keras_model_file(kind), tmp_path / "out", ConvertConfig(quantizations=FLOAT)
    )
    assert {a.variant.value for a in manifest.artifacts} == variants
    for art in manifest.artifacts:
        info = read_tflite(tmp_path / "out" / art.file)
        assert not info.unfused_ops, f"{art.file} kept {info.unfused_ops}"
        assert art.parity is not None and art.parity.passed, art.parity
        assert art.parity.max_abs <= 1e-4
        if art.variant == Variant.SEQUENCE:
            assert info.op_counts.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0) == fused
            assert info.inputs[0].shape[0] == 1  # batch fixed to 1
        else:
            assert len(art.states) == n_states
            assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in info.op_counts
            assert {s.input for s in art.states} | {"x"} == {t.name for t in info.inputs}
    data = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert data["source"]["framework"] == "keras3"
    if "step" not in variants:
        assert any("no step model" in n for n in data["notes"])


def test_int8_lstm_state_quantization_is_tied(
    keras_model_file, calibration_file, tmp_path: Path
) -> None:
    cfg = ConvertConfig(quantizations=[Quantization.INT8], calibration=str(calibration_file))
    # A regression head: an untrained softmax sits at ~1/3 everywhere, where argmax is noise.
    manifest = convert_model(keras_model_file("lstm_seq"), tmp_path / "o", cfg)
    seq = manifest.artifact("sequence", "int8")
    step = manifest.artifact("step", "int8")
    assert seq.fused_lstm and seq.inputs[0].dtype == "int8" and seq.outputs[0].dtype == "int8"
    for art in (seq, step):
        assert art.parity.passed and art.parity.cosine > 0.99, art.parity
    info = read_tflite(tmp_path / "o" / step.file)
    by_name = {t.name: t for t in info.inputs + info.outputs}
    for st in step.states:
        i, o = by_name[st.input], by_name[st.output]
        # Firmware copies raw state from output to input: quantization must be identical (int8
        # h; the cell state c int16, as the LSTM cell runs in int16: tflite.cell16).
        assert (
            (i.dtype, i.scale, i.zero_point)
            == (o.dtype, o.scale, o.zero_point)
            == ({"h": "int8", "c": "int16"}[st.role], st.scale, st.zero_point)
        )


def test_int8_gru_through_plain_ops(keras_model_file, calibration_file, tmp_path: Path) -> None:
    cfg = ConvertConfig(quantizations=[Quantization.INT8], calibration=str(calibration_file))
    manifest = convert_model(keras_model_file("gru"), tmp_path / "o", cfg)
    for art in manifest.artifacts:
        assert "WHILE" not in art.ops and art.parity.passed
        assert art.inputs[0].dtype == "int8"


def test_dynamic_and_float16(keras_model_file, tmp_path: Path) -> None:
    cfg = ConvertConfig(
        quantizations=[Quantization.DYNAMIC, Quantization.FLOAT16], variants=[Variant.STEP]
    )
    manifest = convert_model(keras_model_file("lstm_seq"), tmp_path / "o", cfg)
    assert len(manifest.artifacts) == 2
    for art in manifest.artifacts:
        assert art.parity.passed, art.parity
        assert art.inputs[0].dtype == "float32"


def test_step_model_streams_like_keras_many_to_many(keras_model_file, tmp_path: Path) -> None:
    """The step model fed one step at a time reproduces Keras on every step."""
    from ai_edge_litert.interpreter import Interpreter

    from edgelstm._tf import import_tf

    import_tf()
    import keras

    path = keras_model_file("lstm_seq")
    manifest = convert_model(
        path, tmp_path / "o", ConvertConfig(quantizations=FLOAT, variants=[Variant.STEP])
    )
    art = manifest.artifacts[0]
    x = np.random.default_rng(5).standard_normal((1, 12, 4)).astype(np.float32)
    ref = keras.saving.load_model(path)(x).numpy()[0]
    runner = Interpreter(model_path=str(tmp_path / "o" / art.file)).get_signature_runner()
    state = {s.input: np.zeros(s.shape, np.float32) for s in art.states}
    outs = []
    for t in range(12):
        res = runner(x=x[:, t], **state)
        state = {s.input: res[s.output] for s in art.states}
        outs.append(res["y"][0])
    np.testing.assert_allclose(np.stack(outs), ref, atol=1e-5)


def test_h5_and_savedmodel_inputs(tmp_path: Path) -> None:
    from edgelstm._tf import import_tf_keras

    k2 = import_tf_keras()
    k2.utils.set_random_seed(3)
    model = k2.Sequential([k2.Input((10, 3)), k2.layers.LSTM(6), k2.layers.Dense(2)])
    model.save(tmp_path / "m.h5")
    model.save(tmp_path / "sm", save_format="tf")
    for src in (tmp_path / "m.h5", tmp_path / "sm"):
        manifest = convert_model(
            src, tmp_path / f"out_{src.name}", ConvertConfig(quantizations=FLOAT)
        )
        assert manifest.model.framework == "tf_keras"
        assert all(a.parity.passed for a in manifest.artifacts)
        assert manifest.artifact("sequence", "float").fused_lstm


def test_deterministic_bytes(keras_model_file, calibration_file, tmp_path: Path) -> None:
    cfg = ConvertConfig(
        quantizations=[Quantization.INT8],
        calibration=str(calibration_file),
        variants=[Variant.STEP],
    )
    a = convert_model(keras_model_file("gru"), tmp_path / "a", cfg)
    convert_model(keras_model_file("gru"), tmp_path / "b", cfg)
    for art in a.artifacts:
        assert (tmp_path / "a" / art.file).read_bytes() == (tmp_path / "b" / art.file).read_bytes()
    ma = json.loads((tmp_path / "a" / "manifest.json").read_text())
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert ma == mb


def test_converter_crash_is_isolated(tmp_path: Path) -> None:
    """The plain converter segfaults on int8 of a Keras 3 LSTM; the worker dies, we do not."""
    from edgelstm._tf import import_tf
    from edgelstm.convert import isolate

    import_tf()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 4)), keras.layers.LSTM(8), keras.layers.Dense(2)])
    model.save(tmp_path / "k3.keras")
    np.savez(
        tmp_path / "cal.npz",
        x=np.random.default_rng(0).standard_normal((8, 1, 12, 4)).astype(np.float32),
    )
    jobs = [
        isolate.ConvertJob(
            "int8",
            str(tmp_path / "k3.keras"),
            str(tmp_path / "a.tflite"),
            "int8",
            str(tmp_path / "cal.npz"),
            source_kind="keras_file",
        ),
        isolate.ConvertJob(
            "float",
            str(tmp_path / "k3.keras"),
            str(tmp_path / "b.tflite"),
            "float",
            source_kind="keras_file",
        ),
    ]
    results = isolate.run_jobs(jobs, tmp_path)
    assert results["int8"].crashed and "crashed" in results["int8"].message
    assert results["float"].ok  # a fresh worker took the remaining job
    assert "WHILE" in read_tflite(tmp_path / "b.tflite").op_set  # Keras 3 LSTM is not fused


def test_unsupported_layer_is_named(tmp_path: Path) -> None:
    from edgelstm._tf import import_tf

    import_tf()
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((6, 3)), L.LSTM(4), L.UnitNormalization(name="unorm")])
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedLayerError, match=r"'unorm' \(UnitNormalization"):
        convert_model(tmp_path / "m.keras", tmp_path / "o", ConvertConfig())
    assert not (tmp_path / "o").exists()


def test_no_recurrent_layer_is_allowed(keras_model_file, tmp_path: Path) -> None:
    manifest = convert_model(
        keras_model_file("dense_only"), tmp_path / "o", ConvertConfig(variants=[Variant.SEQUENCE])
    )
    assert any("no recurrent layer" in n for n in manifest.notes)


def test_calibration_shape_checked(keras_model_file, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 7, 4), np.float32))
    cfg = ConvertConfig(quantizations=[Quantization.INT8], calibration=str(bad))
    with pytest.raises(BadInputError, match=r"shape \(4, 7, 4\)"):
        convert_model(keras_model_file("lstm"), tmp_path / "o", cfg)
    with pytest.raises(BadInputError, match="needs --calibration"):
        convert_model(
            keras_model_file("lstm"),
            tmp_path / "o",
            ConvertConfig(quantizations=[Quantization.INT8]),
        )


def test_step_model_continues_stateful_keras_across_chunks(tmp_path: Path) -> None:
    """A stateful Keras LSTM fed 4 chunks == the step model fed the same 24 steps in one stream."""
    from ai_edge_litert.interpreter import Interpreter

    from edgelstm._tf import import_tf

    import_tf()
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input(batch_shape=(1, 6, 3)),
            keras.layers.LSTM(8, stateful=True, return_sequences=True),
            keras.layers.Dense(2),
        ]
    )
    model.save(tmp_path / "sf.keras")
    manifest = convert_model(tmp_path / "sf.keras", tmp_path / "o", ConvertConfig())
    assert any("stateful=True" in n for n in manifest.notes)
    x = np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)
    model.layers[0].reset_state()
    ref = np.concatenate([model(x[i : i + 1]).numpy()[0] for i in range(4)])
    art = manifest.artifact("step", "float")
    runner = Interpreter(model_path=str(tmp_path / "o" / art.file)).get_signature_runner()
    state = {s.input: np.zeros(s.shape, np.float32) for s in art.states}
    ys = []
    for t in range(24):
        out = runner(x=x.reshape(24, 3)[t : t + 1], **state)
        state = {s.input: out[s.output] for s in art.states}
        ys.append(out["y"][0])
    np.testing.assert_allclose(np.stack(ys), ref, atol=1e-5)


def test_fusion_guarantee_names_the_layer(tmp_path: Path) -> None:
    """A sequence model that kept a WHILE loop fails, naming the LSTM, unless allowed."""
    from edgelstm._tf import import_tf
    from edgelstm.convert import isolate
    from edgelstm.convert.artifacts import _fusion_check
    from edgelstm.convert.graph import parse_model
    from edgelstm.errors import ConversionError

    import_tf()
    import keras

    model = keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(4, name="slow_lstm")])
    model.save(tmp_path / "m.keras")
    job = isolate.ConvertJob(
        "f",
        str(tmp_path / "m.keras"),
        str(tmp_path / "w.tflite"),
        "float",
        source_kind="keras_file",
    )
    assert isolate.run_jobs([job], tmp_path)["f"].ok
    info = read_tflite(tmp_path / "w.tflite")
    ms = parse_model(model, "keras3")
    with pytest.raises(ConversionError, match=r"slow_lstm.*--allow-unfused"):
        _fusion_check(ms, info, allow_unfused=False)
    assert any("WHILE" in n for n in _fusion_check(ms, info, allow_unfused=True))


def _big_cell_lstm(last_layer_lstm: bool) -> object:
    """A functional LSTM whose cell state climbs to ~30 then falls (input +1 x30, then -1 x15)."""
    import keras

    h = 4
    inp = keras.Input((45, 1))
    lstm = keras.layers.LSTM(h, return_sequences=True)
    out = lstm(inp)
    dense = keras.layers.Dense(1) if not last_layer_lstm else None
    if dense is not None:
        out = dense(out)
    model = keras.Model(inp, out)
    if dense is not None:  # fixed, so a clipped cell shows in the output whatever the seed
        dense.set_weights([np.ones((h, 1), np.float32), np.zeros(1, np.float32)])
    k = np.zeros((1, 4 * h), np.float32)
    b = np.zeros(4 * h, np.float32)
    b[:h] = 10  # input gate always open
    k[0, 2 * h : 3 * h] = 5  # candidate = tanh(5x) = +-1
    b[h : 2 * h] = 10  # forget gate ~1: c accumulates
    b[3 * h :] = 5  # output gate ~1
    lstm.set_weights([k, np.zeros((h, 4 * h), np.float32), b])
    return model


def _ramp() -> np.ndarray:
    x = np.concatenate([np.ones((30, 1)), -np.ones((15, 1))])[None].astype(np.float32)
    return np.repeat(x, 4, 0)


def test_functional_model_and_unclipped_fused_cell(tmp_path: Path) -> None:
    """Keras never clips c; the converter writes cell_clip=10 into the fused op, which we remove."""
    from edgelstm.runtime.litert import LiteRTRunner
    from edgelstm.tflite import passes as fbedit

    model = _big_cell_lstm(last_layer_lstm=False)
    src = tmp_path / "big_cell.keras"
    model.save(src)
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=_ramp())
    manifest = convert_model(
        src,
        tmp_path / "out",
        ConvertConfig(variants=[Variant.SEQUENCE], calibration=str(cal), verify_samples=4),
    )
    (art,) = manifest.artifacts
    assert art.parity is not None and art.parity.passed and art.parity.max_abs < 1e-5
    assert any("cell_clip=10" in n for n in art.notes)
    data = (tmp_path / "out" / art.file).read_bytes()
    fb_model = fbedit.load_model(data)
    (lstm_op,) = [
        op
        for op in fb_model.subgraphs[0].operators
        if op.builtinOptions is not None and hasattr(op.builtinOptions, "cellClip")
    ]
    assert lstm_op.builtinOptions.cellClip == 0.0
    # The same model with the converter's clip put back disagrees with Keras: the test model
    # really drives |c| past 10.
    lstm_op.builtinOptions.cellClip = 10.0
    clipped = fbedit.pack_model(fb_model)
    x = _ramp()[:1]
    want = np.asarray(model(x))[0]
    runner = LiteRTRunner(clipped, read_tflite(clipped))
    runner.reset()
    got = runner.invoke({"x": x})["y"][0]
    assert np.max(np.abs(got - want)) > 0.5


def test_last_layer_lstm_sequences_and_int8_cell_range_widened(tmp_path: Path) -> None:
    """y and h_out are one tensor in the step model; both signature names must survive."""
    src = tmp_path / "last_lstm.keras"
    _big_cell_lstm(last_layer_lstm=True).save(src)
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=_ramp())
    manifest = convert_model(
        src,
        tmp_path / "out",
        ConvertConfig(
            quantizations=[Quantization.FLOAT, Quantization.INT8],
            calibration=str(cal),
            verify_samples=4,
            verify_fail=False,
        ),
    )
    by = {(a.variant, a.quantization): a for a in manifest.artifacts}
    step = by[(Variant.STEP, Quantization.FLOAT)]
    assert {s.input for s in step.states} == {"state0_h", "state0_c"}
    assert step.parity is not None and step.parity.passed
    # The converter sized the int16 cell +-8; the float cell reaches 30: widened to +-32.
    seq8 = by[(Variant.SEQUENCE, Quantization.INT8)]
    assert any("cell state range +-8 -> +-32" in n for n in seq8.notes), seq8.notes
    assert not any("saturates" in n for n in seq8.notes), seq8.notes


def test_convert_is_pure_and_save_publishes(keras_model_file, tmp_path: Path) -> None:
    """`convert` returns the artifacts' bytes and the manifest and writes nothing; `save`
    publishes them; `convert_model` is the two chained (same bytes, same manifest)."""
    from edgelstm.convert import ConversionResult, convert

    before = set(tmp_path.iterdir())
    cfg = ConvertConfig(quantizations=FLOAT, verify_samples=2)
    res = convert(keras_model_file("lstm"), cfg)
    assert isinstance(res, ConversionResult) and res.failed is None
    assert set(tmp_path.iterdir()) == before  # nothing written outside its work dir
    assert set(res.files) == {a.file for a in res.manifest.artifacts}
    assert all(read_tflite(data).size_bytes == len(data) for data in res.files.values())
    saved = res.save(tmp_path / "a")
    for name, data in res.files.items():
        assert (tmp_path / "a" / name).read_bytes() == data
    on_disk = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert on_disk == saved.to_dict() == res.manifest.to_dict()
    chained = convert_model(keras_model_file("lstm"), tmp_path / "b", cfg)
    assert chained.to_dict() == saved.to_dict()
    for name, data in res.files.items():
        assert (tmp_path / "b" / name).read_bytes() == data


@pytest.mark.parametrize(
    "front",
    ["AveragePooling1D", "Conv1D-stride2"],
    ids=["pool", "strided-conv"],
)
def test_cell_range_measured_behind_a_layer_that_mixes_time_steps(front: str) -> None:
    """The int8 fused LSTM's cell range comes from the float cell (widen_lstm_cell_range); an
    LSTM behind pooling or a strided Conv1D once got no measurement, so its cell saturated at
    the converter's +-1 (0.16 error on a tiny pooled model). The ranges must match Keras's own
    cell stepped over the front-end's output."""
    import keras

    from edgelstm._tf import import_tf
    from edgelstm.convert import build
    from edgelstm.convert.graph import parse_model

    import_tf()
    keras.utils.set_random_seed(5)
    L = keras.layers
    pre = L.AveragePooling1D(2) if front == "AveragePooling1D" else L.Conv1D(4, 3, strides=2)
    lstm = L.LSTM(4, name="cell_after_front")
    model = keras.Sequential([keras.Input((12, 3)), pre, lstm, L.Dense(1)])
    xs = np.random.default_rng(5).normal(size=(6, 12, 3)).astype(np.float32) * 2.0
    ms = parse_model(model, "keras3")
    assert not ms.streamable
    got = build.state_abs_max(ms, xs)
    seqs = np.asarray(keras.Sequential([keras.Input((12, 3)), pre])(xs))
    h_max = c_max = 0.0
    for seq in seqs:
        state = [np.zeros((1, 4), np.float32)] * 2
        for t in range(seq.shape[0]):
            _, state = lstm.cell(seq[t : t + 1], state)
            h_max = max(h_max, float(np.abs(state[0]).max()))
            c_max = max(c_max, float(np.abs(state[1]).max()))
    k = next(k for k, spec, _ in ms.state_layout() if spec.name == "cell_after_front")
    assert got[f"state{k}_h"] == pytest.approx(h_max, abs=1e-5)
    assert got[f"state{k}_c"] == pytest.approx(c_max, abs=1e-5)


def test_a_refused_quantization_keeps_what_converted(tmp_path: Path) -> None:
    """int16x8 of a sequence-only model with pooling is refused (no 16x8 MAX_POOL_2D requant,
    no step model to fall back on): the float artifact is still published with its manifest,
    and the run fails (exit 2) naming what did not convert."""
    import keras

    from edgelstm._tf import import_tf
    from edgelstm.errors import ConversionError

    import_tf()
    keras.utils.set_random_seed(2)
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 2)), L.MaxPooling1D(2), L.LSTM(3), L.Dense(1)])
    path = tmp_path / "pooled.keras"
    model.save(path)
    cal = tmp_path / "cal.npy"
    np.save(cal, np.random.default_rng(2).normal(size=(24, 8, 2)).astype(np.float32))
    cfg = ConvertConfig(
        quantizations=[Quantization.FLOAT, Quantization.INT16X8], calibration=str(cal),
        verify_samples=4,
    )  # fmt: skip
    with pytest.raises(ConversionError, match=r"sequence/int16x8.*MAX_POOL_2D") as err:
        convert_model(path, tmp_path / "o", cfg)
    assert err.value.exit_code == 2
    assert "wrote the 1 artifact(s) that converted (pooled_sequence_float.tflite)" in str(err.value)
    written = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [a["file"] for a in written["artifacts"]] == ["pooled_sequence_float.tflite"]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.*") if p.name[0] != ".") == [
        "manifest.json",
        "pooled_sequence_float.tflite",
    ]
    assert any(n.startswith("not converted: sequence/int16x8") for n in written["notes"])
