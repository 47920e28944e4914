"""The native runtime (edgelstm.runtime.native) against LiteRT, ONNX Runtime and the arithmetic
floor, in one run: `python -m benchmarks.native_runtime [--quick] [--out DIR] [--repeat N]`
(standalone), or through benchmarks.run (which passes its models, peak MAC rate and ONNX Runtime
rows).

Per step model and quantization:
  native chunked   one push_many C call per `CHUNK` steps, ÷ steps (no Python per step)
  native push      one ctypes call per step (the engine step + ctypes overhead)
  LiteRT raw       interpreter.invoke() with XNNPACK (its default), state tensors already set
  floor            MACs / the measured peak MAC rate (benchmarks/peak_mac.c)
and for the sequence model: T steps through push_many per sequence (state reset each time)
against ONNX Runtime's fused LSTM graph from the same run. Median of repeated batches.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.timing import Budget, Stats, measure

CHUNK = 1000
ORT_SYSTEM = "(c) ONNX Runtime, edgelstm tf_keras graph"


def _inputs(info: Any, n: int, seed: int = 0) -> np.ndarray:
    """n float samples for the step model's x (token ids in range for an Embedding front-end)."""
    x = next(t for t in info.inputs if t.name == "x")
    d = int(np.prod(x.shape)) if x.shape else 1
    rng = np.random.default_rng(seed)
    if x.dtype.startswith("int") and not x.scale:
        from edgelstm.runtime.stream import embedding_rows

        return rng.integers(0, embedding_rows(info) or 2, (n, d)).astype(np.float64)
    return rng.standard_normal((n, d)).astype(np.float32)


