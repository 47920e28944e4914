"""The side-by-side table (text and HTML rows) and the JSON report."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgelstm.profile.compare import comparison, environment
from edgelstm.profile.results import ProfileConfig, ProfileResult


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
