"""`edgelstm pipeline`: the main job on a zoo recipe."""

from __future__ import annotations

import time
from pathlib import Path

import click

from edgelstm.cli._app import App


@click.command()
@click.argument("recipe_arg", metavar="[RECIPE]", required=False)
@click.option(
    "--recipe",
    default=None,
    help="Zoo recipe (see `edgelstm zoo list`); same as the RECIPE argument. Default: echo.",
)
@click.option(
    "-o",
    "--outdir",
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Output directory (artifacts, firmware files, report.md, report.html).",
)
@click.option(
    "--train", is_flag=True, help="Train the recipe instead of using the committed model."
)
@click.option(
    "--quick", is_flag=True, help="Tiny training settings (with --train) and fewer timing runs."
)
@click.option("--epochs", type=int, help="Override the recipe's epochs (with --train).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-export", is_flag=True, help="Skip the microcontroller export.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print result.json instead of the Markdown report."
)
@click.pass_obj
def pipeline(
    app: App,
    *,
    recipe_arg: str | None,
    recipe: str | None,
    out: Path,
    train: bool,
    quick: bool,
    epochs: int | None,
    seed: int,
    no_export: bool,
    as_json: bool,
) -> None:
    """Train (optional) -> convert -> verify -> profile -> export -> report, for one recipe."""
    from edgelstm.errors import BadInputError
    from edgelstm.pipeline import PipelineConfig, run_pipeline, write_report

    if recipe_arg and recipe and recipe_arg != recipe:
        raise BadInputError(f"two recipes given: '{recipe_arg}' and --recipe '{recipe}'")
    recipe = recipe_arg or recipe or "echo"
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: output path exists and is a file")
    start = time.perf_counter()
    cfg = PipelineConfig(
        recipe=recipe,
        out=out,
        train=train,
        quick=quick,
        epochs=epochs,
        seed=seed,
        runs=50 if quick else 200,
        export=not no_export,
    )
    from edgelstm.convert import outdir as outdir_mod

    created = outdir_mod.prepare(out)  # writable? (before anything slow runs; stages write nothing)
    try:
        res = run_pipeline(
            cfg, progress=lambda m: app.info(f"[pipeline {time.perf_counter() - start:5.1f}s] {m}")
        )
        try:
            md, html = write_report(res, out)
        except OSError as exc:  # a full disk, a directory made read-only meanwhile
            raise BadInputError(f"{exc.filename or out}: cannot write: {exc.strerror}") from None
    finally:
        outdir_mod.discard_if_unused(out, created)
    app.out((out / "result.json").read_text().rstrip("\n") if as_json else md.read_text())
    app.info(f"wrote {md} and {html} in {time.perf_counter() - start:.1f} s")
