"""The main job: recipe -> (train) -> convert -> verify -> profile -> export -> report.

One orchestrator over the stage modules; each stage is a plain function over in-memory results,
and only `write_report` and the stages' own save functions touch disk.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgelstm.arrays import load_arrays
from edgelstm.evaluate import evaluate, score
from edgelstm.export.result import ExportFailure, ExportResult
from edgelstm.types import ConvertConfig, Manifest, Quantization, Variant

if TYPE_CHECKING:
    from edgelstm.convert.result import ConversionResult
    from edgelstm.train import TrainResult

Progress = Callable[[str], None]
DEFAULT_RECIPE = "echo"


@dataclass
class PipelineConfig:
    """Options of `edgelstm pipeline`."""

    recipe: str = DEFAULT_RECIPE
    out: Path = Path("runs/demo")
    train: bool = False
    quick: bool = False
    epochs: int | None = None
    seed: int = 0
    quantizations: list[Quantization] = field(
        default_factory=lambda: [Quantization.FLOAT, Quantization.INT8]
    )
    runs: int = 200  # timed invokes per artifact
    export: bool = True


@dataclass
class PipelineResult:
    """Everything the report shows."""

    recipe: str
    model_path: Path
    trained_now: bool
    train_metrics: dict[str, Any]
    manifest: Manifest
    accuracy: dict[str, float]  # artifact file -> recipe metric on eval data
    keras_accuracy: float | None
    metric_name: str
    latency: dict[str, dict[str, float]]  # artifact file -> stats (µs)
    exports: dict[str, ExportResult | ExportFailure]  # "target/artifact stem" -> export
    stage_seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    quant_sections: list[Any] = field(default_factory=list)  # edgelstm.quantize report sections
    explain_sections: list[Any] = field(default_factory=list)  # edgelstm.explain, step int8
    conversion: ConversionResult | None = None  # the artifacts' bytes (saved by write_report)
    training: TrainResult | None = None  # when this run trained the model

    def export_summaries(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v.summary) for k, v in self.exports.items()}


def time_invoke(model: bytes, runs: int, warmup: int = 20) -> dict[str, float]:
    """Warmed-up single-thread invoke() latency in LiteRT (inputs set once): `edgelstm profile`'s
    statistics (µs)."""
    from edgelstm.profile.results import LatencyStats
    from edgelstm.runtime.litert import make_interpreter

    interp = make_interpreter(model, threads=1)
    interp.allocate_tensors()
    # Defined inputs: uninitialised memory can hold out-of-range token ids (GATHER fails).
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(warmup):
        interp.invoke()
    samples = np.empty(runs, np.int64)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        interp.invoke()
        samples[i] = time.perf_counter_ns() - t0
    return asdict(LatencyStats.from_ns(samples))


def _recipe_files(recipe: str) -> tuple[Path, dict[str, Any]]:
    from edgelstm.zoo import load_recipe

    r = load_recipe(recipe)
    return r.dir, {"metric": r.metric, "seq_len": r.seq_len}


def run_pipeline(cfg: PipelineConfig, progress: Progress = lambda _m: None) -> PipelineResult:
    """Run every stage for one recipe; results in memory (see write_report). Training saves
    its model into a work directory that is removed on return: the converter runs on a file."""
    with tempfile.TemporaryDirectory(prefix="edgelstm-pipeline-") as work:
        return _run(cfg, Path(work), progress)


def _run(cfg: PipelineConfig, work: Path, progress: Progress) -> PipelineResult:
    from edgelstm.convert import convert
    from edgelstm.convert import outdir as outdir_mod

    stage: dict[str, float] = {}
    t = time.perf_counter()
    model_dir, info = _recipe_files(cfg.recipe)
    notes: list[str] = []
    src_dir, model_path = model_dir, model_dir / "model.keras"
    training = None
    if cfg.train or not (model_dir / "model.keras").exists():
        from edgelstm.train import save_training, train_recipe
        from edgelstm.zoo import load_recipe

        progress(f"training recipe '{cfg.recipe}'" + (" (quick)" if cfg.quick else ""))
        training = train_recipe(
            load_recipe(cfg.recipe), epochs=cfg.epochs, seed=cfg.seed, quick=cfg.quick
        )
        src_dir = work / "train"
        save_training(training, src_dir)
        model_path = cfg.out / "train" / "model.keras"  # where write_report puts it
        stage["train"] = time.perf_counter() - t
    train_metrics = (
        json.loads((src_dir / "metrics.json").read_text())
        if (src_dir / "metrics.json").exists()
        else {}
    )
    ev = load_arrays(src_dir / "eval.npz", "eval")
    eval_x, eval_y = ev["x"], ev["y"]

    t = time.perf_counter()
    progress("converting (sequence + step, " + ", ".join(q.value for q in cfg.quantizations) + ")")
    art_dir = cfg.out / "artifacts"
    conversion = convert(
        src_dir / "model.keras",
        ConvertConfig(
            quantizations=cfg.quantizations,
            calibration=str(src_dir / "calibration.npz"),
            seed=cfg.seed,
            # The report is the verdict: an artifact over its parity bound is shown (with its
            # metric on eval data, which says whether the error matters), not a reason to stop.
            verify_fail=False,
        ),
        progress=lambda m: progress(f"  {m}"),
        # another model's artifacts there: refuse now, not after the run (nothing is written)
        check=lambda source, seq_len: outdir_mod.check_compatible(art_dir, source, seq_len),
    )
    manifest, files = conversion.manifest, conversion.files
    for a in manifest.artifacts:
        if a.parity is not None and not a.parity.passed:
            notes.append(
                f"{a.file}: max abs error {a.parity.max_abs:.3g} vs Keras exceeds the "
                f"{a.quantization.value} parity bound {a.parity.bound:.3g} (see its metric below)"
            )
    stage["convert+verify"] = time.perf_counter() - t

    t = time.perf_counter()
    progress(f"measuring {info['metric']} on {len(eval_x)} held-out sequences")
    accuracy = evaluate(manifest, files, eval_x, eval_y, info["metric"])
    keras_acc = None
    try:
        from edgelstm.convert.load import load_keras_model

        model, _ = load_keras_model(src_dir / "model.keras")
        keras_acc = score(info["metric"], np.asarray(model.predict(eval_x, verbose=0)), eval_y)
    except Exception as exc:  # the report still stands without the Keras column
        notes.append(f"Keras metric not measured: {exc}")
    stage["accuracy"] = time.perf_counter() - t

    t = time.perf_counter()
    progress("quantization report: int8 vs float step model over the eval stream")
    from edgelstm.quantize.sections import pipeline_sections

    quant_sections = pipeline_sections(manifest, files, eval_x, accuracy, info["metric"])
    stage["quantization"] = time.perf_counter() - t

    t = time.perf_counter()
    explain_sections = explain_step(manifest, files, cfg.recipe, progress)
    stage["explain"] = time.perf_counter() - t

    t = time.perf_counter()
    progress(f"profiling every artifact on this CPU ({cfg.runs} warmed-up invokes, 1 thread)")
    latency = {a.file: time_invoke(files[a.file], cfg.runs) for a in manifest.artifacts}
    stage["profile"] = time.perf_counter() - t

    exports: dict[str, ExportResult | ExportFailure] = {}
    if cfg.export:
        t = time.perf_counter()
        exports = export_all(manifest, files, progress)
        stage["export"] = time.perf_counter() - t
    return PipelineResult(
        recipe=cfg.recipe,
        model_path=model_path,
        trained_now=training is not None,
        train_metrics=train_metrics,
        manifest=manifest,
        accuracy=accuracy,
        keras_accuracy=keras_acc,
        metric_name=info["metric"],
        latency=latency,
        exports=exports,
        stage_seconds=stage,
        notes=notes,
        quant_sections=quant_sections,
        explain_sections=explain_sections,
        conversion=conversion,
        training=training,
    )


def explain_step(
    manifest: Manifest, files: Mapping[str, bytes], recipe: str, progress: Progress
) -> list[Any]:
    """`edgelstm explain` of the int8 step model (float beside it) over the recipe's eval data:
    its heatmaps and gate-saturation tables, titled as the pipeline report's explain section."""
    from edgelstm.explain import explain_artifact, load_input

    step = [a for a in manifest.artifacts if a.variant == Variant.STEP]
    art = next((a for a in step if a.quantization == Quantization.INT8), None) or next(
        iter(step), None
    )
    if art is None:
        return []
    progress(f"explain: states and gates of {art.file} over the recipe's eval data")
    xs, target, text = load_input(None, recipe, 128)
    res = explain_artifact(manifest, files, art.file, xs, target=target, text=text)
    rep = res.report(units=32)
    for sec in rep.sections:
        sec.title = f"Inside the network — {sec.title}"
    return rep.sections


