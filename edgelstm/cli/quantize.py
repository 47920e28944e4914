"""`edgelstm quantize MODEL -o DIR`: prune, quantize and explain the quantization error."""

from __future__ import annotations

from pathlib import Path

import click

from edgelstm.cli._app import App, comma_list
from edgelstm.types import Quantization, QuantizeConfig


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--outdir",
    type=click.Path(path_type=Path),
    required=True,
    help="Output directory: report.md, report.json and the artifacts under tflite/.",
)
@click.option(
    "--quantize",
    "quantize",
    multiple=True,
    default=("int8",),
    show_default=True,
    callback=comma_list([q.value for q in Quantization]),
    help="int8, int16x8, dynamic, float16; repeat the option or separate with commas "
    "(float is always built).",
)
@click.option("--calibration", type=click.Path(path_type=Path), help=".npy/.npz (key 'x').")
@click.option(
    "--recipe",
    help="Zoo recipe: calibration (its calibration.npz or generator), eval data and metric, "
    "and the QAT fine-tuning data.",
)
@click.option("--samples", type=int, default=128, show_default=True, help="Calibration samples.")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning (needs --recipe).")
@click.option(
    "--epochs", type=int, default=2, show_default=True, help="QAT / pruning fine-tune epochs."
)
@click.option(
    "--qat-samples",
    type=int,
    default=2048,
    show_default=True,
    help="QAT / pruning fine-tune sequences.",
)
@click.option("--lr", type=float, help="Fine-tune learning rate [recipe's / 10].")
@click.option("--max-steps", type=int, help="Cap on fine-tune optimizer steps (smoke tests).")
@click.option(
    "--prune",
    type=float,
    help="Prune weight matrices (recurrent kernels too) to this sparsity, in (0, 1), with tfmot; with --recipe, fine-tune with the zeros held.",
)
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(path_type=Path),
    help=".npz with 'x' and 'y': with --recipe, sequences scored with the recipe's metric "
    "[recipe's eval.npz]; without, one long stream with a class id per step.",
)
@click.option("--stream-len", type=int, default=512, show_default=True, help="Drift stream steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print report.json.")
@click.pass_obj
def quantize(
    app: App,
    *,
    model: Path,
    outdir: Path,
    quantize: tuple[str, ...],
    calibration: Path | None,
    recipe: str | None,
    samples: int,
    qat: bool,
    epochs: int,
    qat_samples: int,
    lr: float | None,
    max_steps: int | None,
    prune: float | None,
    eval_file: Path | None,
    stream_len: int,
    seed: int,
    as_json: bool,
) -> None:
    """Convert float + quantized step models, and report their error, drift and sizes.

    With --qat, also fine-tune with fake quantization on the recipe's data and report float,
    post-training int8 and QAT int8 side by side.
    """
    from edgelstm.quantize.run import run_quantize

    cfg = QuantizeConfig(
        quantizations=tuple(Quantization(n) for n in dict.fromkeys(quantize)),
        calibration=str(calibration) if calibration else None,
        samples=samples,
        prune=prune,
        eval_file=str(eval_file) if eval_file else None,
        stream_len=stream_len,
        seed=seed,
        recipe=recipe,
        qat=qat,
        qat_epochs=epochs,
        qat_samples=qat_samples,
        qat_lr=lr,
        qat_max_steps=max_steps,
    )
    out = run_quantize(model, outdir, cfg, progress=lambda m: app.info(f"[quantize] {m}"))
    if as_json:
        app.out_json(out)
        return
    app.out(out["recommendation"])
    for r in out["reports"]:
        d = r["drift"]
        app.out(f"  - {r['verdict']}")
        app.out(f"    drift over {d['steps']} steps: {d['trend']}")
    if "qat" in out:
        q = out["qat"]
        app.out(
            f"QAT {q['metric']}: float {q['float']:.3f}, int8 PTQ {q['int8_ptq']:.3f}, "
            f"int8 QAT {q['int8_qat']:.3f}"
        )
    if "prune" in out:
        p = out["prune"]
        app.out(f"sparsity requested {p['requested']:.2f}, reached {p['reached']:.3f}")
        for s in out["sizes"]:
            app.out(f"  {s['file']}: {s['raw_bytes']:,} B raw, {s['zlib_bytes']:,} B zlib")
    for n in out["notes"]:
        app.out(f"note: {n}")
    app.out(f"wrote report.md, report.json and tflite/ to {outdir}")
