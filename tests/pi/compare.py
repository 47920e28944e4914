"""Compare an emulated ARM run of the Pi userland check with the x86-64 reference run.

Usage: python tests/pi/compare.py OUTDIR ARCH      (OUTDIR/<arch>/ and OUTDIR/x86_64/ hold the
files tests/pi_userland_check.sh wrote). Prints one line per check and a JSON summary to
OUTDIR/<arch>/summary.json; exits 1 when an asserted check fails.

What is asserted, and why:
- `inspect --json`: identical to x86 (reading a flatbuffer is platform independent).
- `stream` outputs: float models within 1e-5 (absolute) of x86 LiteRT; int8 models within the
  per-arch LSB bound below (in units of the output scale). The LSB distance and the share of
  differing values are printed either way, so a kernel-set difference shows up as a number.
  Measured (96 steps, state reset every 32), so the int8 bound is per arch
  (EDGELSTM_PI_INT8_MAX_LSB overrides; summary.json records the bound used):
  - arm64, ai-edge-litert 2.3.0 as on x86, XNNPACK applied on both: echo_step_int8 0 LSB;
    tiny_step_int8 1 LSB on 1 of 288 outputs. The aarch64 and x86-64 int8 kernels round
    differently in places (the known 1-3 LSB spread between TFLite kernel sets): 1 LSB asserted.
  - armhf, tflite-runtime 2.14 (an older TFLite release; XNNPACK did not apply under emulation):
    echo_step_int8 0 LSB; tiny_step_int8 1 LSB on 22 of 288 (x86 tflite-runtime 2.14 is itself
    1 LSB from x86 LiteRT on this model): a kernel-set difference, not emulation. 1 LSB asserted.
  A real fault (a wrong scale, a state not carried, a misread tensor) shows as many LSB or as a
  float beyond 1e-5 and fails.
- `profile --json`: no error, the documented runtime ran, and the accuracy over the committed
  eval set equals x86's: exactly for float models; for int8 models within 2 predictions of the
  eval set (1 LSB can flip a near-tied argmax: armhf tiny_step_int8 scored 122/128 vs x86 121/128).
  Latencies are NOT compared: emulated timings say nothing about a Pi.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

FLOAT_TOL = 1e-5
# int8 distance allowed from x86 LiteRT, per arch (see the module docstring for the measurements).
INT8_MAX_LSB = {"arm64": 1, "armhf": 1}
# The interpreter each platform's documented extra installs.
RUNTIME = {"x86_64": "litert", "arm64": "litert", "armhf": "tflite-runtime"}


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _y_scale(info: dict[str, Any]) -> float:
    """The output scale of a step model's prediction tensor (the output that is not a state)."""
    states = {s["output"] for s in info.get("states", [])}
    ys = [o for o in info["outputs"] if o["name"] not in states]
    return float(ys[0].get("scale") or 0.0) if ys else 0.0


def _predictions(result: dict[str, Any]) -> int:
    """How many predictions an accuracy figure counts: sequences x steps for a step model."""
    n = int(result.get("accuracy_samples") or 1)
    return n * int(result.get("seq_len") or 1) if result.get("variant") == "step" else n


