"""`edgelstm convert MODEL -o OUTDIR`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import click

from edgelstm.cli._app import App, comma_list
from edgelstm.errors import ConversionError, EdgeLSTMError
from edgelstm.types import ConvertConfig, Manifest, Quantization, Variant


class _Heartbeat:
    """Any stage that runs longer than a few seconds says so every `every` seconds, so a long
    conversion (long sequences, many samples) never looks hung."""

    def __init__(self, app: App, every: float = 10.0) -> None:
        self.app, self.every = app, every
        self.msg, self.since = "", time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def stage(self, msg: str) -> None:
        self.msg, self.since = msg, time.monotonic()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            if self.msg:
                took = time.monotonic() - self.since
                self.app.info(f"[convert] ... still {self.msg} ({took:.0f} s)")

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()


class _Count(click.ParamType):
    """A whole number, also written like 1e6 (so `--verify-samples 1e9` reaches the memory check
    and is refused with the memory it would need, not as a malformed number)."""

    name = "integer"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            f = float(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if not f.is_integer():
            self.fail(f"{value!r} is not a whole number", param, ctx)
        return int(f)


COUNT = _Count()


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--outdir",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for the .tflite files and manifest.json.",
)
@click.option(
    "--variant",
    type=click.Choice(["sequence", "step", "all"]),
    default="all",
    show_default=True,
    help="sequence: whole sequence per invoke (fused LSTM); step: one time step per invoke, state as explicit I/O.",
)
@click.option(
    "--quantize",
    "quantize",
    multiple=True,
    callback=comma_list([q.value for q in Quantization]),
    help="float, dynamic, float16, int8, int16x8; repeat the option or separate with commas. "
    "Default: float. int8/int16x8 need --calibration.",
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    help=".npy or .npz (key 'x') shaped like the model input.",
)
@click.option(
    "--calibration-samples",
    type=COUNT,
    default=128,
    show_default=True,
    help="Sequences used to calibrate.",
)
@click.option(
    "--verify-samples",
    type=COUNT,
    default=16,
    show_default=True,
    help="Held-out sequences used for the parity check.",
)
@click.option(
    "--verify-data",
    type=click.Path(path_type=Path),
    help="Held-out sequences for the parity check (.npy/.npz like --calibration). Default: a "
    "seeded split of the calibration file (the bound applies to the held-out part).",
)
@click.option(
    "--calibration-stream",
    type=click.Path(path_type=Path),
    help="One long input stream, (L, features) or (L,) token ids, over which the float cell runs "
    "to calibrate the step model's state ranges (default: the calibration windows end to end).",
)
@click.option("--seq-len", type=int, help="Sequence length, when the model's is None.")
@click.option(
    "--example-input-shape",
    callback=lambda _ctx, _param, v: _shape(v),
    help="PyTorch .pt sources (needs torch): the input shape to export with, 1,T,D or 1,T.",
)
@click.option("--name", help="File stem of the artifacts (default: the model file's stem).")
@click.option("--float-io", is_flag=True, help="Keep float input/output tensors on integer models.")
@click.option(
    "--unsafe",
    is_flag=True,
    help="Allow Lambda layers and custom objects (runs code from the file).",
)
@click.option(
    "--allow-unfused", is_flag=True, help="Keep a sequence model whose LSTM did not fuse."
)
@click.option(
    "--int8-lstm-cell",
    type=click.Choice(["int16", "int8"]),
    default="int16",
    show_default=True,
    help="int8 step models: run each LSTM cell's gates and cell state in int16 (the fused op's "
    "8x8->16 scheme), or all in int8 (smaller, faster on int8-only kernels, less accurate).",
)
@click.option(
    "--no-verify-fail", is_flag=True, help="Report parity beyond the bound instead of failing."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for synthetic verification inputs."
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_obj
def convert(
    app: App,
    *,
    model: Path,
    outdir: Path,
    variant: str,
    quantize: tuple[str, ...],
    calibration: Path | None,
    calibration_samples: int,
    verify_samples: int,
    verify_data: Path | None,
    calibration_stream: Path | None,
    seq_len: int | None,
    example_input_shape: tuple[int, ...] | None,
    name: str | None,
    float_io: bool,
    unsafe: bool,
    allow_unfused: bool,
    int8_lstm_cell: str,
    no_verify_fail: bool,
    seed: int,
    as_json: bool,
) -> None:
    """Convert a Keras recurrent model (.keras, .h5, SavedModel dir) or an ONNX/PyTorch one
    (.onnx; .pt with torch installed) to verified TFLite."""
    from edgelstm.convert import convert_model

    cfg = ConvertConfig(
        variants=None if variant == "all" else [Variant(variant)],
        quantizations=[Quantization(q) for q in dict.fromkeys(quantize or ("float",))],
        calibration=str(calibration) if calibration else None,
        calibration_samples=calibration_samples,
        verify_samples=verify_samples,
        seq_len=seq_len,
        unsafe=unsafe,
        allow_unfused=allow_unfused,
        verify_fail=not no_verify_fail,
        float_io=float_io,
        seed=seed,
        name=name,
        verify_data=str(verify_data) if verify_data else None,
        calibration_stream=str(calibration_stream) if calibration_stream else None,
        example_input_shape=example_input_shape,
        int16_cell=int8_lstm_cell == "int16",
    )
    stage = ["loading the model"]
    beat = _Heartbeat(app)

    def progress(msg: str) -> None:
        stage[0] = msg
        beat.stage(msg)
        app.info(f"[convert] {msg}")

    try:
        with beat:
            manifest = convert_model(model, outdir, cfg, progress=progress)
    except (EdgeLSTMError, KeyboardInterrupt, MemoryError) as exc:
        # Some artifacts converted and passed and were written: show them, then fail naming the
        # rest (a missed bound, a quantization the converter refused).
        written = getattr(exc, "manifest", None)
        if written is not None and as_json:
            app.out_json(written.to_dict())
        elif written is not None:
            app.out(format_manifest(written, outdir))
        raise
    except Exception as exc:
        # The user's model reached a path our code did not foresee (a layer config, a converter
        # failure mode): that is a model we cannot convert (exit 2, naming the stage), not a crash.
        # The library call raises it as is, so the tests still see our own bugs.
        if app.debug:
            raise
        text = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConversionError(
            f"cannot convert {model.name} while {stage[0]}: {type(exc).__name__}: {text} "
            "(rerun with --debug for the traceback)"
        ) from exc
    if as_json:
        app.out_json(manifest.to_dict())
    else:
        app.out(format_manifest(manifest, outdir))


def format_manifest(manifest: Manifest, outdir: Path) -> str:
    """A short human table of the artifacts."""
    head = ("artifact", "ops", "size", "MACs", "held-out err", "calib err", "stream err")
    rows = [(*head, "bound", "argmax", "ok")]
    for a in manifest.artifacts:
        p = a.parity
        rows.append(
            (
                a.file,
                "fused LSTM" if a.fused_lstm else f"{len(a.ops)} kinds",
                f"{a.size_bytes / 1024:.1f} KiB",
                f"{a.macs_per_invoke:,}",
                f"{p.max_abs:.2e}" if p else "-",
                f"{p.calibration_set['max_abs']:.2e}" if p and p.calibration_set else "-",
                f"{p.stream['max_abs']:.2e}" if p and p.stream else "-",
                f"{p.bound:.0e}" if p else "-",
                f"{p.argmax_agreement:.0%}" if p and p.argmax_agreement is not None else "-",
                ("yes" if p.passed else "NO") if p else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    data = sorted({a.parity.data for a in manifest.artifacts if a.parity and a.parity.data})
    lines.extend(f"parity: held-out data: {d} (the bound applies here)" for d in data)
    for a in manifest.artifacts:
        if a.parity and a.parity.stream:
            st = a.parity.stream
            lines.append(
                f"parity: {a.file}: also streamed {st['steps']} steps across windows, state "
                "never reset"
            )
        if a.parity and a.parity.note:
            lines.append(f"parity: {a.file}: {a.parity.note}")
    lines.extend(f"note: {n}" for n in manifest.notes)
    for a in manifest.artifacts:
        lines.extend(f"note: {a.file}: {n}" for n in a.notes)
    lines.append(f"wrote {len(manifest.artifacts)} artifact(s) and manifest.json to {outdir}")
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str, width: int = 120) -> str:
    """On a terminal, notes wrap at `width` with a hanging indent (the table rows are narrower
    already); piped output keeps one line per note for grep."""
    import sys
    import textwrap

    if len(line) <= width or not sys.stdout.isatty():
        return line
    return "\n".join(textwrap.wrap(line, width=width, subsequent_indent="    "))


def _shape(value: str | None) -> tuple[int, ...] | None:
    """--example-input-shape 1,T,D -> (1, T, D)."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected integers like 1,50,8") from None
