"""Model zoo: generators, metrics, TBPTT layout, committed reference models, `edgelstm sample`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import BadInputError
from edgelstm.zoo import MODELS_DIR, list_recipes, load_recipe
from edgelstm.zoo import data as zdata
from edgelstm.zoo.metrics import METRICS, best_threshold, f1, metric_value

RECIPES = {"echo", "temporal-order", "temporal-order-gru", "char-lm", "sensor"}
COMMITTED = sorted(p.parent.name for p in MODELS_DIR.glob("*/model.keras"))


# --- generators -----------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["easy", "hard"])
def test_temporal_order_class_is_the_xy_order(level: str) -> None:
    lo, hi, (a1, b1), (a2, b2) = zdata.TO_LEVELS[level]
    x, y = zdata.temporal_order(300, hi, seed=5, level=level)
    assert x.shape == (300, hi, 8) and y.shape == (300,)
    np.testing.assert_array_equal(x, zdata.temporal_order(300, hi, seed=5, level=level)[0])
    assert set(np.unique(y)) == {0, 1, 2, 3}  # all four classes occur
    for seq, label in zip(x, y, strict=True):
        assert np.all(seq.sum(-1) <= 1)  # one-hot or padding
        text = zdata.decode_temporal_order(seq)
        assert lo <= len(text) <= hi and text[0] == "B" and text[-1] == "E"
        assert seq[-1].argmax() == 1  # right-aligned: E is the last step
        marks = [(i, c) for i, c in enumerate(text) if c in "XY"]
        assert len(marks) == 2
        (t1, c1), (t2, c2) = marks
        assert a1 <= t1 <= b1 and a2 <= t2 <= b2
        assert zdata.TO_CLASSES[label] == {"XX": "Q", "XY": "R", "YX": "S", "YY": "U"}[c1 + c2]
        assert set(text[1:-1]) - {"X", "Y"} <= set("abcd")


def test_temporal_order_rejects_a_window_shorter_than_the_level() -> None:
    with pytest.raises(BadInputError, match="needs seq_len >= 110"):
        zdata.temporal_order(4, 100, seed=0, level="hard")
    with pytest.raises(BadInputError, match="unknown temporal-order level"):
        zdata.temporal_order(4, 110, seed=0, level="medium")


def test_echo_streams_are_delayed_and_tbptt_rows_continue_their_stream() -> None:
    rows, length, T = 4, 40, 8
    x, y = zdata.echo_streams(rows, length, seed=2, delay=3)
    assert np.all(y[:, :3] == -1)
    np.testing.assert_array_equal(y[:, 3:], x[:, :-3])
    fx, fy = zdata.tbptt_layout(x, T), zdata.tbptt_layout(y, T)
    assert fx.shape == (rows * (length // T), T, 1)
    batches = fx.reshape(length // T, rows, T, 1)  # fit(batch_size=rows, shuffle=False)
    for r in range(rows):
        # Row r of consecutive batches, joined, is stream r itself.
        np.testing.assert_array_equal(np.concatenate(batches[:, r]), x[r])
        np.testing.assert_array_equal(
            np.concatenate(fy.reshape(length // T, rows, T, 1)[:, r]), y[r]
        )
    # Only a stream's start is unscored: later chunks' first steps have targets.
    assert np.all(fy[rows:, :3] >= 0)
    with pytest.raises(BadInputError, match="shorter than one chunk"):
        zdata.tbptt_layout(x[:, :5], T)


def test_char_lm_data_is_offline_deterministic_and_split() -> None:
    files = zdata.corpus_files()
    assert files == sorted(files) and all(p.suffix == ".py" for p in files)
    x, y = zdata.char_lm(20, 32, seed=1, vocab_size=64, max_chars=200_000)
    x2, _ = zdata.char_lm(20, 32, seed=1, vocab_size=64, max_chars=200_000)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # next-character targets
    vocab, ids = zdata.char_data(64, 200_000)
    assert len(vocab) == 64 and vocab[0] == zdata.OOV and len(set(vocab)) == 64
    text = zdata.char_corpus(200_000)
    assert zdata.decode(ids[:500], list(vocab)).replace("?", "") == "".join(
        c for c in text[:500] if c in vocab[1:]
    ).replace("?", "")
    # Test windows come from the last 5 % of the corpus only.
    xt, _ = zdata.char_lm(10, 32, seed=3, vocab_size=64, max_chars=200_000, split="test")
    tail = ids[int(len(ids) * 0.95) :]
    joined = tail.tobytes()
    assert all(row.astype(np.int32).tobytes() in joined for row in xt)


def test_sensor_anomalies_are_labelled_spikes() -> None:
    args = {"channels": 3, "noise": 0.1, "anomaly_rate": 0.2}
    x, clean = zdata.sensor(400, 48, seed=4, **args)
    extra = zdata.sensor_extras(400, 48, seed=4, **args)
    assert x.shape == (400, 48, 3) and clean.shape == (400, 3)
    np.testing.assert_array_equal(x, zdata.sensor(400, 48, seed=4, **args)[0])
    jump = np.abs(extra["observed"] - clean).max(-1)
    label = extra["anomaly"]
    assert 40 < label.sum() < 120
    assert np.all(jump[label == 1] >= 0.4 - 1e-6) and np.all(jump[label == 0] == 0)


# --- metrics --------------------------------------------------------------------------------


def test_metrics_registry_values() -> None:
    v = 8
    uniform = np.full((3, 5, v), 1 / v)
    assert metric_value("bits_per_char", uniform, np.zeros((3, 5), int)) == pytest.approx(3.0)
    onehot = np.eye(v)[np.arange(5) % v][None]
    assert metric_value("bits_per_char", onehot, np.arange(5)[None] % v) == pytest.approx(0.0)
    assert metric_value("accuracy", np.eye(4)[[0, 1, 2, 3]], np.array([0, 1, 2, 0])) == 0.75
    pred = np.array([[[0.9], [0.2], [0.7]]])
    y = np.array([[[-1.0], [0.0], [0.0]]])
    assert metric_value("per_step_accuracy_after_delay", pred, y) == 0.5
    assert metric_value("mae", np.ones((2, 3)), np.zeros((2, 3))) == 1.0
    assert not METRICS["bits_per_char"].higher_is_better and METRICS["accuracy"].higher_is_better
    with pytest.raises(BadInputError, match="unknown metric 'nope'"):
        metric_value("nope", pred, y)
    scores, label = np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1])
    assert best_threshold(scores, label) == pytest.approx(0.8)
    assert f1(scores >= 0.8, label) == 1.0


def test_pipeline_and_training_use_the_same_metric() -> None:
    from edgelstm.evaluate import score
    from edgelstm.train import evaluate

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(64), size=(4, 64))
    ids = rng.integers(0, 64, size=(4, 64))
    assert score("bits_per_char", probs, ids) == evaluate(load_recipe("char-lm"), probs, ids)


# --- recipes, committed models --------------------------------------------------------------


def test_zoo_list_includes_every_recipe(run_cli) -> None:
    assert {r.name for r in list_recipes()} >= RECIPES
    code, out, err = run_cli("zoo", "list", "--json")
    assert code == 0, err
    listed = {r["name"]: r for r in json.loads(out)}
    assert set(listed) == {r.name for r in list_recipes()}
    assert listed["echo"]["trained"] and listed["echo"]["test_metric"] >= 0.995
    code, out, _ = run_cli("zoo", "list")
    assert "bits_per_char <= " in out and "accuracy >= 0.99" in out


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_model_meets_its_metrics(name: str) -> None:
    """Re-measure each committed model on its committed eval data; compare with metrics.json."""
    from edgelstm._tf import import_tf

    import_tf()
    import keras

    recipe = load_recipe(name)
    d = recipe.dir
    metrics = json.loads((d / "metrics.json").read_text())
    total = sum(p.stat().st_size for p in d.iterdir())
    assert total < 2_000_000, f"{name}: {total} bytes committed"
    model = keras.saving.load_model(d / "model.keras", compile=False)
    with np.load(d / "eval.npz") as ev:
        x, y = ev["x"], ev["y"]
    value = metric_value(recipe.metric, np.asarray(model.predict(x, verbose=0)), y)
    assert value == pytest.approx(metrics["eval_metric"], abs=1e-4)
    assert METRICS[recipe.metric].meets(metrics["test_metric"], recipe.target)
    assert METRICS[recipe.metric].meets(value, recipe.target)
    with np.load(d / "calibration.npz") as cal:
        assert cal["x"].shape[1:] == x.shape[1:]


def test_temporal_order_comparison_simple_rnn_fails_where_lstm_succeeds() -> None:
    comp = json.loads((MODELS_DIR / "temporal-order" / "comparison.json").read_text())
    lstm = [r for r in comp["runs"] if r["cell"] == "LSTM"]
    rnn = [r for r in comp["runs"] if r["cell"] == "SimpleRNN"]
    assert lstm and rnn and lstm[0]["test_metric"] >= 0.99
    assert all(r["test_metric"] < 0.6 for r in rnn)  # near chance (0.25) on the hard level
    # one with the LSTM's units, one with about its parameter count
    assert "SimpleRNN(64)" in {r["architecture"].split(" ")[0] for r in rnn}
    assert any(
        abs(r["parameters"] - lstm[0]["parameters"]) < 0.05 * lstm[0]["parameters"] for r in rnn
    )


# --- training -------------------------------------------------------------------------------


def test_quick_training_of_every_recipe(tmp_path: Path) -> None:
    from edgelstm.train import save_training, train_recipe

    results = {}
    for name in sorted(RECIPES):
        res = results[name] = train_recipe(load_recipe(name), seed=0, quick=True)
        m = res.metrics
        assert m["recipe"] == name and m["epochs"] >= 1 and np.isfinite(m["test_metric"])
        assert m["device"] in ("CPU", "GPU") or "x" in m["device"]
        if name == "sensor":
            assert 0.0 <= m["anomaly_f1_test"] <= 1.0 and "anomaly" in res.eval_extra
        if name == "echo":
            assert m["tbptt"]
    save_training(results["sensor"], tmp_path / "sensor")
    save_training(results["char-lm"], tmp_path / "char-lm")
    assert (tmp_path / "char-lm" / "vocab.json").is_file()
    with np.load(tmp_path / "sensor" / "eval.npz") as ev:
        assert {"x", "y", "observed", "anomaly"} <= set(ev.files)


def test_training_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    from edgelstm.train import save_training, train_recipe

    a = train_recipe(load_recipe("temporal-order-gru"), seed=3, quick=True)
    b = train_recipe(load_recipe("temporal-order-gru"), seed=3, quick=True)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    save_training(a, tmp_path / "a")
    save_training(b, tmp_path / "b")
    for name in ("model.keras", "calibration.npz", "eval.npz"):  # byte-identical artifacts
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    c = train_recipe(load_recipe("temporal-order-gru"), seed=4, quick=True)
    assert not np.array_equal(a.model.get_weights()[0], c.model.get_weights()[0])


def test_remember_bias_initialisation() -> None:
    from edgelstm.train import build_model, init_remember_bias

    model = build_model(load_recipe("temporal-order"))
    init_remember_bias(model, 3.0)
    bias = model.layers[0].get_weights()[2]
    np.testing.assert_array_equal(bias[64:128], 3.0)
    assert np.all(bias[:64] == 0.0)  # other gates untouched


# --- sampling -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def char_lm_step(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed char-lm converted to a float step model (the deployable artifact)."""
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    out = tmp_path_factory.mktemp("charlm")
    d = MODELS_DIR / "char-lm"
    convert_model(
        d / "model.keras",
        out,
        ConvertConfig(
            variants=[Variant.STEP],
            quantizations=[Quantization.FLOAT],
            calibration=str(d / "calibration.npz"),
        ),
    )
    return next(out.glob("*_step_float.tflite"))


