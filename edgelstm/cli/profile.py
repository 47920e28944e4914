"""`edgelstm profile MODEL.tflite [more]`: latency, memory and accuracy, side by side."""

from __future__ import annotations

from pathlib import Path

import click

from edgelstm.cli._app import App
from edgelstm.runtime.backends import Runtime

RUNTIME_CHOICES = ["auto", "all", *(r.value for r in Runtime)]


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    type=click.Choice(RUNTIME_CHOICES),
    help="Runtime(s) to measure; repeat, or 'all' for every installed one (TFLM included). "
    "Default: the best installed "
    "(litert > tflite-runtime > tf).",
)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--xnnpack/--no-xnnpack",
    default=None,
    help="Force the XNNPACK delegate on or off (default: the runtime's own default).",
)
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help=".npz with `x` (inputs, [N, T, D]) and optionally `y` (labels) for accuracy.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write an HTML report (plots need matplotlib).",
)
@click.pass_obj
def profile(
    app: App,
    *,
    models: tuple[Path, ...],
    runtimes: tuple[str, ...],
    threads: int,
    xnnpack: bool | None,
    warmup: int,
    runs: int,
    data: Path | None,
    as_json: bool,
    report: Path | None,
) -> None:
    """Measure latency (init, first, p50/p90/p99...), peak memory and accuracy of .tflite models.

    Several models and/or runtimes are measured in one run and compared side by side.
    """
    from edgelstm.errors import BadInputError
    from edgelstm.profile import ProfileConfig, format_table, profile_all, to_json

    for m in models:
        if m.suffix.lower() != ".tflite":
            raise BadInputError(f"{m}: profile takes .tflite files (convert the model first)")
    cfg = ProfileConfig(
        runtimes=list(runtimes) or ["auto"],
        threads=threads,
        xnnpack=xnnpack,
        warmup=warmup,
        runs=runs,
        data=str(data) if data else None,
    )
    results = profile_all(list(models), cfg, progress=app.info)
    info = to_json(results, cfg)
    if report is not None:
        from edgelstm.fsutil import write_atomic
        from edgelstm.report_html import render_html

        write_atomic(report, render_html(results, info))
        app.info(f"wrote {report}")
    if as_json:
        app.out_json(info)
    else:
        app.out(format_table(results))
