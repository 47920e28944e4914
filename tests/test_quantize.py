"""edgelstm quantize: pruning, int16x8 step models in TFLite Micro, drift reports, bad options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import BadInputError

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("sparsity", ["0", "1", "1.5", "-0.2"])
def test_prune_out_of_range_is_a_clear_error(run_cli, keras_model_file, tmp_path, sparsity):
    code, _, err = run_cli(
        "quantize", str(keras_model_file("lstm")), "-o", str(tmp_path / "o"), "--prune", sparsity
    )
    assert code == 2
    assert "error: --prune SPARSITY must be in (0, 1)" in err


def test_int16x8_without_calibration_names_the_option(run_cli, keras_model_file, tmp_path):
    code, _, err = run_cli(
        "quantize",
        str(keras_model_file("gru")),
        "-o",
        str(tmp_path / "o"),
        "--quantize",
        "int16x8",
    )
    assert code == 2
    assert "--quantize int16x8 needs --calibration" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_prune_reaches_requested_sparsity(keras_model_file, tmp_path, kind):
    from edgelstm.quantize.prune import prune_file

    dst = tmp_path / f"{kind}_pruned.keras"
    res = prune_file(keras_model_file(kind), dst, 0.6)
    assert abs(res.reached - 0.6) < 0.01
    # every matrix, recurrent kernels included, is pruned, and the saved model keeps the zeros
    assert any("recurrent" in k for k in res.per_weight)
    assert all(abs(v - 0.6) < 0.05 for v in res.per_weight.values())
    from edgelstm.convert.load import load_keras_model

    model, _ = load_keras_model(dst)
    mats = [w.numpy() for w in model.weights if w.path in res.per_weight]
    zeros = sum(int((m == 0).sum()) for m in mats) / sum(m.size for m in mats)
    assert abs(zeros - res.reached) < 1e-9
    # magnitude pruning (tfmot's masks): the kept weights are unchanged and are the largest
    src, _ = load_keras_model(keras_model_file(kind))
    before = {w.path: w.numpy() for w in src.weights}
    for w in model.weights:
        if w.path in res.per_weight:
            a, b = w.numpy(), before[w.path]
            kept = a != 0
            np.testing.assert_array_equal(a[kept], b[kept])
            assert np.abs(b[~kept]).max() <= np.abs(b[kept]).min() + 1e-7


def test_drift_table_from_real_runs():
    from edgelstm.quantize.report import compare_step_models, quantization_section
    from edgelstm.report import Table

    xs = np.random.default_rng(3).standard_normal((240, 3)).astype(np.float32)
    rep = compare_step_models(
        DATA / "tiny_step_float.tflite", DATA / "tiny_step_int8.tflite", xs, bins=8
    )
    d = rep.drift
    assert d is not None and d.steps == 240 and len(d.max_abs) == 8 and d.bin_size == 30
    assert d.trend in {"flat", "grows", "saturates"}
    # int8 really differs from float, within the int8 step parity bound
    assert 0 < max(rep.max_abs) < 0.1
    assert all(m <= x for m, x in zip(d.mean_abs, d.max_abs, strict=True))
    secs = quantization_section(rep)
    assert any(isinstance(s, Table) and "stream" in s.title and len(s.rows) == 8 for s in secs)
    # the same model against itself: zero error, flat
    same = compare_step_models(
        DATA / "tiny_step_float.tflite", DATA / "tiny_step_float.tflite", xs, bins=8
    )
    assert max(same.max_abs) == 0.0 and same.drift.trend == "flat"


def test_classify_trend():
    from edgelstm.quantize.report import classify_trend

    assert classify_trend(np.full(16, 0.01)) == "flat"
    assert classify_trend(np.linspace(0.01, 1.0, 16)) == "grows"
    assert classify_trend(np.minimum(np.linspace(0.01, 2.0, 16), 0.5)) == "saturates"


def test_sparsity_check_api():
    from edgelstm.quantize.prune import check_sparsity

    with pytest.raises(BadInputError, match="--prune"):
        check_sparsity(0.0)
    assert check_sparsity(0.25) == 0.25


def test_quantize_int16x8_runs_in_tflm(run_cli, keras_model_file, calibration_file, tmp_path):
    """int16x8 GRU step model from the converter: TFLM matches LiteRT and float within bounds."""
    from edgelstm.runtime.stream import StepRunner

    out = tmp_path / "q"
    code, stdout, err = run_cli(
        "quantize",
        str(keras_model_file("gru")),
        "-o",
        str(out),
        "--quantize",
        "int8,int16x8",
        "--calibration",
        str(calibration_file),
        "--prune",
        "0.5",
        "--stream-len",
        "120",
        "--json",
    )
    assert code == 0, err
    rep = json.loads(stdout)
    assert json.loads((out / "report.json").read_text()) == rep
    assert "## Error over a 120-step stream" in (out / "report.md").read_text()
    from browser_check import assert_readable

    assert_readable(out / "report.html", min_images=1)  # as a reader sees it, at 1280 px
    assert abs(rep["prune"]["reached"] - 0.5) < 0.01
    assert any("does not make a .tflite smaller" in n for n in rep["notes"])
    for s in rep["sizes"]:
        assert s["zlib_bytes"] < s["raw_bytes"]
    err8, err16 = (max(r["max_abs"]) for r in rep["reports"])
    assert err16 < err8  # 16-bit activations must beat int8 on the same stream

    xs = np.random.default_rng(5).standard_normal((40, 4)).astype(np.float32)
    tfl = out / "tflite"
    y16 = StepRunner(tfl / "gru_step_int16x8.tflite", "tflm").run(xs)
    y16_lite = StepRunner(tfl / "gru_step_int16x8.tflite", "litert").run(xs)
    yf = StepRunner(tfl / "gru_step_float.tflite", "litert").run(xs)
    assert np.abs(y16 - y16_lite).max() < 1e-3  # TFLM reference kernels vs LiteRT
    assert np.abs(y16 - yf).max() < 2e-2  # stated bound: int16x8 vs float on this tiny GRU


def test_lstm_step_int16x8_tflm_state_tied(run_cli, keras_model_file, calibration_file, tmp_path):
    """int16x8 LSTM step model: int16 state in/out share scale and zp; TFLM tracks float over a
    long stream. The converter refuses 16x8 for the fused sequence LSTM, and the manifest says so."""
    from edgelstm.runtime.stream import StepRunner

    out = tmp_path / "c"
    code, _, err = run_cli(
        "convert",
        str(keras_model_file("lstm")),
        "-o",
        str(out),
        "--quantize",
        "int16x8",
        "--calibration",
        str(calibration_file),
    )
    assert code == 0, err
    man = json.loads((out / "manifest.json").read_text())
    notes = [*man["notes"], *(n for a in man["artifacts"] for n in a["notes"])]
    # the converter refuses 16x8 for the fused LSTM; the manifest says so (and how it coped)
    assert any("16x8" in n and "UNIDIRECTIONAL_SEQUENCE_LSTM" in n for n in notes)
    r = StepRunner(out / "lstm_step_int16x8.tflite", "tflm")
    for s in r.states:
        o, i = r.backend.output_info(s.output), r.backend.input_info(s.input)
        assert np.dtype(i.dtype) == np.dtype(o.dtype) == np.int16
        assert (i.scale, i.zero_point) == (o.scale, o.zero_point)
    xs = np.random.default_rng(7).standard_normal((200, 4)).astype(np.float32)
    y16 = r.run(xs)
    code, _, err = run_cli(
        "convert", str(keras_model_file("lstm")), "-o", str(tmp_path / "f"), "--variant", "step"
    )
    assert code == 0, err
    yf = StepRunner(tmp_path / "f" / "lstm_step_float.tflite", "litert").run(xs)
    assert np.abs(y16 - yf).max() < 2e-2  # stated bound over 200 steps


# --- quantization-aware training -------------------------------------------------------------


def _task(kind: str, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A seeded 3-class task on [n, 12, 4] inputs (the fixture models' shape)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, 12, 4)).astype(np.float32)
    y = (x[:, :, 0].mean(1) > 0).astype(np.int32) + (x[:, -1, 1] > 0.8)
    return x, y


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_qat_step_trains_and_converts_to_int8(keras_model_file, calibration_file, tmp_path, kind):
    """A few fake-quant steps on tiny stacked LSTM / GRU models: finite loss that falls, changed
    weights, tracked ranges for every requantized tensor, and an int8 step model from the
    ordinary converter whose outputs follow the fine-tuned float model."""
    from edgelstm.convert import convert_model
    from edgelstm.convert.load import load_keras_model
    from edgelstm.quantize.qat import qat_finetune
    from edgelstm.runtime.stream import StepRunner
    from edgelstm.types import ConvertConfig, Quantization, Variant

    model, _ = load_keras_model(keras_model_file(kind))
    before = [w.copy() for w in model.get_weights()]
    x, y = _task(kind)
    res = qat_finetune(
        model, x, y, loss="sparse_categorical_crossentropy", epochs=3, batch_size=32,
        learning_rate=1e-2, seed=0,
    )  # fmt: skip
    assert res.steps == 9
    assert all(np.isfinite(v) for v in [res.loss_before, *res.loss_history])
    assert res.loss_history[-1] < res.loss_before
    after = model.get_weights()
    assert res.weight_change > 1e-3
    assert all(a.shape == b.shape for a, b in zip(after, before, strict=True))
    assert max(float(np.abs(a - b).max()) for a, b in zip(after, before, strict=True)) > 1e-3
    rec = [n for n in res.ranges if n.endswith("/h")]
    assert len(rec) == (2 if kind == "lstm" else 1)
    assert all(lo <= 0.0 <= hi and hi > lo for lo, hi in res.ranges.values())
    if kind == "lstm":  # layer names depend on what the session built before: ask the model
        first = next(layer.name for layer in model.layers if "lstm" in type(layer).__name__.lower())
        assert {f"{first}/{t}" for t in ("c", "z", "hr", "xk")} <= set(res.ranges)

    path = tmp_path / f"{kind}_qat.keras"
    model.save(path)
    man = convert_model(
        path,
        tmp_path / "out",
        ConvertConfig(
            variants=[Variant.STEP],
            quantizations=[Quantization.FLOAT, Quantization.INT8],
            calibration=str(calibration_file),
        ),
    )
    files = {a.quantization: tmp_path / "out" / a.file for a in man.artifacts}
    yq = StepRunner(files[Quantization.INT8]).run(x[0])
    yf = StepRunner(files[Quantization.FLOAT]).run(x[0])
    keras_y = np.asarray(model(x[:1]))[0]
    assert np.abs(yf[-1] - keras_y).max() < 1e-4  # the QAT weights are what got converted
    assert np.abs(yq - yf).max() < 0.1  # int8 bound of `edgelstm convert` (softmax range 1)


def test_qat_quantizes_the_state_as_the_int8_step_graph_does(
    keras_model_file, calibration_file, tmp_path
):
    """The fake-quant pass quantizes each recurrent state with the int8 step model's own scale
    (its ranges come from a float pass over the same windows the converter calibrates the state
    on: within 15 %, the converter holding out a quarter of the file for verification), its
    float twin is the model, and quantized it moves the output (training sees int8).

    (It used to assert that the fake-quant output is closer to the int8 model than float is:
    true while the step model's state was calibrated on a never-reset stream; calibrated on
    the windows, as a many-to-one model now is, the int8 model's mean deviation from float is
    0.0013 and its rounding is not reproduced element by element, correlation -0.03.)"""
    from edgelstm.convert import convert_model
    from edgelstm.convert.load import load_keras_model
    from edgelstm.quantize.qat import _Net
    from edgelstm.types import ConvertConfig, Quantization, Variant

    man = convert_model(
        keras_model_file("lstm"),
        tmp_path / "o",
        ConvertConfig(
            variants=[Variant.STEP],
            quantizations=[Quantization.INT8],
            calibration=str(calibration_file),
            int16_cell=False,  # the all-int8 cell, whose state scales the fake-quant pass mirrors
        ),
    )
    cal = np.load(calibration_file)["x"]
    model, _ = load_keras_model(keras_model_file("lstm"))
    net = _Net(model, ema=0.99)
    net.init_ranges(cal)
    states = man.artifacts[0].states
    # two LSTMs, h and c each (layer names are Keras's, numbered per process)
    assert sorted(s.role for s in states) == ["c", "c", "h", "h"]
    assert len({s.layer for s in states}) == 2
    for s in states:
        lo, hi = (float(v.numpy()) for v in net.ranges[f"{s.layer}/{s.role}"])
        qat_scale = (max(hi, 0.0) - min(lo, 0.0)) / 255
        assert abs(qat_scale / s.scale - 1) < 0.15, (s.layer, s.role, qat_scale, s.scale)
    fq = np.asarray(net.forward(net.tf.constant(cal[:16]), quant=True)[0])
    fl = np.asarray(net.forward(net.tf.constant(cal[:16]), quant=False)[0])
    assert np.abs(fl - np.asarray(model(cal[:16]))).max() < 1e-5  # the twin is the model
    assert np.abs(fq - fl).max() > 1e-4  # the quantized pass is not the float one


def test_qat_cli_on_zoo_echo(run_cli, tmp_path):
    """`quantize --qat --recipe echo`: float, post-training int8 and QAT int8 metrics side by
    side in report.json and report.md, from the committed zoo model (a few steps)."""
    out = tmp_path / "q"
    code, stdout, err = run_cli(
        "quantize", "models/echo/model.keras", "-o", str(out), "--recipe", "echo", "--qat",
        "--qat-samples", "96", "--max-steps", "3", "--stream-len", "96", "--json",
    )  # fmt: skip
    assert code == 0, err
    rep = json.loads(stdout)
    q = rep["qat"]
    assert q["train"]["steps"] == 3 and q["metric"] == "per_step_accuracy_after_delay"
    for k in ("float", "int8_ptq", "int8_qat"):
        assert 90.0 <= q[k] <= 100.0  # echo is learnt: every variant stays near 100 %
    assert "recipe echo: calibration.npz" in rep["calibration"]
    assert any("per-channel" in n for n in rep["notes"])
    md = (out / "report.md").read_text()
    assert "## Post-training vs quantization-aware int8" in md
    assert "## Per-layer error" in md and "state0_c" in md
    assert (out / "tflite" / "model_step_int8.tflite").exists()
    assert (out / "plot1.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "report.html").exists()


def test_prune_finetune_cli_on_zoo_echo(run_cli, tmp_path):
    """`quantize --prune 0.5 --recipe echo`: tfmot masks, a fine-tune that keeps the zeros, the
    metric dense / pruned / fine-tuned, and raw vs compressed sizes in the report."""
    out = tmp_path / "p"
    code, stdout, err = run_cli(
        "quantize", "models/echo/model.keras", "-o", str(out), "--recipe", "echo",
        "--prune", "0.5", "--qat-samples", "64", "--max-steps", "2", "--stream-len", "64",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    p = json.loads(stdout)["prune"]
    assert abs(p["reached"] - 0.5) < 0.01
    assert p["reached_after_finetune"] == pytest.approx(p["reached"])  # zeros held
    assert len(p["finetune_loss"]) == 2 and all(np.isfinite(p["finetune_loss"]))
    assert p["metric_dense"] >= 0.99  # the committed echo model
    for k in ("metric_pruned", "metric_finetuned"):
        assert 0.0 <= p[k] <= 1.0
    md = (out / "report.md").read_text()
    assert "## Pruning (tensorflow-model-optimization" in md and "zlib" in md


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qat"], "--qat needs --recipe NAME"),
        (["--recipe", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
        (["--qat", "--recipe", "echo", "--epochs", "0"], "--epochs must be at least 1"),
        (["--samples", "0", "--recipe", "echo"], "--samples must be at least 1"),
    ],
)
def test_bad_qat_options(run_cli, keras_model_file, tmp_path, args, message):
    code, _, err = run_cli(
        "quantize", str(keras_model_file("lstm")), "-o", str(tmp_path / "o"), *args
    )
    assert code == 2
    assert f"error: {message}" in err
    assert not (tmp_path / "o").exists()


def test_qat_refuses_models_without_recurrent_layers(keras_model_file):
    from edgelstm.convert.load import load_keras_model
    from edgelstm.errors import UnsupportedLayerError
    from edgelstm.quantize.qat import qat_finetune

    model, _ = load_keras_model(keras_model_file("dense_only"))
    with pytest.raises(BadInputError, match="LSTM, GRU or SimpleRNN"):
        qat_finetune(model, np.zeros((4, 12, 4)), np.zeros((4, 12, 2)), loss="mse")
    model, _ = load_keras_model(keras_model_file("conv"))
    with pytest.raises(UnsupportedLayerError, match="Conv1D"):
        qat_finetune(model, np.zeros((4, 12, 4)), np.zeros((4, 12, 1)), loss="mse")
    import keras  # a branching model converts, but the fake-quant pass walks a chain

    a = keras.Input((12, 4))
    both = keras.layers.Add()([keras.layers.LSTM(3)(a), keras.layers.GRU(3)(a)])
    model = keras.Model(a, keras.layers.Dense(2)(both))
    with pytest.raises(UnsupportedLayerError, match="parallel branches"):
        qat_finetune(model, np.zeros((4, 12, 4)), np.zeros((4, 2)), loss="mse")


def test_per_layer_error_from_real_runs():
    """Intermediate tensors of the int8 step model against the float one, matched by name."""
    from edgelstm.quantize.report import layer_errors

    xs = np.random.default_rng(4).standard_normal((60, 3)).astype(np.float32)
    errs = layer_errors(DATA / "tiny_step_float.tflite", DATA / "tiny_step_int8.tflite", xs)
    names = [e.tensor for e in errs]
    assert len(errs) >= 8 and any("state0_c" in n for n in names)
    assert all(e.dtype == "int8" and e.scale > 0 for e in errs)
    assert any(e.max_abs > 0 for e in errs)
    # every tensor's error is at most a few of its own quantization steps plus what flows in;
    # the input x only suffers rounding: at most half a step
    x = next(e for e in errs if e.tensor.endswith("_x:0"))
    assert x.max_abs <= x.scale / 2 + 1e-9
    same = layer_errors(DATA / "tiny_step_float.tflite", DATA / "tiny_step_float.tflite", xs)
    assert same == []  # float vs float: no quantized tensors to compare


def test_recommend_weighs_accuracy_size_and_latency():
    from edgelstm.quantize.report import QuantReport, recommend

    def rep(mq: float, qbytes: int, qus: float, hib: bool = True, name: str = "acc (%)"):
        return QuantReport(
            "m_float.tflite", "m_int8.tflite", 40_000, qbytes, [0.01], [0.001], 10.0, qus,
            metric_float=99.0 if hib else 2.0, metric_quant=mq, metric_name=name,
            higher_is_better=hib,
        )  # fmt: skip

    assert recommend(rep(98.8, 12_000, 9.0)).startswith("ship m_int8.tflite")
    assert recommend(rep(97.0, 12_000, 9.0)).startswith("ship float m_float.tflite")
    # accurate, but slower and not smaller: float
    assert "slower" in recommend(rep(99.0, 39_000, 30.0))
    # lower-is-better metric (bits per char): 2 % tolerance of the float value
    assert recommend(rep(2.03, 12_000, 9.0, False, "bits_per_char")).startswith("ship m_int8")
    assert recommend(rep(2.10, 12_000, 9.0, False, "bits_per_char")).startswith("ship float")
    assert "\n" not in recommend(rep(98.8, 12_000, 9.0))


def test_one_recommendation_per_run_prefers_the_faster_of_equally_small():
    """int8 and int16x8 both hold accuracy and are about the same size: the run recommends the
    faster int8 (int16x8 runs on reference kernels); per-artifact lines are verdicts, not advice."""
    from edgelstm.quantize.report import QuantReport, assess, recommend_overall

    def rep(file: str, mq: float, qbytes: int, qus: float) -> QuantReport:
        return QuantReport(
            "m_float.tflite", file, 40_000, qbytes, [0.01], [0.001], 10.0, qus,
            metric_float=99.0, metric_quant=mq, metric_name="acc (%)",
        )  # fmt: skip

    i8, i16 = rep("m_int8.tflite", 99.0, 12_000, 9.0), rep("m_int16x8.tflite", 99.0, 12_800, 55.0)
    line = recommend_overall([i16, i8])
    assert line.startswith("recommendation: ship m_int8.tflite") and "m_int16x8" in line
    assert line.count("ship") == 1
    for r in (i8, i16):
        _ok, verdict = assess(r)
        assert not verdict.startswith("ship")
    assert assess(i8)[0] and not assess(rep("m_int8.tflite", 97.0, 12_000, 9.0))[0]
    # nothing holds: the one line says float
    assert recommend_overall([rep("m_int8.tflite", 90.0, 12_000, 9.0)]).startswith(
        "recommendation: ship float"
    )


def test_recipe_calibration_from_file_or_generator(tmp_path):
    """--recipe calibrates from the recipe's calibration.npz, or draws --samples sequences from
    its generator when the recipe has none (seeded: the same samples twice)."""
    import dataclasses

    from edgelstm.quantize.run import recipe_calibration
    from edgelstm.zoo import load_recipe

    rec = load_recipe("echo")
    path, how = recipe_calibration(rec, 64, 0, tmp_path)
    assert path.endswith("models/echo/calibration.npz") and "calibration.npz" in how
    fresh = dataclasses.replace(rec, name="echo-without-files")  # no models/<name>/ directory
    path, how = recipe_calibration(fresh, 40, 3, tmp_path)
    x = np.load(path)["x"]
    assert x.shape == (40, 32, 1) and "40 sequences from generator 'echo'" in how
    (tmp_path / "b").mkdir()
    again = np.load(recipe_calibration(fresh, 40, 3, tmp_path / "b")[0])["x"]
    assert np.array_equal(x, again)


def test_quantize_is_pure_and_save_publishes(keras_model_file, calibration_file, tmp_path):
    """`quantize` returns report.json's content and every file's bytes and writes nothing;
    `save` publishes exactly those files; a bad option is refused before any work."""
    from edgelstm.quantize.run import QuantizeResult, quantize, run_quantize
    from edgelstm.types import Quantization, QuantizeConfig

    cfg = QuantizeConfig(
        quantizations=(Quantization.INT8,), calibration=str(calibration_file), samples=8,
        stream_len=32,
    )  # fmt: skip
    before = set(tmp_path.iterdir())
    res = quantize(keras_model_file("lstm"), cfg)
    assert isinstance(res, QuantizeResult)
    assert set(tmp_path.iterdir()) == before  # nothing written outside its work dir
    assert {"report.json", "report.md", "report.html"} <= set(res.files)
    assert {n for n in res.files if n.startswith("tflite/") and n.endswith(".tflite")} == {
        f"tflite/{a['file']}" for a in res.report["manifest"]["artifacts"]
    }
    assert json.loads(res.files["report.json"]) == json.loads(json.dumps(res.report))
    res.save(tmp_path / "q")
    on_disk = {
        str(p.relative_to(tmp_path / "q")) for p in (tmp_path / "q").rglob("*") if p.is_file()
    }
    assert on_disk == set(res.files)
    for name, data in res.files.items():
        assert (tmp_path / "q" / name).read_bytes() == data
    with pytest.raises(BadInputError, match="--stream-len must be at least 1"):
        run_quantize(keras_model_file("lstm"), tmp_path / "bad", replace(cfg, stream_len=0))
    assert not (tmp_path / "bad").exists()
