"""The benchmark suites: step latency, sequence latency, size/accuracy, Cortex-M4, pipeline.

Every row is a plain dict (JSON-able). Rows that could not be measured carry `status` other than
"measured" and a note saying why; nothing is ever filled in from elsewhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import models as M
from benchmarks import native, runners
from benchmarks.runners import Timing
from benchmarks.timing import Budget
from edgelstm.tflite_info import read_tflite

Log = Callable[[str], None]


@dataclass
class Context:
    """Shared state of one run."""

    work: Path
    quick: bool
    budget: Budget
    seq_budget: Budget
    peak: native.Peak
    log: Log
    conversions: dict[str, Any] = field(default_factory=dict)


def row(suite: str, model: str, system: str, **kw: Any) -> dict[str, Any]:
    base = {
        "suite": suite,
        "model": model,
        "system": system,
        "runtime": "",
        "status": "measured",
        "raw": None,
        "python": None,
        "macs": None,
        "size_bytes": None,
        "notes": [],
    }
    base.update(kw)
    return base


def _timed(r: dict[str, Any], t: Timing) -> dict[str, Any]:
    r["raw"] = t.raw.to_dict() if t.raw else None
    r["python"] = t.python.to_dict() if t.python else None
    r["notes"] = r["notes"] + t.notes
    return r


def _guard(
    rows: list[dict[str, Any]], r: dict[str, Any], fn: Callable[[], Timing], log: Log
) -> None:
    """Run one measurement; a failure becomes a 'failed' row with the reason, not a crash."""
    try:
        rows.append(_timed(r, fn()))
    except Exception as exc:
        r["status"] = "failed"
        r["notes"] = [*r["notes"], f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"]
        log(f"  {r['system']}: failed ({type(exc).__name__})")
        rows.append(r)


# ---------------------------------------------------------------- conversions


def edgelstm_artifacts(ctx: Context, bm: M.BenchModel, quants: list[str]) -> tuple[Path, Any]:
    """edgelstm convert of the model at its own length: sequence and step artifacts."""
    for (key, done), value in ctx.conversions.items():
        if key == f"{bm.key}:native" and set(quants) <= set(done):
            return value  # an earlier conversion already made these artifacts
    out = ctx.work / f"conv_{bm.key}_{len(ctx.conversions)}"
    ctx.log(f"edgelstm convert {bm.path.name} ({', '.join(quants)})")
    manifest = M.convert(bm.path, out, quants=quants, variants=None, calibration=bm.calibration)
    ctx.conversions[(f"{bm.key}:native", tuple(quants))] = (out, manifest)
    return out, manifest


def fused_t1_artifacts(ctx: Context, bm: M.BenchModel) -> tuple[Path, Any]:
    """edgelstm's sequence variant at seq_len 1: the fused op stepped by its variable state."""
    key = (f"{bm.key}:t1", ())
    if key not in ctx.conversions:
        var = M.reshaped_copy(bm, ctx.work, None, None)
        cal = M.sliced_calibration(bm, ctx.work, 1)
        out = ctx.work / f"conv_{bm.key}_t1"
        ctx.log(f"edgelstm convert {bm.key} --seq-len 1 --variant sequence")
        manifest = M.convert(
            var, out, quants=["float", "int8"], variants=["sequence"], calibration=cal, seq_len=1
        )
        ctx.conversions[key] = (out, manifest)
    return ctx.conversions[key]


def plain_jobs(ctx: Context, bms: list[tuple[M.BenchModel, int, bool]]) -> dict[str, M.PlainResult]:
    """TFLiteConverter.from_keras_model float and int8 of each (model, seq_len, stateful).

    All jobs share one crash-isolated worker. Job ids: <key>_t<T>[s]/<quant>.
    """
    jobs = []
    for bm, t, stateful in bms:
        src = M.reshaped_copy(bm, ctx.work, t, 1, stateful=stateful)
        cal = M.sliced_calibration(bm, ctx.work, t) if t != bm.seq_len else bm.calibration
        for q in ("float", "int8"):
            jobs.append((f"{bm.key}_t{t}{'s' if stateful else ''}/{q}", src, q, cal))
    ctx.log(f"plain TFLiteConverter on {len(jobs)} job(s), crash-isolated")
    return M.plain_convert(jobs, ctx.work / "plain")


