"""Every model on every requested runtime, and how their latencies compare."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from edgelstm.errors import BadInputError, EdgeLSTMError
from edgelstm.profile.inputs import load_data
from edgelstm.profile.measure import profile_model
from edgelstm.profile.results import ProfileConfig, ProfileResult, Progress
from edgelstm.runtime.backends import resolve_runtime


def profile_all(
    models: list[str | Path],
    cfg: ProfileConfig,
    progress: Progress = lambda _m: None,
) -> list[ProfileResult]:
    """Every model on every requested runtime. With one combination, errors propagate; with
    several, a failing combination becomes a row with `error` set (others still run)."""
    from edgelstm.runtime.backends import available_runtimes

    runtimes: list[str | None] = []
    for r in cfg.runtimes:
        if r == "all":
            runtimes.extend(x.value for x in available_runtimes())
        else:
            runtimes.append(None if r == "auto" else r)
    runtimes = list(dict.fromkeys(runtimes))
    for r in runtimes:
        resolve_runtime(r)  # unknown or missing runtime: fail before measuring anything
    data = load_data(cfg.data) if cfg.data else None
    combos = [(m, r) for m in models for r in runtimes]
    results = []
    for m, r in combos:
        try:
            results.append(profile_model(m, r, cfg, data, progress))
        except EdgeLSTMError as exc:
            if len(combos) == 1:
                raise
            rt = resolve_runtime(r).value
            progress(f"{Path(m).name} [{rt}]: failed: {exc}")
            results.append(ProfileResult(model=str(m), runtime=rt, error=str(exc)))
    if all(res.error for res in results):
        raise BadInputError(f"every profile failed; first: {results[0].error}")
    return results


def comparison(results: list[ProfileResult]) -> list[dict[str, Any]]:
    """Per-step p50 latency ratios against the first and the fastest successful row."""
    ok = [r for r in results if not r.error]
    if not ok:
        return []
    first = ok[0].per_step_p50_us
    fastest = min(r.per_step_p50_us for r in ok)
    return [
        {
            "model": r.model,
            "runtime": r.runtime,
            "per_step_p50_us": r.per_step_p50_us,
            "vs_first": r.per_step_p50_us / first if first else None,
            "vs_fastest": r.per_step_p50_us / fastest if fastest else None,
        }
        for r in ok
    ]


def environment() -> dict[str, Any]:
    """Versions and machine facts that latency numbers depend on."""
    from importlib import metadata

    versions = {}
    for pkg in ("ai-edge-litert", "tflite-runtime", "tensorflow", "tflite-micro", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": versions,
    }
