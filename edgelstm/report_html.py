"""The HTML report of `edgelstm profile`: tables always, plots when matplotlib is installed.

Built on edgelstm.report (one self-contained page, PNGs inlined as base64).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from edgelstm.profile import ProfileResult, comparison, table_rows
from edgelstm.report import Plot, Report, Table, plain_log_ticks


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def matplotlib_version() -> str:
    import matplotlib

    return matplotlib.__version__


def latency_plot(results: list[ProfileResult]) -> bytes | None:
    """Box plot (with the raw points' spread) of per-invoke latency, one box per row."""
    plt = _pyplot()
    ok = [r for r in results if r.samples_us]
    if plt is None or not ok:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.45 * len(ok)), dpi=100)
    # `orientation` replaced `vert` in matplotlib 3.10 (vert is deprecated from 3.11).
    horizontal = (
        {"orientation": "horizontal"}
        if tuple(int(p) for p in matplotlib_version().split(".")[:2]) >= (3, 10)
        else {"vert": False}
    )
    ax.boxplot(
        [r.samples_us for r in ok],
        **horizontal,
        whis=(1, 99),
        showfliers=True,
        flierprops={"markersize": 2, "alpha": 0.4},
    )
    ax.set_yticks(range(1, len(ok) + 1), [r.label for r in ok], fontsize=8)
    ax.invert_yaxis()  # first row of the table on top
    ax.set_xscale("log")
    plain_log_ticks(ax, "x")
    ax.set_xlabel("invoke latency, µs (log; whiskers p1-p99)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig, plt)


_MARKERS = {"litert": "o", "tflite-runtime": "s", "tf": "^", "tflm": "D"}


def tradeoff_plot(results: list[ProfileResult], kind: str) -> bytes | None:
    """kind='size': p50 µs/step vs model KB; kind='accuracy': accuracy vs p50 µs/step."""
    plt = _pyplot()
    if plt is None or not results:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=100)
    models = list(dict.fromkeys(r.model for r in results))
    colours = plt.get_cmap("tab10")
    for r in results:
        if kind == "accuracy" and r.accuracy is None:
            continue
        acc = "" if r.accuracy is None else f", acc {r.accuracy:.3f}"
        xy = (
            (r.size_bytes / 1024, r.per_step_p50_us)
            if kind == "size"
            else (r.per_step_p50_us, r.accuracy)
        )
        ax.scatter(
            *xy,
            s=40,
            marker=_MARKERS.get(r.runtime, "o"),
            color=colours(models.index(r.model) % 10),
            label=f"{r.label}{acc}",
            alpha=0.8,
        )
    if kind == "size":
        ax.set_xlabel("model size, KB")
        ax.set_ylabel("p50 latency per step, µs")
    else:
        ax.set_xlabel("p50 latency per step, µs")
        ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _png(fig, plt)


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


_LATENCY_COLUMNS = (
    "model", "runtime", "kind", "p50 µs", "p90 µs", "p99 µs", "µs/step", "call p50 µs",
    "vs fastest",
)  # fmt: skip
_DETAIL_COLUMNS = (
    "model", "runtime", "KB", "init ms", "first µs", "max µs", "mean±std µs", "GMAC/s",
    "accuracy", "vs first",
)  # fmt: skip
# peak RSS has its own table (Memory); any column not named here lands in the details table
_ALL_COLUMNS = {*_LATENCY_COLUMNS, *_DETAIL_COLUMNS, "peak RSS MB"}


def build_report(results: list[ProfileResult], info: dict[str, Any]) -> Report:
    """The report object (tables + plots); `info` is profile.to_json() output for context."""
    env = info.get("environment", {})
    cfg = info.get("config", {})
    intro = [
        f"Python {env.get('python', '?')} on {env.get('platform', '?')}, {env.get('cpus', '?')} CPUs; "
        + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items()),
        f"{cfg.get('runs')} timed runs after {cfg.get('warmup')} warm-up runs, "
        f"threads={cfg.get('threads')}, xnnpack={'default' if cfg.get('xnnpack') is None else cfg.get('xnnpack')}"
        + (f", data {cfg.get('data')}" if cfg.get("data") else ", synthetic inputs"),
        "Latency is invoke() alone; 'call' adds what an application pays (quantizing the input, "
        "copying the state, reading the output). Peak RSS is process-wide.",
    ]
    plots_ok = _pyplot() is not None
    if not plots_ok:
        intro.append("matplotlib is not installed: tables only (pip install 'edgelstm[report]').")
    header, rows = table_rows(results)
    report = Report(title="edgelstm profile", intro=intro)
    # Two narrower tables instead of one wide one: what a reader compares first, then detail.
    for title, cols in (
        ("Latency", _LATENCY_COLUMNS),
        ("Details: size, start-up, spread, throughput, accuracy", _DETAIL_COLUMNS),
    ):
        keep = [header.index(c) for c in cols if c in header]
        extra = (
            [i for i, c in enumerate(header) if c not in _ALL_COLUMNS]
            if cols is _DETAIL_COLUMNS
            else []
        )
        idx = keep + extra
        report.sections.append(
            Table(title, [header[i] for i in idx], [[row[i] for i in idx] for row in rows])
        )
    mem_rows = [
        [
            Path(r.model).name,
            r.runtime,
            f"{r.memory.get('model_bytes', r.size_bytes):,}",
            f"{r.memory.get('rss_before_load_kb', 0):,}",
            f"{r.memory.get('peak_rss_kb', 0):,}",
            str(r.memory.get("peak_rss_scope", "")),
            f"{r.memory['arena_used_bytes']:,}" if "arena_used_bytes" in r.memory else "-",
        ]
        for r in results
        if not r.error
    ]
    report.sections.append(
        Table(
            "Memory",
            [
                "model",
                "runtime",
                "model bytes",
                "RSS before KB",
                "peak RSS KB",
                "peak over",
                "TFLM arena used B",
            ],
            mem_rows,
            caption="TFLM arena: RecordingMicroAllocator total after allocate + invoke.",
        )
    )
    if plots_ok:
        png = latency_plot(results)
        if png:
            report.sections.append(Plot("Latency distribution", png))
        ok = [r for r in results if not r.error]
        png = tradeoff_plot(ok, "size")
        if png:
            report.sections.append(
                Plot(
                    "Latency vs model size",
                    png,
                    caption="Colour = model, marker = runtime; accuracy in the legend when known.",
                )
            )
        if sum(r.accuracy is not None for r in ok) > 1:
            png = tradeoff_plot(ok, "accuracy")
            if png:
                report.sections.append(Plot("Accuracy vs latency", png))
    cmp = comparison(results)
    if len(cmp) > 1:
        report.sections.append(
            Table(
                "Ratios (per-step p50 latency)",
                ["model", "runtime", "µs/step", "vs first", "vs fastest"],
                [
                    [
                        Path(c["model"]).name,
                        c["runtime"],
                        f"{c['per_step_p50_us']:.2f}",
                        f"x{c['vs_first']:.2f}",
                        f"x{c['vs_fastest']:.2f}",
                    ]
                    for c in cmp
                ],
            )
        )
    return report


def render_html(results: list[ProfileResult], info: dict[str, Any]) -> str:
    return build_report(results, info).to_html()
