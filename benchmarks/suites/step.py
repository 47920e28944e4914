"""Step latency: one time step per invoke, every runtime side by side, the C engine and the floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import models as M
from benchmarks import native, runners
from benchmarks.runners import Timing
from benchmarks.suites.common import (
    Context,
    _art,
    _guard,
    edgelstm_artifacts,
    fused_t1_artifacts,
    row,
)
from edgelstm.tflite_info import read_tflite


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
