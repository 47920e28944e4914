"""`edgelstm quantize`: optional pruning, conversion to float + quantized, and the error report."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.arrays import load_array, load_arrays
from edgelstm.errors import BadInputError
from edgelstm.evaluate import evaluate_step
from edgelstm.fsutil import publish, reproducible_keras_zip, write_atomic
from edgelstm.report import Report
from edgelstm.types import ConvertConfig, Manifest, Quantization, QuantizeConfig, Variant


def _stream(calibration: str | None, length: int, ms_input: Any, seed: int) -> np.ndarray:
    """A long stream for the drift table: calibration sequences end to end, else seeded noise."""
    if calibration:
        x = load_array(calibration, "calibration")
        flat = x.reshape(-1, *x.shape[2:]) if x.ndim >= 2 else x
        reps = -(-length // len(flat))
        return np.concatenate([flat] * reps)[:length]
    rng = np.random.default_rng(seed)
    return rng.standard_normal((length, ms_input)).astype(np.float32)


@dataclass
class QuantizeResult:
    """What `quantize` made, in memory: report.json's content and the bytes of every output file
    (relative path -> bytes: the step models, the reports, plots, a pruned or QAT model)."""

    report: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)

    def save(self, outdir: str | Path) -> None:
        """Publish into `outdir` at once (a private staging dir beside it, then renames)."""
        from edgelstm.convert.orchestrate import check_outdir

        outdir = Path(outdir)
        check_outdir(outdir)
        outdir.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
        try:
            for rel, data in sorted(self.files.items()):
                write_atomic(stage / rel, data)
            publish(stage, outdir)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)


def check_config(cfg: QuantizeConfig) -> None:
    """Refuse inconsistent options before any work (BadInputError naming the option)."""
    from edgelstm.quantize.prune import check_sparsity

    if cfg.prune is not None:
        check_sparsity(cfg.prune)
    if cfg.qat and cfg.recipe is None:
        raise BadInputError("--qat needs --recipe NAME (the fine-tuning data and its metric)")
    if cfg.samples < 1:
        raise BadInputError("--samples must be at least 1")
    if cfg.qat and cfg.qat_epochs < 1:
        raise BadInputError("--epochs must be at least 1")
    if cfg.qat and cfg.qat_samples < 1:
        raise BadInputError("--qat-samples must be at least 1")
    quants = [q for q in cfg.quantizations if q != Quantization.FLOAT]
    if not quants and cfg.prune is None and not cfg.qat:
        raise BadInputError("--quantize needs at least one of int8, int16x8, dynamic, float16")
    missing = [q for q in quants if q.needs_calibration]
    if missing and not cfg.calibration and cfg.recipe is None:
        raise BadInputError(
            f"--quantize {missing[0].value} needs --calibration FILE (.npy or .npz with key 'x') "
            "or --recipe NAME"
        )
    if cfg.stream_len < 1:
        raise BadInputError("--stream-len must be at least 1")


def run_quantize(
    model: str | Path,
    outdir: str | Path,
    cfg: QuantizeConfig,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """`quantize` then `QuantizeResult.save(outdir)`; returns report.json's content."""
    from edgelstm.convert.orchestrate import check_outdir

    check_config(cfg)
    check_outdir(Path(outdir))
    result = quantize(model, cfg, progress)
    result.save(outdir)
    return result.report


