"""Issue #13: the models people bring convert in float and int8, or are refused with exit 2.

One conversion per corpus model (float + int8, every variant, one isolated converter process),
shared by the tests below through a session cache.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from corpus import CASES, D, T, calibration, save_case

from edgelstm.arrays import Named
from edgelstm.convert import convert_model
from edgelstm.convert.verify import run_sequence, run_step
from edgelstm.errors import BadInputError, EdgeLSTMError, VerificationError
from edgelstm.tflite_info import read_tflite
from edgelstm.types import ConvertConfig, Quantization, Variant, manifest_from_dict

CONVERTS = sorted(k for k, c in CASES.items() if c.refused is None)
REFUSED = sorted(k for k, c in CASES.items() if c.refused is not None)
STREAMED = sorted(k for k in CONVERTS if CASES[k].streamable)
N_OUTPUTS = {
    "two_heads": 2,
    "denoiser_two_seq_outputs": 2,
    "side_features_two_heads": 2,
    "bidi_merge_none": 2,
    "bidi_none_two_heads": 2,
    "encoder_return_state": 2,
}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """name -> (outdir, manifest or the EdgeLSTMError raised), converted on first use."""
    root = tmp_path_factory.mktemp("corpus")
    done: dict[str, tuple[Path, Any]] = {}
    errors: dict[str, str] = {}

    def get(name: str) -> tuple[Path, Any]:
        if name not in done:
            case = CASES[name]
            path = save_case(name, case, root)
            data = calibration(case)
            cal = root / f"{name}_cal.{'npz' if case.inputs else 'npy'}"
            if case.inputs:
                np.savez(cal, **data.arrays)
            else:
                np.save(cal, data)
            cfg = ConvertConfig(
                quantizations=[Quantization.FLOAT, Quantization.INT8],
                calibration=str(cal),
                calibration_samples=32,
                verify_samples=4,
            )
            out = root / f"{name}_out"
            try:
                done[name] = (out, convert_model(path, out, cfg))
            except VerificationError as exc:
                # The artifacts inside their bounds are still written, with their manifest.
                manifest = manifest_from_dict(json.loads((out / "manifest.json").read_text()))
                done[name] = (out, manifest)
                errors[name] = str(exc)
            except EdgeLSTMError as exc:
                done[name] = (out, exc)
        return done[name]

    get.errors = errors  # type: ignore[attr-defined]

    return get


@pytest.mark.parametrize("name", CONVERTS)
def test_converts_float_and_int8(name: str, corpus: Any) -> None:
    out, manifest = corpus(name)
    assert not isinstance(manifest, Exception), f"{name}: {manifest}"
    case = CASES[name]
    want = {Variant.SEQUENCE, Variant.STEP} if case.streamable else {Variant.SEQUENCE}
    got = {(a.variant, a.quantization) for a in manifest.artifacts}
    gaps = {(Variant(v), Quantization.INT8) for v in case.int8_gaps}
    expected = {(v, q) for v in want for q in (Quantization.FLOAT, Quantization.INT8)}
    assert got == expected - gaps, f"{name}: gap closed? {sorted(gaps & got)}"
    # A known int8 gap is reported, never silent: the bound overrun (exit 2 naming the
    # artifact) or the converter crash in the manifest's notes.
    said = corpus.errors.get(name, "") + " ".join(manifest.notes)
    for v in case.int8_gaps:
        assert f"{name}_{v}_int8.tflite" in said or f"{v}/int8" in said, said
    for art in manifest.artifacts:
        assert art.parity is not None and art.parity.passed, (art.file, art.parity)
        if art.quantization == Quantization.FLOAT:
            assert art.parity.max_abs <= 1e-4, (art.file, art.parity.max_abs)
        info = read_tflite(out / art.file)
        assert not info.unfused_ops, (art.file, info.unfused_ops)
        assert info.inputs[0].shape[0] == 1
        # one signature tensor per Keras input / output (x / y, or x0, x1 / y0, y1 for several)
        states = {s.input for s in info.states()} | {s.output for s in info.states()}
        ins = sorted(t.name for t in info.inputs if t.name not in states)
        outs = sorted(t.name for t in info.outputs if t.name not in states)
        n_in, n_out = max(len(case.inputs), 1), N_OUTPUTS.get(name, 1)
        assert ins == (["x"] if n_in == 1 else [f"x{k}" for k in range(n_in)]), ins
        assert outs == (["y"] if n_out == 1 else [f"y{k}" for k in range(n_out)]), outs
        if n_in > 1 or n_out > 1:  # the manifest names each tensor's Keras input / output
            assert all(t.keras_name for t in art.inputs + art.outputs if t.name not in states)


@pytest.mark.parametrize("name", STREAMED)
def test_step_streams_like_sequence(name: str, corpus: Any) -> None:
    """The float step model, fed one step at a time, equals the float sequence model."""
    out, manifest = corpus(name)
    assert not isinstance(manifest, Exception), f"{name}: {manifest}"
    seq = manifest.artifact("sequence", "float")
    step = manifest.artifact("step", "float")
    xs = calibration(CASES[name], n=3, seed=11)
    seq_data, step_data = (out / seq.file).read_bytes(), (out / step.file).read_bytes()
    ys = run_sequence(seq_data, read_tflite(seq_data), xs)
    steps = run_step(step_data, read_tflite(step_data), xs, CASES[name].tokens)
    pairs = (
        [(ys.arrays[k], steps.arrays[k]) for k in ys.names]
        if isinstance(ys, Named)
        else [(ys, steps)]
    )
    for y, st in pairs:
        if y.ndim == st.ndim - 1:  # many-to-one: the last step is the answer
            st = st[:, -1]
        np.testing.assert_allclose(st.reshape(y.shape), y, atol=1e-5)


def test_int8_fused_lstm_cell_range_fix_is_what_passes_the_bound(corpus: Any) -> None:
    """The converter gave batchnorm_between's second LSTM the int16 cell range +-0.5, where
    LiteRT's integer tanh(c) is wrong: measured with LiteRT on the artifact and on the same bytes
    with the convert's widening undone."""
    import re

    from edgelstm.tflite.passes import load_model, pack_model

    out, manifest = corpus("batchnorm_between")
    art = manifest.artifact("sequence", "int8")
    (note,) = [n for n in art.notes if "tanh(c) wrong below +-1" in n]
    was, now = (float(v) for v in re.search(r"range \+-(\S+) -> \+-(\S+) ", note).groups())
    assert (was, now) == (0.5, 1.0), note
    data = (out / art.file).read_bytes()
    model = load_model(data)
    sg = model.subgraphs[0]
    cells = [
        sg.tensors[op.inputs[19]] for op in sg.operators if hasattr(op.builtinOptions, "cellClip")
    ]
    (cell,) = [c for c in cells if c.quantization.scale[0] == now / 32768]
    cell.quantization.scale = [was / 32768]
    undone = pack_model(model)
    xs = calibration(CASES["batchnorm_between"], n=16, seed=5)
    seq = (out / manifest.artifact("sequence", "float").file).read_bytes()
    ref = run_sequence(seq, read_tflite(seq), xs)
    err = lambda d: float(np.max(np.abs(run_sequence(d, read_tflite(d), xs) - ref)))  # noqa: E731
    assert err(data) <= art.parity.bound < err(undone), (err(data), err(undone))


