"""`edgelstm profile`: latency, memory and accuracy of .tflite models on the installed runtimes.

Pure measurement over in-memory results (`profile_model` -> `ProfileResult`); the CLI formats and
writes them. No TensorFlow here (the `tf` runtime imports it lazily when asked for).

What is timed: `interpreter.invoke()` alone (the "latency" statistics), and separately the whole
call an application makes (`call`: for step models StepRunner.push = quantize the sample, set the
state, invoke, copy the state back, dequantize y; for sequence models reset + set x + invoke + read
y). Sequence latency is also given per time step (÷ T) so step and sequence variants compare.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.arrays import load_xy
from edgelstm.errors import BadInputError, EdgeLSTMError
from edgelstm.runtime.backends import Runtime, TFLMBackend, resolve_runtime
from edgelstm.runtime.stream import (
    SequenceRunner,
    StepRunner,
    embedding_rows,
    manifest_artifact,
    model_variant,
)
from edgelstm.tflite_info import TFLiteInfo, read_tflite
from edgelstm.types import STEP_INPUT, Variant

Progress = Callable[[str], None]


@dataclass
class LatencyStats:
    """Statistics over timed runs, in microseconds."""

    runs: int
    min_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float
    std_us: float

    @classmethod
    def from_ns(cls, samples_ns: np.ndarray) -> LatencyStats:
        us = np.asarray(samples_ns, np.float64) / 1e3
        if us.size == 0:
            raise BadInputError("--runs must be at least 1")
        p50, p90, p99 = np.percentile(us, [50, 90, 99])
        return cls(
            runs=int(us.size),
            min_us=float(us.min()),
            p50_us=float(p50),
            p90_us=float(p90),
            p99_us=float(p99),
            max_us=float(us.max()),
            mean_us=float(us.mean()),
            std_us=float(us.std()),
        )


@dataclass
class ProfileResult:
    """One model on one runtime."""

    model: str
    runtime: str
    variant: str = ""
    threads: int | None = None
    xnnpack: bool | None = None
    quantization: str = ""
    seq_len: int | None = None
    size_bytes: int = 0
    macs_per_invoke: int = 0
    init_ms: float = 0.0
    first_invoke_us: float = 0.0
    latency: LatencyStats | None = None  # per invoke (a step, or a whole sequence)
    call: LatencyStats | None = None  # per application call, I/O conversion included
    per_step_p50_us: float = 0.0
    per_step_mean_us: float = 0.0
    chunked_per_step_us: float | None = None  # native: push_many's C call ÷ steps per chunk
    gmacs_per_s: float = 0.0
    memory: dict[str, Any] = field(default_factory=dict)
    accuracy: float | None = None
    accuracy_samples: int = 0
    accuracy_note: str = ""
    notes: list[str] = field(default_factory=list)
    error: str = ""
    samples_us: list[float] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return f"{Path(self.model).name} [{self.runtime}]"

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not samples:
            d.pop("samples_us")
        return d


@dataclass
class ProfileConfig:
    """Options of `edgelstm profile` (the CLI maps its flags onto this)."""

    runtimes: list[str] = field(default_factory=lambda: ["auto"])
    threads: int | None = 1
    xnnpack: bool | None = None  # None: the runtime's default (on in LiteRT/TF)
    warmup: int = 20
    runs: int = 200
    data: str | None = None
    max_eval: int = 1000  # sequences evaluated for accuracy at most
    seed: int = 0


# --- inputs and labelled data -------------------------------------------------------------------


def load_data(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y or None) from .npz (keys `x`, optional `y`) or .npy (x only)."""
    return load_xy(path, "--data")


def sequence_shape(info: TFLiteInfo, variant: Variant, seq_len: int | None) -> tuple[int, ...]:
    """Shape of one input sequence without the batch axis: (T, D) or (T,) for tokens."""
    x = next((t for t in info.inputs if t.name == STEP_INPUT), info.inputs[0])
    if variant == Variant.SEQUENCE:
        return tuple(x.shape[1:])
    step = tuple(x.shape[1:]) if len(x.shape) > 1 else ()
    return (seq_len or 16, *step)


