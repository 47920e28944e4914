"""`edgelstm quantize`: optional pruning, conversion to float + quantized, and the error report."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.arrays import load_array, load_arrays
from edgelstm.errors import BadInputError
from edgelstm.evaluate import evaluate_step
from edgelstm.fsutil import publish, write_atomic
from edgelstm.quantize.checks import check_config
from edgelstm.quantize.finetune import _prune_finetune, _prune_table, _run_qat
from edgelstm.quantize.metrics import _set_metric
from edgelstm.report import Report
from edgelstm.types import ConvertConfig, Quantization, QuantizeConfig, Variant


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
        from edgelstm.convert.result import check_outdir

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


def run_quantize(
    model: str | Path,
    outdir: str | Path,
    cfg: QuantizeConfig,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """`quantize` then `QuantizeResult.save(outdir)`; returns report.json's content."""
    from edgelstm.convert.result import check_outdir

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
    from edgelstm.convert import convert_model
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
