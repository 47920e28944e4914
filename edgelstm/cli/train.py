"""`edgelstm train RECIPE -o DIR`."""

from __future__ import annotations

from pathlib import Path

import click

from edgelstm.cli._app import App


@click.command()
@click.argument("recipe")
@click.option("-o", "--outdir", type=click.Path(path_type=Path), required=True)
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quick", is_flag=True, help="Tiny data and epochs (for smoke tests).")
@click.pass_obj
def train(
    app: App, *, recipe: str, outdir: Path, epochs: int | None, seed: int, quick: bool
) -> None:
    """Train a zoo recipe: writes model.keras, metrics.json, calibration.npz, eval.npz."""
    from edgelstm.errors import BadInputError
    from edgelstm.train import cudnn_warnings, train_and_save
    from edgelstm.zoo import load_recipe

    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")
    for w in cudnn_warnings(load_recipe(recipe)):
        app.warn(w)
    app.info(f"[train] {recipe} -> {outdir}")
    result = train_and_save(
        recipe, outdir, epochs=epochs, seed=seed, quick=quick, verbose=0 if app.quiet else 2
    )
    app.out_json(result.metrics)