def check_data(x: np.ndarray, shape: tuple[int, ...], variant: Variant, source: str) -> np.ndarray:
    """x as [N, *shape]; for step models any length T is fine."""
    want = list(shape)
    ok = x.ndim == len(shape) + 1 and (
        list(x.shape[1:]) == want if variant == Variant.SEQUENCE else list(x.shape[2:]) == want[1:]
    )
    if not ok:
        shown = ["N", *want] if variant == Variant.SEQUENCE else ["N", "T", *want[1:]]
        raise BadInputError(
            f"{source}: x shaped {list(x.shape)} does not fit the model (needs {shown})"
        )
    if len(x) == 0:
        raise BadInputError(f"{source}: x is empty")
    return x


def synthetic_x(info: TFLiteInfo, shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Seeded inputs for timing when no --data is given (token ids when the input is int)."""
    rng = np.random.default_rng(seed)
    x = next((t for t in info.inputs if t.name == STEP_INPUT), info.inputs[0])
    if x.dtype.startswith("int") and not x.scale:
        return rng.integers(0, embedding_rows(info) or 2, (n, *shape)).astype(np.int32)
    return rng.standard_normal((n, *shape)).astype(np.float32)


def _predictions(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out)
    if out.shape[-1] == 1:  # a single sigmoid unit: binary
        return (out[..., 0] > 0.5).astype(np.int64)
    return out.argmax(-1)


def accuracy(outputs: np.ndarray, y: np.ndarray) -> float:
    """Argmax (or >0.5 for one unit) accuracy; y holds class ids or one-hot rows.

    outputs: [N, T, C] (per step) or [N, C]; y: [N], [N, T], or one-hot [..., C]. Per-sequence
    labels against per-step outputs compare the last step.
    """
    y = np.asarray(y)
    pred = _predictions(outputs)
    if y.ndim == pred.ndim + 1 or (y.dtype.kind == "f" and y.ndim >= 2 and y.shape[-1] > 1):
        y = y.argmax(-1) if y.shape[-1] > 1 else (y[..., 0] > 0.5)
    if pred.ndim == 2 and y.ndim == 1:
        pred = pred[:, -1]
    if pred.shape != y.shape:
        raise BadInputError(
            f"labels y shaped {list(y.shape)} do not match the model's predictions "
            f"shaped {list(pred.shape)}"
        )
    return float(np.mean(pred == y.astype(pred.dtype)))


# --- memory --------------------------------------------------------------------------------------


def _reset_peak_rss() -> bool:
    """Reset the kernel's VmHWM for this process (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_rss_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


# --- the measurement -----------------------------------------------------------------------------


def profile_model(
    model: str | Path,
    runtime: str | Runtime | None,
    cfg: ProfileConfig,
    data: tuple[np.ndarray, np.ndarray | None] | None = None,
    progress: Progress = lambda _m: None,
) -> ProfileResult:
    """Load `model` on `runtime`, time it, measure memory and (with labelled data) accuracy."""
    path = Path(model)
    info = read_tflite(path)
    rt = resolve_runtime(runtime)
    variant = model_variant(info)
    art = manifest_artifact(path)
    x_info = next((t for t in info.inputs if t.name == STEP_INPUT), info.inputs[0])
    quant = art.quantization.value if art else ("int8" if x_info.scale else x_info.dtype)
    res = ProfileResult(
        model=str(path),
        runtime=rt.value,
        variant=variant.value,
        quantization=quant,
        size_bytes=info.size_bytes,
        macs_per_invoke=info.macs,
    )
    if cfg.runs < 1 or cfg.warmup < 0:
        raise BadInputError("--runs must be at least 1 and --warmup at least 0")
    seq_len = x_info.shape[1] if variant == Variant.SEQUENCE and len(x_info.shape) > 1 else None
    if variant == Variant.STEP and data is not None:
        seq_len = int(data[0].shape[1]) if data[0].ndim >= 2 else None
    res.seq_len = seq_len
    shape = sequence_shape(info, variant, seq_len)

    if data is not None:
        x_all = check_data(data[0], shape, variant, cfg.data or "data")
        labels = data[1]
    else:
        x_all, labels = synthetic_x(info, shape, 8, cfg.seed), None

    rss_reset = _reset_peak_rss()
    rss_before = _status_kb("VmRSS") or 0
    progress(f"{res.label}: loading")
    t0 = time.perf_counter()
    if variant == Variant.STEP:
        runner: StepRunner | SequenceRunner = StepRunner(
            path, rt, threads=cfg.threads, xnnpack=cfg.xnnpack
        )
    else:
        runner = SequenceRunner(path, rt, threads=cfg.threads, xnnpack=cfg.xnnpack)
    res.init_ms = (time.perf_counter() - t0) * 1e3
    backend = runner.backend
    res.threads, res.xnnpack = backend.threads, backend.xnnpack
    res.notes.extend(backend.notes)

    # Timing inputs: step models walk through the sequences' steps, sequence models cycle them.
    if variant == Variant.STEP:
        steps = x_all.reshape(-1, *shape[1:]) if shape[1:] else x_all.reshape(-1)
        feed = [steps[i % len(steps)] for i in range(min(len(steps), 4096))]
    else:
        feed = list(x_all[: min(len(x_all), 256)])

    def one_call(i: int) -> tuple[int, int]:
        """(invoke ns, whole call ns) of the i-th call."""
        c0 = time.perf_counter_ns()
        if isinstance(runner, StepRunner):
            runner.push(feed[i % len(feed)])
            inv = runner.last_invoke_ns
        else:
            b = runner.backend
            b.reset()
            b.set_input(runner.x_info.name, feed[i % len(feed)])
            i0 = time.perf_counter_ns()
            b.invoke()
            inv = time.perf_counter_ns() - i0
            b.get_output(runner.y_info.name)
        return inv, time.perf_counter_ns() - c0

    res.first_invoke_us = one_call(0)[0] / 1e3
    progress(f"{res.label}: warm-up {cfg.warmup}, then {cfg.runs} timed runs")
    for i in range(cfg.warmup):
        one_call(i + 1)
    inv = np.empty(cfg.runs, np.int64)
    call = np.empty(cfg.runs, np.int64)
    mark = max(cfg.runs // 4, 1)
    started = time.perf_counter()
    for i in range(cfg.runs):
        inv[i], call[i] = one_call(i + 1 + cfg.warmup)
        if cfg.runs >= 1000 and (i + 1) % mark == 0 and i + 1 < cfg.runs:
            progress(
                f"{res.label}: {i + 1}/{cfg.runs} runs ({time.perf_counter() - started:.1f} s)"
            )
    res.latency = LatencyStats.from_ns(inv)
    res.call = LatencyStats.from_ns(call)
    res.samples_us = (inv / 1e3).tolist()
    per = res.seq_len if variant == Variant.SEQUENCE and res.seq_len else 1
    res.per_step_p50_us = res.latency.p50_us / per
    res.per_step_mean_us = res.latency.mean_us / per
    if isinstance(runner, StepRunner) and hasattr(runner.backend, "run_chunk"):
        res.chunked_per_step_us = _chunked_per_step_us(runner, feed, cfg.runs)
        res.notes.append(
            f"chunked push_many ({CHUNK} steps per C call): {res.chunked_per_step_us:.3g} µs/step "
            f"vs {res.per_step_p50_us:.3g} µs per single push"
        )
    if res.macs_per_invoke and res.latency.p50_us > 0:
        res.gmacs_per_s = res.macs_per_invoke / (res.latency.p50_us * 1e-6) / 1e9

    res.memory = {
        "model_bytes": info.size_bytes,
        "rss_before_load_kb": rss_before,
        "peak_rss_kb": _peak_rss_kb(),
        "peak_rss_scope": "load + runs" if rss_reset else "process lifetime",
        "note": "RSS is process-wide (Python, NumPy and the runtime library included)",
    }
    if isinstance(backend, TFLMBackend):
        res.memory.update(backend.arena_used())
        res.memory["arena_given_bytes"] = backend.arena_size
        # The recording allocator's total leaves out kernel scratch that Prepare needs (fused LSTM),
        # so also bisect the smallest arena that actually runs, in child processes.
        from edgelstm.runtime.tflm_arena import measure_arena

        progress(f"{res.label}: bisecting the minimum TFLite Micro arena")
        arena = measure_arena(Path(model).read_bytes())
        res.memory["arena_min_bytes"] = arena.min_bytes
        res.memory["arena_recommended_bytes"] = arena.recommended_bytes

    if labels is not None:
        progress(f"{res.label}: accuracy on {min(len(x_all), cfg.max_eval)} sequences")
        n = min(len(x_all), cfg.max_eval, len(labels))
        outs = np.stack([runner.run(x_all[i]) for i in range(n)])
        res.accuracy = accuracy(outs, labels[:n])
        res.accuracy_samples = n
        if n < len(x_all):
            res.accuracy_note = f"first {n} of {len(x_all)} sequences"
    elif data is not None:
        res.accuracy_note = "no labels ('y') in the data"
    return res


CHUNK = 64  # steps per push_many call when timing the chunked path


def _chunked_per_step_us(runner: StepRunner, feed: list[Any], runs: int) -> float:
    """Median over repeated chunks of push_many's C call (invoke only), per step."""
    xs = np.stack([feed[i % len(feed)] for i in range(CHUNK)])
    runner.push_many(xs)  # warm-up
    ns = []
    for _ in range(max(runs // CHUNK, 5)):
        runner.push_many(xs)
        ns.append(runner.last_invoke_ns)
    return float(np.median(ns)) / CHUNK / 1e3


def profile_all(
    models: list[str | Path],
    cfg: ProfileConfig,
    progress: Progress = lambda _m: None,
) -> list[ProfileResult]:
    """Every model on every requested runtime. With one combination, errors propagate; with
    several, a failing combination becomes a row with `error` set (others still run)."""
    from edgelstm.runtime.backends import available_runtimes

    runtimes: list[str | None] = []
    for r in cfg.runtimes:
        if r == "all":
            runtimes.extend(x.value for x in available_runtimes())
        else:
            runtimes.append(None if r == "auto" else r)
    runtimes = list(dict.fromkeys(runtimes))
    for r in runtimes:
        resolve_runtime(r)  # unknown or missing runtime: fail before measuring anything
    data = load_data(cfg.data) if cfg.data else None
    combos = [(m, r) for m in models for r in runtimes]
    results = []
    for m, r in combos:
        try:
            results.append(profile_model(m, r, cfg, data, progress))
        except EdgeLSTMError as exc:
            if len(combos) == 1:
                raise
            rt = resolve_runtime(r).value
            progress(f"{Path(m).name} [{rt}]: failed: {exc}")
            results.append(ProfileResult(model=str(m), runtime=rt, error=str(exc)))
    if all(res.error for res in results):
        raise BadInputError(f"every profile failed; first: {results[0].error}")
    return results


def comparison(results: list[ProfileResult]) -> list[dict[str, Any]]:
    """Per-step p50 latency ratios against the first and the fastest successful row."""
    ok = [r for r in results if not r.error]
    if not ok:
        return []
    first = ok[0].per_step_p50_us
    fastest = min(r.per_step_p50_us for r in ok)
    return [
        {
            "model": r.model,
            "runtime": r.runtime,
            "per_step_p50_us": r.per_step_p50_us,
            "vs_first": r.per_step_p50_us / first if first else None,
            "vs_fastest": r.per_step_p50_us / fastest if fastest else None,
        }
        for r in ok
    ]


def environment() -> dict[str, Any]:
    """Versions and machine facts that latency numbers depend on."""
    from importlib import metadata

    versions = {}
    for pkg in ("ai-edge-litert", "tflite-runtime", "tensorflow", "tflite-micro", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": versions,
    }


# --- human table ---------------------------------------------------------------------------------


def table_rows(results: list[ProfileResult]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the side-by-side table (shared by text and HTML)."""
    header = [
        "model",
        "runtime",
        "kind",
        "KB",
        "init ms",
        "first µs",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs",
        "mean±std µs",
        "µs/step",
        "call p50 µs",
        "GMAC/s",
        "peak RSS MB",
        "TFLM arena KB",
        "accuracy",
        "vs first",
        "vs fastest",
    ]
    ratios = {(c["model"], c["runtime"]): c for c in comparison(results)}
    rows = []
    for r in results:
        name = Path(r.model).name
        if r.error:
            rows.append([name, r.runtime, "error: " + r.error] + [""] * (len(header) - 3))
            continue
        lat = r.latency
        assert lat is not None and r.call is not None
        c = ratios[(r.model, r.runtime)]
        arena = (
            f"{r.memory['arena_used_bytes'] / 1024:.1f} (min {r.memory['arena_min_bytes'] / 1024:.1f})"
            if "arena_min_bytes" in r.memory
            else "-"
        )
        rows.append(
            [
                name,
                r.runtime + ("" if r.xnnpack in (None, False) else "+xnn"),
                f"{r.variant}/{r.quantization}",
                f"{r.size_bytes / 1024:.1f}",
                f"{r.init_ms:.1f}",
                f"{r.first_invoke_us:.1f}",
                f"{lat.p50_us:.1f}",
                f"{lat.p90_us:.1f}",
                f"{lat.p99_us:.1f}",
                f"{lat.max_us:.1f}",
                f"{lat.mean_us:.1f}±{lat.std_us:.1f}",
                f"{r.per_step_p50_us:.2f}",
                f"{r.call.p50_us:.1f}",
                f"{r.gmacs_per_s:.3f}",
                f"{r.memory['peak_rss_kb'] / 1024:.1f}",
                arena,
                "" if r.accuracy is None else f"{r.accuracy:.4f}",
                f"x{c['vs_first']:.2f}",
                f"x{c['vs_fastest']:.2f}",
            ]
        )
    return header, rows


# The terminal table in blocks that each fit 120 columns: latency first, then detail, memory.
TEXT_BLOCKS = (
    ("model", "runtime", "kind", "p50 µs", "p90 µs", "p99 µs", "µs/step", "call p50 µs",
     "vs fastest"),
    ("model", "runtime", "KB", "init ms", "first µs", "max µs", "mean±std µs", "GMAC/s",
     "accuracy"),
    ("model", "runtime", "peak RSS MB", "TFLM arena KB"),
)  # fmt: skip


def _text_block(header: list[str], rows: list[list[str]], cols: tuple[str, ...]) -> list[str]:
    idx = [header.index(c) for c in cols if c in header]
    if cols is TEXT_BLOCKS[-1]:  # columns added later to table_rows still show up
        named = {c for block in TEXT_BLOCKS for c in block}
        idx += [i for i, c in enumerate(header) if c not in named and c != "vs first"]
    ok = [row for row in rows if not row[2].startswith("error: ")]
    widths = [max(len(header[i]), *(len(row[i]) for row in ok)) if ok else len(header[i])
              for i in idx]  # fmt: skip
    lines = ["  ".join(header[i].ljust(w) for i, w in zip(idx, widths, strict=True)).rstrip()]
    for row in rows:
        if row[2].startswith("error: "):
            lines.append(f"{row[0]}  {row[1]}  {row[2]}")
            continue
        cells = [row[i].ljust(w) if header[i] in ("model", "runtime", "kind") else row[i].rjust(w)
                 for i, w in zip(idx, widths, strict=True)]  # fmt: skip
        lines.append("  ".join(cells).rstrip())
    return lines


def format_table(results: list[ProfileResult]) -> str:
    """Fixed-width text tables (each within 120 columns for usual file names) plus the notes."""
    import textwrap

    header, rows = table_rows(results)
    lines: list[str] = []
    for block in TEXT_BLOCKS:
        lines += [*_text_block(header, rows, block), ""]
    lines.pop()
    runs = next((r.latency.runs for r in results if r.latency), 0)
    lines += textwrap.wrap(
        f"latency = invoke() only over {runs} warmed-up runs; call = what an app pays per step/"
        "sequence (I/O conversion, state copy); sequence µs/step = p50 ÷ T; peak RSS is "
        "process-wide; TFLM arena = recorded use (bisected minimum)",
        width=120,
    )
    for r in results:
        for n in dict.fromkeys([*r.notes, *([r.accuracy_note] if r.accuracy_note else [])]):
            lines.append(f"note: {Path(r.model).name} [{r.runtime}]: {n}")
    return "\n".join(lines)


def to_json(results: list[ProfileResult], cfg: ProfileConfig) -> dict[str, Any]:
    return {
        "config": asdict(cfg),
        "environment": environment(),
        "results": [r.to_dict() for r in results],
        "comparison": comparison(results),
    }