def export_all(
    manifest: Manifest, files: Mapping[str, bytes], progress: Progress
) -> dict[str, ExportResult | ExportFailure]:
    """Every registered export target on every artifact it takes (TFLite Micro files for every
    float/int8/int16x8 artifact, the C engine for float/int8 step models), keyed
    "target/artifact stem"; in memory (`save_exports` writes them)."""
    from edgelstm.errors import EdgeLSTMError
    from edgelstm.export import TARGETS, plan_export

    results: dict[str, ExportResult | ExportFailure] = {}
    for target in TARGETS.values():
        for art in manifest.artifacts:
            if not target.accepts(art.variant.value, art.quantization.value):
                continue
            stem = Path(art.file).stem
            progress(f"exporting {art.file} {target.pipeline_doing}".rstrip())
            try:
                results[f"{target.name}/{stem}"] = plan_export(
                    target.name, files[art.file], name=stem, manifest=manifest,
                    source_file=art.file, files=files, **dict(target.pipeline_options),
                )  # fmt: skip
            except EdgeLSTMError as exc:
                if not target.pipeline_optional:
                    raise
                results[f"{target.name}/{stem}"] = ExportFailure(str(exc))
    return results


def save_exports(
    exports: Mapping[str, ExportResult | ExportFailure], out: Path
) -> dict[str, dict[str, Any]]:
    """Write each export into out/<target>/<artifact stem>; their summaries, by the same keys."""
    return {
        k: v.save(out / k) if isinstance(v, ExportResult) else v.summary for k, v in exports.items()
    }


