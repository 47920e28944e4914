"""`edgelstm search RECIPE -o DIR`: the most accurate model that fits a device budget, on Ray."""

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
    help="trials.jsonl, report.html/md, result.json, the trials' files and the best model's "
    "export under best/.",
)
@click.option("--trials", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-flash", type=click.IntRange(min=1), help="Bytes of C-engine code + constants.")
@click.option("--max-ram", type=click.IntRange(min=1), help="Bytes: data + bss + state + stack.")
@click.option(
    "--max-instructions-per-step",
    type=click.IntRange(min=1),
    help="Cortex-M4 instructions per step (qemu -icount; instructions, not cycles).",
)
@click.option("--max-latency-us", type=float, help="Per-step latency on --runtime (host).")
@click.option(
    "--runtime", help="Host runtime for --max-latency-us (litert, tflite-runtime, native, ...)."
)
@click.option(
    "--quantize", type=click.Choice(["int8", "int16x8", "float"]), help="Fix the quantization."
)
@click.option("--metric-floor", type=float, help="A trial fits only if its metric reaches this.")
@click.option("--address", help="Join this Ray cluster (host:port); default a local Ray instance.")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted search in OUTDIR.")
@click.option("--quick", is_flag=True, help="The recipe's quick training settings (smoke tests).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--space",
    help="JSON object (or a .json file) narrowing the search space, e.g. "
    '\'{"cell": ["LSTM"], "units": [8, 16]}\'; keys: cell, units, layers, conv, '
    "learning_rate, quantize.",
)
@click.option("--no-export", is_flag=True, help="Do not convert/export the best model.")
@click.option("--json", "as_json", is_flag=True, help="Print result.json.")
@click.pass_obj
def search(
    app: App,
    *,
    recipe: str,
    outdir: Path,
    trials: int,
    max_flash: int | None,
    max_ram: int | None,
    max_instructions_per_step: int | None,
    max_latency_us: float | None,
    runtime: str | None,
    quantize: str | None,
    metric_floor: float | None,
    address: str | None,
    cpus_per_trial: float,
    resume: bool,
    quick: bool,
    epochs: int | None,
    seed: int,
    space: str | None,
    no_export: bool,
    as_json: bool,
) -> None:
    """Search cell kind, units, depth, Conv1D front-end, quantization and learning rate of
    RECIPE for the best metric within a device budget; every trial trained, converted, verified
    and measured (C engine on an emulated Cortex-M4). Ray Tune + Optuna TPE + ASHA."""
    import json

    from edgelstm.errors import BadInputError
    from edgelstm.search import Budget, SearchConfig, export_best, run_search, save_report
    from edgelstm.zoo import load_recipe

    if max_latency_us is not None and max_instructions_per_step is not None:
        raise BadInputError("give --max-instructions-per-step or --max-latency-us, not both")
    if runtime and max_latency_us is None:
        raise BadInputError("--runtime goes with --max-latency-us")
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")
    rec = load_recipe(recipe)
    override = None
    if space:
        text = (
            Path(space).read_text() if space.endswith(".json") and Path(space).is_file() else space
        )
        try:
            override = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"--space: not JSON ({exc})") from None
        if not isinstance(override, dict):
            raise BadInputError("--space must be a JSON object")
    budget = Budget(max_flash, max_ram, max_instructions_per_step, max_latency_us, runtime,
                    metric_floor)  # fmt: skip
    cfg = SearchConfig(recipe, outdir, trials, budget, quantize, address, cpus_per_trial,
                       resume, quick, seed, epochs, override)  # fmt: skip
    res = run_search(cfg, progress=lambda m: app.info(f"[search] {m}"))
    if not no_export:
        export_best(res, progress=lambda m: app.info(f"[search] {m}"))
    save_report(res, rec.higher_is_better)
    if as_json:
        app.out(json.dumps(res.to_dict(), indent=2, default=str))
        return
    app.out((res.outdir / "report.md").read_text())