def main(argv: list[str]) -> int:
    """Run the comparison; return the exit code."""
    outdir, arch = Path(argv[1]), argv[2]
    ref, got = outdir / "x86_64", outdir / arch
    max_lsb = int(os.environ.get("EDGELSTM_PI_INT8_MAX_LSB", INT8_MAX_LSB.get(arch, 0)))
    failures: list[str] = []
    summary: dict[str, Any] = {"arch": arch, "int8_max_lsb_asserted": max_lsb, "models": {}}

    def check(ok: bool, line: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {arch}: {line}")
        if not ok:
            failures.append(line)

    for ref_inspect in sorted(ref.glob("inspect_*.json")):
        stem = ref_inspect.stem.removeprefix("inspect_")
        entry: dict[str, Any] = summary["models"].setdefault(stem, {})
        path = got / ref_inspect.name
        if not path.is_file():
            check(False, f"{stem}: no inspect output")
            continue
        info = _load_json(ref_inspect)
        same = _load_json(path) == info
        entry["inspect_identical"] = same
        check(same, f"{stem}: inspect --json identical to x86")

        ref_stream = ref / f"stream_{stem}.npy"
        if not ref_stream.is_file():
            continue  # a sequence model: inspect and profile only
        got_stream = got / ref_stream.name
        if not got_stream.is_file():
            check(False, f"{stem}: no stream output")
            continue
        a, b = np.load(ref_stream), np.load(got_stream)
        if a.shape != b.shape:
            check(False, f"{stem}: stream shape {b.shape} != x86 {a.shape}")
            continue
        diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
        scale = _y_scale(info)
        entry["stream_steps"] = int(a.shape[0])
        entry["stream_max_abs_diff"] = diff
        if scale:  # integer output: count quantization steps
            lsb = int(np.rint(np.abs(a.astype(np.float64) - b) / scale).max())
            frac = float((np.abs(a - b) > scale / 2).mean())
            entry.update(stream_max_lsb=lsb, stream_frac_differing=frac)
            check(
                lsb <= max_lsb,
                f"{stem}: stream int8 max {lsb} LSB from x86 ({frac:.1%} of values differ; "
                f"asserted <= {max_lsb}) over {a.shape[0]} steps",
            )
        else:
            check(
                diff <= FLOAT_TOL,
                f"{stem}: stream float max |diff| {diff:.2e} (<= {FLOAT_TOL:g}) over {a.shape[0]} steps",
            )

    # stdin CSV lines (tiny_step_int8, two chunks split by a blank line = a state reset).
    ref_csv, got_csv = ref / "stream_stdin.csv", got / "stream_stdin.csv"
    if got_csv.is_file():
        a = np.loadtxt(ref_csv, delimiter=",", ndmin=2)
        b = np.loadtxt(got_csv, delimiter=",", ndmin=2)
        scale = _y_scale(_load_json(ref / "inspect_tiny_step_int8.json"))
        lsb = int(np.rint(np.abs(a - b) / scale).max()) if a.shape == b.shape else -1
        check(
            a.shape == b.shape == (4, 3) and bool((b[:2] == b[2:]).all()) and 0 <= lsb <= max_lsb,
            f"stream stdin CSV: blank line resets the state; {lsb} LSB from x86",
        )
    else:
        check(False, "no stream stdin output")

    for ref_prof in sorted(ref.glob("profile_*.json")):
        got_prof = got / ref_prof.name
        if not got_prof.is_file():
            check(False, f"no {ref_prof.name}")
            continue
        by_model = {Path(r["model"]).name: r for r in _load_json(ref_prof)["results"]}
        prof = _load_json(got_prof)
        summary["environment"] = prof.get("environment", {})
        for r in prof["results"]:
            name = Path(r["model"]).name
            entry = summary["models"].setdefault(Path(name).stem, {})
            entry.update(
                runtime=r.get("runtime"),
                xnnpack=r.get("xnnpack"),
                notes=r.get("notes", []),
                per_step_p50_us_emulated=r.get("per_step_p50_us"),
            )
            want = RUNTIME.get(arch, "litert")
            check(
                not r.get("error") and r.get("runtime") == want,
                f"{name}: profile ran on {r.get('runtime')} (want {want}; "
                f"{r.get('error') or 'no error'})",
            )
            x86 = by_model.get(name, {})
            entry["accuracy"], entry["accuracy_x86"] = r.get("accuracy"), x86.get("accuracy")
            acc, ref_acc = r.get("accuracy"), x86.get("accuracy")
            tol = 0.0
            if r.get("quantization") == "int8" and x86:
                tol = 2.0 / _predictions(x86)
            check(
                acc is not None and ref_acc is not None and abs(acc - ref_acc) <= tol,
                f"{name}: profile accuracy {acc} vs x86 {ref_acc} (|diff| <= {tol:.4f}) "
                f"[{r.get('runtime')}, xnnpack={r.get('xnnpack')}; "
                f"p50 {r.get('per_step_p50_us') or 0:.1f} us/step (emulated; not Pi speed)]",
            )
    summary["xnnpack_probe"] = {
        p.stem.removeprefix("xnnpack_probe_"): p.read_text(encoding="utf-8").strip()
        for p in sorted(got.glob("xnnpack_probe_*.verdict"))
    }
    summary["failures"] = failures
    (got / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
