"""edgelstm benchmark suite: `python -m benchmarks.run [--quick] [--out DIR]`.

Measures, on this machine in one run: streaming step latency, sequence latency, artifact size and
accuracy, Cortex-M4 (qemu) instructions per MAC and `edgelstm pipeline` wall time, and writes
OUT/latest.json and OUT/latest.md. --quick uses tiny models and repeat counts (used by the test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.env import pin_threads

THREADS = 1


def _log_fn(start: float) -> Any:
    def log(msg: str) -> None:
        print(f"[bench {time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return log


def _configure_tf() -> None:
    from edgelstm._tf import import_tf

    tf = import_tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised: the env vars set by pin_threads still apply
        pass


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be committed and read
    os.replace(tmp, path)


def run(quick: bool, out: Path, work: Path) -> dict[str, Any]:
    """Run every suite; returns the results dict (also written to out/latest.{json,md})."""
    import numpy as np

    from benchmarks import env, native, report, suites
    from benchmarks import models as M
    from benchmarks.timing import Budget

    start = time.perf_counter()
    log = _log_fn(start)
    results: dict[str, Any] = {"quick": quick, "env": env.describe(THREADS), "models": {}}
    _configure_tf()
    log("measuring the peak MAC rate")
    peak = native.measure_peak(quick)
    results["peak"] = vars(peak)
    budget = (
        Budget(warmup=20, repeats=5, batch_seconds=0.005)
        if quick
        else Budget(warmup=200, repeats=21, batch_seconds=0.05)
    )
    seq_budget = (
        Budget(warmup=3, repeats=3, batch_seconds=0.005)
        if quick
        else Budget(warmup=10, repeats=15, batch_seconds=0.1)
    )
    results["method"] = (
        f"warm-up {budget.warmup} calls, then {budget.repeats} batches of ≥{budget.batch_seconds * 1e3:.0f} ms "
        f"(sequences: {seq_budget.repeats} batches of ≥{seq_budget.batch_seconds * 1e3:.0f} ms); "
        "per-call time of each batch; median, min and max over the batches"
    )
    ctx = suites.Context(work, quick, budget, seq_budget, peak, log)
    notes: list[str] = []

    # The models.
    if quick:
        tiny = M.random_lstm(
            "tiny",
            "tiny LSTM(16), D=8, T=20 (quick)",
            work,
            units=16,
            in_dim=8,
            seq_len=20,
            out_dim=4,
            many_to_many=False,
            one_hot=True,
        )
        step_models, seq_model = [tiny], tiny
    else:
        echo = M.zoo_model("echo", "echo", "echo (zoo)", work) or M.random_lstm(
            "echo",
            "echo-like LSTM(32), D=1 (random weights)",
            work,
            units=32,
            in_dim=1,
            seq_len=50,
            out_dim=1,
            many_to_many=True,
        )
        big = M.random_lstm(
            "lstm128",
            "LSTM(128), D=40 (random weights)",
            work,
            units=128,
            in_dim=40,
            seq_len=50,
            out_dim=8,
            many_to_many=True,
        )
        temporal = M.zoo_model("temporal-order", "temporal", "temporal-order (zoo)", work) or (
            M.random_lstm(
                "temporal",
                "temporal-order-like LSTM(32), one-hot D=8, T=100 (random weights)",
                work,
                units=32,
                in_dim=8,
                seq_len=100,
                out_dim=4,
                many_to_many=False,
                one_hot=True,
            )
        )
        step_models, seq_model = [echo, big], temporal
    for bm in {b.key: b for b in [*step_models, seq_model]}.values():
        results["models"][bm.key] = {
            "title": bm.title,
            "origin": bm.origin,
            "seq_len": bm.seq_len,
            "in_dim": bm.in_dim,
            "units": bm.units,
            "notes": bm.notes,
            "desc": f"{bm.origin}; H={bm.units}, D={bm.in_dim}, T={bm.seq_len}. "
            + " ".join(bm.notes),
        }

    # Size and accuracy first: its all-quantization conversions are reused by the latency suites.
    size_rows: list[dict[str, Any]] = []
    size_notes: list[str] = []
    if quick:
        log("size/accuracy (quick: the tiny model, synthetic eval set)")
        keras_model = suites._load(tiny.path)
        with np.load(tiny.calibration) as data:
            x = data["x"][:32].astype(np.float32)
        y = np.argmax(np.asarray(keras_model(x, training=False)), -1)
        size_rows += suites.size_suite(
            ctx,
            tiny.key,
            tiny,
            (x, y),
            "quick: synthetic inputs, y = the float Keras model's own argmax",
        )
        size_notes.append(
            "quick run: zoo models skipped; the tiny model's labels are its own "
            "float predictions, so accuracy measures agreement with Keras"
        )
    else:
        zoo = sorted(p.parent for p in M.ZOO.glob("*/model.keras")) if M.ZOO.exists() else []
        if not zoo:
            size_notes.append("no zoo models under models/*/model.keras when this ran: skipped")
        for mdir in zoo:
            name = mdir.name
            log(f"size/accuracy: {name}")
            bm = (
                seq_model
                if seq_model.path == mdir / "model.keras"
                else M.zoo_model(name, name, name, work)
            )
            ev = suites.eval_set(mdir, 128)  # 128 keeps the step-streamed eval to seconds
            note = f"models/{name}/eval.npz (first {len(ev[0])})" if ev else ""
            if ev is None:
                size_notes.append(f"{name}: no eval.npz with x and y: sizes only")
            recipe = mdir / "recipe.json"
            metric = json.loads(recipe.read_text()).get("metric") if recipe.exists() else None
            try:
                size_rows += suites.size_suite(ctx, name, bm, ev, note, metric)
            except Exception as exc:
                size_notes.append(f"{name}: failed: {type(exc).__name__}: {str(exc)[:200]}")
    results["size"], results["size_notes"] = size_rows, size_notes

    plain = suites.plain_jobs(
        ctx,
        [(b, 1, stateful) for b in step_models for stateful in (False, True)]
        + [(seq_model, seq_model.seq_len, False)],
    )
    step_rows: list[dict[str, Any]] = []
    for bm in step_models:
        log(f"step latency: {bm.title}")
        step_rows += suites.step_suite(ctx, bm, plain)
    results["step"] = step_rows
    log(f"sequence latency: {seq_model.title}")
    results["sequence"] = suites.sequence_suite(ctx, seq_model, plain)
    log("native runtime (edgelstm.runtime.native)")
    from benchmarks import native_runtime

    results["native_runtime"] = native_runtime.from_run(ctx, step_models, seq_model, results)
    _write_atomic(out / "native.md", native_runtime.render(results["native_runtime"], peak))

    log("Cortex-M4 (qemu)")
    results["mcu"] = suites.mcu_suite(ctx, step_models[0])
    if quick:
        results["pipeline"] = [
            suites.row(
                "pipeline",
                "-",
                "edgelstm pipeline (default)",
                status="not measured",
                notes=["skipped by --quick"],
            )
        ]
    else:
        log("edgelstm pipeline")
        results["pipeline"] = suites.pipeline_suite(ctx)
    results["targets"] = report.targets(results)
    results["notes"] = notes
    results["wall_s"] = time.perf_counter() - start
    _write_atomic(out / "latest.json", json.dumps(results, indent=1, default=str) + "\n")
    _write_atomic(out / "latest.md", report.render(results))
    log(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny models and repeat counts")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where latest.json and latest.md go (default benchmarks/results)",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary work dir")
    args = parser.parse_args(argv)
    pin_threads()
    work = Path(tempfile.mkdtemp(prefix="edgelstm-bench-"))
    try:
        run(args.quick, args.out, work)
    finally:
        if args.keep_work:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
