"""ONNX models in: the PyTorch-exported fixtures (tests/data/onnx/, written by
tests/data/make_onnx_fixtures.py with real torch.onnx.export) and onnx.helper graphs for the
LSTM/GRU/RNN attributes. The reference everywhere is onnxruntime running the source file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx  # the [convert] extra: a missing one must fail here, not skip
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgelstm.errors import BadInputError, UnsupportedLayerError

DATA = Path(__file__).parent / "data" / "onnx"
T, D = 12, 4

# fixture -> the Keras layer chain it must become
FIXTURES = {
    "lstm_last": ["LSTM", "Dense"],
    "lstm2_seq": ["LSTM", "LSTM", "Dense", "Activation"],
    "gru2_time_major": ["GRU", "GRU", "Dense"],
    "gru_seq": ["GRU", "Dense", "Activation"],
    "bilstm_final": ["Bidirectional", "Dense"],
    "bigru_seq": ["Bidirectional", "Dense"],
    "embed_gru": ["Embedding", "GRU", "Dense", "Activation"],
    "rnn_tanh": ["SimpleRNN", "Dense"],
    "rnn_relu": ["SimpleRNN", "Dense"],
    "conv_causal_lstm": ["Conv1D", "Activation", "LSTM", "Dense"],
    "conv_same_lstm": ["Conv1D", "Activation", "LSTM", "Dense"],
    "lstm_layernorm": ["LSTM", "LayerNormalization", "Dense", "Activation", "Dense"],
    "lstm_static": ["LSTM", "Dense"],
    # torch's default (dynamo) exporter
    "dynamo_lstm_last": ["LSTM", "LSTM", "Dense"],
    "dynamo_bigru_seq": ["Bidirectional", "Dense"],
}


def _inputs(token: bool, n: int = 3, t: int = T, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if token:
        return rng.integers(0, 20, (n, t)).astype(np.int32)
    return rng.standard_normal((n, t, D)).astype(np.float32)


def _rebuild_vs_ort(path: Path, seq_len: int | None = T) -> tuple[Any, float]:
    from edgelstm.convert.onnx_import import load_onnx

    imported = load_onnx(path, seq_len)
    model = imported.model
    x = _inputs("int" in str(model.inputs[0].dtype), t=imported.seq_len)
    ref = imported.reference(x)
    got = np.asarray(model(x), np.float64)
    assert ref.shape == got.shape
    return imported, float(np.abs(ref - got).max())


def _needs_missing_layer(kind: str) -> bool:
    """Layers the importer maps onto registry handlers that this checkout may not have yet:
    then the node must be refused by name instead."""
    from edgelstm.convert.layers import supported_layers

    return kind in ("LayerNormalization", "LeakyReLU") and kind not in supported_layers()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_torch_export_rebuilds_exactly(name: str) -> None:
    """The Keras chain (weights mapped: iofc -> ifco, zrh, linear_before_reset) computes what
    onnxruntime computes on the exported file."""
    if any(_needs_missing_layer(k) for k in FIXTURES[name]):
        with pytest.raises(UnsupportedLayerError, match=r"\(LayerNormalization\).*nearest"):
            _rebuild_vs_ort(DATA / f"{name}.onnx")
        return
    imported, err = _rebuild_vs_ort(DATA / f"{name}.onnx")
    kinds = [type(layer).__name__ for layer in imported.model.layers[1:]]
    assert kinds == FIXTURES[name]
    assert err <= 1e-5, err


# --- onnx.helper graphs for the attribute edge cases ---------------------------------------------

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _rnn_graph(
    op: str,
    *,
    hidden: int = 5,
    direction: str = "forward",
    layout: int = 0,
    output: str = "Y",
    attrs: dict[str, Any] | None = None,
    initial_h: np.ndarray | str | None = None,
    peephole: np.ndarray | None = None,
    tail: str | None = None,
    time: int | str = T,
    seed: int = 0,
) -> Any:
    """x -> one ONNX LSTM/GRU/RNN node -> (batch, time, dirs*hidden) or (batch, dirs*hidden)."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    inits = [
        numpy_helper.from_array(
            (rng.standard_normal((dirs, g * hidden, D)) * 0.5).astype(np.float32), "W"
        ),
        numpy_helper.from_array(
            (rng.standard_normal((dirs, g * hidden, hidden)) * 0.5).astype(np.float32), "R"
        ),
        numpy_helper.from_array(
            (rng.standard_normal((dirs, 2 * g * hidden)) * 0.3).astype(np.float32), "B"
        ),
    ]
    x_shape = ["batch", time, D] if layout else [time, "batch", D]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    ins = ["x", "W", "R", "B", ""]
    if isinstance(initial_h, str):
        h_shape = ["batch", dirs, hidden] if layout else [dirs, "batch", hidden]
        graph_inputs.append(helper.make_tensor_value_info(initial_h, TensorProto.FLOAT, h_shape))
        ins.append(initial_h)
    elif initial_h is not None:
        inits.append(numpy_helper.from_array(initial_h.astype(np.float32), "h0"))
        ins.append("h0")
    if peephole is not None:
        ins += [""] * (7 - len(ins)) + ["P"]
        inits.append(numpy_helper.from_array(peephole.astype(np.float32), "P"))
    outs = ["Y", "Y_h"] if output == "Y_h" else ["Y"]
    node = helper.make_node(
        op,
        ins,
        outs,
        name="rnn",
        hidden_size=hidden,
        direction=direction,
        **({"layout": layout} if layout else {}),
        **(attrs or {}),
    )
    nodes = [node]
    shape_c = "shape"
    if output == "Y":
        if layout == 0:  # [T, dirs, B, H] -> [B, T, dirs, H]
            nodes.append(helper.make_node("Transpose", ["Y"], ["Yt"], perm=[2, 0, 1, 3]))
            src = "Yt"
        else:
            src = "Y"
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), shape_c))
    else:
        if layout == 0:  # [dirs, B, H] -> [B, dirs, H]
            nodes.append(helper.make_node("Transpose", ["Y_h"], ["Yt"], perm=[1, 0, 2]))
            src = "Yt"
        else:
            src = "Y_h"
        inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), shape_c))
    nodes.append(helper.make_node("Reshape", [src, shape_c], ["z" if tail else "y"]))
    if tail:
        nodes.append(helper.make_node(tail, ["z"], ["y"], name="tail"))
    graph = helper.make_graph(
        nodes,
        "g",
        graph_inputs,
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [None] * (3 if output == "Y" else 2)
            )
        ],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


