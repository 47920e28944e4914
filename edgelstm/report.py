"""Render pipeline results as Markdown and self-contained HTML (plots inlined as PNG)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def distinct(*values: float, digits: int = 2, most: int = 6) -> list[str]:
    """Format numbers that are compared side by side with as many decimals as it takes to tell
    unequal ones apart (0.102 vs 0.104, not "0.10 | 0.10"), from `digits` up to `most`."""
    for d in range(digits, most + 1):
        text = [f"{v:.{d}f}" for v in values]
        if all(
            a != b or values[i] == values[j] for i, a in enumerate(text) for j, b in enumerate(text)
        ):
            return text
    return [f"{v:.{most}f}" for v in values]


@dataclass
class Table:
    """A titled table of already-formatted cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Plot:
    """A titled figure, as PNG bytes."""

    title: str
    png: bytes
    caption: str = ""


@dataclass
class Html:
    """A titled fragment of HTML that the page shows as is (escaped by whoever built it); the
    Markdown version shows only its `text` summary."""

    title: str
    html: str
    text: str = ""
    caption: str = ""


@dataclass
class Report:
    """A report: a title, free-text lines, then tables and plots in order."""

    title: str
    intro: list[str] = field(default_factory=list)
    sections: list[Table | Plot | Html] = field(default_factory=list)

    def to_markdown(self, plot_files: dict[str, str] | None = None) -> str:
        """Markdown; plots are linked from `plot_files` (title -> relative path) when given."""
        out = [f"# {self.title}", ""]
        out.extend(f"{line}  " for line in self.intro)
        for sec in self.sections:
            out += ["", f"## {sec.title}", ""]
            if isinstance(sec, Table):
                out.append("| " + " | ".join(sec.header) + " |")
                out.append("|" + "|".join("---" for _ in sec.header) + "|")
                out.extend("| " + " | ".join(r) + " |" for r in sec.rows)
            elif isinstance(sec, Html):
                out.append(sec.text or "(shown in the HTML report)")
            elif plot_files and sec.title in plot_files:
                out.append(f"![{sec.title}]({plot_files[sec.title]})")
            if sec.caption:
                out += ["", sec.caption]
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        """One self-contained HTML page (no external assets)."""
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(self.title)}</title><style>",
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}",
            "table{border-collapse:collapse;margin:.5em 0}img{max-width:100%;height:auto}"
            "td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
            "td:first-child,th:first-child{text-align:left}.cap{color:#555;font-size:.9em}",
            "</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        parts.extend(f"<p>{e(line)}</p>" for line in self.intro)
        for sec in self.sections:
            parts.append(f"<h2>{e(sec.title)}</h2>")
            if isinstance(sec, Table):
                parts.append(
                    "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in sec.header) + "</tr>"
                )
                parts.extend(
                    "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in sec.rows
                )
                parts.append("</table>")
            elif isinstance(sec, Html):
                parts.append(sec.html)
            else:
                data = base64.b64encode(sec.png).decode()
                parts.append(f"<img alt='{e(sec.title)}' src='data:image/png;base64,{data}'>")
            if sec.caption:
                parts.append(f"<p class='cap'>{e(sec.caption)}</p>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


def scatter_plot(
    points: Sequence[tuple[str, float, float]],
    xlabel: str,
    ylabel: str,
    logy: bool = False,
) -> bytes | None:
    """Points (e.g. size vs accuracy) as PNG, or None without matplotlib. Each point has its own
    marker and colour and is named in a legend beside the axes, so coinciding points stay
    readable (annotations on top of each other would not)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    markers = "osD^vP*X"
    colours = plt.get_cmap("tab10")
    for i, (label, x, y) in enumerate(points):
        ax.scatter([x], [y], s=50, marker=markers[i % len(markers)], color=colours(i % 10),
                   label=label, alpha=0.85, zorder=3)  # fmt: skip
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _png(fig, plt)


def hbar_plot(
    labels: Sequence[str],
    values: Sequence[float],
    xlabel: str,
    errors: Sequence[tuple[float, float]] | None = None,
    log: bool = True,
) -> bytes | None:
    """Horizontal bars (one row per label, first on top) with optional low/high whiskers; a log
    axis keeps a 100x slower artifact from flattening the others."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.42 * len(labels)), dpi=100)
    ys = range(len(labels))
    xerr = None
    if errors:
        xerr = [
            [max(v - lo, 0.0) for v, (lo, _) in zip(values, errors, strict=True)],
            [max(hi - v, 0.0) for v, (_, hi) in zip(values, errors, strict=True)],
        ]
    ax.barh(list(ys), values, xerr=xerr, color="#4c72b0", capsize=3)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        plain_log_ticks(ax, "x")
    for y, v in zip(ys, values, strict=True):
        ax.annotate(f"{v:.3g}", (v, y), xytext=(4, -3), textcoords="offset points", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig, plt)


def line_plot(series: dict[str, Sequence[float]], xlabel: str, ylabel: str) -> bytes | None:
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    for name, ys in series.items():
        ax.plot(range(len(ys)), ys, label=name, lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig, plt)


def heatmap(
    rows: dict[str, Any],
    xlabel: str = "time step",
    ranges: dict[str, tuple[float, float]] | None = None,
) -> bytes | None:
    """Stacked heatmaps (one panel per entry, each an array [T, units]), units on the y axis and
    time on x. Panels named in `ranges` use that fixed range (e.g. sigmoid gates 0..1, viridis);
    the others a blue-red scale centred on 0 (signed signals such as h and c)."""
    import numpy as np

    plt = _pyplot()
    if plt is None or not rows:
        return None
    ranges = ranges or {}
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.0 + 1.4 * len(rows)), dpi=100,
                             squeeze=False)  # fmt: skip
    for ax, (name, arr) in zip(axes[:, 0], rows.items(), strict=True):
        a = np.asarray(arr, dtype=np.float64).T  # units x time
        if name in ranges:
            lo, hi = ranges[name]
            kw = {"vmin": lo, "vmax": hi, "cmap": "viridis"}
        else:
            lim = float(np.max(np.abs(a))) if a.size else 1.0
            kw = {"vmin": -lim, "vmax": lim, "cmap": "RdBu_r"}
        im = ax.imshow(a, aspect="auto", interpolation="nearest", **kw)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    axes[-1, 0].set_xlabel(xlabel)
    return _png(fig, plt)


def plain_log_ticks(ax: Any, axis: str = "x") -> None:
    """A log axis with plain-number major labels and unlabelled minor ticks (no overlapping
    "2x10^0 3x10^0 ..." strings)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    plt.rcParams["svg.hashsalt"] = "edgelstm"  # deterministic output
    return plt


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
