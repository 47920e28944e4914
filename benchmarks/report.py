"""Markdown rendering of a results dict (benchmarks/results/latest.md) and the target checks."""

from __future__ import annotations

from typing import Any


def _fmt_us(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 10000:
        return f"{v / 1000:.1f} ms"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "–"
    if stats.get("repeats") == 0:
        return _fmt_us(stats["median_us"])
    return f"{_fmt_us(stats['median_us'])} ({_fmt_us(stats['min_us'])}–{_fmt_us(stats['max_us'])})"


def _best(rows: list[dict[str, Any]], col: str) -> float | None:
    vals = [
        r[col]["median_us"]
        for r in rows
        if r.get("role") in ("edgelstm", "edgelstm_seq")
        and r["status"] == "measured"
        and r.get(col)
    ]
    return min(vals) if vals else None


def _ratio(r: dict[str, Any], col: str, best: float | None) -> str:
    if not best or not r.get(col) or r["status"] != "measured":
        return "–"
    return f"{r[col]['median_us'] / best:.2f}×"


def _median(rows: list[dict[str, Any]], col: str, pred: Any) -> float | None:
    vals = [
        r[col]["median_us"] for r in rows if pred(r) and r["status"] == "measured" and r.get(col)
    ]
    return min(vals) if vals else None


def _metric_name(r: dict[str, Any]) -> str:
    """The metric with its direction, so bpc and MAE are not read as accuracies."""
    from edgelstm.zoo.metrics import METRICS

    name = r.get("metric")
    if not name:
        return "–"
    m = METRICS.get(name)
    if m is None:
        return name
    return f"{name} ({'higher' if m.higher_is_better else 'lower'} is better)"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The three targets of issue 8, checked against the measured rows only."""
    out = []
    for model, rows in _by_model(results.get("step", [])).items():
        for col in ("raw", "python"):
            best = _best(rows, col)
            fused = _median(
                rows, col, lambda r: r.get("role") == "fused" and r.get("quant") == "int8"
            )
            if best and fused:
                ratio = fused / best
                out.append(
                    {
                        "target": f"{model}: best step ≥ 8× faster than fused int8 ({col})",
                        "value": f"{ratio:.1f}×",
                        "met": ratio >= 8.0,
                    }
                )
            else:
                out.append(
                    {
                        "target": f"{model}: best step ≥ 8× faster than fused int8 ({col})",
                        "value": "not measured",
                        "met": None,
                    }
                )
            ort = _median(rows, col, lambda r: r.get("role") == "ort")
            if best and ort:
                out.append(
                    {
                        "target": f"{model}: best step at least as fast as ONNX Runtime ({col})",
                        "value": f"ORT/best = {ort / best:.2f}×",
                        "met": ort >= best,
                    }
                )
            else:
                out.append(
                    {
                        "target": f"{model}: best step at least as fast as ONNX Runtime ({col})",
                        "value": "not measured",
                        "met": None,
                    }
                )
        for quant, kind in (("float", "fp32"), ("int8", "int8")):
            ceng = _median(
                rows, "raw", lambda r, q=quant: r.get("role") == "cengine" and r.get("quant") == q
            )
            floor = _median(
                rows, "raw", lambda r, k=kind: r.get("role") == "floor" and r.get("quant") == k
            )
            name = f"{model}: native C engine {quant} within 2× of the arithmetic floor ({kind})"
            if ceng and floor:
                out.append(
                    {
                        "target": name,
                        "value": f"{ceng / floor:.1f}× floor",
                        "met": ceng <= 2 * floor,
                    }
                )
            else:
                out.append({"target": name, "value": "not measured", "met": None})
    for r in results.get("mcu", []):
        t = r.get("targets")
        if not t or r.get("quant") != "int8" or r.get("model") != "lstm64":
            continue
        out.append(
            {
                "target": "Cortex-M4 int8 LSTM(64) step ≤ 1.5 instructions/MAC",
                "value": f"{t['instructions_per_mac']:.2f}",
                "met": t["instructions_per_mac_met"],
            }
        )
        out.append(
            {
                "target": "Cortex-M4 flash ≤ weights + 8 KB",
                "value": f"{t['flash_bytes']:,} B (budget {t['flash_budget']:,} B)",
                "met": t["flash_met"],
            }
        )
        out.append(
            {
                "target": "Cortex-M4 RAM ≤ state + one gate buffer + 1 KB",
                "value": f"{t['ram_bytes']:,} B (budget {t['ram_budget']:,} B)",
                "met": t["ram_met"],
            }
        )
    from benchmarks import mcu  # issue #16: every core, cell kind and the TFLM peer

    out.extend(mcu.targets(results))
    return out


def _by_model(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["model"], []).append(r)
    return out


def _status(r: dict[str, Any]) -> str:
    return "" if r["status"] == "measured" else f"**{r['status']}** "


def _latency_table(rows: list[dict[str, Any]], unit_note: str) -> list[str]:
    best_raw, best_py = _best(rows, "raw"), _best(rows, "python")
    lines = [
        f"| system | runtime | raw invoke µs {unit_note} | × best | Python-level µs | × best | MACs | bytes | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        notes = _status(r) + "; ".join(r["notes"])
        lines.append(
            f"| {r['system']} | {r['runtime']} | {_cell(r.get('raw'))} | {_ratio(r, 'raw', best_raw)} "
            f"| {_cell(r.get('python'))} | {_ratio(r, 'python', best_py)} "
            f"| {r['macs'] if r.get('macs') else '–'} | {r['size_bytes'] or '–'} | {notes} |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    env = results["env"]
    m, v, th = env["machine"], env["versions"], env["threads"]
    peak = results["peak"]
    lines = [
        "# edgelstm benchmarks",
        "",
        f"Generated by `python -m benchmarks.run{' --quick' if results['quick'] else ''}` on "
        f"{env['date']} (total {results['wall_s']:.0f} s).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['arch']}, {', '.join(m['simd'])}); "
        f"{m['os']}; load average at start {m['loadavg_at_start']} (shared machine).",
        "- Versions: " + "; ".join(f"{k}: {val}" for k, val in v.items() if val),
        f"- Threads: LiteRT num_threads={th['litert_num_threads']}, ONNX Runtime intra-op "
        f"{th['onnxruntime_intra_op']} / inter-op {th['onnxruntime_inter_op']}, TensorFlow intra-op "
        f"{th['tensorflow_intra_op']} / inter-op {th['tensorflow_inter_op']}; CPU affinity "
        f"{th['affinity']}.",
        f"- Method: {results['method']}",
        f"- Peak MAC rate (for the arithmetic floor): fp32 {peak['fp32_mac_per_s'] / 1e9:.1f} GMAC/s"
        + (
            f", int8 {peak['int8_mac_per_s'] / 1e9:.1f} GMAC/s"
            if peak.get("int8_mac_per_s")
            else ""
        )
        + f" ({peak['method']}).",
        "- `raw` = the runtime's bare invoke with inputs set once; `Python-level` = set inputs, "
        "invoke, read outputs and carry state, per call. Cells: median (min–max). `× best` divides "
        "by edgelstm's best artifact in the same column and table (>1 = slower).",
        "",
    ]
    if results.get("targets"):
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for t in results["targets"]:
            met = "–" if t["met"] is None else ("yes" if t["met"] else "**MISSED**")
            lines.append(f"| {t['target']} | {t['value']} | {met} |")
        lines.append("")
    for model, rows in _by_model(results.get("step", [])).items():
        info = results["models"].get(model, {})
        lines += [
            f"## Streaming step latency: {info.get('title', model)}",
            "",
            info.get("desc", ""),
            "",
        ]
        lines += _latency_table(rows, "per step")
        lines.append("")
    for model, rows in _by_model(results.get("sequence", [])).items():
        info = results["models"].get(model, {})
        lines += [f"## Sequence latency: {info.get('title', model)}", "", info.get("desc", ""), ""]
        lines += _latency_table(rows, "per sequence")
        lines.append("")
    if results.get("size") is not None:
        lines += ["## Size and accuracy", ""]
        for note in results.get("size_notes", []):
            lines.append(f"- {note}")
        lines.append("")
        for model, rows in _by_model(results["size"]).items():
            floats = {r.get("variant"): r["size_bytes"] for r in rows if r.get("quant") == "float"}
            lines += [
                f"### {model}",
                "",
                "| artifact | bytes | float/this | metric | value | parity max abs (ok) | notes |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in rows:
                base = floats.get(r.get("variant"))
                ratio = f"{base / r['size_bytes']:.2f}×" if base and r.get("size_bytes") else "–"
                val = r.get("value")
                par = r.get("parity")
                par_txt = (
                    f"{par:.3g} ({'yes' if r.get('parity_ok') else 'no'})"
                    if par is not None
                    else "–"
                )
                lines.append(
                    f"| {r['system']} | {r['size_bytes'] or '–'} | {ratio} | {_metric_name(r)} "
                    f"| {f'{val:.4f}' if isinstance(val, float) else '–'} "
                    f"| {par_txt} "
                    f"| {_status(r)}{'; '.join(r['notes'])} |"
                )
            lines.append("")
    if results.get("mcu"):
        lines += [
            "## Cortex-M4 (qemu) instructions per MAC",
            "",
            "qemu counts executed instructions, not cycles (an M4 takes ≥1 cycle per instruction, "
            "more for loads and multiplies); the published rows are cycles per MAC on hardware. "
            "Rows per core (Cortex-M4/M7/M33/M55) and the TFLite Micro + CMSIS-NN peer rows "
            "(instructions per step) come from benchmarks/mcu.py.",
            "",
            "| model | system | figure | instructions/step | flash (weights) | RAM | status | notes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results["mcu"]:
            fig = r.get("value_text") or (
                f"{r['value']:.2f} instructions/MAC" if isinstance(r.get("value"), float) else "–"
            )
            d = r.get("detail") or {}
            per_step = f"{d['instructions_per_step']:,}" if "instructions_per_step" in d else "–"
            flash = (
                f"{d['flash_bytes']:,} B ({d['weight_bytes']:,} B)" if "flash_bytes" in d else "–"
            )
            ram = f"{d['ram_bytes']:,} B" if "ram_bytes" in d else "–"
            lines.append(
                f"| {r['model']} | {r['system']} | {fig} | {per_step} | {flash} | {ram} "
                f"| {r['status']} | {'; '.join(r['notes'])} |"
            )
        lines.append("")
    if results.get("pipeline"):
        lines += [
            "## `edgelstm pipeline` wall time",
            "",
            "| command | wall time | status | notes |",
            "|---|---|---|---|",
        ]
        for r in results["pipeline"]:
            wall = f"{r['value']:.1f} s" if isinstance(r.get("value"), float) else "–"
            lines.append(
                f"| {r.get('command', r['system'])} | {wall} | {r['status']} | {'; '.join(r['notes'])} |"
            )
        lines.append("")
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"
