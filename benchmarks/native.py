"""Native measurements: the machine's peak MAC rate (arithmetic floor) and the C engine.

The C engine (edgelstm.export.cengine, written by another helper) is used only when it exists;
otherwise its rows say 'not measured: C engine not available'.
"""

from __future__ import annotations

import importlib
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


def cengine_module() -> Any | None:
    """edgelstm.export.cengine if the C-engine helper has landed it, else None."""
    try:
        return importlib.import_module("edgelstm.export.cengine")
    except ImportError:
        return None


def cengine_available() -> tuple[bool, str]:
    mod = cengine_module()
    if mod is None:
        return False, "not measured: C engine not available (edgelstm.export.cengine missing)"
    if not hasattr(mod, "export_c"):
        return (
            False,
            "not measured: C engine not available (no export_c in edgelstm.export.cengine)",
        )
    if _host_runner(mod) is None:
        return False, "not measured: C engine has no host compile/run helper yet"
    return True, ""


def _host_runner(mod: Any) -> Any | None:
    """Find the C-engine helper's host compile-and-time function, whatever it ended up called."""
    for name in (
        "host_benchmark",
        "benchmark_host",
        "host_bench",
        "bench_host",
        "run_host_benchmark",
    ):
        fn = getattr(mod, name, None)
        if callable(fn):
            return fn
    host = getattr(mod, "host", None)
    if host is not None:
        for name in ("benchmark", "bench", "time_steps"):
            fn = getattr(host, name, None)
            if callable(fn):
                return fn
    return None


def _qemu_runner(mod: Any) -> Any | None:
    for name in ("qemu_instructions_per_mac", "qemu_profile", "qemu_count", "run_qemu"):
        fn = getattr(mod, name, None)
        if callable(fn):
            return fn
    qemu = getattr(mod, "qemu", None)
    if qemu is not None:
        for name in ("instructions_per_mac", "profile", "count_instructions"):
            fn = getattr(qemu, name, None)
            if callable(fn):
                return fn
    return None


def cengine_step(tflite: Path, work: Path, steps: int, repeats: int) -> dict[str, Any]:
    """Export the step model with export_c, compile natively -O3 and time `steps` steps.

    Returns {"samples_us": [...per-step µs per repeat...], "note": str} or {"error": str}.
    """
    ok, why = cengine_available()
    if not ok:
        return {"error": why}
    mod = cengine_module()
    outdir = work / f"c_{tflite.stem}"
    try:
        mod.export_c(str(tflite), str(outdir), name="bench", verify=True, manifest=None)
        res = _host_runner(mod)(
            outdir, steps=steps, repeats=repeats, cflags=["-O3", "-march=native"]
        )
    except Exception as exc:  # another helper's code: record, never crash the suite
        return {"error": f"not measured: C engine failed ({type(exc).__name__}: {str(exc)[:200]})"}
    return _normalise_host_result(res)


def _normalise_host_result(res: Any) -> dict[str, Any]:
    if isinstance(res, dict):
        for key in ("samples_us", "step_us_samples", "per_step_us"):
            if key in res:
                vals = res[key]
                return {"samples_us": list(vals) if isinstance(vals, list) else [float(vals)]}
        if "us_per_step" in res:
            return {"samples_us": [float(res["us_per_step"])]}
    if isinstance(res, (int, float)):
        return {"samples_us": [float(res)]}
    return {"error": f"not measured: unrecognised C-engine host result {type(res).__name__}"}


def cengine_qemu(tflite: Path, work: Path) -> dict[str, Any]:
    """Cortex-M4 (qemu) instructions per MAC from the C-engine helper's qemu function."""
    mod = cengine_module()
    if mod is None or not hasattr(mod, "export_c"):
        return {"error": "not measured: C engine not available"}
    fn = _qemu_runner(mod)
    if fn is None:
        return {"error": "not measured: the C engine has no qemu instruction-count function"}
    outdir = work / f"cq_{tflite.stem}"
    try:
        mod.export_c(str(tflite), str(outdir), name="bench", verify=False, manifest=None)
        res = fn(outdir)
    except Exception as exc:
        return {"error": f"not measured: qemu run failed ({type(exc).__name__}: {str(exc)[:200]})"}
    if isinstance(res, dict):
        return res
    return {"instructions_per_mac": float(res)}
