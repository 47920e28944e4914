"""Quantization error report: float vs quantized artifact, per output and over a long stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError
from edgelstm.report import Plot, Table, distinct, line_plot
from edgelstm.types import Artifact


@dataclass
class Drift:
    """Error between float and quantized step models at step t of one long stream."""

    steps: int
    bin_size: int
    bin_start: list[int]
    max_abs: list[float]
    mean_abs: list[float]
    trend: str  # "grows", "saturates" or "flat"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LayerError:
    """Error of one intermediate tensor of the quantized step model against its float twin."""

    tensor: str
    float_range: float  # max - min of the float tensor over the stream
    max_abs: float
    mean_abs: float
    relative: float  # max_abs / float_range
    scale: float  # the quantized tensor's scale (one step of its grid)
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QuantReport:
    """Everything the report says about one quantized artifact against its float twin."""

    float_file: str
    quant_file: str
    float_bytes: int
    quant_bytes: int
    max_abs: list[float]  # per output channel
    mean_abs: list[float]
    float_us: float
    quant_us: float
    metric_float: float | None = None
    metric_quant: float | None = None
    metric_name: str = ""
    drift: Drift | None = None
    verdict: str = ""  # one line on this artifact; the run's single recommendation is separate
    notes: list[str] = field(default_factory=list)
    higher_is_better: bool = True
    layers: list[LayerError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["drift"] = self.drift.to_dict() if self.drift else None
        return d


def classify_trend(curve: np.ndarray) -> str:
    """flat: last quarter within 1.5x of first quarter; grows: still rising at the end; else
    saturates (rose, then levelled off)."""
    n = len(curve)
    if n < 4:
        return "flat"
    q = max(n // 4, 1)
    first, last = float(np.mean(curve[:q])), float(np.mean(curve[-q:]))
    mid = float(np.mean(curve[n // 2 - q // 2 : n // 2 - q // 2 + q]))
    eps = 1e-12
    if last <= 1.5 * first + eps:
        return "flat"
    # rising between the middle and the end by as much as between start and middle → grows
    if last - mid > 0.5 * (mid - first) and last > 1.2 * mid + eps:
        return "grows"
    return "saturates"


def stream_drift(
    float_model: str | Path | bytes,
    quant_model: str | Path | bytes,
    stream: np.ndarray,
    bins: int = 16,
    runtime: str | None = None,
    artifacts: tuple[Artifact | None, Artifact | None] = (None, None),
) -> tuple[Drift, np.ndarray, np.ndarray, float, float]:
    """Run both step models over one long stream ([N, D] or [N] tokens); error at each step.

    `artifacts`: their manifest entries, for models given as bytes (the state reset values).
    Returns the binned drift, both output arrays and median invoke time (us) of each model.
    """
    from edgelstm.runtime.stream import StepRunner

    stream = np.asarray(stream)
    if len(stream) < 1:
        raise BadInputError("drift stream is empty")
    outs, times = [], []
    for m, art in zip((float_model, quant_model), artifacts, strict=True):
        r = StepRunner(m, runtime, artifact=art)
        r.reset()
        ys, ns = [], []
        for s in stream.reshape(len(stream), -1) if stream.ndim > 1 else stream.reshape(-1, 1):
            ys.append(r.push(s))
            ns.append(r.last_invoke_ns)
        outs.append(np.stack(ys))
        times.append(float(np.median(ns)) / 1e3)  # median: robust to a busy shared host
    err = np.abs(outs[0] - outs[1])  # [N, out]
    per_step = err.max(axis=1)
    bins = max(1, min(bins, len(per_step)))
    size = -(-len(per_step) // bins)
    starts = list(range(0, len(per_step), size))
    mx = [float(err[s : s + size].max()) for s in starts]
    mean = [float(err[s : s + size].mean()) for s in starts]
    drift = Drift(len(per_step), size, starts, mx, mean, classify_trend(np.asarray(mean)))
    return drift, outs[0], outs[1], times[0], times[1]


def assess(rep: QuantReport, tolerance: float | None = None) -> tuple[bool, str]:
    """Whether the quantized artifact is worth shipping, and one line saying why (a verdict on
    this artifact alone; `recommend_overall` makes the one recommendation of a run).

    The tolerance is 0.5 points for percent metrics and 2 % of the float value otherwise; with
    no eval metric, the worst output error against the float output range decides (10 %). An
    accurate artifact that is slower than float and hardly smaller is not worth it.
    """
    shrink = rep.float_bytes / max(rep.quant_bytes, 1)
    speed = rep.float_us / max(rep.quant_us, 1e-9)
    kib = f"{rep.quant_bytes / 1024:.1f} vs {rep.float_bytes / 1024:.1f} KiB"
    size = (
        f"{shrink:.1f}x smaller ({kib})"
        if shrink >= 1.05
        else f"no smaller ({kib}: in a model this small the graph, not the weights, dominates)"
    )
    lat = (
        f"{rep.quant_us:.1f} vs {rep.float_us:.1f} us per step "
        f"({speed:.2f}x float's speed, LiteRT median on this host)"
    )
    if rep.metric_float is not None and rep.metric_quant is not None:
        pct = "%" in rep.metric_name
        tol = tolerance if tolerance is not None else (0.5 if pct else 0.02 * abs(rep.metric_float))
        diff = rep.metric_float - rep.metric_quant
        loss = diff if rep.higher_is_better else -diff
        unit = " points" if pct else ""
        acc = (
            f"{rep.metric_name} {rep.metric_quant:.4f} vs {rep.metric_float:.4f} float "
            f"(loss {loss:.4f}{unit}, tolerance {tol:.3g}{unit})"
        )
        ok = loss <= tol
    else:
        worst = max(rep.max_abs) if rep.max_abs else 0.0
        acc = f"no eval metric; max output error {worst:.3g}"
        ok = worst <= 0.1
    if not ok:
        return False, f"{rep.quant_file} loses too much — {acc}; {size}"
    if speed < 0.67 and shrink < 1.5:
        return False, (
            f"{rep.quant_file} is accurate enough ({acc}) but slower and hardly smaller — "
            f"{lat}; {size}"
        )
    return True, f"{rep.quant_file} holds — {acc}; {size}; {lat}"


def recommend(rep: QuantReport, tolerance: float | None = None) -> str:
    """One line for a single quantized artifact against its float twin: ship it, or ship float."""
    ok, why = assess(rep, tolerance)
    return f"ship {why}" if ok else f"ship float {rep.float_file}: {why}"


def layer_errors(
    float_model: str | Path | bytes,
    quant_model: str | Path | bytes,
    stream: np.ndarray,
    steps: int = 200,
) -> list[LayerError]:
    """Per-tensor error of the quantized step model's intermediates against the float model's.

    Both models run over the same stream (state carried); tensors are matched by name (the
    converter keeps the TF op names), dequantized with their per-tensor scale and zero point.
    Weights (per-channel scales) and tensors the quantizer renamed or fused are left out.
    """
    stream = np.asarray(stream)[:steps]
    stream = stream.reshape(len(stream), -1) if stream.ndim > 1 else stream.reshape(-1, 1)
    from edgelstm.runtime.litert import preserving_backend

    fb, qb = preserving_backend(float_model), preserving_backend(quant_model)
    fdet = {d["name"]: d for d in fb.interp.get_tensor_details()}
    pairs = []
    for d in qb.interp.get_tensor_details():
        f = fdet.get(d["name"])
        qp = d["quantization_parameters"]
        if f is None or f["dtype"] != np.float32 or len(qp["scales"]) != 1:
            continue  # unmatched, a constant/integer tensor, or a per-channel weight
        if d["dtype"] not in (np.int8, np.int16, np.uint8):
            continue
        pairs.append((f["index"], d["index"], d["name"], float(qp["scales"][0]),
                      int(qp["zero_points"][0]), np.dtype(d["dtype"]).name))  # fmt: skip
    pairs.sort()
    acc: dict[str, list[Any]] = {p[2]: [] for p in pairs}
    states_f = {s.input: (s.output, s.reset_value, s.shape) for s in fb.info.states()}
    sv = {k: np.full(shape, r, np.float64) for k, (_, r, shape) in states_f.items()}
    svq = dict(sv)
    for x in stream:
        feeds = {"x": x}
        fo = fb.run({**feeds, **sv})
        qo = qb.run({**feeds, **svq})
        for k, (o, _, _) in states_f.items():
            sv[k], svq[k] = fo[o], qo[o]
        for fi, qi, name, scale, zp, _ in pairs:
            a = fb.interp.get_tensor(fi).astype(np.float64)
            b = (qb.interp.get_tensor(qi).astype(np.float64) - zp) * scale
            if a.shape == b.shape:
                acc[name].append((a, b))
    out = []
    for _fi, _qi, name, scale, _zp, dt in pairs:
        if not acc[name]:
            continue
        a = np.stack([p[0] for p in acc[name]])
        b = np.stack([p[1] for p in acc[name]])
        err = np.abs(a - b)
        span = float(a.max() - a.min())
        mx = float(err.max())
        out.append(LayerError(name, span, mx, float(err.mean()), mx / span if span else 0.0,
                              scale, dt))  # fmt: skip
    return out


def recommend_overall(reports: list[QuantReport], tolerance: float | None = None) -> str:
    """The run's one recommendation: among the artifacts whose accuracy holds, the smallest
    (within 10 %), then the fastest of those; float when none holds."""
    if not reports:
        return "nothing to compare"
    ok = [r for r in reports if assess(r, tolerance)[0]]
    if not ok:
        return "recommendation: " + recommend(reports[0], tolerance)
    smallest = min(r.quant_bytes for r in ok)
    near = [r for r in ok if r.quant_bytes <= 1.1 * smallest]
    best = min(near, key=lambda r: r.quant_us)
    others = sorted({r.quant_file for r in ok} - {best.quant_file})
    also = f" (also accurate: {', '.join(others)})" if others else ""
    return "recommendation: " + recommend(best, tolerance) + also


def compare_step_models(
    float_model: str | Path | Artifact,
    quant_model: str | Path | Artifact,
    stream: np.ndarray,
    *,
    bins: int = 16,
    labels: np.ndarray | None = None,
    layer_steps: int = 200,
    files: Mapping[str, bytes] | None = None,
) -> QuantReport:
    """Float vs quantized step model on one long stream: errors, drift, optional accuracy.

    The models are files, or manifest artifacts whose bytes are in `files` (by file name).
    labels (one class id or 0/1 target per step) turn on the accuracy metric at each step;
    layer_steps (0: off) is how many steps the per-tensor error table runs.
    """

    def source(m: str | Path | Artifact) -> tuple[str, bytes, Artifact | None]:
        if isinstance(m, Artifact):
            if files is None:
                raise TypeError("artifacts given without their files")
            return m.file, files[m.file], m
        from edgelstm.runtime.stream import manifest_artifact
        from edgelstm.tflite_info import read_tflite

        path = Path(m)
        read_tflite(path)  # a one-line BadInputError for a missing file or one that is no model
        return path.name, path.read_bytes(), manifest_artifact(path)

    (fname, fdata, fart), (qname, qdata, qart) = source(float_model), source(quant_model)
    drift, yf, yq, tf_us, tq_us = stream_drift(
        fdata, qdata, stream, bins=bins, artifacts=(fart, qart)
    )
    err = np.abs(yf - yq)
    rep = QuantReport(
        fname,
        qname,
        len(fdata),
        len(qdata),
        [float(v) for v in err.max(axis=0)],
        [float(v) for v in err.mean(axis=0)],
        tf_us,
        tq_us,
        drift=drift,
    )
    if layer_steps:
        rep.layers = layer_errors(fdata, qdata, stream, layer_steps)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(yf):
            raise BadInputError(f"--eval labels: {len(labels)} labels for {len(yf)} steps")
        rep.metric_name = "accuracy %"

        def pred(y: np.ndarray) -> np.ndarray:
            # one sigmoid output: threshold at 0.5; several outputs: argmax
            return (y[:, 0] > 0.5).astype(labels.dtype) if y.shape[1] == 1 else y.argmax(1)

        rep.metric_float = float(np.mean(pred(yf) == labels) * 100)
        rep.metric_quant = float(np.mean(pred(yq) == labels) * 100)
    rep.verdict = assess(rep)[1]
    return rep


def quantization_section(rep: QuantReport) -> list[Table | Plot]:
    """Report sections (edgelstm.report) for the pipeline/quantize reports."""
    secs: list[Table | Plot] = []
    rows = [
        ["size", f"{rep.float_bytes:,} B", f"{rep.quant_bytes:,} B"],
        ["latency / step", f"{rep.float_us:.1f} us", f"{rep.quant_us:.1f} us"],
    ]
    if rep.metric_float is not None:
        rows.insert(0, [rep.metric_name, *distinct(rep.metric_float, rep.metric_quant)])
    secs.append(
        Table(
            f"Quantization: {rep.quant_file} vs {rep.float_file}",
            ["", "float", "quantized"],
            rows,
            caption=rep.verdict,
        )
    )
    secs.append(
        Table(
            "Per-output error (quantized vs float)",
            ["output", "max abs", "mean abs"],
            [
                [str(i), f"{a:.4g}", f"{b:.4g}"]
                for i, (a, b) in enumerate(zip(rep.max_abs, rep.mean_abs, strict=True))
            ],
        )
    )
    if rep.layers:
        secs.append(
            Table(
                "Per-layer error (intermediate tensors, quantized vs float step model)",
                ["tensor", "type", "float range", "max abs", "mean abs", "max / range", "scale"],
                [
                    [
                        e.tensor,
                        e.dtype,
                        f"{e.float_range:.4g}",
                        f"{e.max_abs:.4g}",
                        f"{e.mean_abs:.4g}",
                        f"{e.relative:.2%}",
                        f"{e.scale:.3g}",
                    ]
                    for e in rep.layers
                ],
                caption=(
                    "LiteRT with every intermediate tensor kept; tensors matched by name, "
                    "dequantized; in graph order (the largest max / range is where int8 hurts)"
                ),
            )
        )
    if rep.drift:
        d = rep.drift
        secs.append(
            Table(
                f"Error over a {d.steps}-step stream ({d.trend})",
                ["steps", "max abs", "mean abs"],
                [
                    [f"{s}-{min(s + d.bin_size, d.steps) - 1}", f"{a:.4g}", f"{b:.4g}"]
                    for s, a, b in zip(d.bin_start, d.max_abs, d.mean_abs, strict=True)
                ],
                caption=f"error between float and quantized step models; trend: {d.trend}",
            )
        )
        png = line_plot(
            {"max abs": d.max_abs, "mean abs": d.mean_abs}, f"bin ({d.bin_size} steps)", "error"
        )
        if png:
            secs.append(
                Plot(
                    f"Quantization error over the stream: {rep.quant_file}",
                    png,
                    f"max and mean |quantized - float| per bin of {d.bin_size} steps",
                )
            )
    return secs
