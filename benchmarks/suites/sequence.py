"""Sequence latency: a whole sequence per invoke (fused LSTM, unrolled, ONNX Runtime)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import models as M
from benchmarks import runners
from benchmarks.runners import Timing
from benchmarks.suites.common import Context, _art, _guard, edgelstm_artifacts, row
from benchmarks.suites.step import _cengine_rows, _floor_rows
from edgelstm.tflite_info import read_tflite


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
