"""Native measurements: the machine's peak MAC rate (arithmetic floor) and edgelstm's C engine
(host gcc -O3 latency; Cortex-M4 instructions under qemu), through benchmarks.cengine."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


@dataclass
class Peak:
    """Peak multiply-accumulates per second of one core, and how it was measured."""

    fp32_mac_per_s: float
    int8_mac_per_s: float | None
    method: str
    samples: dict[str, list[float]]


def measure_peak(quick: bool) -> Peak:
    """Tight FMA / int8-dot loops in C (-O3 -march=native); numpy GEMM if there is no gcc."""
    gcc = shutil.which("gcc")
    if gcc:
        with tempfile.TemporaryDirectory() as tmp:
            exe = Path(tmp) / "peak_mac"
            subprocess.run(
                [gcc, "-O3", "-march=native", "-o", str(exe), str(HERE / "peak_mac.c")],
                check=True,
                capture_output=True,
            )
            args = ["3", "2000000", "20000"] if quick else ["9", "20000000", "200000"]
            out = subprocess.run([str(exe), *args], check=True, capture_output=True, text=True)
        data = json.loads(out.stdout)
        return Peak(
            fp32_mac_per_s=max(data["fp32_mac_per_s"]),
            int8_mac_per_s=max(data["int8_mac_per_s"]),
            method=f"C loops, gcc -O3 -march=native, best of {args[0]} repeats: fp32 = 12 "
            f"independent {data['fp32_lanes']}-lane FMA chains; int8 = {data['int8_method']}",
            samples={k: v for k, v in data.items() if isinstance(v, list)},
        )
    return _numpy_peak(quick)


def _numpy_peak(quick: bool) -> Peak:
    """Fallback: float32 GEMM through numpy's BLAS on one thread (stated as such)."""
    import time

    n = 256 if quick else 512
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    rates = []
    for _ in range(3 if quick else 9):
        t0 = time.perf_counter()
        a @ a
        rates.append(n**3 / (time.perf_counter() - t0))
    return Peak(max(rates), None, "numpy float32 GEMM (no gcc found)", {"fp32_mac_per_s": rates})


# ---------------------------------------------------------------- C engine


def cengine_step(tflite: Path, manifest: Any, *, repeats: int, inner: int) -> dict[str, Any]:
    """The step model exported as C, compiled with gcc -O3, timed natively (µs per step).

    Returns median/min/max over `repeats` batches of `inner` steps, or {"error": ...}.
    """
    from benchmarks import cengine as bench

    if shutil.which("gcc") is None:
        return {"error": "not measured: no gcc on PATH"}
    try:
        return bench.native_step_latency(
            Path(tflite),
            manifest=manifest,
            repeats=repeats,
            inner=inner,
            opt="-O3 -march=native",  # as the peak-MAC loops that set the floor
        )
    except Exception as exc:  # recorded in the table; one failure must not end the suite
        return {"error": f"not measured: C engine failed ({type(exc).__name__}: {str(exc)[:200]})"}


def cengine_qemu(tflite: Path, manifest: Any) -> dict[str, Any]:
    """Instructions per step and per MAC on the emulated Cortex-M4, flash, RAM, parity."""
    from benchmarks import cengine as bench

    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        return {"error": "not measured: qemu-system-arm / arm-none-eabi-gcc missing"}
    try:
        return bench.qemu_step_cost(Path(tflite), manifest=manifest)
    except Exception as exc:
        return {"error": f"not measured: qemu run failed ({type(exc).__name__}: {str(exc)[:200]})"}


def lstm64_step(work: Path) -> tuple[Path, dict] | dict[str, Any]:
    """Issue #7's reference model: a seeded LSTM(64) over 64 inputs, int8 step + manifest."""
    from benchmarks import cengine as bench

    try:
        return bench.make_lstm_step(work / "lstm64")
    except Exception as exc:
        return {"error": f"not built: {type(exc).__name__}: {str(exc)[:200]}"}