def test_int8_reverse_quantization_tie_is_what_passes_the_bound(corpus: Any) -> None:
    """A Bidirectional(merge_mode=None)'s backward half ends in a REVERSE_V2, which copies bytes;
    the converter quantized its output like the Concatenate after it and its input like the
    LSTM (0.37 max error). Measured with LiteRT on the artifact and on its bytes with the LSTM
    output (and the hidden state and intermediate tied to it) given back the LSTM's own
    quantization."""
    import re

    from edgelstm.tflite.passes import load_model, pack_model

    out, manifest = corpus("bidi_none_concat_seq")
    art = manifest.artifact("sequence", "int8")
    (note,) = [n for n in art.notes if "REVERSE_V2 copies bytes" in n]
    was_s, was_z = re.search(r"was (\S+), (-?\d+)\)", note).groups()
    data = (out / art.file).read_bytes()
    model = load_model(data)
    sg = model.subgraphs[0]
    reverse = [op for op in sg.operators if "REVERSE" in _op_name(model, op)]
    assert reverse
    for op in reverse:  # the graph as shipped: one quantization each side of every REVERSE_V2
        src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
        assert list(src.quantization.scale) == list(dst.quantization.scale)
        assert list(src.quantization.zeroPoint) == list(dst.quantization.zeroPoint)
    lstm_outs = {int(op.outputs[0]): op for op in sg.operators if op.intermediates is not None}
    for op in reverse:
        lstm = lstm_outs.get(int(op.inputs[0]))
        if lstm is None:
            continue
        for t in (op.inputs[0], lstm.inputs[18], lstm.intermediates[4]):
            sg.tensors[t].quantization.scale = [float(was_s)]
            sg.tensors[t].quantization.zeroPoint = [int(was_z)]
    undone = pack_model(model)
    xs = calibration(CASES["bidi_none_concat_seq"], n=16, seed=5)
    seq = (out / manifest.artifact("sequence", "float").file).read_bytes()
    ref = run_sequence(seq, read_tflite(seq), xs)
    err = lambda d: float(np.max(np.abs(run_sequence(d, read_tflite(d), xs) - ref)))  # noqa: E731
    assert err(data) <= art.parity.bound < err(undone), (err(data), err(undone))


