"""Runtime backends: same outputs on every backend, state reset semantics, StepRunner, messages.

Uses the committed fixtures in tests/data (regenerate with tests/data/make_tflite_fixtures.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import BadInputError, MissingDependencyError
from edgelstm.runtime import (
    Runtime,
    SequenceRunner,
    StepRunner,
    available_runtimes,
    is_available,
    load_backend,
    resolve_runtime,
)
from edgelstm.runtime.backends import dequantize, quantize

DATA = Path(__file__).resolve().parent / "data"
STEP_F = DATA / "tiny_step_float.tflite"
STEP_Q = DATA / "tiny_step_int8.tflite"
SEQ_F = DATA / "tiny_sequence_float.tflite"
FLOAT_TOL = 1e-5
# One int8 output LSB is 1/256 (softmax output scale); kernels may round differently by one.
INT8_TOL = 2 / 256

RUNTIMES = available_runtimes()


@pytest.fixture(scope="module")
def eval_x() -> np.ndarray:
    return np.load(DATA / "tiny_eval.npz")["x"]


def _outputs(model: Path, runtime: Runtime, xs: np.ndarray, **kw: object) -> np.ndarray:
    runner_cls = SequenceRunner if "sequence" in model.name else StepRunner
    runner = runner_cls(model, runtime, **kw)
    return np.stack([runner.run(x) for x in xs])


@pytest.mark.parametrize(
    ("model", "tol"), [(STEP_F, FLOAT_TOL), (STEP_Q, INT8_TOL), (SEQ_F, FLOAT_TOL)]
)
def test_every_backend_gives_the_same_outputs(model: Path, tol: float, eval_x: np.ndarray) -> None:
    if len(RUNTIMES) < 2:
        pytest.skip(f"only {RUNTIMES} installed: nothing to compare")
    xs = eval_x[:6]
    ref = _outputs(model, Runtime.LITERT, xs)
    assert ref.shape == (6, 8, 3) and np.all(np.isfinite(ref))
    for rt in RUNTIMES:
        got = _outputs(model, rt, xs)
        assert np.abs(got - ref).max() <= tol, (rt, np.abs(got - ref).max())
    # XNNPACK off (builtin kernels only) and two threads: still the same numbers.
    for kw in ({"xnnpack": False}, {"threads": 2}):
        got = _outputs(model, Runtime.LITERT, xs, **kw)
        assert np.abs(got - ref).max() <= tol, kw


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fused_sequence_model_needs_a_reset(runtime: Runtime, eval_x: np.ndarray) -> None:
    runner = SequenceRunner(SEQ_F, runtime)
    assert runner.backend.info.fused_lstm and runner.backend.info.variable_tensors
    first = runner.run(eval_x[0])
    again = runner.run(eval_x[0])  # reset (default) before the sequence: identical
    np.testing.assert_array_equal(again, first)
    carried = runner.run(eval_x[0], reset=False)  # starts from the previous final h, c
    assert np.abs(carried - first).max() > 1e-3
    runner.backend.reset()
    np.testing.assert_array_equal(runner.run(eval_x[0], reset=False), first)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_step_runner_over_a_sequence_equals_the_sequence_model(
    runtime: Runtime, eval_x: np.ndarray
) -> None:
    seq = SequenceRunner(SEQ_F, runtime)
    step_f = StepRunner(STEP_F, runtime)
    step_q = StepRunner(STEP_Q, runtime)
    for x in eval_x[:4]:
        want = seq.run(x)
        np.testing.assert_allclose(step_f.run(x), want, atol=FLOAT_TOL)
        # int8 step model vs the float graph: quantization error only (outputs in [0, 1]).
        assert np.abs(step_q.run(x) - want).max() < 0.03
    # pushing sample by sample is what run() does; the state carries across pushes
    step_f.reset()
    pushed = np.stack([step_f.push(s) for s in eval_x[0]])
    np.testing.assert_array_equal(pushed, step_f.run(eval_x[0]))
    assert step_f.steps == len(eval_x[0])


def test_step_runner_state_save_restore_and_reset(eval_x: np.ndarray) -> None:
    for model in (STEP_F, STEP_Q):
        runner = StepRunner(model)
        assert [s.input for s in runner.states] == ["state0_h", "state0_c"]
        assert runner.states[0].layer == "lstm"  # from manifest.json beside the model
        for s in eval_x[0][:5]:
            runner.push(s)
        saved = runner.get_state()
        assert all(np.abs(v).max() > 0 for v in saved.values())
        nxt = runner.push(eval_x[1][0])
        runner.reset()
        assert all(np.all(v == 0) for v in runner.get_state().values())
        first = runner.push(eval_x[1][0])
        assert np.abs(first - nxt).max() > 0  # the state mattered
        runner.reset()
        np.testing.assert_array_equal(runner.push(eval_x[1][0]), first)
        runner.set_state(saved)
        np.testing.assert_array_equal(runner.push(eval_x[1][0]), nxt)
        with pytest.raises(BadInputError, match="state0_h"):
            runner.set_state({"state0_h": np.zeros(3), "state0_c": np.zeros(8)})


def test_step_runner_from_bytes_uses_the_naming_convention(eval_x: np.ndarray) -> None:
    from_bytes = StepRunner(STEP_Q.read_bytes())
    from_path = StepRunner(STEP_Q)
    assert [s.layer for s in from_bytes.states] == ["state0", "state0"]  # no manifest for bytes
    np.testing.assert_array_equal(from_bytes.run(eval_x[2]), from_path.run(eval_x[2]))


def test_int8_state_is_carried_as_raw_bytes() -> None:
    runner = StepRunner(STEP_Q)
    assert all(runner._raw_copy.values())  # tied scales: exact copy like the firmware
    for s in runner.states:
        i, o = runner.backend.input_info(s.input), runner.backend.output_info(s.output)
        assert (
            (i.dtype, i.scale, i.zero_point)
            == (o.dtype, o.scale, o.zero_point)
            == (
                "int8",
                s.scale,
                s.zero_point,
            )
        )


def test_quantize_dequantize_round_trip() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 1000)
    scale, zp = 0.01, 3
    q = quantize(x, "int8", scale, zp)
    assert q.dtype == np.int8
    assert np.abs(dequantize(q, scale, zp) - x).max() <= scale / 2 + 1e-12
    sat = quantize(np.array([-1e6, 1e6]), "int8", scale, zp)
    assert sat.tolist() == [-128, 127]
    q16 = quantize(x, "int16", 1e-4, 0)
    assert q16.dtype == np.int16 and np.abs(dequantize(q16, 1e-4, 0) - x).max() <= 5e-5 + 1e-12
    np.testing.assert_array_equal(quantize(np.array([3.0, 7.0]), "int32", 0.0, 0), [3, 7])


def test_bad_models_and_samples(tmp_path: Path) -> None:
    text = tmp_path / "notes.tflite"
    text.write_text("hello, not a model at all\n")
    with pytest.raises(BadInputError, match="not a TFLite flatbuffer"):
        load_backend(text)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(STEP_Q.read_bytes()[:3000])
    with pytest.raises(BadInputError):
        StepRunner(cut)
    with pytest.raises(BadInputError, match="no such file"):
        load_backend(tmp_path / "missing.tflite")
    with pytest.raises(BadInputError, match="not a step model"):
        StepRunner(SEQ_F)
    runner = StepRunner(STEP_F)
    with pytest.raises(BadInputError, match="needs 3 value"):
        runner.push([1.0, 2.0])
    with pytest.raises(BadInputError, match="needs 24 value"):
        SequenceRunner(SEQ_F).run(np.zeros((7, 3)))
    with pytest.raises(BadInputError, match="unknown runtime"):
        resolve_runtime("onnx")


def test_missing_backend_names_the_package() -> None:
    if is_available(Runtime.TFLITE_RUNTIME):
        pytest.skip("tflite-runtime is installed here")
    with pytest.raises(
        MissingDependencyError, match=r"'tflite-runtime'.*pip install 'edgelstm\[pi\]'"
    ) as exc:
        load_backend(STEP_F, "tflite-runtime")
    assert "\n" not in str(exc.value)


def _run_blocked(script: str, blocked: list[str]) -> subprocess.CompletedProcess:
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    return subprocess.run(
        [sys.executable, "-c", "import sys\n" + block + script],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_auto_choice_falls_back_and_explains_when_nothing_is_installed() -> None:
    script = (
        "from edgelstm.runtime import resolve_runtime, available_runtimes\n"
        "print(resolve_runtime(None).value, [r.value for r in available_runtimes()])\n"
    )
    proc = _run_blocked(script, ["ai_edge_litert", "tflite_runtime"])
    assert proc.returncode == 0, proc.stderr
    expect = "tf" if is_available(Runtime.TF) else None
    if expect:
        assert proc.stdout.split()[0] == "tf"
    # With every interpreter blocked, one line naming the package to install (CLI exit 2).
    script = f"from edgelstm.cli import main\nmain(['stream', {str(STEP_F)!r}])\n"
    proc = _run_blocked(script, ["ai_edge_litert", "tflite_runtime", "tensorflow", "tflite_micro"])
    assert proc.returncode == 2, proc.stderr
    # (reading the flatbuffer needs no interpreter package: the message names the runtime)
    err = proc.stderr.strip()
    assert err.count("\n") == 0 and "pip install 'edgelstm[runtime]'" in err, err


def test_runtime_modules_never_import_tensorflow(tmp_path: Path) -> None:
    out = tmp_path / "y.npy"
    script = f"""