def _art(outdir: Path, manifest: Any, variant: str, quant: str) -> tuple[Path, Any] | None:
    try:
        art = manifest.artifact(variant, quant)
    except KeyError:
        return None
    return outdir / art.file, art


# ---------------------------------------------------------------- step latency


def step_suite(
    ctx: Context, bm: M.BenchModel, plain: dict[str, M.PlainResult]
) -> list[dict[str, Any]]:
    """Streaming step latency of every system on one model."""
    from edgelstm.convert import build
    from edgelstm.convert.graph import parse_model
    from edgelstm.convert.load import load_keras_model

    log, budget, rows = ctx.log, ctx.budget, []
    suite = "step"
    with np.load(bm.calibration) as data:
        xs = data["x"][0].astype(np.float32)  # one real sequence, cycled step by step
    xs = xs[: min(len(xs), 64)]
    outdir, manifest = edgelstm_artifacts(ctx, bm, ["float", "int8"])
    macs = None
    for quant in ("float", "int8"):
        found = _art(outdir, manifest, "step", quant)
        if found is None:
            rows.append(
                row(
                    suite,
                    bm.key,
                    f"edgelstm step {quant}",
                    status="missing",
                    notes=["convert produced no step artifact"],
                )
            )
            continue
        path, art = found
        macs = art.macs_per_invoke
        for xnn in (True, False):
            log(f"  step {quant} xnnpack={xnn}")
            r = row(
                suite,
                bm.key,
                f"edgelstm step {quant}",
                runtime="LiteRT " + ("(XNNPACK default)" if xnn else "(builtin kernels)"),
                macs=art.macs_per_invoke,
                size_bytes=art.size_bytes,
                role="edgelstm",
                quant=quant,
                xnnpack=xnn,
            )
            if art.parity:
                r["notes"].append(
                    f"parity max abs {art.parity.max_abs:.3g} (bound {art.parity.bound:.3g})"
                )
            _guard(rows, r, lambda p=path, x=xnn: runners.litert_step(p, xs, budget, x), log)

    # (a) the fused op, T=1, state in variable tensors.
    try:
        t1dir, t1man = fused_t1_artifacts(ctx, bm)
    except Exception as exc:
        t1dir, t1man = None, None
        rows.append(
            row(
                suite,
                bm.key,
                "(a) fused LSTM T=1",
                status="failed",
                notes=[f"convert --seq-len 1 failed: {str(exc)[:200]}"],
            )
        )
    for quant in ("float", "int8") if t1man else ():
        found = _art(t1dir, t1man, "sequence", quant)
        if found is None:
            rows.append(row(suite, bm.key, f"(a) fused LSTM T=1 {quant}", status="missing"))
            continue
        path, art = found
        log(f"  fused T=1 {quant}")
        r = row(
            suite,
            bm.key,
            f"(a) fused LSTM T=1 {quant}",
            runtime="LiteRT",
            macs=art.macs_per_invoke,
            size_bytes=art.size_bytes,
            role="fused",
            quant=quant,
            notes=["UNIDIRECTIONAL_SEQUENCE_LSTM, state carried in variable tensors"],
        )
        if quant == "int8":
            r["notes"].append("int8 state scales calibrated on 1-step windows (latency only)")
        _guard(rows, r, lambda p=path: runners.litert_step(p, xs, budget), log)

    # (b) the plain converter on the Keras model at T=1: stateless, and stateful=True.
    plain_kinds = (
        (
            "t1",
            "T=1",
            "Keras 3 model at T=1, batch 1, stateless: carries no state between calls "
            "(a lower bound on its streaming cost)",
        ),
        (
            "t1s",
            "stateful=True, T=1",
            "Keras 3 LSTM(stateful=True) at T=1, batch 1: state in resource variables",
        ),
    )
    for tag, label, why in plain_kinds:
        for quant in ("float", "int8"):
            res = plain.get(f"{bm.key}_{tag}/{quant}")
            name = f"(b) plain TFLiteConverter {label} {quant}"
            if res is None:
                continue
            if not res.ok:
                status = "crashed" if res.crashed else "failed"
                rows.append(
                    row(suite, bm.key, name, runtime="LiteRT", status=status, notes=[res.message])
                )
                continue
            info = read_tflite(res.path)
            r = row(
                suite,
                bm.key,
                name,
                runtime="LiteRT",
                macs=None,  # WHILE bodies are not counted by tflite_info: leave blank
                size_bytes=info.size_bytes,
                role="plain",
                quant=quant,
                notes=[f"ops: {', '.join(info.op_set)}", why],
            )
            log(f"  plain {label} {quant}")
            _guard(rows, r, lambda p=res.path: runners.litert_step(p, xs, budget), log)

    # (c) ONNX Runtime on edgelstm's step tf graph, (d) Keras / TensorFlow.
    model, fw = load_keras_model(bm.path)
    ms = parse_model(model, fw)
    module = build.build_step_module(ms)
    specs = build.step_input_specs(ms)
    feeds = {n: np.zeros(s, np.float32) for n, s, _ in specs}
    feeds["x"] = xs[0].reshape(specs[0][1])
    log("  onnxruntime")
    r = row(
        suite,
        bm.key,
        "(c) ONNX Runtime step graph",
        runtime="onnxruntime 1 thread",
        macs=macs,
        role="ort",
        notes=[
            "tf2onnx of edgelstm's step tf.function (same math and state I/O as the step "
            ".tflite), opset 17, float"
        ],
    )

    def ort_fn() -> Timing:
        onnx_model, ops = runners.onnx_from_function(module.serve, specs)
        r["notes"].append("onnx ops: " + ", ".join(ops))
        r["size_bytes"] = len(onnx_model)
        return runners.ort_step(onnx_model, feeds, xs, budget)

    _guard(rows, r, ort_fn, log)

    log("  keras / tf.function")
    var_model = _load(M.reshaped_copy(bm, ctx.work, None, None))
    x1 = xs[:1][None]
    _guard(
        rows,
        row(
            suite,
            bm.key,
            "(d) Keras model(x), T=1",
            runtime="Keras 3 eager",
            macs=macs,
            role="keras",
            notes=["stateless call on a [1,1,D] input (Keras 3 has no state I/O)"],
        ),
        lambda: runners.keras_call(var_model, x1, budget),
        log,
    )
    from edgelstm._tf import import_tf

    tf = import_tf()
    fn = tf.function(lambda x: var_model(x, training=False))
    _guard(
        rows,
        row(
            suite,
            bm.key,
            "(d) tf.function(model), T=1",
            runtime="TensorFlow graph",
            macs=macs,
            role="keras",
            notes=["stateless, [1,1,D] input"],
        ),
        lambda: runners.tf_function(fn, [x1], budget),
        log,
    )
    args = [feeds[n] for n, _, _ in specs]
    _guard(
        rows,
        row(
            suite,
            bm.key,
            "(d) tf.function(edgelstm step graph)",
            runtime="TensorFlow graph",
            macs=macs,
            role="keras",
            notes=["the step tf.function edgelstm converts, state passed explicitly"],
        ),
        lambda: runners.tf_function(module.serve, args, budget),
        log,
    )

    # (e) the C engine, native -O3.
    rows.extend(_cengine_rows(ctx, suite, bm, outdir, manifest, steps=len(xs)))
    # (f) the arithmetic floor.
    rows.extend(_floor_rows(ctx, suite, bm.key, macs, 1))
    return rows


