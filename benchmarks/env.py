"""The machine and software a benchmark run used (recorded next to every result)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

# Pin every math library to one thread before any of them is imported.
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
}


def pin_threads() -> None:
    """Set the single-thread environment (call before importing numpy/TF)."""
    for key, value in THREAD_ENV.items():
        os.environ.setdefault(key, value)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for the kernels measured here."""
    wanted = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "neon", "asimd"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tool_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None


def describe(threads: int) -> dict[str, Any]:
    """Date, machine, versions and thread settings of this run."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "simd": cpu_flags(),
            "os": f"{platform.system()} {platform.release()}",
            "loadavg_at_start": [round(v, 2) for v in load],
        },
        "versions": {
            "python": platform.python_version(),
            "edgelstm": _version("edgelstm"),
            "tensorflow": _version("tensorflow"),
            "keras": _version("keras"),
            "ai_edge_litert": _version("ai-edge-litert"),
            "onnxruntime": _version("onnxruntime"),
            "tf2onnx": _version("tf2onnx"),
            "numpy": _version("numpy"),
            "gcc": _tool_version(["gcc", "--version"]),
            "arm_none_eabi_gcc": _tool_version(["arm-none-eabi-gcc", "--version"]),
            "qemu": _tool_version(["qemu-system-arm", "--version"]),
        },
        "threads": {
            "litert_num_threads": threads,
            "onnxruntime_intra_op": threads,
            "onnxruntime_inter_op": 1,
            "tensorflow_intra_op": threads,
            "tensorflow_inter_op": 1,
            "env": {k: os.environ.get(k) for k in THREAD_ENV if "THREADS" in k},
            "affinity": sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
        },
    }