def test_sample_from_keras_and_step_tflite_is_seeded(run_cli, char_lm_step: Path) -> None:
    keras_file = MODELS_DIR / "char-lm" / "model.keras"
    vocab = set(json.loads((MODELS_DIR / "char-lm" / "vocab.json").read_text())["chars"])
    texts = {}
    for model in (keras_file, char_lm_step):
        runs = []
        for _ in range(2):
            code, out, err = run_cli(
                "sample", str(model), "--temperature", "0.7", "--length", "80", "--seed", "5",
                "--prime", "def ", "--json",
            )  # fmt: skip
            assert code == 0, err[-2000:]
            runs.append(json.loads(out)["text"])
        assert runs[0] == runs[1]
        assert len(runs[0]) == 80 and set(runs[0]) <= vocab | {"?"}
        texts[model.suffix] = runs[0]
    # Greedy decoding agrees between Keras and the converted float step model.
    greedy = [
        run_cli("sample", str(m), "--temperature", "0", "--length", "40", "--prime", "import ")[1]
        for m in (keras_file, char_lm_step)
    ]
    assert greedy[0] == greedy[1] and greedy[0].startswith("import ")


def test_sample_bad_input(run_cli, tmp_path: Path, char_lm_step: Path) -> None:
    bad = tmp_path / "vocab.json"
    bad.write_text(json.dumps({"chars": ["a", "b"]}))
    code, _, err = run_cli("sample", str(char_lm_step), "--vocab", str(bad))
    assert code == 2 and "2 characters, the model predicts 64" in err
    code, _, err = run_cli("sample", str(tmp_path / "missing.tflite"))
    assert code == 2 and "no such file" in err
    echo_model = MODELS_DIR / "echo" / "model.keras"
    code, _, err = run_cli("sample", str(echo_model))
    assert code == 2 and "not a char-lm model" in err


