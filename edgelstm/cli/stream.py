"""`edgelstm stream MODEL.tflite --input FILE|-`: streaming inference with a step model."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from edgelstm.cli._app import App
from edgelstm.runtime.backends import Runtime

# A sample: (where it came from, its values), or (where, None) for "reset here".
Sample = tuple[str, Any]
CHUNK = 256  # samples per push_many call when reading a file


def _samples(source: str) -> Iterator[Sample]:
    """Samples from .npy ([N, D] or [N]), CSV or stdin lines; None = reset (a blank text line)."""
    from edgelstm.arrays import load_array
    from edgelstm.errors import BadInputError

    if source.endswith(".npy"):
        arr = load_array(source, "samples")
        if arr.ndim not in (1, 2):
            raise BadInputError(
                f"{source}: samples must be shaped [N, D] (or [N]), got {list(arr.shape)}"
            )
        for i, row in enumerate(arr.reshape(len(arr), -1)):
            yield f"{source}[{i}]", row
        return
    try:
        lines = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise BadInputError(f"{source}: {exc.strerror}") from None
    label = "stdin" if source == "-" else source
    with lines:
        for n, line in enumerate(lines, 1):
            text = line.strip()
            if not text:
                yield f"{label}:{n}", None
                continue
            try:
                yield f"{label}:{n}", [float(v) for v in text.replace(",", " ").split()]
            except ValueError:
                raise BadInputError(f"{label}:{n}: not a row of numbers: {text[:40]!r}") from None


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "source",
    default="-",
    show_default=True,
    help=".npy [N, D], a CSV file (one sample per row), or - for stdin lines of numbers "
    "(token ids for Embedding models); a blank line resets the state.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write outputs to .npy ([N, out]) or .csv instead of CSV lines on stdout.",
)
@click.option("--reset-every", type=click.IntRange(min=1), help="Reset the state every N samples.")
@click.option(
    "--runtime",
    type=click.Choice(["auto", *(r.value for r in Runtime)]),
    default="auto",
    show_default=True,
)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--allow-nonfinite",
    is_flag=True,
    help="Feed nan/inf samples instead of refusing them (one nan poisons the carried state).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object at the end (outputs, steps, resets, runtime) instead of CSV lines.",
)
@click.pass_obj
def stream(
    app: App,
    *,
    model: Path,
    source: str,
    output: Path | None,
    reset_every: int | None,
    runtime: str,
    threads: int,
    allow_nonfinite: bool,
    as_json: bool,
) -> None:
    """Feed samples one step at a time, carrying state; one output per sample (CSV lines)."""
    import numpy as np

    from edgelstm.errors import BadInputError
    from edgelstm.runtime.stream import StepRunner

    if output is not None and output.suffix.lower() not in (".npy", ".csv"):
        raise BadInputError(f"{output}: --output must end in .npy or .csv")
    runner = StepRunner(model, None if runtime == "auto" else runtime, threads=threads)
    if runner.multi_io:
        raise BadInputError(
            f"{model.name}: the step model has inputs {', '.join(runner.input_names)} and outputs "
            f"{', '.join(runner.output_names)}; `edgelstm stream` feeds one input and prints one "
            "output: use edgelstm.runtime.StepRunner from Python (push takes a dict by input name)"
        )
    app.info(
        f"{model.name}: step model on {runner.runtime.value}, {runner.input_size} "
        f"{'token id' if runner.token_input else 'value(s)'} in, {runner.output_size} out per step, "
        f"{len(runner.states)} state tensor(s)"
    )
    outputs: list[np.ndarray] = []
    count = 0
    resets = 0
    # From a file, samples between resets go to push_many in chunks (one C call per chunk on the
    # native runtime); stdin stays one sample at a time so each output appears as its line arrives.
    chunk = CHUNK if source != "-" else 1
    pending: list[Sample] = []

    def flush() -> None:
        if not pending:
            return
        saved = runner.get_state() if len(pending) > 1 else None
        try:
            if len(pending) == 1:
                ys = runner.push(pending[0][1]).reshape(1, -1)
            else:
                ys = runner.push_many(np.stack([np.asarray(p[1], np.float64) for p in pending]))
        except (BadInputError, ValueError) as exc:
            if saved is None:
                raise BadInputError(f"{pending[0][0]}: {exc}") from None
            runner.set_state(saved)  # replay one by one to name the offending sample
            for where, sample in pending:
                try:
                    runner.push(sample)
                except BadInputError as exc1:
                    raise BadInputError(f"{where}: {exc1}") from None
            raise BadInputError(f"{pending[0][0]}: {exc}") from None
        pending.clear()
        for y in ys:
            if output is None and not as_json:
                app.out(",".join(f"{v:.6g}" for v in y))
            else:
                outputs.append(y)

    for where, sample in _samples(source):
        if sample is None:
            flush()
            runner.reset()
            resets += 1
            count = 0
            continue
        if reset_every and count and count % reset_every == 0:
            flush()
            runner.reset()
            resets += 1
        if np.size(sample) != runner.input_size:
            flush()
            raise BadInputError(
                f"{where}: a sample needs {runner.input_size} value(s), got {np.size(sample)}"
            )
        if not allow_nonfinite and not np.all(np.isfinite(np.asarray(sample, np.float64))):
            flush()  # what came before is still output
            raise BadInputError(
                f"{where}: sample is not finite ({_show(sample)}): nan/inf would poison every "
                "later output through the state; pass --allow-nonfinite to feed it anyway"
            )
        pending.append((where, sample))
        count += 1
        if len(pending) >= chunk:
            flush()
    flush()
    arr = np.stack(outputs) if outputs else np.empty((0, runner.output_size))
    if output is not None:
        _save(output, arr)
        app.info(f"wrote {len(arr)} output(s) to {output} ({resets} reset(s))")
    if as_json:
        app.out_json(
            {
                "model": str(model),
                "runtime": runner.runtime.value,
                "steps": len(arr),
                "resets": resets,
                "outputs": [] if output is not None else arr.tolist(),
                "output_file": str(output) if output is not None else None,
            }
        )


def _show(sample: Any) -> str:
    import numpy as np

    vals = np.asarray(sample, np.float64).reshape(-1)
    return ", ".join(f"{v:g}" for v in vals[:4]) + (", ..." if vals.size > 4 else "")


def _save(path: Path, arr: Any) -> None:
    """Write .npy or .csv atomically (temp file in the same directory, then rename)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if path.suffix.lower() == ".npy":
                np.save(f, arr)
            else:
                f.write("".join(",".join(f"{v:.6g}" for v in row) + "\n" for row in arr).encode())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