def native_timings(step: Path, budget: Budget, seq_len: int | None = None) -> dict[str, Any]:
    """Chunked and single-push per-step time of the native engine; per sequence if seq_len."""
    from edgelstm.runtime import StepRunner
    from edgelstm.runtime.backends import quantize

    t0 = time.perf_counter()
    runner = StepRunner(step, "native")
    load_s = time.perf_counter() - t0
    b = runner.backend
    xi = runner.x_info
    xs = _inputs(runner.info, CHUNK)
    raw = np.ascontiguousarray(quantize(xs, xi.dtype, xi.scale, xi.zero_point), b.engine.x_dtype)
    ys = np.empty((CHUNK, b.engine.y_size), b.engine.y_dtype)
    eng, state = b.engine, b.state
    run, status = eng.lib.eln_run, np.zeros(1, np.int32)
    # raw pointers once: numpy's .ctypes.data costs about a microsecond per access
    p_state, p_raw, p_ys, p_status = (a.ctypes.data for a in (state, raw, ys, status))

    def chunk() -> None:
        run(p_state, p_raw, p_ys, CHUNK, p_status)

    b.set_raw("x", raw[0])
    chunked = measure(chunk, Budget(budget.warmup // 10 + 1, budget.repeats, budget.batch_seconds))
    single = measure(b.invoke, budget)
    out: dict[str, Any] = {
        "chunked_us_per_step": chunked.median_us / CHUNK,
        "chunked": _per(chunked, CHUNK),
        "push_us": single.median_us,
        "push": single.to_dict(),
        "simd": eng.simd,
        "load_s": load_s,
        "compile": b.build.meta.get("compile"),
        "macs_per_step": b.build.meta.get("macs_per_step"),
    }
    if seq_len:
        seq = raw[:seq_len] if len(raw) >= seq_len else np.resize(raw, (seq_len, raw.shape[1]))
        seq = np.ascontiguousarray(seq)
        sy = np.empty((seq_len, eng.y_size), eng.y_dtype)
        p_seq, p_sy = seq.ctypes.data, sy.ctypes.data
        memset, nbytes = ctypes.memset, state.nbytes

        def sequence() -> None:
            memset(p_state, 0, nbytes)  # a new sequence: zero state
            run(p_state, p_seq, p_sy, seq_len, p_status)

        s = measure(sequence, budget)
        out["sequence_us"] = s.median_us
        out["sequence"] = s.to_dict()
    return out


def _per(s: Stats, n: int) -> dict[str, Any]:
    d = s.to_dict()
    for k in ("median_us", "min_us", "max_us"):
        d[k] = d[k] / n
    d["steps_per_call"] = n
    return d


def litert_raw_us(step: Path, budget: Budget) -> float:
    from benchmarks import runners

    xs = _inputs(runners.info_of(step), 64)
    t = runners.litert_step(step, xs, budget, xnnpack=True)
    return t.raw.median_us if t.raw else float("nan")


def ort_sequence_us(bm: Any, budget: Budget) -> float | None:
    """ONNX Runtime (1 thread) on tf2onnx of edgelstm's tf_keras rebuild of `bm`: the same
    system as benchmarks.run's "(c) ONNX Runtime, edgelstm tf_keras graph" row."""
    from benchmarks import runners
    from edgelstm._tf import import_tf
    from edgelstm.convert import build
    from edgelstm.convert.graph import parse_model
    from edgelstm.convert.load import load_keras_model

    tf = import_tf()
    model, fw = load_keras_model(bm.path)
    tk_model = build.build_sequence_model(parse_model(model, fw))
    fn = tf.function(lambda x: tk_model(x, training=False))
    onnx_model, _ops = runners.onnx_from_function(
        fn, [("x", (1, bm.seq_len, bm.in_dim), "float32")]
    )
    with np.load(bm.calibration) as data:
        seq = data["x"][0].astype(np.float32)
    t = runners.ort_sequence(onnx_model, seq[None], budget)
    return t.raw.median_us if t.raw else None


def _ort_us(results: dict[str, Any] | None) -> float | None:
    for r in (results or {}).get("sequence", []):
        if r.get("system") == ORT_SYSTEM and r.get("raw"):
            return float(r["raw"]["median_us"])
    return None


def suite(
    steps: dict[str, dict[str, Path]],
    sequence: tuple[str, dict[str, Path], int] | None,
    peak: Any,
    budget: Budget,
    results: dict[str, Any] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """steps: model key -> {quant: step .tflite}; sequence: (key, {quant: step}, T)."""
    rows: list[dict[str, Any]] = []
    for key, by_quant in steps.items():
        for quant, path in by_quant.items():
            log(f"native runtime: {key} {quant}")
            try:
                nat = native_timings(path, budget)
                lite = litert_raw_us(path, budget)
            except Exception as exc:  # one failure is a row, not the end of the suite
                rows.append({"model": key, "quant": quant, "error": f"{type(exc).__name__}: {exc}"})
                continue
            rate = peak.int8_mac_per_s if quant == "int8" else peak.fp32_mac_per_s
            floor = nat["macs_per_step"] / rate * 1e6 if rate and nat["macs_per_step"] else None
            row = {
                "model": key,
                "quant": quant,
                **nat,
                "litert_raw_us": lite,
                "floor_us": floor,
                "litert_over_native_chunked": lite / nat["chunked_us_per_step"],
                "litert_over_native_push": lite / nat["push_us"],
                "native_chunked_over_floor": nat["chunked_us_per_step"] / floor if floor else None,
            }
            rows.append(row)
    if sequence is not None:
        key, by_quant, seq_len = sequence
        ort = _ort_us(results)
        for quant, path in by_quant.items():
            log(f"native runtime: {key} {quant} sequence (T={seq_len})")
            try:
                nat = native_timings(path, budget, seq_len)
            except Exception as exc:
                rows.append({"model": key, "quant": quant, "error": f"{type(exc).__name__}: {exc}"})
                continue
            rows.append({"model": key, "quant": quant, "seq_len": seq_len, **nat, "ort_us": ort})
    return {"rows": rows, "targets": _targets(rows), "chunk": CHUNK}


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    for r in rows:
        if "error" in r:
            continue
        if "seq_len" not in r:
            targets += _step_targets(r["model"], r["quant"], r)
            continue
        ort = r.get("ort_us")
        targets.append(
            {
                "target": f"{r['model']} {r['quant']}: native sequence (T={r['seq_len']}) faster "
                "than ONNX Runtime's LSTM (same run)",
                "value": f"{r['sequence_us']:.1f} µs vs "
                + (f"{ort:.1f} µs" if ort else "not measured"),
                "met": (r["sequence_us"] < ort) if ort else None,
            }
        )
    return targets


# the per-row numbers a repeated suite reports as medians over its runs (ratios included: the
# median of each run's own ratio, so a load change between runs does not mix into one ratio)
_MEDIAN_KEYS = (
    "chunked_us_per_step",
    "push_us",
    "litert_raw_us",
    "floor_us",
    "litert_over_native_chunked",
    "litert_over_native_push",
    "native_chunked_over_floor",
    "sequence_us",
    "ort_us",
)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several whole-suite runs -> one result: per row, the median of each number over the runs
    (the row keeps the first run's other fields, and `runs` with every run's values)."""
    if len(runs) == 1:
        return runs[0]
    rows = []
    for i, first in enumerate(runs[0]["rows"]):
        same = [r["rows"][i] for r in runs if i < len(r["rows"]) and "error" not in r["rows"][i]]
        if "error" in first or len(same) != len(runs):
            rows.append(first)
            continue
        row = dict(first)
        row["runs"] = {}
        for k in _MEDIAN_KEYS:
            vals = [r.get(k) for r in same]
            if all(isinstance(v, (int, float)) for v in vals):
                row[k] = float(np.median(vals))
                row["runs"][k] = vals
        rows.append(row)
    return {"rows": rows, "targets": _targets(rows), "chunk": CHUNK, "repeat": len(runs)}


def _step_targets(key: str, quant: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if key.startswith("lstm128") and quant == "int8":
        ratio = r["litert_over_native_chunked"]
        out.append(
            {
                "target": f"{key} int8: native step ≥ 2× faster than LiteRT+XNNPACK raw invoke",
                "value": f"{ratio:.2f}× (chunked; {r['litert_over_native_push']:.2f}× per ctypes push)",
                "met": ratio >= 2.0,
            }
        )
    if key.startswith("lstm128") and r.get("native_chunked_over_floor"):
        ratio = r["native_chunked_over_floor"]
        out.append(
            {
                "target": f"{key} {quant}: native step within 3× of the {quant} arithmetic floor",
                "value": f"{ratio:.1f}× floor",
                "met": ratio <= 3.0,
            }
        )
    if key.startswith(("echo", "tiny")):
        out.append(
            {
                "target": f"{key} {quant}: native chunked step faster than LiteRT's per-invoke cost",
                "value": f"{r['chunked_us_per_step']:.3f} µs vs {r['litert_raw_us']:.3f} µs",
                "met": r["chunked_us_per_step"] < r["litert_raw_us"],
            }
        )
    return out


def render(res: dict[str, Any], peak: Any) -> str:
    """The markdown section (benchmarks/results/native.md)."""
    lines = [
        "# Native runtime (edgelstm.runtime.native)",
        "",
        f"Peak MAC rate: fp32 {peak.fp32_mac_per_s / 1e9:.1f} GMAC/s, int8 "
        + (f"{peak.int8_mac_per_s / 1e9:.1f} GMAC/s" if peak.int8_mac_per_s else "n/a")
        + f" ({peak.method}). Chunked = one C call per {res['chunk']} steps. Median of "
        "repeated batches; µs per step unless marked."
        + (
            f" The whole suite ran {res['repeat']} times: each number is the median over the "
            "runs, each ratio the median of the runs' own ratios."
            if res.get("repeat", 1) > 1
            else ""
        ),
        "",
        "| model | quant | SIMD | native chunked µs | native push µs | LiteRT raw µs | floor µs "
        "| LiteRT ÷ native | native ÷ floor | sequence µs | ONNX Runtime µs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, fmt: str = ".3g") -> str:
        return "–" if v is None else format(v, fmt)

    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['quant']} | error: {r['error'][:120]} |" + " |" * 8)
            continue
        lines.append(
            f"| {r['model']} | {r['quant']} | {r['simd']} | {f(r['chunked_us_per_step'])} | "
            f"{f(r['push_us'])} | {f(r.get('litert_raw_us'))} | {f(r.get('floor_us'))} | "
            f"{f(r.get('litert_over_native_chunked'), '.2f')} | "
            f"{f(r.get('native_chunked_over_floor'), '.1f')} | {f(r.get('sequence_us'))} | "
            f"{f(r.get('ort_us'))} |"
        )
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for t in res["targets"]:
        met = {True: "met", False: "**MISSED**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {met} |")
    return "\n".join(lines) + "\n"


def _step_paths(outdir: Path, manifest: Any) -> dict[str, Path]:
    out = {}
    for a in manifest.artifacts:
        if a.variant.value == "step" and a.quantization.value in ("float", "int8"):
            out[a.quantization.value] = outdir / a.file
    return out


def main(argv: list[str] | None = None) -> int:
    """Standalone: build the models (tiny with --quick), measure, write OUT/native.{json,md}."""
    from benchmarks import models as M
    from benchmarks import native
    from benchmarks.env import pin_threads

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.native_runtime", description=__doc__
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the whole suite N times (models built once) and report per-row medians: on a "
        "shared, loaded machine one run's ratios move by tens of percent",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    pin_threads()
    budget = (
        Budget(warmup=20, repeats=5, batch_seconds=0.005)
        if args.quick
        else Budget(warmup=200, repeats=21, batch_seconds=0.05)
    )
    with tempfile.TemporaryDirectory(prefix="edgelstm-native-bench-") as tmp:
        work = Path(tmp)
        peak = native.measure_peak(args.quick)
        if args.quick:
            bms = [
                M.random_lstm(
                    "tiny",
                    "tiny",
                    work,
                    units=16,
                    in_dim=8,
                    seq_len=20,
                    out_dim=4,
                    many_to_many=False,
                    one_hot=True,
                )
            ]
            seq_bm = None
        else:
            bms = [
                M.zoo_model("echo", "echo", "echo (zoo)", work),
                M.random_lstm(
                    "lstm128",
                    "LSTM(128), D=40",
                    work,
                    units=128,
                    in_dim=40,
                    seq_len=50,
                    out_dim=8,
                    many_to_many=True,
                ),
            ]
            seq_bm = M.zoo_model("temporal-order", "temporal", "temporal-order (zoo)", work)
        steps = {}
        for bm in [b for b in bms if b is not None]:
            out = work / f"conv_{bm.key}"
            man = M.convert(
                bm.path,
                out,
                quants=["float", "int8"],
                variants=["step"],
                calibration=bm.calibration,
            )
            steps[bm.key] = _step_paths(out, man)
        seq = None
        if seq_bm is not None:
            out = work / "conv_seq"
            man = M.convert(
                seq_bm.path,
                out,
                quants=["float", "int8"],
                variants=["step"],
                calibration=seq_bm.calibration,
            )
            seq = (seq_bm.key, _step_paths(out, man), seq_bm.seq_len)
        ort_rows = []
        if seq_bm is not None:
            try:
                ort = ort_sequence_us(seq_bm, budget)
                ort_rows = [{"system": ORT_SYSTEM, "raw": {"median_us": ort}}] if ort else []
            except Exception as exc:  # recorded as "not measured"
                print(f"ONNX Runtime: {type(exc).__name__}: {exc}", file=sys.stderr)
        res = combine(
            [
                suite(
                    steps,
                    seq,
                    peak,
                    budget,
                    {"sequence": ort_rows},
                    lambda m: print(m, file=sys.stderr),
                )
                for _ in range(args.repeat)
            ]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "native-quick" if args.quick else "native"
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (args.out / f"{name}.md").write_text(render(res, peak))
    print(render(res, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def from_run(ctx: Any, step_models: list[Any], seq_model: Any, results: dict[str, Any]) -> dict:
    """The suite inside benchmarks.run: its models (conversions reused), peak and ORT rows."""
    from benchmarks import suites

    steps = {}
    for bm in step_models:
        outdir, manifest = suites.edgelstm_artifacts(ctx, bm, ["float", "int8"])
        steps[bm.key] = _step_paths(outdir, manifest)
    outdir, manifest = suites.edgelstm_artifacts(ctx, seq_model, ["float", "int8"])
    seq = (seq_model.key, _step_paths(outdir, manifest), seq_model.seq_len)
    return suite(steps, seq, ctx.peak, ctx.budget, results, ctx.log)