EDGE_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    # id: (op, graph options, the Keras layer it must become)
    "lstm_time_major_seq": ("LSTM", {}, "LSTM"),
    "lstm_layout1_final": ("LSTM", {"layout": 1, "output": "Y_h"}, "LSTM"),
    "lstm_reverse_final": ("LSTM", {"direction": "reverse", "output": "Y_h"}, "LSTM"),
    "lstm_bidirectional_seq": (
        "LSTM",
        {"direction": "bidirectional", "layout": 1},
        "Bidirectional",
    ),
    "lstm_bidirectional_final": (
        "LSTM",
        {"direction": "bidirectional", "output": "Y_h"},
        "Bidirectional",
    ),
    "lstm_explicit_defaults_zero_state": (
        "LSTM",
        {
            "attrs": {"activations": ["Sigmoid", "Tanh", "Tanh"]},
            "initial_h": np.zeros((1, 1, 5)),
            "peephole": np.zeros((1, 15)),
        },
        "LSTM",
    ),
    "gru_linear_before_reset0": ("GRU", {}, "GRU"),
    "gru_linear_before_reset1_final": (
        "GRU",
        {"attrs": {"linear_before_reset": 1}, "output": "Y_h"},
        "GRU",
    ),
    "gru_bidirectional_lbr1": (
        "GRU",
        {"attrs": {"linear_before_reset": 1}, "direction": "bidirectional"},
        "Bidirectional",
    ),
    "rnn_tanh_default": ("RNN", {}, "SimpleRNN"),
    "rnn_relu": ("RNN", {"attrs": {"activations": ["Relu"]}}, "SimpleRNN"),
    # onnxruntime has no layout=1 RNN kernel: the reference is onnx.reference
    "rnn_tanh_layout1": ("RNN", {"layout": 1}, "SimpleRNN"),
    "lstm_then_softmax": ("LSTM", {"tail": "Softmax"}, "LSTM"),
    "lstm_then_leaky_relu": ("LSTM", {"tail": "LeakyRelu"}, "LeakyReLU"),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_attribute_edge_cases(case: str, tmp_path: Path) -> None:
    op, opts, kind = EDGE_CASES[case]
    path = tmp_path / f"{case}.onnx"
    onnx.save(_rnn_graph(op, **opts), path)
    if _needs_missing_layer(kind):
        with pytest.raises(UnsupportedLayerError, match=r"node 'tail' \(LeakyRelu\)"):
            _rebuild_vs_ort(path)
        return
    imported, err = _rebuild_vs_ort(path)
    assert kind in [type(layer).__name__ for layer in imported.model.layers]
    assert err <= 1e-5, err


