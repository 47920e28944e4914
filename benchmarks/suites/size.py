"""Size and accuracy of every quantization of one model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import models as M
from benchmarks.suites.common import Context, edgelstm_artifacts, row
from benchmarks.suites.step import _load

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
    from edgelstm import evaluate
    from edgelstm.convert.verify import keras_reference
    from edgelstm.evaluate import predict_artifact

    def score(out: np.ndarray, y: np.ndarray) -> tuple[str, float]:
        return (metric, evaluate.score(metric, out, y)) if metric else _score(out, y)

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
            try:
                # (the runtime its parity was measured on: TFLite Micro for int16 fused LSTMs)
                out = predict_artifact(manifest, art, path.read_bytes(), x)
                if art.parity and art.parity.runtime == "tflm":
                    r["runtime"] = "TFLite Micro"
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
    from edgelstm.arrays import load_arrays

    data = load_arrays(path, "eval")
    if "x" not in data or "y" not in data:
        return None
    x = data["x"][:limit]
    # token models (char-lm) keep their int ids; everything else runs in float32
    return (x if x.dtype.kind in "iu" else x.astype(np.float32)), data["y"][:limit]
