"""`edgelstm profile`: statistics from real timing runs, memory, accuracy, report, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelstm.cli import cli
from edgelstm.cli._app import run_cli
from edgelstm.profile import (
    LatencyStats,
    ProfileConfig,
    accuracy,
    format_table,
    load_data,
    profile_model,
)
from edgelstm.runtime import Runtime, SequenceRunner, StepRunner, available_runtimes

DATA = Path(__file__).resolve().parent / "data"
STEP_F = DATA / "tiny_step_float.tflite"
STEP_Q = DATA / "tiny_step_int8.tflite"
SEQ_F = DATA / "tiny_sequence_float.tflite"
EVAL = DATA / "tiny_eval.npz"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_cli(cli, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_stats(s: LatencyStats, runs: int) -> None:
    assert s.runs == runs
    assert 0 < s.min_us <= s.p50_us <= s.p90_us <= s.p99_us <= s.max_us
    assert s.min_us <= s.mean_us <= s.max_us and s.std_us >= 0


@pytest.mark.parametrize("runtime", [r for r in available_runtimes() if r != Runtime.TF])
@pytest.mark.parametrize("model", [STEP_Q, SEQ_F])
def test_profile_statistics_are_consistent(model: Path, runtime: Runtime) -> None:
    cfg = ProfileConfig(runs=60, warmup=5, data=str(EVAL))
    res = profile_model(model, runtime, cfg, load_data(EVAL))
    assert res.error == "" and res.runtime == runtime.value
    _check_stats(res.latency, 60)
    _check_stats(res.call, 60)
    assert len(res.samples_us) == 60
    assert min(res.samples_us) == res.latency.min_us and max(res.samples_us) == res.latency.max_us
    assert res.call.p50_us >= res.latency.min_us  # a call includes an invoke
    assert res.init_ms > 0 and res.first_invoke_us > 0
    assert res.size_bytes == model.stat().st_size
    assert res.macs_per_invoke > 0
    assert res.gmacs_per_s == pytest.approx(res.macs_per_invoke / res.latency.p50_us / 1e3)
    if res.variant == "sequence":
        assert res.seq_len == 8
        assert res.per_step_p50_us == pytest.approx(res.latency.p50_us / 8)
    else:
        assert res.per_step_p50_us == res.latency.p50_us
    assert res.memory["peak_rss_kb"] > 0 and res.memory["model_bytes"] == res.size_bytes
    if runtime == Runtime.TFLM:
        assert 0 < res.memory["arena_used_bytes"] <= res.memory["arena_given_bytes"]
        assert res.memory["arena_used_bytes"] == (
            res.memory["arena_head_bytes"] + res.memory["arena_tail_bytes"]
        )
        # The bisected minimum runs the model; the recorded total alone may not.
        assert res.memory["arena_min_bytes"] >= res.memory["arena_used_bytes"] - 16
        assert res.memory["arena_recommended_bytes"] > res.memory["arena_min_bytes"]
    # Accuracy = an independent run of the same model on the same runtime against the labels.
    x, y = load_data(EVAL)
    runner = (StepRunner if res.variant == "step" else SequenceRunner)(model, runtime)
    pred = np.stack([runner.run(s) for s in x]).argmax(-1)
    assert res.accuracy == pytest.approx(float(np.mean(pred == y)))
    assert res.accuracy_samples == len(x)


def test_accuracy_label_forms() -> None:
    out = np.array([[[0.1, 0.9], [0.8, 0.2]], [[0.3, 0.7], [0.6, 0.4]]])  # [N=2, T=2, C=2]
    assert accuracy(out, np.array([[1, 0], [1, 1]])) == 0.75  # per-step ids
    assert accuracy(out, np.array([0, 1])) == 0.5  # per-sequence ids: the last step
    assert accuracy(out, np.eye(2)[[[1, 0], [1, 1]]]) == 0.75  # one-hot
    assert accuracy(np.array([[0.2], [0.7]]), np.array([0, 1])) == 1.0  # one sigmoid unit


def test_profile_cli_side_by_side_json_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "out" / "report.html"
    args = ["profile", str(STEP_Q), str(SEQ_F), "--runtime", "litert", "--runs", "40"]
    args += ["--warmup", "3", "--data", str(EVAL), "--json", "--report", str(report)]
    runtimes = ["litert"]
    if Runtime.TFLM in available_runtimes():
        args += ["--runtime", "tflm"]
        runtimes.append("tflm")
    code, out, err = _cli(capsys, *args)
    assert code == 0, err
    data = json.loads(out)
    rows = data["results"]
    assert [(Path(r["model"]).name, r["runtime"]) for r in rows] == [
        (m.name, rt) for m in (STEP_Q, SEQ_F) for rt in runtimes
    ]
    for r in rows:
        assert r["latency"]["runs"] == 40 and "samples_us" not in r
        assert r["latency"]["min_us"] <= r["latency"]["p50_us"] <= r["latency"]["max_us"]
    ratios = data["comparison"]
    assert ratios[0]["vs_first"] == 1.0
    assert min(c["vs_fastest"] for c in ratios) == 1.0
    for c, r in zip(ratios, rows, strict=True):
        assert c["vs_first"] == pytest.approx(r["per_step_p50_us"] / rows[0]["per_step_p50_us"])
    assert data["environment"]["packages"]["numpy"] == np.__version__
    assert "warm-up 3, then 40 timed runs" in err  # progress on stderr
    html = report.read_text()
    assert html.count("<table>") >= 2 and "data:image/png;base64," in html
    assert STEP_Q.name in html


def test_profile_text_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "profile", str(STEP_F), "--runs", "20", "--no-xnnpack")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["model", "runtime", "kind"]
    assert lines[1].split()[0] == STEP_F.name and "step/float" in lines[1]
    assert "x1.00" in lines[1]


def test_report_without_matplotlib(tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    script = (
        "import sys\nsys.modules['matplotlib'] = None\n"
        "from edgelstm.cli import main\n"
        f"main(['-q', 'profile', {str(STEP_F)!r}, '--runs', '5', '--report', {str(report)!r}])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    html = report.read_text()
    assert "matplotlib is not installed: tables only" in html and "<img" not in html


def test_format_table_reports_a_failed_combination() -> None:
    from edgelstm.profile import ProfileResult

    ok = profile_model(STEP_F, None, ProfileConfig(runs=5, warmup=0))
    bad = ProfileResult(model="x.tflite", runtime="tflm", error="TFLite Micro cannot load")
    text = format_table([ok, bad])
    assert "x.tflite  tflm  error: TFLite Micro cannot load" in text


def _one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_profile_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.tflite"
    notes.write_text("not a model\n")
    _one_line_error(*_cli(capsys, "profile", str(notes))[::2], "not a TFLite flatbuffer")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(STEP_Q.read_bytes()[:2500])
    _one_line_error(*_cli(capsys, "profile", str(cut))[::2], "cut.tflite")
    _one_line_error(*_cli(capsys, "profile", str(EVAL))[::2], "profile takes .tflite files")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 8, 5), np.float32), y=np.zeros(4, np.int32))
    _one_line_error(*_cli(capsys, "profile", str(SEQ_F), "--data", str(wrong))[::2], "does not fit")
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=np.zeros((4, 8, 3), np.float32), y=np.zeros((4, 5), np.int32))
    _one_line_error(
        *_cli(capsys, "profile", str(SEQ_F), "--data", str(labels), "--runs", "2")[::2],
        "do not match",
    )
    nox = tmp_path / "nox.npz"
    np.savez(nox, inputs=np.zeros((4, 8, 3)))
    _one_line_error(*_cli(capsys, "profile", str(SEQ_F), "--data", str(nox))[::2], "'x'")
    from edgelstm.runtime import is_available

    if not is_available(Runtime.TFLITE_RUNTIME):
        _one_line_error(
            *_cli(capsys, "profile", str(STEP_F), "--runtime", "tflite-runtime")[::2],
            "pip install 'edgelstm[pi]'",
        )


def _lstm_only(tmp_path: Path) -> Path:
    """The fused sequence model cut after its UNIDIRECTIONAL_SEQUENCE_LSTM: XNNPACK takes none of
    its ops, so the default op resolver runs without it."""
    from edgelstm.tflite import passes as fbedit

    model = fbedit.load_model(SEQ_F.read_bytes())
    sg = model.subgraphs[0]
    lstm = sg.operators[0]
    sg.operators = [lstm]
    sg.outputs = [lstm.outputs[0]]
    model.signatureDefs[0].outputs = model.signatureDefs[0].outputs[:1]
    model.signatureDefs[0].outputs[0].tensorIndex = lstm.outputs[0]
    path = tmp_path / "lstm_only.tflite"
    path.write_bytes(fbedit.pack_model(model))
    return path


INTERPRETERS = [r for r in available_runtimes() if r.value in ("litert", "tflite-runtime")]


@pytest.mark.parametrize("runtime", INTERPRETERS, ids=[r.value for r in INTERPRETERS])
def test_xnnpack_reports_what_ran(
    runtime: Runtime, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lstm_only = _lstm_only(tmp_path)
    cases = [
        ([str(STEP_F)], True),  # the default resolver: XNNPACK takes the FCs
        ([str(STEP_F), "--no-xnnpack"], False),  # builtin kernels only
        ([str(STEP_F), "--xnnpack"], True),
        ([str(lstm_only)], False),  # default, but the delegate took no op
        ([str(lstm_only), "--xnnpack"], False),
    ]
    for args, ran in cases:
        code, out, err = _cli(
            capsys, "-q", "profile", *args, "--runtime", runtime.value, "--runs", "3", "--json"
        )
        assert code == 0, err
        row = json.loads(out)["results"][0]
        assert row["xnnpack"] is ran, (args, row)
        did_not_apply = any("XNNPACK did not apply" in n for n in row["notes"])
        assert did_not_apply == (not ran and "--no-xnnpack" not in args), (args, row["notes"])
