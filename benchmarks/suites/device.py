"""Cortex-M4 (qemu instruction counts beside published anchors) and the end-to-end pipeline."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import models as M
from benchmarks import native
from benchmarks.suites.common import Context, _art, edgelstm_artifacts, row

PUBLISHED = [
    (
        "TFLite Micro + CMSIS-NN, int8 (published)",
        "~5.5 cycles/MAC",
        "Plumerai blog 2022-11-02: Keras weather LSTM(32), D=7, T=120 on STM32L4R9 "
        "(Cortex-M4 @120 MHz), 27.5 ms; via ../shared/notes/performance.md",
    ),
    (
        "Plumerai engine, int8 (published)",
        "~1.84 cycles/MAC",
        "Plumerai blog 2022-11-02: same model and board, 9.2 ms; "
        "via ../shared/notes/performance.md",
    ),
    (
        "NNoM + CMSIS-NN, int8 GRU stack (published)",
        "~1.7-2.2 cycles/MAC",
        "majianjia/nnom examples/rnn-denoise/README.md: stateful GRU stack, 209k MAC/step, "
        "3.28 ms/step on STM32L476 @140 MHz (GRU-96 layer 1.72); "
        "via ../shared/notes/performance.md",
    ),
]


def _mcu_row(model: str, quant: str, tflite: Path | None, manifest: Any) -> dict[str, Any]:
    r = row("mcu", model, f"edgelstm C engine {quant}", runtime="qemu Cortex-M4", quant=quant)
    if tflite is None:
        r.update(status="not measured", notes=[f"no {quant} step artifact"])
        return r
    res = native.cengine_qemu(tflite, manifest)
    if "error" in res:
        r.update(status="not measured", notes=[res["error"]])
        return r
    r["value"] = res["instructions_per_mac"]
    r["unit"] = "instructions/MAC"
    r["detail"] = {
        "instructions_per_step": res["instructions_per_step_median"],
        "macs_per_step": res["macs_per_step"],
        "flash_bytes": res["flash_engine_bytes"],
        "weight_bytes": res["weight_bytes"],
        "ram_bytes": res["ram_total_bytes"],
        "state_bytes": res["ram_state_bytes"],
        "gate_buffer_bytes": res["gate_buffer_bytes"],
        "parity_ok": res["parity"]["ok"],
        "parity_reference": res["parity"].get("reference"),
        "lsb_vs_other_kernels": {
            k: v["max_lsb_diff"] for k, v in res["parity"].get("kernel_sets", {}).items()
        },
        "breakdown": res.get("breakdown", {}).get("groups"),
        "non_fc_instructions": res.get("breakdown", {}).get("non_fc_instructions"),
    }
    r["targets"] = res["targets"]
    r["notes"] = [
        "instructions counted by qemu -icount (not cycles), SysTick around each step; "
        "median over the verification steps; measured here"
    ]
    return r


def mcu_suite(ctx: Context, bm: M.BenchModel) -> list[dict[str, Any]]:
    """Cortex-M4 (qemu): the C engine on issue #7's LSTM(64) and on `bm`, float and int8."""
    rows = []
    ctx.log("  LSTM(64), D=64 step model")
    made = native.lstm64_step(ctx.work)
    if isinstance(made, dict):
        for quant in ("float", "int8"):
            rows.append(
                row("mcu", "lstm64", f"edgelstm C engine {quant}", status="not measured",
                    notes=[made["error"]])
            )  # fmt: skip
    else:
        step_int8, man = made
        files = {a["quantization"]: step_int8.parent / a["file"] for a in man["artifacts"]}
        for quant in ("float", "int8"):
            rows.append(_mcu_row("lstm64", quant, files.get(quant), man))
    outdir, manifest = edgelstm_artifacts(ctx, bm, ["float", "int8"])
    for quant in ("float", "int8"):
        found = _art(outdir, manifest, "step", quant)
        rows.append(_mcu_row(bm.key, quant, found[0] if found else None, manifest))
    from benchmarks import mcu  # issue #16: more cores, GRU/SimpleRNN, D=8, the TFLM peer

    rows.extend(mcu.rows(ctx, row))
    for system, figure, source in PUBLISHED:
        rows.append(
            row(
                "mcu",
                "published",
                system,
                runtime="Cortex-M4 hardware",
                status="published",
                value_text=figure,
                notes=[f"published, not measured here: {source}"],
            )
        )
    return rows


def pipeline_suite(ctx: Context) -> list[dict[str, Any]]:
    exe = [sys.executable, "-m", "edgelstm", "pipeline"]
    r = row("pipeline", "-", "edgelstm pipeline (default)", runtime="CLI")
    helped = subprocess.run([*exe, "--help"], capture_output=True, text=True, timeout=120)
    if helped.returncode != 0:
        r.update(
            status="not measured",
            notes=["not measured: `edgelstm pipeline --help` fails (command not available yet)"],
        )
        return [r]
    out = ctx.work / "pipeline_out"
    args = list(exe)
    if "--out" in helped.stdout or " -o" in helped.stdout:
        args += ["-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800, cwd=ctx.work)
    wall = time.perf_counter() - t0
    # the work dir is a temp path: show the command as a user would type it
    r["command"] = " ".join(["edgelstm", *args[3:]]).replace(str(out), "OUT")
    r["value"] = wall
    r["unit"] = "s"
    r["exit_code"] = proc.returncode
    if proc.returncode != 0:
        r["status"] = "failed"
        r["notes"].append((proc.stderr.strip().splitlines() or ["no stderr"])[-1][:200])
    return [r]
