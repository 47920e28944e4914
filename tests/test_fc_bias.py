"""Every FULLY_CONNECTED carries an explicit bias (tflite-runtime 2.14's ARM kernels crash without).

Generated artifacts are checked after the whole session by the conftest fixture
`_every_artifact_has_fc_bias`; here: the committed fixtures, the pass itself, and that a zero bias
changes no output (LiteRT and TFLite Micro, bit for bit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgelstm.tflite import passes as fbedit
from edgelstm.tflite_info import read_tflite

DATA = Path(__file__).parent / "data"
COMMITTED = sorted(DATA.glob("*.tflite"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_committed_fixture_has_a_bias_on_every_fc(path: Path) -> None:
    data = path.read_bytes()
    assert fbedit.fc_without_bias(data) == []
    assert read_tflite(data).summary()["fc_without_bias"] == []  # what `inspect --json` shows
    assert fbedit.add_fc_bias(data) == (data, [])  # nothing left to add: the pass is idempotent


def _strip_zero_biases(data: bytes) -> bytes:
    """The same model with every '/zero_bias' input of an FC set back to -1 (no bias)."""
    model = fbedit.load_model(data)
    n = 0
    for sg in model.subgraphs:
        for op in sg.operators:
            ins = list(op.inputs)
            if len(ins) > 2 and ins[2] >= 0 and sg.tensors[ins[2]].name.endswith(b"/zero_bias"):
                op.inputs = [*ins[:2], -1]
                n += 1
    assert n, "the fixture has no added zero bias to strip"
    return fbedit.pack_model(model)


def _feeds(details: list[dict], steps: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(5)
    out = []
    for _ in range(steps):
        row = []
        for d in details:
            if np.dtype(d["dtype"]) == np.float32:
                row.append(rng.standard_normal(d["shape"]).astype(np.float32))
            else:
                row.append(rng.integers(-128, 128, d["shape"]).astype(d["dtype"]))
        out.append(row)
    return out


def _run_litert(data: bytes, steps: int) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    ins = sorted(it.get_input_details(), key=lambda d: d["name"])
    outs = sorted(it.get_output_details(), key=lambda d: d["name"])
    got = []
    for row in _feeds(ins, steps):
        for d, v in zip(ins, row, strict=True):
            it.set_tensor(d["index"], v)
        it.invoke()
        got.extend(it.get_tensor(d["index"]).copy() for d in outs)
    return got


def _run_tflm(data: bytes, steps: int, n_in: int, n_out: int) -> list[np.ndarray]:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    it = runtime.Interpreter.from_bytes(data)
    ins = [it.get_input_details(i) for i in range(n_in)]
    got = []
    for row in _feeds(ins, steps):
        for i, v in enumerate(row):
            it.set_input(v, i)
        it.invoke()
        got.extend(it.get_output(i).copy() for i in range(n_out))
    return got


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_zero_bias_changes_no_output(path: Path) -> None:
    with_bias = path.read_bytes()
    without = _strip_zero_biases(with_bias)
    assert fbedit.fc_without_bias(without)
    assert read_tflite(without).fc_without_bias == fbedit.fc_without_bias(without)
    a, b = _run_litert(with_bias, 30), _run_litert(without, 30)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    info = read_tflite(with_bias)
    n_in, n_out = len(info.inputs), len(info.outputs)
    a, b = _run_tflm(with_bias, 30, n_in, n_out), _run_tflm(without, 30, n_in, n_out)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_added_bias_types_and_scales() -> None:
    """int8 FCs get int32 biases scaled input x weight per channel; float FCs float32; 16-aligned."""
    for stem, want in (("tiny_step_int8", "int32"), ("tiny_step_float", "float32")):
        data = (DATA / f"{stem}.tflite").read_bytes()
        info = read_tflite(data)
        zero = [t for t in info.tensors if t.name.endswith("/zero_bias")]
        assert zero and all(t.dtype == want and t.buffer_bytes == 4 * t.shape[0] for t in zero)
        for op in info.ops:
            if op.name != "FULLY_CONNECTED" or not info.tensor(op.inputs[2]).name.endswith("bias"):
                continue
            x, w, b = (info.tensor(i) for i in op.inputs[:3])
            if want == "int32":
                np.testing.assert_allclose(
                    b.scales, np.float32(x.scale) * np.asarray(w.scales, np.float32), rtol=1e-6
                )
        model = fbedit.schema().Model.GetRootAs(data, 0)
        for i in range(model.BuffersLength()):
            buf = model.Buffers(i)
            if buf.DataLength():
                assert buf._tab.Vector(buf._tab.Offset(4)) % fbedit.BUFFER_ALIGNMENT == 0


def test_pass_list_order_and_idempotence() -> None:
    """The post-conversion passes run in the declared order; a converted artifact has nothing
    left for them (bytes unchanged, no notes), and the bias pass finds work on a stripped one."""
    from edgelstm.types import Quantization, Variant

    assert [p.name for p in fbedit.POST_CONVERSION] == [
        "fc-bias",
        "tie-state-quantization",
        "remove-lstm-cell-clip",
        "tie-reverse-quantization",
        "tie-lstm-hidden-intermediate",
        "clear-unreferenced-buffers",
    ]
    for path, variant, quant in (
        (DATA / "tiny_step_int8.tflite", Variant.STEP, Quantization.INT8),
        (DATA / "tiny_step_float.tflite", Variant.STEP, Quantization.FLOAT),
        (DATA / "tiny_sequence_float.tflite", Variant.SEQUENCE, Quantization.FLOAT),
    ):
        data = path.read_bytes()
        out, info, notes = fbedit.run_passes(data, variant, quant)
        assert (out, notes) == (data, []), path.name
        assert info.summary() == read_tflite(data).summary()
    stripped = _strip_zero_biases((DATA / "tiny_step_int8.tflite").read_bytes())
    out, info, notes = fbedit.run_passes(stripped, Variant.STEP, Quantization.INT8)
    assert out != stripped and notes == []  # the bias pass is not noted in the manifest
    assert fbedit.fc_without_bias(out) == [] and info.summary()["fc_without_bias"] == []