def _load(path: Path) -> Any:
    from benchmarks.models import _keras

    return _keras().saving.load_model(path, compile=False)


def _cengine_rows(
    ctx: Context, suite: str, bm: M.BenchModel, outdir: Path, manifest: Any, steps: int
) -> list[dict[str, Any]]:
    """(e) the step model exported by `edgelstm export --target c`, gcc -O3, timed natively."""
    rows = []
    for quant in ("float", "int8"):
        r = row(
            suite,
            bm.key,
            f"(e) edgelstm C engine {quant}, gcc -O3",
            runtime="native C",
            role="cengine",
            quant=quant,
        )
        rows.append(r)
        found = _art(outdir, manifest, "step", quant)
        if found is None:
            r.update(status="not measured", notes=[f"no {quant} step artifact"])
            continue
        path, art = found
        r["macs"] = art.macs_per_invoke * (bm.seq_len if suite == "sequence" else 1)
        ctx.log(f"  C engine {quant}")
        res = native.cengine_step(
            path,
            manifest,
            repeats=ctx.budget.repeats,
            inner=max(steps, 100) * (1 if ctx.quick else 20),
        )
        if "error" in res:
            r.update(status="not measured", notes=[res["error"]])
            continue
        k = bm.seq_len if suite == "sequence" else 1
        if k > 1:
            r["notes"].append(f"{k} steps of the step engine")
        r["notes"].append(f"{res['compiler']}, {res['steps_per_repeat']} steps per batch")
        r["raw"] = {
            "median_us": res["median_us"] * k,
            "min_us": res["min_us"] * k,
            "max_us": res["max_us"] * k,
            "repeats": res["repeats"],
            "batch": res["steps_per_repeat"],
        }
    return rows


