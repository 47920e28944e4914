"""`edgelstm explain MODEL_step.tflite`: hidden state, cell state and gates over time."""

from __future__ import annotations

from pathlib import Path

import click

from edgelstm.cli._app import App


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npy [T, D] (or [T] tokens), .npz ('x', first sequence; 'y' as target), .csv, or a "
    "text file for a character model.",
)
@click.option("--recipe", help="Zoo recipe whose committed eval.npz gives the input and target.")
@click.option("--steps", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "--units", type=click.IntRange(min=1), help="Show only the first K units in the heatmaps."
)
@click.option(
    "-o",
    "--outdir",
    type=click.Path(path_type=Path),
    help="Write explain.html, explain.json and the PNGs here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the traces and analysis as JSON.")
@click.pass_obj
def explain(
    app: App,
    *,
    model: Path,
    input_file: Path | None,
    recipe: str | None,
    steps: int,
    units: int | None,
    outdir: Path | None,
    as_json: bool,
) -> None:
    """Run a step model over a real input and show what its units do, beside float.

    Every hidden state, cell state and gate (LSTM i/f/g/o, GRU z/r/g, SimpleRNN
    pre-activation) is read from the artifact's own tensors at every step, dequantized; the
    float step model from the same manifest runs over the same input. No TensorFlow needed.
    """
    import json

    from edgelstm.errors import BadInputError
    from edgelstm.explain import explain as run
    from edgelstm.explain import load_input, save

    if input_file and recipe:
        raise BadInputError("give --input or --recipe, not both")
    if outdir is not None and outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")
    vocab = _vocab_near(model) if input_file and input_file.suffix == ".txt" else None
    xs, target, text = load_input(input_file, recipe, steps, vocab)
    res = run(model, xs, target=target, text=text, progress=lambda m: app.info(f"[explain] {m}"))
    if outdir is not None:
        files = save(res, outdir, units)
        app.info(
            f"wrote {', '.join(p.name for p in files[:2])} and {len(files) - 2} PNG(s) to {outdir}"
        )
    if as_json:
        app.out(json.dumps(res.to_json()))
        return
    for spec, sat in zip(res.layers, res.saturation(res.trace), strict=True):
        gates = ", ".join(f"{g} {v.mean():.0%}" for g, v in sat.items())
        app.out(f"{spec.name} ({spec.kind} {spec.units}): steps saturated: {gates or '-'}")
    if res.reference is not None:
        for spec, q, f in zip(res.layers, res.trace.layers, res.reference.layers, strict=True):
            worst = ", ".join(f"{s} {abs(q[s] - f[s]).max():.3g}" for s in q if s in f)
            app.out(f"{spec.name}: max |{res.trace.quantization} - float|: {worst}")
    for r in res.unit_ranking(top=1):
        app.out(f"{r['feature']}: {r['layer']} {r['signal']}[{r['unit']}] r = {r['r']:+.3f}")
    for n in res.notes:
        app.out(f"note: {n}")


def _vocab_near(model: Path) -> list[str] | None:
    """vocab.json beside the model, or the zoo char-lm's."""
    import json

    from edgelstm.explain import _vocab_list
    from edgelstm.zoo import MODELS_DIR

    for p in (model.parent / "vocab.json", MODELS_DIR / "char-lm" / "vocab.json"):
        if p.is_file():
            return _vocab_list(json.loads(p.read_text()))
    return None