import numpy as np
import edgelstm.runtime, edgelstm.runtime.backends, edgelstm.runtime.stream, edgelstm.runtime.litert
import edgelstm.profile, edgelstm.report_html, edgelstm.cli.profile, edgelstm.cli.stream
from edgelstm.runtime import StepRunner, SequenceRunner
from edgelstm.cli._app import run_cli
from edgelstm.cli import cli
x = np.load({str(DATA / "tiny_eval.npz")!r})["x"]
StepRunner({str(STEP_Q)!r}).run(x[0])
SequenceRunner({str(SEQ_F)!r}).run(x[0])
np.save({str(tmp_path / "s.npy")!r}, x[0])
assert run_cli(cli, ["-q", "profile", {str(STEP_Q)!r}, {str(SEQ_F)!r}, "--runs", "5",
                     "--data", {str(DATA / "tiny_eval.npz")!r}, "--json"]) == 0
assert run_cli(cli, ["-q", "stream", {str(STEP_Q)!r}, "--input", {str(tmp_path / "s.npy")!r},
                     "--output", {str(out)!r}]) == 0
loaded = [k for k, v in sys.modules.items() if k.split(".")[0] == "tensorflow" and v is not None]
assert not loaded, loaded[:5]
print("ok")
"""
    proc = _run_blocked(script, ["tensorflow", "tf_keras", "keras"])
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    assert np.load(out).shape == (8, 3)
