"""`edgelstm train RECIPE -o DIR`."""

from __future__ import annotations

from pathlib import Path

import click

from edgelstm.cli._app import App


@click.command()
@click.argument("recipe")
@click.option(
    "-o",
    "--outdir",
    type=click.Path(path_type=Path),
    required=True,
    help="Output directory: model.keras, metrics.json, calibration.npz, eval.npz.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quick", is_flag=True, help="Tiny data and epochs (for smoke tests).")
@click.option(
    "--cell",
    type=click.Choice(["LSTM", "GRU", "SimpleRNN"]),
    help="Swap every recurrent layer for this kind (same units), e.g. for a comparison run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of a summary.")
@click.pass_obj
def train(
    app: App,
    *,
    recipe: str,
    outdir: Path,
    epochs: int | None,
    seed: int,
    quick: bool,
    cell: str | None,
    as_json: bool,
) -> None:
    """Train a zoo recipe: writes model.keras, metrics.json, calibration.npz, eval.npz.

    Uses the GPU when there is one, MirroredStrategy when there are several devices; the
    progress bar goes to stderr, a summary (or with --json the metrics) to stdout. The same seed
    gives byte-identical files on the same machine and library versions (other CPUs or BLAS
    builds may round differently).
    """
    from dataclasses import replace

    from edgelstm.errors import BadInputError
    from edgelstm.train import cudnn_warnings, train_and_save
    from edgelstm.zoo import load_recipe

    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")
    r = load_recipe(recipe)
    if cell:
        r = replace(
            r,
            layers=tuple(
                {**s, "kind": cell} if s["kind"] in ("LSTM", "GRU", "SimpleRNN") else s
                for s in r.layers
            ),
        )
    for w in cudnn_warnings(r):
        app.warn(w)
    app.info(f"[train] {recipe}" + (f" ({cell})" if cell else "") + f" -> {outdir}")
    result = train_and_save(
        recipe, outdir, epochs=epochs, seed=seed, quick=quick, cell=cell, progress=not app.quiet
    )
    if as_json:
        app.out_json(result.metrics)
        return
    m = result.metrics
    test = {k: v for k, v in m.items() if k.startswith("test")}
    shown = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in test.items()
    )
    app.out(f"trained {recipe} -> {outdir}/model.keras: {shown or 'no test metric'}")