REFUSALS: dict[str, tuple[str, dict[str, Any], str]] = {
    # id: (op, graph options, what the message must name)
    "clip": ("LSTM", {"attrs": {"clip": 3.0}}, "node 'rnn' (LSTM): clip=3.0"),
    "input_forget": ("LSTM", {"attrs": {"input_forget": 1}}, "input_forget=1"),
    "peepholes": ("LSTM", {"peephole": np.ones((1, 15))}, "peepholes (input P)"),
    "nonzero_initial_h": ("GRU", {"initial_h": np.ones((1, 1, 5))}, "initial_h is a non-zero"),
    "initial_h_graph_input": ("LSTM", {"initial_h": "h0"}, "2 inputs (x, h0)"),
    "mixed_activations": (
        "LSTM",
        {"attrs": {"activations": ["Sigmoid", "Tanh", "Relu"]}},
        "cell input and output activations differ",
    ),
    "reverse_sequence_output": ("LSTM", {"direction": "reverse"}, "reverse-direction"),
    "unsupported_node": ("LSTM", {"tail": "Gelu"}, "node 'tail' (Gelu)"),
    "dynamic_length": ("LSTM", {"time": "time"}, "--seq-len"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_node(case: str, tmp_path: Path) -> None:
    from edgelstm.convert.onnx_import import load_onnx

    op, opts, needle = REFUSALS[case]
    path = tmp_path / f"{case}.onnx"
    model = _rnn_graph(op, **opts)
    if case == "unsupported_node":
        model.opset_import[0].version = 20  # Gelu exists from opset 20
    onnx.save(model, path)
    with pytest.raises((UnsupportedLayerError, BadInputError)) as err:
        load_onnx(path, None if case == "dynamic_length" else T)
    assert needle in str(err.value)
    if "node '" in needle:
        assert "nearest supported" in str(err.value)


def test_torch_residual_is_refused() -> None:
    from edgelstm.convert.onnx_import import load_onnx

    with pytest.raises(UnsupportedLayerError, match=r"node '/Add' \(Add\).*nearest supported"):
        load_onnx(DATA / "residual.onnx", T)


def test_static_length_checked() -> None:
    from edgelstm.convert.onnx_import import load_onnx

    with pytest.raises(BadInputError, match="differs from the model's fixed sequence length 12"):
        load_onnx(DATA / "lstm_static.onnx", 20)


# --- the whole convert: fused, streamed, quantized, exported -------------------------------------


def _convert(model: Path, outdir: Path, cal: Path | None, quants: list[str], **kw: Any) -> dict:
    from edgelstm.convert import ConvertConfig, convert_model
    from edgelstm.types import Quantization

    cfg = ConvertConfig(
        quantizations=[Quantization(q) for q in quants],
        calibration=str(cal) if cal else None,
        calibration_samples=32,
        verify_samples=6,
        seq_len=T,
        **kw,
    )
    convert_model(model, outdir, cfg)
    return json.loads((outdir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("onnx_convert")
    cal = root / "cal.npy"
    np.save(cal, _inputs(False, n=48, seed=3))
    cache: dict[str, tuple[Path, dict]] = {}

    def get(name: str) -> tuple[Path, dict]:
        if name not in cache:
            out = root / name
            cache[name] = (out, _convert(DATA / f"{name}.onnx", out, cal, ["float", "int8"]))
        return cache[name]

    return get


def test_lstm2_fused_verified_against_onnxruntime(converted) -> None:
    _, m = converted("lstm2_seq")
    assert m["model"]["framework"] == "onnx"
    assert any("verified against onnxruntime" in n for n in m["notes"])
    arts = {(a["variant"], a["quantization"]): a for a in m["artifacts"]}
    assert set(arts) == {(v, q) for v in ("sequence", "step") for q in ("float", "int8")}
    for (variant, _q), a in arts.items():
        assert a["parity"]["reference"] == "onnxruntime"
        assert a["parity"]["passed"], a["parity"]
        if variant == "sequence":
            assert a["fused_lstm"] and a["op_counts"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 2
        else:
            assert a["parity"]["stream"]["passed"], a["parity"]
    assert arts[("sequence", "float")]["parity"]["max_abs"] <= 1e-4
    states = {s["input"]: s["layer"] for s in arts[("step", "float")]["states"]}
    assert states == {
        "state0_h": "lstm_LSTM",
        "state0_c": "lstm_LSTM",
        "state1_h": "lstm_LSTM_1",
        "state1_c": "lstm_LSTM_1",
    }
    assert any("state1_h, state1_c = PyTorch h0[1], c0[1] of 'lstm'" in n for n in m["notes"])


@pytest.mark.parametrize("quant", ["float", "int8"])
def test_stream_equals_onnxruntime_on_whole_sequence(converted, run_cli, tmp_path, quant) -> None:
    """`edgelstm stream` over L steps (state carried) == onnxruntime on the L-step sequence."""
    out, m = converted("lstm2_seq")
    step = next(
        a["file"] for a in m["artifacts"] if a["variant"] == "step" and a["quantization"] == quant
    )
    seq = _inputs(False, n=1, t=40, seed=9)[0]
    np.save(tmp_path / "s.npy", seq)
    code, _, err = run_cli(
        "stream",
        str(out / step),
        "--input",
        str(tmp_path / "s.npy"),
        "--output",
        str(tmp_path / "y.npy"),
    )
    assert code == 0, err
    got = np.load(tmp_path / "y.npy").reshape(40, -1)
    sess = ort.InferenceSession(str(DATA / "lstm2_seq.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": seq[None]})[0][0]
    bound = 1e-4 if quant == "float" else 0.1 * max(float(np.ptp(ref)), 1.0)
    assert float(np.abs(got - ref).max()) <= bound


def test_c_engine_bit_exact_on_onnx_step_model(converted, tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    from edgelstm.export.cengine import export_c

    out, m = converted("lstm2_seq")
    step = next(
        a["file"] for a in m["artifacts"] if a["variant"] == "step" and a["quantization"] == "int8"
    )
    result = export_c(out / step, tmp_path / "eng", name="onnx_lstm2", verify=["host"], manifest=m)
    p = result["verify"]["host"]["parity"]
    assert p["ok"], p
    assert p["max_lsb_diff"] == 0 and p["values_not_bit_exact"] == 0, p


def test_cli_refuses_unsupported_node(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(
        "convert", str(DATA / "residual.onnx"), "-o", str(out), "--seq-len", "12"
    )
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: node '/Add' (Add)" in err
    assert not out.exists()


def test_cli_dynamic_length_needs_seq_len(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli("convert", str(DATA / "gru_seq.onnx"), "-o", str(tmp_path / "o"))
    assert code == 2 and "--seq-len" in err and "Traceback" not in err


def test_cli_pytorch_file_needs_shape_and_torch(run_cli, tmp_path: Path) -> None:
    """.pt is exported in-process when torch is installed; without the shape or torch: exit 2."""
    import importlib.util

    pt = tmp_path / "m.pt"
    pt.write_bytes(b"")
    code, _, err = run_cli("convert", str(pt), "-o", str(tmp_path / "o"))
    assert code == 2 and "--example-input-shape 1,T,D" in err and "Traceback" not in err
    if importlib.util.find_spec("torch") is None:
        code, _, err = run_cli(
            "convert", str(pt), "-o", str(tmp_path / "o"), "--example-input-shape", "1,12,4"
        )
        assert code == 2 and "needs the 'torch' package" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("name", "streamable"),
    [
        ("conv_causal_lstm", True),
        ("conv_same_lstm", False),
        ("bilstm_final", False),
        ("embed_gru", True),
        ("gru2_time_major", True),
    ],
)
def test_streamability_follows_pytorch_semantics(name: str, streamable: bool) -> None:
    """Causal Conv1d (left pad) streams with its window as state; padding=1 looks ahead and a
    bidirectional layer reads the sequence from its end: sequence model only."""
    from edgelstm.convert.graph import parse_model
    from edgelstm.convert.onnx_import import load_onnx

    ms = parse_model(load_onnx(DATA / f"{name}.onnx", T).model, "onnx", T)
    assert ms.streamable == streamable, ms.stream_blockers
    roles = [st.role for _, _, sts in ms.state_layout() for st in sts]
    if name == "conv_causal_lstm":
        assert roles == ["win", "h", "c"]