def test_train_cli_writes_the_training_files(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "sensor"
    code, stdout, err = run_cli(
        "train", "sensor", "--quick", "--seed", "1", "-o", str(out), "--json"
    )
    assert code == 0, err[-2000:]
    metrics = json.loads(stdout)  # stdout is only the metrics; the progress bar is on stderr
    assert metrics["seed"] == 1 and metrics["quick"] and "epoch 1/1 [" in err
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert {p.name for p in out.iterdir()} == {
        "model.keras",
        "metrics.json",
        "calibration.npz",
        "eval.npz",
    }
    code, _, err = run_cli("train", "sensor", "--quick", "-o", str(out / "metrics.json"))
    assert code == 2 and "is a file" in err


def test_sample_from_tflite_does_not_import_tensorflow(char_lm_step: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom pathlib import Path\n"
        "from edgelstm.zoo.sample import find_vocab, generate, open_stepper\n"
        f"p = Path({str(char_lm_step)!r}); s = open_stepper(p)\n"
        "text = generate(s, find_vocab(p, s.vocab_size), length=30, seed=2)\n"
        "print(len(text), 'tensorflow' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["30", "False"]


def test_cell_limit_view_and_penalty() -> None:
    """The training twin exposes the LSTM's final cell state; the penalty is its squared excess."""
    from edgelstm.train.model import _cell_penalty, _cell_state_view, build_model

    model = build_model(load_recipe("temporal-order"))
    view = _cell_state_view(model)
    view.set_weights(model.get_weights())
    x, _ = zdata.temporal_order(3, 110, seed=0)
    y, c = view(x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(model(x)), atol=1e-6)
    assert tuple(c.shape) == (3, 64)
    penalty = _cell_penalty(3.0)(None, np.array([[4.0, -1.0], [-5.0, 0.0]], np.float32))
    np.testing.assert_allclose(np.asarray(penalty), [0.5, 2.0])


# Known int8 gaps: none since the int8 step model's LSTM cells run in int16 (tflite.cell16; issue
# #13: char-lm's step model missed the 0.1 bound by 0.12-0.16 with an int8 cell). A recipe listed
# here must still be reported as a miss.
INT8_STEP_GAPS: set[str] = set()


@pytest.mark.parametrize("recipe", COMMITTED)
def test_committed_model_int8_artifacts_pass_their_bounds(recipe: str, tmp_path: Path) -> None:
    """Every committed model converted to int8 with the defaults (sequence + step, its own
    calibration.npz): each artifact within the int8 parity bound on held-out windows, except the
    known gap above, which must still be reported as a miss (the day it passes, this says so).
    The temporal-order GRU's step model once missed by 0.9999: a never-reset stream in its
    calibration, though a many-to-one model is reset per window."""
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    rec = load_recipe(recipe)
    cfg = ConvertConfig(
        quantizations=[Quantization.INT8], calibration=str(rec.dir / "calibration.npz"),
        verify_fail=False,
    )  # fmt: skip
    manifest = convert_model(rec.dir / "model.keras", tmp_path / "o", cfg)
    got = {a.variant: a.parity for a in manifest.artifacts}
    assert set(got) == {Variant.SEQUENCE, Variant.STEP}
    for variant, parity in got.items():
        assert parity is not None
        gap = variant == Variant.STEP and recipe in INT8_STEP_GAPS
        assert parity.passed is not gap, (recipe, variant.value, parity.max_abs, parity.bound)
    # the step graph's LSTM cell in int16 (GRUs keep theirs): int16 c in and out, int8 h; the two
    # gate FCs int16x8 behind a QUANTIZE each, h back to int8 by a third
    step = next(a for a in manifest.artifacts if a.variant == Variant.STEP)
    states = {s.role: s.dtype for s in step.states}
    lstm = recipe != "temporal-order-gru"
    assert states == ({"h": "int8", "c": "int16"} if lstm else {"h": "int8"}), (recipe, states)
    assert any("the cell state is int16" in n for n in step.notes) is lstm, step.notes
    if lstm:
        ops = step.op_counts  # (+ a head's FC and activation; + an h state tie's QUANTIZE)
        assert ops["FULLY_CONNECTED"] >= 2 and ops["LOGISTIC"] >= 3 and ops["TANH"] >= 2, ops
        assert ops["QUANTIZE"] >= 3 and ops["MUL"] == 3 and ops["ADD"] == 2, ops


def test_char_lm_int8_step_misses_its_bound_with_an_int8_cell(tmp_path: Path) -> None:
    """The same conversion with the cell left in int8 (`--int8-lstm-cell int8`): issue #13's
    miss (max probability error 0.12 > 0.1 on the held-out windows)."""
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    d = MODELS_DIR / "char-lm"
    cfg = ConvertConfig(
        variants=[Variant.STEP], quantizations=[Quantization.INT8],
        calibration=str(d / "calibration.npz"), verify_fail=False, int16_cell=False,
    )  # fmt: skip
    (art,) = convert_model(d / "model.keras", tmp_path / "o", cfg).artifacts
    assert art.parity is not None and not art.parity.passed, art.parity
    assert art.parity.max_abs > art.parity.bound
    assert {s.role: s.dtype for s in art.states} == {"h": "int8", "c": "int8"}
    assert not any("int16" in n for n in art.notes), art.notes