def _floor_rows(
    ctx: Context, suite: str, model: str, macs: int | None, steps: int
) -> list[dict[str, Any]]:
    if not macs:
        return [
            row(
                suite,
                model,
                "(f) arithmetic floor",
                status="not measured",
                notes=["MACs unknown (no step artifact)"],
            )
        ]
    total = macs * steps
    out = []
    for kind, rate in (("fp32", ctx.peak.fp32_mac_per_s), ("int8", ctx.peak.int8_mac_per_s)):
        if not rate:
            continue
        us = total / rate * 1e6
        out.append(
            row(
                suite,
                model,
                f"(f) arithmetic floor {kind}",
                runtime="computed",
                role="floor",
                quant=kind,
                macs=total,
                raw={"median_us": us, "min_us": us, "max_us": us, "repeats": 0, "batch": 0},
                notes=[f"{total:,} MACs / measured peak {rate / 1e9:.1f} GMAC/s ({kind})"],
            )
        )
    return out


# ---------------------------------------------------------------- sequence latency


def sequence_suite(
    ctx: Context, bm: M.BenchModel, plain: dict[str, M.PlainResult]
) -> list[dict[str, Any]]:
    """Latency of one whole sequence (T steps) through every system."""
    from edgelstm._tf import import_tf
    from edgelstm.convert import build
    from edgelstm.convert.graph import parse_model
    from edgelstm.convert.load import load_keras_model

    log, budget, rows, suite = ctx.log, ctx.seq_budget, [], "sequence"
    with np.load(bm.calibration) as data:
        seq = data["x"][0].astype(np.float32)
    outdir, manifest = edgelstm_artifacts(ctx, bm, ["float", "int8"])
    macs_step = None
    for quant in ("float", "int8"):
        found = _art(outdir, manifest, "sequence", quant)
        if found:
            path, art = found
            log(f"  sequence {quant}")
            r = row(
                suite,
                bm.key,
                f"edgelstm sequence (fused) {quant}",
                runtime="LiteRT",
                macs=art.macs_per_invoke,
                size_bytes=art.size_bytes,
                role="edgelstm_seq",
                quant=quant,
            )
            _guard(rows, r, lambda p=path: runners.litert_sequence(p, seq[None], budget), log)
        found = _art(outdir, manifest, "step", quant)
        if found:
            path, art = found
            macs_step = art.macs_per_invoke
            for xnn in (True, False):
                log(f"  step loop {quant} xnnpack={xnn}")
                r = row(
                    suite,
                    bm.key,
                    f"edgelstm step {quant} x T",
                    runtime="LiteRT " + ("(XNNPACK default)" if xnn else "(builtin kernels)"),
                    macs=art.macs_per_invoke * bm.seq_len,
                    size_bytes=art.size_bytes,
                    role="edgelstm",
                    quant=quant,
                    xnnpack=xnn,
                    notes=["raw = T invokes; python = T x (set x, invoke, copy state, get y)"],
                )
                _guard(
                    rows, r, lambda p=path, x=xnn: runners.litert_step_loop(p, seq, budget, x), log
                )
    for quant in ("float", "int8"):
        res = plain.get(f"{bm.key}_t{bm.seq_len}/{quant}")
        name = f"(b) plain TFLiteConverter {quant}"
        if res is None:
            continue
        if not res.ok:
            rows.append(
                row(
                    suite,
                    bm.key,
                    name,
                    runtime="LiteRT",
                    status="crashed" if res.crashed else "failed",
                    notes=[res.message],
                )
            )
            continue
        info = read_tflite(res.path)
        r = row(
            suite,
            bm.key,
            name,
            runtime="LiteRT",
            size_bytes=info.size_bytes,
            role="plain",
            quant=quant,
            notes=[f"ops: {', '.join(info.op_set)}"],
        )
        log(f"  plain {quant}")
        _guard(rows, r, lambda p=res.path: runners.litert_sequence(p, seq[None], budget), log)

    tf = import_tf()
    model, fw = load_keras_model(bm.path)
    ms = parse_model(model, fw)
    spec = [("x", (1, bm.seq_len, bm.in_dim), "float32")]
    keras_fn = tf.function(lambda x: model(x, training=False))
    tk_model = build.build_sequence_model(ms)
    tk_fn = tf.function(lambda x: tk_model(x, training=False))
    for label, fn, note in (
        ("(c) ONNX Runtime, Keras 3 graph", keras_fn, "tf2onnx of the Keras 3 model's tf.function"),
        (
            "(c) ONNX Runtime, edgelstm tf_keras graph",
            tk_fn,
            "tf2onnx of edgelstm's tf_keras rebuild (the graph it feeds the fused converter)",
        ),
    ):
        log(f"  {label}")
        r = row(suite, bm.key, label, runtime="onnxruntime 1 thread", role="ort", notes=[note])

        def ort_fn(f: Any = fn, r: dict[str, Any] = r) -> Timing:
            onnx_model, ops = runners.onnx_from_function(f, spec)
            r["notes"].append("onnx ops: " + ", ".join(ops))
            r["size_bytes"] = len(onnx_model)
            return runners.ort_sequence(onnx_model, seq[None], budget)

        _guard(rows, r, ort_fn, log)
    log("  keras / tf.function")
    _guard(
        rows,
        row(suite, bm.key, "(d) Keras model(x)", runtime="Keras 3 eager", role="keras"),
        lambda: runners.keras_call(model, seq[None], budget),
        log,
    )
    _guard(
        rows,
        row(suite, bm.key, "(d) tf.function(model)", runtime="TensorFlow graph", role="keras"),
        lambda: runners.tf_function(keras_fn, [seq[None]], budget),
        log,
    )
    rows.extend(_cengine_rows(ctx, suite, bm, outdir, manifest, steps=bm.seq_len))
    rows.extend(_floor_rows(ctx, suite, bm.key, macs_step, bm.seq_len))
    return rows