def _op_name(model: Any, op: Any) -> str:
    from edgelstm.tflite_info import schema

    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(schema().BuiltinOperator).items() if k.isupper()}
    return names.get(builtin, "")


@pytest.mark.parametrize("name", REFUSED)
def test_refused_with_exit_2_naming_the_layer(name: str, corpus: Any) -> None:
    _out, result = corpus(name)
    assert isinstance(result, EdgeLSTMError), f"{name} converted but is listed as refused"
    assert result.exit_code == 2
    assert CASES[name].refused in str(result), str(result)
    assert "\n" not in str(result)


def test_cli_refusal_is_one_line_exit_2(corpus: Any, run_cli: Any, tmp_path: Path) -> None:
    """Through the CLI: a refused model is `error: ...` on one line, exit 2, nothing written."""
    path = save_case("cli_seq2seq", CASES["seq2seq_return_state"], tmp_path)
    code, _out, err = run_cli("convert", str(path), "-o", str(tmp_path / "o"))
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "encoder" in lines[0], err
    assert not (tmp_path / "o").exists()


def test_readme_support_table_is_generated() -> None:
    """The README's layer table is the registry's, so it cannot drift."""
    from edgelstm.convert.layers import support_table

    text = (Path(__file__).parent.parent / "README.md").read_text()
    start, end = "<!-- layers:start -->\n", "<!-- layers:end -->"
    assert start in text and end in text
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == support_table(), "regenerate: python -m edgelstm.convert.layers"


C_ENGINES = [
    pytest.param(name, q, id=f"{name}-{q}")
    for name in STREAMED
    for q in ("float", "int8")
    if not (q == "int8" and "step" in CASES[name].int8_gaps)  # no such artifact to export
]


@pytest.mark.parametrize(("name", "quant"), C_ENGINES)
def test_step_c_engine_matches(name: str, quant: str, corpus: Any, tmp_path: Path) -> None:
    """Every streamable corpus model's step model as a C engine: compiled with host gcc
    (-Werror, sanitizers) and run against the reference kernels (TFLite Micro's, or LiteRT
    BUILTIN_REF for a model with an op TFLite Micro lacks), int8 bit-exact."""
    from edgelstm.export.cengine import export_c

    out, manifest = corpus(name)
    assert not isinstance(manifest, Exception), f"{name}: {manifest}"
    step = manifest.artifact("step", quant)
    res = export_c(out / step.file, tmp_path / "c", name="m", verify=["host"], manifest=manifest)
    parity = res["verify"]["host"]["parity"]
    assert parity["ok"], parity
    if quant == "int8":
        assert parity["max_lsb_diff"] == 0, parity