def build_report(res: PipelineResult) -> Any:
    """The pipeline's Report: accuracy, size, latency and parity per artifact, plus plots."""
    from edgelstm import __version__
    from edgelstm.report import Plot, Report, Table, hbar_plot, scatter_plot

    m = res.manifest
    seq_len = m.model.seq_len or 1
    rep = Report(title=f"edgelstm pipeline: {res.recipe}")
    rep.intro = [
        f"edgelstm {__version__}; model {res.model_path} ({m.model.framework}, input {m.model.input_shape}, "
        f"{m.model.output_kind.value})"
        + (" — trained in this run" if res.trained_now else " — committed model"),
        "Stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.stage_seconds.items()),
    ]
    if res.train_metrics:
        tm = res.train_metrics
        rep.intro.append(
            "Training: "
            + ", ".join(
                f"{k}={tm[k]}"
                for k in ("epochs", "test_metric", "wall_time_s", "device")
                if k in tm
            )
        )
    rows = []

    def step_us(a: Any) -> float:  # per time step: a sequence invoke covers seq_len steps
        return res.latency[a.file]["p50_us"] / (seq_len if a.variant == Variant.SEQUENCE else 1)

    best = min(step_us(a) for a in m.artifacts)
    for a in m.artifacts:
        lat = res.latency[a.file]
        per_step = step_us(a)
        p = a.parity
        rows.append(
            [
                a.file,
                a.variant.value,
                a.quantization.value,
                f"{a.size_bytes / 1024:.1f}",
                f"{a.macs_per_invoke:,}",
                f"{res.accuracy[a.file]:.4f}",
                f"{p.max_abs:.2e} ({'ok' if p.passed else 'FAIL'})" if p else "-",
                f"{lat['p50_us']:.1f} [{lat['min_us']:.1f}, {lat['p99_us']:.1f}]",
                f"{per_step:.2f}",
                f"{per_step / best:.1f}x",
            ]
        )
    metric_caption = (
        f"Keras model on the same data: {res.keras_accuracy:.4f}."
        if res.keras_accuracy is not None
        else ""
    )
    rep.sections.append(
        Table(
            "Artifacts",
            [
                "artifact",
                "variant",
                "quant",
                "KiB",
                "MACs/invoke",
                res.metric_name.replace("_", " "),  # spaces let a long metric name wrap
                "parity max err",
                "invoke p50 [min, p99] µs",
                "µs/step",
                "vs fastest",
            ],
            rows,
            caption=f"LiteRT, 1 thread, warmed up; parity vs the Keras model. {metric_caption}",
        )
    )
    fw = [
        [
            k,
            f"{v['size']['flash_model_bytes']:,}",
            f"{v['size']['ram_arena_used_bytes']:,}",
            f"{v['size']['ram_arena_min_bytes']:,}",
            f"{v['size']['ram_arena_recommended_bytes']:,}",
        ]
        for k, v in res.export_summaries().items()
        if k.startswith("tflm/") and "size" in v
    ]
    if fw:
        rep.sections.append(
            Table(
                "Microcontroller export (TFLite Micro)",
                ["export", "flash (model) B", "arena used B", "arena min B", "arena recommended B"],
                fw,
                caption="Arena measured with the tflite-micro interpreter; see each export's README.",
            )
        )
    c_rows = []
    for k, v in res.export_summaries().items():
        if not k.startswith("c/"):
            continue
        if "error" in v:
            c_rows.append([k, "-", "-", f"not exported: {v['error']}"])
            continue
        z, p = v["size"], v["verify"]["host"]["parity"]
        parity = (
            f"max {p['max_lsb_diff']} LSB"
            if "max_lsb_diff" in p
            else f"max abs diff {p['max_abs_diff']:.2g}"
        )
        c_rows.append(
            [
                k,
                f"{z['const_bytes']:,}",
                f"{z['arena_bytes'] + z['scratch_bytes'] + z['state_bytes']:,}",
                f"{parity} over {p['steps']} steps ({'ok' if p['ok'] else 'FAILED'})",
            ]
        )
    if c_rows:
        rep.sections.append(
            Table(
                "Standalone C engine (no TFLite Micro)",
                ["export", "constants B", "RAM (buffers + state) B", "host parity vs LiteRT"],
                c_rows,
                caption="C99 generated by `edgelstm export --target c`, compiled with host gcc "
                "(-Wall -Wextra -Werror, ASan/UBSan) and run on the same inputs as LiteRT.",
            )
        )
    labels = [a.file.replace(".tflite", "") for a in m.artifacts]
    # Per step everywhere: a sequence invoke covers T steps (the table's µs/step column).
    steps = [seq_len if a.variant == Variant.SEQUENCE else 1 for a in m.artifacts]
    lat = [res.latency[a.file] for a in m.artifacts]
    png = hbar_plot(
        labels,
        [s["p50_us"] / n for s, n in zip(lat, steps, strict=True)],
        "µs per time step (invoke ÷ steps per invoke; log scale)",
        [(s["min_us"] / n, s["p99_us"] / n) for s, n in zip(lat, steps, strict=True)],
    )
    if png:
        rep.sections.append(
            Plot(
                "Latency per time step",
                png,
                "Bars: median; whiskers: min to p99. A sequence model's invoke is divided by its "
                "T steps, so step and sequence artifacts compare at the same unit.",
            )
        )
    acc = [res.accuracy[a.file] for a in m.artifacts]
    if max(acc) - min(acc) > 1e-9:
        png = scatter_plot(
            [
                (lbl, a.size_bytes / 1024, v)
                for lbl, a, v in zip(labels, m.artifacts, acc, strict=True)
            ],
            "size (KiB)",
            res.metric_name,
        )
        title, caption = "Size vs accuracy", ""
    else:  # every artifact scores the same: the error against Keras is what differs
        png = scatter_plot(
            [(lbl, a.size_bytes / 1024, max(a.parity.max_abs, 1e-12))
             for lbl, a in zip(labels, m.artifacts, strict=True) if a.parity],
            "size (KiB)",
            "max abs error vs Keras (log)",
            logy=True,
        )  # fmt: skip
        title = "Size vs error against Keras"
        caption = f"Every artifact scores {acc[0]:.4f} on {res.metric_name}, so the parity error is shown."
    if png:
        rep.sections.append(Plot(title, png, caption))
    rep.sections.extend(res.quant_sections)
    rep.sections.extend(res.explain_sections)
    notes = [*m.notes, *res.notes, *(f"{a.file}: {n}" for a in m.artifacts for n in a.notes)]
    if notes:
        rep.sections.append(Table("Notes", ["note"], [[n] for n in notes]))
    return rep


def write_report(res: PipelineResult, out: Path) -> tuple[Path, Path]:
    """Everything the run made, into `out`: train/ (when it trained), artifacts/ (merged with
    earlier runs' as `edgelstm convert -o` does), firmware/<target>/<artifact>/, then
    report.md (+ plot PNGs), a self-contained report.html and result.json."""
    from edgelstm.report import Plot

    if res.training is not None:
        from edgelstm.train import save_training

        save_training(res.training, out / "train")
    if res.conversion is not None:
        res.conversion.save(out / "artifacts")
    exports = save_exports(res.exports, out / "firmware")
    rep = build_report(res)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for i, sec in enumerate(s for s in rep.sections if isinstance(s, Plot)):
        name = f"plot{i + 1}.png"
        (out / name).write_bytes(sec.png)
        plots[sec.title] = name
    md, html = out / "report.md", out / "report.html"
    md.write_text(rep.to_markdown(plots))
    html.write_text(rep.to_html())
    (out / "result.json").write_text(
        json.dumps(
            {
                "recipe": res.recipe,
                "accuracy": res.accuracy,
                "keras_accuracy": res.keras_accuracy,
                "latency": res.latency,
                "stage_seconds": res.stage_seconds,
                "exports": exports,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    return md, html