def quantize(
    model: str | Path,
    cfg: QuantizeConfig,
    progress: Callable[[str], None] = lambda _m: None,
) -> QuantizeResult:
    """Prune (optional), convert float + each quantization, report errors; writes nothing
    outside its own work dir.

    The recipe supplies calibration (its calibration.npz, else `samples` from its generator), eval
    data with its metric, and, with qat, the fine-tuning data for quantization-aware training.
    """
    from edgelstm.convert.orchestrate import convert_model
    from edgelstm.fsutil import owned_tempdir
    from edgelstm.quantize.prune import SIZE_NOTE, prune_file, size_report
    from edgelstm.quantize.report import compare_step_models, quantization_section

    check_config(cfg)
    calibration, samples, prune, seed = cfg.calibration, cfg.samples, cfg.prune, cfg.seed
    qat, qat_epochs, qat_samples = cfg.qat, cfg.qat_epochs, cfg.qat_samples
    qat_lr, qat_max_steps, stream_len, eval_file = (
        cfg.qat_lr, cfg.qat_max_steps, cfg.stream_len, cfg.eval_file
    )  # fmt: skip
    rec = None
    if cfg.recipe:
        from edgelstm.zoo import load_recipe

        rec = load_recipe(cfg.recipe)
    quants = [q for q in cfg.quantizations if q != Quantization.FLOAT]
    if qat and Quantization.INT8 not in quants:
        quants.append(Quantization.INT8)  # QAT is measured against post-training int8
    stage = owned_tempdir(Path(tempfile.gettempdir()), "quantize")
    try:
        out: dict[str, Any] = {"model": str(model), "notes": []}
        if rec is not None and not calibration:
            calibration, how = recipe_calibration(rec, samples, seed, stage)
            out["calibration"] = how
        elif calibration:
            out["calibration"] = f"{calibration} (first {samples} sequences)"
        out["notes"].append(
            "weights: per-channel int8 scales (the converter's default); activations: per-tensor "
            f"ranges from calibration ({out.get('calibration', 'none')})"
        )
        src = Path(model)
        if prune is not None:
            progress(f"pruning to sparsity {prune} (tensorflow-model-optimization)")
            src = stage / "pruned.keras"
            out["prune"] = prune_file(model, src, prune).to_dict()
            if rec is not None:
                out["prune"].update(
                    _prune_finetune(
                        Path(model), src, rec, out["prune"]["per_weight"],
                        epochs=qat_epochs, n=qat_samples, lr=qat_lr, seed=seed,
                        max_steps=qat_max_steps, progress=progress,
                    )
                )  # fmt: skip
        name = Path(model).stem.replace(".", "_")
        conv_cfg = ConvertConfig(
            variants=[Variant.STEP],
            quantizations=[Quantization.FLOAT, *quants],
            calibration=calibration,
            calibration_samples=samples,
            verify_fail=False,  # the report is the verdict here
            seed=seed,
            name=name,
        )
        progress("converting")
        manifest = convert_model(src, stage / "tflite", conv_cfg, progress=progress)
        out["manifest"] = manifest.to_dict()
        arts = {a.quantization: stage / "tflite" / a.file for a in manifest.artifacts}
        fpath = arts[Quantization.FLOAT]
        out["sizes"] = [size_report(p).to_dict() for p in arts.values()]
        if prune is not None:
            out["notes"].append(SIZE_NOTE)
        from edgelstm.runtime.stream import StepRunner

        d = StepRunner(fpath).input_size
        stream = _stream(calibration, stream_len, d, seed)
        labels = None
        ev = None
        if eval_file:
            ev = load_arrays(eval_file, "--eval")
            if "x" not in ev or "y" not in ev:
                raise BadInputError(f"--eval {eval_file}: needs keys 'x' and 'y'")
        elif rec is not None and (rec.dir / "eval.npz").exists():
            ev = load_arrays(rec.dir / "eval.npz", "eval")
        metric = rec.metric if rec is not None else None
        if ev is not None and metric is None:
            stream, labels = ev["x"], ev["y"]
            if stream.ndim == 3:  # [N, T, D] eval sequences: run back to back as one stream
                stream = stream.reshape(-1, stream.shape[-1])
                labels = labels.reshape(len(stream), -1)[:, 0]
                out["notes"].append(
                    "eval sequences run back to back as one stream (state carried across them)"
                )
        elif ev is not None:
            # the drift stream: eval sequences back to back, state carried across them
            x = ev["x"]
            stream = x.reshape(-1) if x.ndim == 2 else x.reshape(-1, x.shape[-1])
            stream = stream[: max(stream_len, 1)]
        scores: dict[str, float] = {}
        if ev is not None and metric is not None:
            progress(f"measuring {metric} of each step model on {len(ev['x'])} eval sequences")
            for q, p in arts.items():
                scores[q.value] = evaluate_step(p, ev["x"], ev["y"], metric)
        rep = Report(title=f"Quantization report: {Path(model).name}")
        out["reports"] = []
        all_reps: list[Any] = []
        for q in quants:
            progress(f"comparing {q.value} with float over {len(stream)} steps")
            r = compare_step_models(fpath, arts[q], stream, labels=labels)
            if scores:
                _set_metric(r, metric, scores["float"], scores[q.value])
            out["reports"].append(r.to_dict())
            all_reps.append(r)
            rep.intro.append(r.verdict)
            rep.sections.extend(quantization_section(r))
        if qat:
            if rec is None or ev is None or not scores:
                raise BadInputError("--qat needs eval data: the recipe's eval.npz or --eval FILE")
            q_out = _run_qat(
                src, rec, stage, conv_cfg, ev, scores, fpath, stream,
                epochs=qat_epochs, n=qat_samples, lr=qat_lr, seed=seed,
                max_steps=qat_max_steps, progress=progress,
            )  # fmt: skip
            out["qat"] = q_out["json"]
            out["reports"].append(q_out["report"].to_dict())
            all_reps.append(q_out["report"])
            rep.intro.append(q_out["line"])
            rep.sections.append(q_out["table"])
            rep.sections.extend(quantization_section(q_out["report"]))
        if prune is not None:
            rep.sections.append(_prune_table(out["prune"], out["sizes"]))
        from edgelstm.quantize.report import QuantReport, recommend_overall

        cands = [r for r in all_reps if isinstance(r, QuantReport)]
        out["recommendation"] = recommend_overall(cands)
        rep.intro.insert(0, out["recommendation"])
        rep.intro.extend(out["notes"])
        write_atomic(stage / "report.json", json.dumps(out, indent=2, sort_keys=True) + "\n")
        from edgelstm.report import Plot

        plots = {}
        for i, sec in enumerate(x for x in rep.sections if isinstance(x, Plot)):
            plots[sec.title] = f"plot{i + 1}.png"
            (stage / plots[sec.title]).write_bytes(sec.png)
        write_atomic(stage / "report.md", rep.to_markdown(plots))
        write_atomic(stage / "report.html", rep.to_html())
        files = {
            str(p.relative_to(stage)): p.read_bytes()
            for p in sorted(stage.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return QuantizeResult(out, files)


def recipe_calibration(rec: Any, samples: int, seed: int, stage: Path) -> tuple[str, str]:
    """The recipe's calibration.npz when committed, else `samples` sequences from its generator."""
    path = rec.dir / "calibration.npz"
    if path.exists():
        return str(path), f"recipe {rec.name}: {path.name} (first {samples} sequences)"
    from edgelstm.zoo import data as zdata

    x, _ = zdata.GENERATORS[rec.generator](
        samples, rec.seq_len, seed, split="train", **rec.generator_args
    )
    dst = stage / "calibration.npz"
    np.savez(dst, x=x)
    return str(dst), f"recipe {rec.name}: {samples} sequences from generator '{rec.generator}'"


def keras_metric(model: Any, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    from edgelstm.evaluate import score

    return score(metric, np.asarray(model.predict(x, batch_size=256, verbose=0)), y)


PERCENT_METRICS = ("accuracy", "per_step_accuracy_after_delay")


def _set_metric(r: Any, metric: str, f: float, q: float) -> None:
    """Accuracy metrics are shown in percent (tolerances are in points); others as they are."""
    from edgelstm.quantize.report import assess
    from edgelstm.zoo.metrics import get_metric

    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    r.metric_name = f"{metric} (%)" if scale == 100.0 else metric
    r.metric_float, r.metric_quant = f * scale, q * scale
    r.higher_is_better = get_metric(metric).higher_is_better
    r.verdict = assess(r)[1]


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

    from edgelstm.convert.load import load_keras_model
    from edgelstm.convert.orchestrate import convert_model
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


def pipeline_sections(
    manifest: Manifest,
    files: Mapping[str, bytes],
    eval_x: np.ndarray,
    scores: dict[str, float],
    metric: str,
    *,
    stream_len: int = 512,
    layer_steps: int = 100,
) -> list[Any]:
    """The pipeline report's quantization sections: its int8 step model against the float step
    model over the eval sequences run back to back (drift, per-output and per-layer error), with
    the metric the pipeline measured on each (`scores`: artifact file -> metric)."""
    from edgelstm.quantize.report import compare_step_models, quantization_section

    step = {a.quantization: a for a in manifest.artifacts if a.variant == Variant.STEP}
    if Quantization.FLOAT not in step or Quantization.INT8 not in step:
        return []
    f, q = step[Quantization.FLOAT], step[Quantization.INT8]
    x = np.asarray(eval_x)
    stream = x.reshape(-1) if x.ndim == 2 else x.reshape(-1, x.shape[-1])
    rep = compare_step_models(f, q, stream[:stream_len], layer_steps=layer_steps, files=files)
    if f.file in scores and q.file in scores:
        _set_metric(rep, metric, scores[f.file], scores[q.file])
    return quantization_section(rep)
