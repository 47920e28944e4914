"""Microcontroller rows beyond the Cortex-M4 LSTM(64) (issue #16): the int8 C engine on every
emulated core (Cortex-M4, M7, M33, M55; RISC-V rv32imc) and per cell kind (LSTM, GRU, SimpleRNN; D = 8 and 64, H = 64),
beside TFLite Micro + CMSIS-NN on the same .tflite files (step model, and the fused sequence
model per step) in the same run.

qemu counts instructions, not cycles (`-icount shift=0`): every figure here is instructions.
Not run by --quick (each model is a conversion plus several qemu runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORE_NAMES = {
    "m4": "Cortex-M4",
    "m7": "Cortex-M7",
    "m33": "Cortex-M33",
    "m55": "Cortex-M55",
    "rv32": "RISC-V rv32imc, portable C",
}
# (row model key, cell, input width D); H = 64 everywhere, Dense(1) head
MODELS = [
    ("lstm64", "lstm", 64),
    ("lstm64_d8", "lstm", 8),
    ("gru64", "gru", 64),
    ("rnn64", "rnn", 64),
]
TARGET_INSTR_PER_MAC = 1.2  # issue #16, Cortex-M4, H = 64, D = 8 and 64
TARGET_HELIUM_PER_MAC = 0.4  # issue #16, Cortex-M55 (Helium), H = 64
TARGET_PEER_RATIO = 3.0  # >= 3x fewer instructions per step than TFLM + CMSIS-NN's best
FLASH_SLACK = 6 * 1024
RAM_SLACK = 1024
NOTE = "qemu counts instructions, not cycles (-icount shift=0); measured here"


def _engine_row(row: Any, key: str, core: str, step: Path, manifest: dict) -> dict[str, Any]:
    from benchmarks import cengine as bench

    r = row("mcu", key, f"edgelstm C engine int8 ({CORE_NAMES[core]})", runtime="qemu " + core)
    r["role"] = "engine_core"
    try:
        res = bench.qemu_step_cost(step, manifest=manifest, core=core)
    except Exception as exc:  # one failure is a row, not the end of the suite
        r.update(status="not measured", notes=[f"not measured: {type(exc).__name__}: {exc}"[:240]])
        return r
    flash_budget = res["weight_bytes"] + FLASH_SLACK
    ram_budget = res["ram_state_bytes"] + res["gate_buffer_bytes"] + RAM_SLACK
    r["value"] = res["instructions_per_mac"]
    r["unit"] = "instructions/MAC"
    r["detail"] = {
        "instructions_per_step": res["instructions_per_step_median"],
        "macs_per_step": res["macs_per_step"],
        "flash_bytes": res["flash_engine_bytes"],
        "weight_bytes": res["weight_bytes"],
        "ram_bytes": res["ram_total_bytes"],
        "parity_ok": res["parity"]["ok"],
        "max_lsb_vs_reference": res["parity"]["max_lsb_diff"],
        "reference": res["parity"].get("reference"),
        "breakdown": res.get("breakdown", {}).get("groups"),
        "flash_met": res["flash_engine_bytes"] <= flash_budget,
        "flash_budget": flash_budget,
        "ram_met": res["ram_total_bytes"] <= ram_budget,
        "ram_budget": ram_budget,
        "instructions_per_mac_met": res["instructions_per_mac"] <= TARGET_INSTR_PER_MAC,
    }
    r["notes"] = [NOTE]
    return r


def _peer_row(row: Any, key: str, tflite: Path, kind: str, steps: int, mine: int | None) -> dict:
    r = row("mcu", key, f"TFLite Micro + CMSIS-NN int8 ({kind})", runtime="qemu m4")
    r["role"] = "peer"
    try:
        from edgelstm.export.tflm_build import m4_instructions_per_invoke

        # the peer as release firmware is built (-DNDEBUG): its debug build aborts in a fused
        # int8 LSTM (a CMSIS-NN FULLY_CONNECTED DCHECK), so its best configuration needs it
        res = m4_instructions_per_invoke(
            tflite, steps=4 if kind == "fused sequence" else 8, release=True
        )
    except Exception as exc:  # a missing tree or toolchain is a row, not a crash
        r.update(status="not measured", notes=[f"not measured: {type(exc).__name__}: {exc}"[:240]])
        return r
    per_step = res["median"] / steps
    r["value"] = round(per_step)
    r["unit"] = "instructions/step"
    r["detail"] = {
        "instructions_per_step": round(per_step),
        "instructions_per_invoke": res["median"],
        "steps_per_invoke": steps,
        "peer_over_engine": round(per_step / mine, 2) if mine else None,
        "config": res.get("config"),
    }
    r["notes"] = [NOTE]
    if mine:
        r["notes"].append(f"{per_step / mine:.2f}× the engine's instructions per step (M4)")
    return r


def rows(ctx: Any, row: Any) -> list[dict[str, Any]]:
    """Engine rows per core and cell kind, and the peer's rows on the Cortex-M4."""
    from benchmarks import cengine as bench

    if ctx.quick:
        r = row("mcu", "cores", "edgelstm C engine int8 (M7, M33, M55; GRU, SimpleRNN, D=8)")
        r.update(status="not measured", notes=["skipped by --quick"])
        return [r]
    out = []
    for key, cell, d in MODELS:
        ctx.log(f"  {key}: {cell.upper()}(64), D={d}, every core + TFLM peer")
        try:
            step, man = bench.make_lstm_step(ctx.work / f"mcu_{key}", cell=cell, features=d,
                                             sequence=True)  # fmt: skip
        except Exception as exc:
            r = row("mcu", key, "edgelstm C engine int8", status="not measured")
            r["notes"] = [f"not built: {type(exc).__name__}: {exc}"[:240]]
            out.append(r)
            continue
        engine = {core: _engine_row(row, key, core, step, man) for core in CORE_NAMES}
        out.extend(engine.values())
        mine = (engine["m4"].get("detail") or {}).get("instructions_per_step")
        seq = next(
            (
                a
                for a in man["artifacts"]
                if a["variant"] == "sequence" and a["quantization"] == "int8"
            ),
            None,
        )
        out.append(_peer_row(row, key, step, "step model", 1, mine))
        if seq is not None:
            t = int(man.get("model", {}).get("seq_len") or 8)
            out.append(_peer_row(row, key, step.parent / seq["file"], "fused sequence", t, mine))
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #16's verdicts from the rows above (None where a row was not measured)."""
    out = []
    rows_ = results.get("mcu", [])
    for key, cell, d in MODELS:
        eng = next((r for r in rows_ if r.get("role") == "engine_core" and r["model"] == key
                    and r["runtime"] == "qemu m4"), None)  # fmt: skip
        if eng is None:
            continue
        d_ = eng.get("detail") or {}
        if cell == "lstm":
            out.append(
                {
                    "target": f"Cortex-M4 int8 {key} (D={d}) ≤ {TARGET_INSTR_PER_MAC} "
                    "instructions/MAC (qemu instructions, not cycles)",
                    "value": f"{eng['value']:.2f}" if eng.get("value") else "not measured",
                    "met": d_.get("instructions_per_mac_met"),
                }
            )
        m55 = next((r for r in rows_ if r.get("role") == "engine_core" and r["model"] == key
                    and r["runtime"] == "qemu m55"), None)  # fmt: skip
        if cell == "lstm" and m55 is not None:
            out.append(
                {
                    "target": f"Cortex-M55 (Helium) int8 {key} (D={d}) ≤ {TARGET_HELIUM_PER_MAC} "
                    "instructions/MAC (qemu instructions, not cycles)",
                    "value": f"{m55['value']:.2f}" if m55.get("value") else "not measured",
                    "met": m55["value"] <= TARGET_HELIUM_PER_MAC if m55.get("value") else None,
                }
            )
        peers = [r for r in rows_ if r.get("role") == "peer" and r["model"] == key]
        ratios = [(r.get("detail") or {}).get("peer_over_engine") for r in peers]
        # "the peer's best" needs every peer configuration measured: a missing one may be it
        whole = bool(ratios) and all(ratios)
        out.append(
            {
                "target": f"{key}: ≥ {TARGET_PEER_RATIO:g}× fewer instructions/step than TFLite "
                "Micro + CMSIS-NN's best (Cortex-M4, same run)",
                "value": f"{min(ratios):.2f}×" if whole else "not measured (a peer row failed)",
                "met": (min(ratios) >= TARGET_PEER_RATIO) if whole else None,
            }
        )
    return out