# ---------------------------------------------------------------- size and accuracy

ALL_QUANTS = ["float", "dynamic", "float16", "int8", "int16x8"]


def _score(out: np.ndarray, y: np.ndarray) -> tuple[str, float]:
    """Classifier argmax accuracy when y holds labels (or one-hot rows), else MAE."""
    if y.dtype.kind in "iu" and y.shape == out.shape[:-1]:
        return "accuracy", float(np.mean(np.argmax(out, -1) == y))
    if (
        y.shape == out.shape
        and out.shape[-1] > 1
        and np.all((y == 0) | (y == 1))
        and np.allclose(y.sum(-1), 1)
    ):
        return "accuracy", float(np.mean(np.argmax(out, -1) == np.argmax(y, -1)))
    return "mae", float(np.mean(np.abs(out.reshape(y.shape) - y)))


def size_suite(
    ctx: Context,
    name: str,
    bm: M.BenchModel,
    eval_xy: tuple[np.ndarray, np.ndarray] | None,
    eval_note: str,
    metric: str | None = None,
) -> list[dict[str, Any]]:
    """Size and accuracy of every quantization of one model (sequence and step artifacts).

    `metric` names the recipe's metric in the zoo registry; without one, argmax accuracy or MAE.
    """
    from edgelstm.convert.int16x8 import run_sequence_tflm
    from edgelstm.convert.verify import keras_reference, run_sequence, run_step
    from edgelstm.zoo.metrics import metric_value

    def score(out: np.ndarray, y: np.ndarray) -> tuple[str, float]:
        return (metric, metric_value(metric, out, y)) if metric else _score(out, y)

    rows: list[dict[str, Any]] = []
    quants = list(ALL_QUANTS)
    try:
        outdir, manifest = edgelstm_artifacts(ctx, bm, quants)
    except Exception as exc:
        ctx.log(
            f"  all quantizations failed together ({type(exc).__name__}); retrying without int16x8"
        )
        quants.remove("int16x8")
        outdir, manifest = edgelstm_artifacts(ctx, bm, quants)
        rows.append(
            row(
                "size",
                name,
                "int16x8",
                status="failed",
                notes=[f"convert with int16x8 failed: {str(exc)[:200]}"],
            )
        )
    for note in manifest.notes:
        if "int16x8" in note or "fell back" in note:
            rows.append(row("size", name, "convert note", status="note", notes=[note]))
    ref_metric = None
    if eval_xy is not None:
        x, y = eval_xy
        ref = keras_reference(_load(bm.path), x)
        ref_metric = score(ref, y)
        rows.append(
            row(
                "size",
                name,
                "Keras float (reference)",
                runtime="Keras 3",
                metric=ref_metric[0],
                value=ref_metric[1],
                samples=len(x),
                notes=[eval_note],
            )
        )
    for art in manifest.artifacts:
        path = outdir / art.file
        r = row(
            "size",
            name,
            f"{art.variant.value} {art.quantization.value}",
            runtime="LiteRT",
            size_bytes=art.size_bytes,
            macs=art.macs_per_invoke,
            variant=art.variant.value,
            quant=art.quantization.value,
            params=art.params,
            parity=art.parity.max_abs if art.parity else None,
            parity_ok=art.parity.passed if art.parity else None,
        )
        if eval_xy is not None:
            x, y = eval_xy
            data = path.read_bytes()
            info = read_tflite(data)
            try:
                if art.variant.value == "sequence" and art.parity and art.parity.runtime == "tflm":
                    # int16 fused LSTM: LiteRT has no kernel for it; TFLite Micro's interpreter
                    out = run_sequence_tflm(data, info, x)
                    r["runtime"] = "TFLite Micro"
                elif art.variant.value == "sequence":
                    out = run_sequence(data, info, x)
                else:
                    out = run_step(data, info, x, manifest.model.token_input)
                    if manifest.model.output_kind.value == "many_to_one":
                        out = out[:, -1]  # the answer after the last step
                r["metric"], r["value"] = score(out, y)
                r["samples"] = len(x)
            except Exception as exc:
                r["notes"].append(f"accuracy failed: {type(exc).__name__}: {str(exc)[:150]}")
        rows.append(r)
    return rows