MULTI_IO = sorted(k for k in STREAMED if CASES[k].inputs or k in N_OUTPUTS)


@pytest.mark.parametrize("name", MULTI_IO)
def test_step_runner_takes_and_gives_dicts(name: str, corpus: Any) -> None:
    """StepRunner / SequenceRunner on a model with several inputs or outputs: dicts by signature
    name (a side input fed whole at every step); the float step model streams the sequence
    model's outputs, the int8 one within its bound."""
    from edgelstm.runtime import SequenceRunner, StepRunner

    out, manifest = corpus(name)
    assert not isinstance(manifest, Exception), f"{name}: {manifest}"
    data = calibration(CASES[name], n=2, seed=13)
    for q in ("float", "int8"):
        seq = SequenceRunner(out / manifest.artifact("sequence", "float").file)
        step = StepRunner(out / manifest.artifact("step", q).file)
        assert step.multi_io and step.output_names == seq.output_names
        for i in range(2):
            x = {k: v[i] for k, v in data.arrays.items()} if CASES[name].inputs else data[i]
            want, got = seq.run(x), step.run(x)
            want = want if isinstance(want, dict) else {"y": want}
            got = got if isinstance(got, dict) else {"y": got}
            art = manifest.artifact("step", q)
            tol = 1e-5 if q == "float" else art.parity.bound
            for k, y in want.items():
                g = got[k] if y.ndim == got[k].ndim else got[k][-1]  # many-to-one: last step
                np.testing.assert_allclose(g.reshape(y.shape), y, atol=tol, err_msg=f"{q} {k}")


BAD_MULTI_CALIBRATION = [
    ({"x0": (40, 6, 3)}, "no array 'x1' (model input"),  # missing key
    ({"x0": (40, 6, 3), "x1": (40, 3)}, "array 'x1' (model input"),  # mis-shaped
    ({"x0": (40, 6, 3), "x1": (39, 2)}, "different numbers"),  # sample counts differ
]


def test_bad_multi_input_calibration_is_exit_2(run_cli: Any, tmp_path: Path) -> None:
    """A calibration .npz that lacks an input's key, mis-shapes it or differs in sample
    count: BadInputError (exit 2) naming it; through the CLI one line, nothing written."""
    import keras

    from edgelstm.convert.calibration import load_calibration
    from edgelstm.convert.graph import parse_model

    path = save_case("cli_two_inputs", CASES["two_inputs"], tmp_path)
    ms = parse_model(keras.models.load_model(path), "keras3")
    rng = np.random.default_rng(0)
    for k, (arrays, message) in enumerate(BAD_MULTI_CALIBRATION):
        cal = tmp_path / f"cal{k}.npz"
        np.savez(cal, **{n: rng.standard_normal(s).astype(np.float32) for n, s in arrays.items()})
        with pytest.raises(BadInputError, match=re.escape(message)):
            load_calibration(cal, ms)
    code, _out, err = run_cli(
        "convert", str(path), "-o", str(tmp_path / "o"), "--quantize", "int8",
        "--calibration", str(tmp_path / "cal0.npz"),
    )  # fmt: skip
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and BAD_MULTI_CALIBRATION[0][1] in lines[0], err
    assert not (tmp_path / "o").exists()


def test_tflm_export_describes_every_tensor(corpus: Any, tmp_path: Path) -> None:
    """The TFLite Micro export of a step model with two inputs and two outputs: macros for
    each input and output, the README naming each one's Keras tensor."""
    from edgelstm.export.tflm import export_tflm

    out, manifest = corpus("side_features_two_heads")
    assert not isinstance(manifest, Exception), manifest
    art = manifest.artifact("step", "int8")
    export_tflm(out / art.file, tmp_path, manifest=manifest, real_builds=[])
    header = next(tmp_path.glob("*_model_data.h")).read_text()
    for kind, names in (("INPUT", ["X0", "X1"]), ("OUTPUT", ["Y0", "Y1"])):
        for nm in names:
            assert f"_{kind}_{nm}_INDEX " in header and f"_{kind}_{nm}_SCALE " in header, nm
    readme = (tmp_path / "README.md").read_text()
    keras = {t.name: t.keras_name for t in art.inputs + art.outputs if t.keras_name}
    assert sorted(keras) == ["x0", "x1", "y0", "y1"] and keras["y0"] == "cls", keras
    assert all(f"`{n}` = Keras `{k}`" in readme for n, k in keras.items()), readme


