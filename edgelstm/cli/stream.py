"""`edgelstm stream MODEL.tflite --input FILE|-`: streaming inference with a step model."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from edgelstm.cli._app import App


def _samples(source: str) -> Iterator[list[float] | None]:
    """Samples from .npy ([N, D]), CSV or stdin lines; None = reset (a blank text line)."""
    import numpy as np

    from edgelstm.errors import BadInputError

    if source.endswith(".npy"):
        try:
            arr = np.load(source, allow_pickle=False)
        except Exception as exc:
            raise BadInputError(
                f"{source}: not a readable .npy file ({type(exc).__name__})"
            ) from None
        yield from (row.reshape(-1).tolist() for row in arr.reshape(len(arr), -1))
        return
    try:
        lines = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise BadInputError(f"{source}: {exc.strerror}") from None
    with lines:
        for n, line in enumerate(lines, 1):
            text = line.strip()
            if not text:
                yield None
                continue
            try:
                yield [float(v) for v in text.replace(",", " ").split()]
            except ValueError:
                raise BadInputError(f"{source}:{n}: not a row of numbers: {text[:40]!r}") from None


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "source",
    default="-",
    show_default=True,
    help=".npy [N, D], a CSV file, or - for stdin.",
)
@click.option("--reset-every", type=click.IntRange(min=1), help="Reset the state every N samples.")
@click.pass_obj
def stream(app: App, *, model: Path, source: str, reset_every: int | None) -> None:
    """Feed samples one step at a time, carrying state; print one CSV output line per sample."""
    from edgelstm.runtime.stream import StepRunner

    runner = StepRunner(model)
    count = 0
    for sample in _samples(source):
        if sample is None:
            runner.reset()
            count = 0
            continue
        if reset_every and count and count % reset_every == 0:
            runner.reset()
        y = runner.push(sample)
        count += 1
        app.out(",".join(f"{v:.6g}" for v in y))
