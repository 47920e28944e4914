"""Recipe-data fine-tuning inside the quantize stage: pruned (zeros held) and quantization-aware."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.arrays import load_arrays
from edgelstm.errors import BadInputError
from edgelstm.evaluate import evaluate_step
from edgelstm.fsutil import reproducible_keras_zip
from edgelstm.quantize.metrics import PERCENT_METRICS, _set_metric, keras_metric
from edgelstm.types import ConvertConfig, Quantization


def _recipe_train_data(rec: Any, n: int, seed: int) -> tuple[Any, Any, Any]:
    """n fresh training sequences from the recipe's generator: x, targets, sample weights."""
    from edgelstm.zoo import data as zdata

    x, y = zdata.GENERATORS[rec.generator](
        n, rec.seq_len, seed + 1000, split="train", **rec.generator_args
    )
    ty, tw = rec.fit_targets(y)
    return x, ty, tw


def _prune_finetune(
    dense: Path,
    pruned: Path,
    rec: Any,
    per_weight: dict[str, float],
    *,
    epochs: int,
    n: int,
    lr: float | None,
    seed: int,
    max_steps: int | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Fine-tune the pruned model on the recipe's data with its zeros held; the recipe metric
    (Keras, eval.npz) dense, pruned and fine-tuned. Rewrites `pruned` with the fine-tuned model."""
    from edgelstm.convert.load import load_keras_model
    from edgelstm.quantize.prune import finetune_pruned

    if n < 1:
        raise BadInputError("--qat-samples must be at least 1")
    evp = rec.dir / "eval.npz"
    ev = load_arrays(evp, "eval") if evp.exists() else None
    out: dict[str, Any] = {"metric": rec.metric}
    model, _ = load_keras_model(pruned)
    if ev is not None:
        dense_model, _ = load_keras_model(dense)
        out["metric_dense"] = keras_metric(dense_model, ev["x"], ev["y"], rec.metric)
        out["metric_pruned"] = keras_metric(model, ev["x"], ev["y"], rec.metric)
    settings = rec.train
    lr = lr if lr is not None else float(settings.get("learning_rate", 1e-3)) / 10
    x, ty, tw = _recipe_train_data(rec, n, seed)
    progress(
        f"pruning: fine-tuning on {n} '{rec.generator}' sequences, {epochs} epochs, zeros held"
    )
    out["finetune_loss"] = finetune_pruned(
        model, per_weight, x, ty, loss=rec.loss, sample_weight=tw, epochs=epochs,
        batch_size=int(settings.get("batch_size", 64)), learning_rate=lr, seed=seed,
        max_steps=max_steps,
    )  # fmt: skip
    zeros = sum(
        int(np.count_nonzero(np.asarray(w.numpy()) == 0))
        for w in model.weights
        if (getattr(w, "path", None) or w.name) in per_weight
    )
    total = sum(
        int(np.asarray(w.numpy()).size)
        for w in model.weights
        if (getattr(w, "path", None) or w.name) in per_weight
    )
    out["reached_after_finetune"] = zeros / total if total else 0.0
    if ev is not None:
        out["metric_finetuned"] = keras_metric(model, ev["x"], ev["y"], rec.metric)
    model.save(pruned)
    reproducible_keras_zip(pruned)
    return out


def _prune_table(p: dict[str, Any], sizes: list[dict[str, Any]]) -> Any:
    """Sparsity, the metric dense / pruned / fine-tuned, and sizes raw vs compressed."""
    from edgelstm.report import Table

    rows = [
        ["sparsity requested / reached", f"{p['requested']:.2f} / {p['reached']:.3f}"],
    ]
    if "reached_after_finetune" in p:
        rows.append(["sparsity after fine-tuning", f"{p['reached_after_finetune']:.3f}"])
    for key, label in (
        ("metric_dense", "Keras, dense"),
        ("metric_pruned", "Keras, pruned (one shot)"),
        ("metric_finetuned", "Keras, pruned + fine-tuned"),
    ):
        if key in p:
            rows.append([f"{p['metric']}: {label}", f"{p[key]:.4f}"])
    for sz in sizes:
        rows.append([sz["file"], f"{sz['raw_bytes']:,} B raw, {sz['zlib_bytes']:,} B zlib"])
    return Table(
        title="Pruning (tensorflow-model-optimization, magnitude, recurrent kernels included)",
        header=["", ""],
        rows=rows,
        caption="unstructured sparsity: the raw .tflite keeps every zero; only compression shrinks it",
    )


def _run_qat(
    src: Path,
    rec: Any,
    stage: Path,
    cfg: ConvertConfig,
    ev: dict[str, np.ndarray],
    scores: dict[str, float],
    fpath: Path,
    stream: np.ndarray,
    *,
    epochs: int,
    n: int,
    lr: float | None,
    seed: int,
    max_steps: int | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Fine-tune with fake quantization, convert to int8 (same calibration), score side by side."""
    import dataclasses

    from edgelstm.convert import convert_model
    from edgelstm.convert.load import load_keras_model
    from edgelstm.quantize.qat import qat_finetune
    from edgelstm.quantize.report import compare_step_models
    from edgelstm.report import Table

    if n < 1:
        raise BadInputError("--qat-samples must be at least 1")
    settings = rec.train
    lr = lr if lr is not None else float(settings.get("learning_rate", 1e-3)) / 10
    x, ty, tw = _recipe_train_data(rec, n, seed)
    model, _ = load_keras_model(src)
    metric = rec.metric
    k_before = keras_metric(model, ev["x"], ev["y"], metric)
    progress(f"QAT: fine-tuning on {n} '{rec.generator}' sequences, {epochs} epochs, lr {lr:g}")
    res = qat_finetune(
        model, x, ty, loss=rec.loss, sample_weight=tw, epochs=epochs,
        batch_size=int(settings.get("batch_size", 64)), learning_rate=lr, seed=seed,
        cell_limit=settings.get("cell_limit"), cell_penalty=float(settings.get("cell_penalty", 0.1)),
        max_steps=max_steps, progress=progress,
    )  # fmt: skip
    k_after = keras_metric(model, ev["x"], ev["y"], metric)
    qat_path = stage / f"{cfg.name}_qat.keras"
    model.save(qat_path)
    reproducible_keras_zip(qat_path)
    progress("QAT: converting the fine-tuned model to int8")
    qcfg = dataclasses.replace(cfg, quantizations=[Quantization.INT8], name=f"{cfg.name}_qat")
    man = convert_model(qat_path, stage / "tflite_qat", qcfg, progress=progress)
    qpath = stage / "tflite_qat" / man.artifacts[0].file
    q_score = evaluate_step(qpath, ev["x"], ev["y"], metric)
    rep = compare_step_models(fpath, qpath, stream)
    _set_metric(rep, metric, scores["float"], q_score)
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    f, ptq = scores["float"] * scale, scores["int8"] * scale
    qv = q_score * scale
    hib = rep.higher_is_better
    ptq_loss = (f - ptq) if hib else (ptq - f)
    qat_loss = (f - qv) if hib else (qv - f)
    recovered = (ptq_loss - qat_loss) / ptq_loss if ptq_loss > 0 else None
    unit = " points" if scale == 100.0 else ""
    line = (
        f"QAT ({res.steps} steps): {metric} float {f:.3f}, int8 post-training {ptq:.3f} "
        f"(loss {ptq_loss:+.3f}{unit}), int8 QAT {qv:.3f} (loss {qat_loss:+.3f}{unit})"
        + (f", recovers {recovered * 100:.0f}% of the post-training loss" if recovered else "")
    )
    if scale == 100.0 and ptq_loss <= 0.5:
        line += "; post-training loss is within 0.5 points, so QAT is not needed here"
    from edgelstm.report import distinct

    fv, pv, qv_s, kb, ka = distinct(f, ptq, qv, k_before * scale, k_after * scale, digits=3)
    rows = [
        ["float step (original weights)", fv, "-"],
        ["int8 step, post-training (PTQ)", pv, f"{ptq_loss:+.4f}"],
        ["int8 step, quantization-aware (QAT)", qv_s, f"{qat_loss:+.4f}"],
        ["Keras float, before QAT", kb, "-"],
        ["Keras float, after QAT", ka, "-"],
    ]
    table = Table(
        "Post-training vs quantization-aware int8",
        ["model", rep.metric_name, "loss vs float"],
        rows,
        caption=line,
    )
    js = {
        "metric": metric,
        "float": f,
        "int8_ptq": ptq,
        "int8_qat": qv,
        "keras_before": k_before * scale,
        "keras_after": k_after * scale,
        "ptq_loss": ptq_loss,
        "qat_loss": qat_loss,
        "recovered_fraction": recovered,
        "artifact": man.artifacts[0].file,
        "train": res.to_dict(),
        "samples": n,
        "generator_seed": seed + 1000,
    }
    return {"json": js, "report": rep, "line": line, "table": table}