def test_seq2seq_inference_loop_matches_keras(tmp_path: Path) -> None:
    """The Keras seq2seq example's inference loop on edgelstm artifacts: the encoder
    (return_state=True) as a sequence model whose outputs are its final h and c, the decoder as a
    step model started from them with StepRunner.set_state, fed back its own greedy token."""
    import keras

    from edgelstm.runtime import SequenceRunner, StepRunner

    V, U, STEPS = 5, 4, 6
    keras.utils.set_random_seed(11)
    L = keras.layers
    enc_in = keras.Input((T, D))
    _, h, c = L.LSTM(U, return_state=True, name="encoder")(enc_in)
    dec_in = keras.Input((None, V))
    dec_lstm = L.LSTM(U, return_sequences=True, return_state=True, name="decoder")
    dense = L.Dense(V, activation="softmax", name="next")
    dense(dec_lstm(dec_in, initial_state=[h, c])[0])  # the training graph builds the layers
    # The example's inference models (Keras), and the decoder to deploy: the same two layers
    # without return_state (its state is the step model's I/O)
    encoder = keras.Model(enc_in, [h, c])
    h_in, c_in = keras.Input((U,)), keras.Input((U,))
    y, h2, c2 = dec_lstm(dec_in, initial_state=[h_in, c_in])
    decoder = keras.Model([dec_in, h_in, c_in], [dense(y), h2, c2])
    deploy = keras.Sequential(
        [keras.Input((T, V)), L.LSTM(U, return_sequences=True), L.Dense(V, activation="softmax")]
    )
    deploy.layers[0].set_weights(dec_lstm.get_weights())
    deploy.layers[1].set_weights(dense.get_weights())
    encoder.save(tmp_path / "enc.keras")
    deploy.save(tmp_path / "dec.keras")
    cfg = ConvertConfig(verify_samples=4)
    enc_m = convert_model(tmp_path / "enc.keras", tmp_path / "enc", cfg)
    dec_cfg = ConvertConfig(verify_samples=4, variants=[Variant.STEP])
    dec_m = convert_model(tmp_path / "dec.keras", tmp_path / "dec", dec_cfg)
    assert [t.keras_name for t in enc_m.artifact("sequence", "float").outputs] == [
        "encoder#1",
        "encoder#2",
    ]
    enc = SequenceRunner(tmp_path / "enc" / enc_m.artifact("sequence", "float").file)
    dec = StepRunner(tmp_path / "dec" / dec_m.artifact("step", "float").file)
    x = np.random.default_rng(2).standard_normal((1, T, D)).astype(np.float32)

    states = [np.asarray(v) for v in encoder(x)]
    tok, want_tokens, want_probs = 0, [], []
    for _ in range(STEPS):
        p, hh, cc = decoder([np.eye(V, dtype=np.float32)[tok][None, None], *states])
        tok = int(np.argmax(p[0, -1]))
        want_tokens.append(tok)
        want_probs.append(np.asarray(p[0, -1]))
        states = [np.asarray(hh), np.asarray(cc)]

    final = enc.run(x[0])
    dec.set_state({"state0_h": final["y0"], "state0_c": final["y1"]})
    tok, got_tokens, got_probs = 0, [], []
    for _ in range(STEPS):
        p = dec.push(np.eye(V, dtype=np.float32)[tok])
        tok = int(np.argmax(p))
        got_tokens.append(tok)
        got_probs.append(p)
    assert got_tokens == want_tokens
    np.testing.assert_allclose(np.stack(got_probs), np.stack(want_probs), atol=1e-5)
