"""What every suite shares: the run context, row records, the conversions they time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import models as M
from benchmarks import native
from benchmarks.runners import Timing
from benchmarks.timing import Budget

Log = Callable[[str], None]


@dataclass
class Context:
    """Shared state of one run."""

    work: Path
    quick: bool
    budget: Budget
    seq_budget: Budget
    peak: native.Peak
    log: Log
    conversions: dict[str, Any] = field(default_factory=dict)


def row(suite: str, model: str, system: str, **kw: Any) -> dict[str, Any]:
    base = {
        "suite": suite,
        "model": model,
        "system": system,
        "runtime": "",
        "status": "measured",
        "raw": None,
        "python": None,
        "macs": None,
        "size_bytes": None,
        "notes": [],
    }
    base.update(kw)
    return base


def _timed(r: dict[str, Any], t: Timing) -> dict[str, Any]:
    r["raw"] = t.raw.to_dict() if t.raw else None
    r["python"] = t.python.to_dict() if t.python else None
    r["notes"] = r["notes"] + t.notes
    return r


def _guard(
    rows: list[dict[str, Any]], r: dict[str, Any], fn: Callable[[], Timing], log: Log
) -> None:
    """Run one measurement; a failure becomes a 'failed' row with the reason, not a crash."""
    try:
        rows.append(_timed(r, fn()))
    except Exception as exc:
        r["status"] = "failed"
        r["notes"] = [*r["notes"], f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"]
        log(f"  {r['system']}: failed ({type(exc).__name__})")
        rows.append(r)


# ---------------------------------------------------------------- conversions


def edgelstm_artifacts(ctx: Context, bm: M.BenchModel, quants: list[str]) -> tuple[Path, Any]:
    """edgelstm convert of the model at its own length: sequence and step artifacts."""
    for (key, done), value in ctx.conversions.items():
        if key == f"{bm.key}:native" and set(quants) <= set(done):
            return value  # an earlier conversion already made these artifacts
    out = ctx.work / f"conv_{bm.key}_{len(ctx.conversions)}"
    ctx.log(f"edgelstm convert {bm.path.name} ({', '.join(quants)})")
    manifest = M.convert(bm.path, out, quants=quants, variants=None, calibration=bm.calibration)
    ctx.conversions[(f"{bm.key}:native", tuple(quants))] = (out, manifest)
    return out, manifest


def fused_t1_artifacts(ctx: Context, bm: M.BenchModel) -> tuple[Path, Any]:
    """edgelstm's sequence variant at seq_len 1: the fused op stepped by its variable state."""
    key = (f"{bm.key}:t1", ())
    if key not in ctx.conversions:
        var = M.reshaped_copy(bm, ctx.work, None, None)
        cal = M.sliced_calibration(bm, ctx.work, 1)
        out = ctx.work / f"conv_{bm.key}_t1"
        ctx.log(f"edgelstm convert {bm.key} --seq-len 1 --variant sequence")
        manifest = M.convert(
            var, out, quants=["float", "int8"], variants=["sequence"], calibration=cal, seq_len=1
        )
        ctx.conversions[key] = (out, manifest)
    return ctx.conversions[key]


def plain_jobs(ctx: Context, bms: list[tuple[M.BenchModel, int, bool]]) -> dict[str, M.PlainResult]:
    """TFLiteConverter.from_keras_model float and int8 of each (model, seq_len, stateful).

    All jobs share one crash-isolated worker. Job ids: <key>_t<T>[s]/<quant>.
    """
    jobs = []
    for bm, t, stateful in bms:
        src = M.reshaped_copy(bm, ctx.work, t, 1, stateful=stateful)
        cal = M.sliced_calibration(bm, ctx.work, t) if t != bm.seq_len else bm.calibration
        for q in ("float", "int8"):
            jobs.append((f"{bm.key}_t{t}{'s' if stateful else ''}/{q}", src, q, cal))
    ctx.log(f"plain TFLiteConverter on {len(jobs)} job(s), crash-isolated")
    return M.plain_convert(jobs, ctx.work / "plain")


def _art(outdir: Path, manifest: Any, variant: str, quant: str) -> tuple[Path, Any] | None:
    try:
        art = manifest.artifact(variant, quant)
    except KeyError:
        return None
    return outdir / art.file, art