def eval_set(model_dir: Path, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    path = model_dir / "eval.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        if "x" not in data or "y" not in data:
            return None
        x = data["x"][:limit]
        # token models (char-lm) keep their int ids; everything else runs in float32
        return (x if x.dtype.kind in "iu" else x.astype(np.float32)), data["y"][:limit]


# ---------------------------------------------------------------- Cortex-M4 and pipeline

PUBLISHED = [
    (
        "TFLite Micro + CMSIS-NN, int8 (published)",
        "~5.5 cycles/MAC",
        "Plumerai blog 2022-11-02: Keras weather LSTM(32), D=7, T=120 on STM32L4R9 "
        "(Cortex-M4 @120 MHz), 27.5 ms; via ../shared/notes/performance.md",
    ),
    (
        "Plumerai engine, int8 (published)",
        "~1.84 cycles/MAC",
        "Plumerai blog 2022-11-02: same model and board, 9.2 ms; "
        "via ../shared/notes/performance.md",
    ),
    (
        "NNoM + CMSIS-NN, int8 GRU stack (published)",
        "~1.7-2.2 cycles/MAC",
        "majianjia/nnom examples/rnn-denoise/README.md: stateful GRU stack, 209k MAC/step, "
        "3.28 ms/step on STM32L476 @140 MHz (GRU-96 layer 1.72); "
        "via ../shared/notes/performance.md",
    ),
]


def _mcu_row(model: str, quant: str, tflite: Path | None, manifest: Any) -> dict[str, Any]:
    r = row("mcu", model, f"edgelstm C engine {quant}", runtime="qemu Cortex-M4", quant=quant)
    if tflite is None:
        r.update(status="not measured", notes=[f"no {quant} step artifact"])
        return r
    res = native.cengine_qemu(tflite, manifest)
    if "error" in res:
        r.update(status="not measured", notes=[res["error"]])
        return r
    r["value"] = res["instructions_per_mac"]
    r["unit"] = "instructions/MAC"
    r["detail"] = {
        "instructions_per_step": res["instructions_per_step_median"],
        "macs_per_step": res["macs_per_step"],
        "flash_bytes": res["flash_engine_bytes"],
        "weight_bytes": res["weight_bytes"],
        "ram_bytes": res["ram_total_bytes"],
        "state_bytes": res["ram_state_bytes"],
        "gate_buffer_bytes": res["gate_buffer_bytes"],
        "parity_ok": res["parity"]["ok"],
        "parity_reference": res["parity"].get("reference"),
        "lsb_vs_other_kernels": {
            k: v["max_lsb_diff"] for k, v in res["parity"].get("kernel_sets", {}).items()
        },
        "breakdown": res.get("breakdown", {}).get("groups"),
        "non_fc_instructions": res.get("breakdown", {}).get("non_fc_instructions"),
    }
    r["targets"] = res["targets"]
    r["notes"] = [
        "instructions counted by qemu -icount (not cycles), SysTick around each step; "
        "median over the verification steps; measured here"
    ]
    return r


def mcu_suite(ctx: Context, bm: M.BenchModel) -> list[dict[str, Any]]:
    """Cortex-M4 (qemu): the C engine on issue #7's LSTM(64) and on `bm`, float and int8."""
    rows = []
    ctx.log("  LSTM(64), D=64 step model")
    made = native.lstm64_step(ctx.work)
    if isinstance(made, dict):
        for quant in ("float", "int8"):
            rows.append(
                row("mcu", "lstm64", f"edgelstm C engine {quant}", status="not measured",
                    notes=[made["error"]])
            )  # fmt: skip
    else:
        step_int8, man = made
        files = {a["quantization"]: step_int8.parent / a["file"] for a in man["artifacts"]}
        for quant in ("float", "int8"):
            rows.append(_mcu_row("lstm64", quant, files.get(quant), man))
    outdir, manifest = edgelstm_artifacts(ctx, bm, ["float", "int8"])
    for quant in ("float", "int8"):
        found = _art(outdir, manifest, "step", quant)
        rows.append(_mcu_row(bm.key, quant, found[0] if found else None, manifest))
    from benchmarks import mcu  # issue #16: more cores, GRU/SimpleRNN, D=8, the TFLM peer

    rows.extend(mcu.rows(ctx, row))
    for system, figure, source in PUBLISHED:
        rows.append(
            row(
                "mcu",
                "published",
                system,
                runtime="Cortex-M4 hardware",
                status="published",
                value_text=figure,
                notes=[f"published, not measured here: {source}"],
            )
        )
    return rows


def pipeline_suite(ctx: Context) -> list[dict[str, Any]]:
    exe = [sys.executable, "-m", "edgelstm", "pipeline"]
    r = row("pipeline", "-", "edgelstm pipeline (default)", runtime="CLI")
    helped = subprocess.run([*exe, "--help"], capture_output=True, text=True, timeout=120)
    if helped.returncode != 0:
        r.update(
            status="not measured",
            notes=["not measured: `edgelstm pipeline --help` fails (command not available yet)"],
        )
        return [r]
    out = ctx.work / "pipeline_out"
    args = list(exe)
    if "--out" in helped.stdout or " -o" in helped.stdout:
        args += ["-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800, cwd=ctx.work)
    wall = time.perf_counter() - t0
    # the work dir is a temp path: show the command as a user would type it
    r["command"] = " ".join(["edgelstm", *args[3:]]).replace(str(out), "OUT")
    r["value"] = wall
    r["unit"] = "s"
    r["exit_code"] = proc.returncode
    if proc.returncode != 0:
        r["status"] = "failed"
        r["notes"].append((proc.stderr.strip().splitlines() or ["no stderr"])[-1][:200])
    return [r]
