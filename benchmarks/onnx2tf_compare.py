"""edgelstm vs onnx2tf on the same PyTorch-exported .onnx files (tests/data/onnx/).

    python -m benchmarks.onnx2tf_compare [--onnx2tf PATH] [--out DIR]

For each file: does the converter finish, does the sequence model keep the recurrence fused
(UNIDIRECTIONAL_SEQUENCE_LSTM / no WHILE), is there a streaming (explicit-state) model, op count,
size, LiteRT latency per sequence (median of repeats, 1 thread, same run) and max |error| against
onnxruntime. onnx2tf is not a dependency: install it in its own venv and pass --onnx2tf (or put
it on PATH); without it its columns say so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "onnx"
FILES = ["lstm_last", "lstm2_seq", "gru_seq", "bilstm_final", "embed_gru", "conv_causal_lstm"]
T, D = 12, 4
REPEATS = 200


def _interp(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


def _run(it: Any, x: np.ndarray) -> np.ndarray:
    inp = it.get_input_details()[0]
    shape = tuple(int(v) for v in inp["shape"])
    if shape != x.shape and x.ndim == 3 and shape == (x.shape[0], x.shape[2], x.shape[1]):
        x = x.transpose(0, 2, 1)  # onnx2tf moved the features in front of time
    it.set_tensor(inp["index"], x.astype(inp["dtype"]).reshape(shape))
    it.invoke()
    return np.asarray(it.get_tensor(it.get_output_details()[0]["index"]), np.float64)


def _latency_us(it: Any, x: np.ndarray) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        _run(it, x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def _ops(path: Path) -> dict[str, int]:
    from edgelstm.tflite_info import read_tflite

    return dict(read_tflite(path.read_bytes()).op_counts)


def _describe(path: Path, x: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    ops = _ops(path)
    it = _interp(path)
    y = _run(it, x)
    err = float(np.abs(y.reshape(ref.shape) - ref).max()) if y.size == ref.size else None
    return {
        "ops": sum(ops.values()),
        "fused": ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
        + ops.get("BIDIRECTIONAL_SEQUENCE_LSTM", 0),
        "while": ops.get("WHILE", 0),
        "size": path.stat().st_size,
        "latency_us": _latency_us(it, x),
        "max_abs_vs_ort": err,
        "inputs": len(it.get_input_details()),
    }


def _edgelstm(onnx_path: Path, work: Path, x: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    from edgelstm.convert import ConvertConfig, convert_model

    out = work / "edgelstm"
    try:
        m = convert_model(onnx_path, out, ConvertConfig(seq_len=T, verify_samples=4))
    except Exception as exc:  # a refusal is a result here
        return {"ok": False, "error": str(exc).splitlines()[0][:160]}
    arts = {a.variant.value: a for a in m.artifacts}
    res = {"ok": True, **_describe(out / arts["sequence"].file, x, ref)}
    res["streaming"] = "step" in arts
    return res


def _onnx2tf(exe: str | None, onnx_path: Path, work: Path, x: np.ndarray, ref: np.ndarray) -> dict:
    if exe is None:
        return {"ok": False, "error": "onnx2tf not installed"}
    out = work / "onnx2tf"
    # onnx2tf simplifies its input file in place (onnxsim): give it a copy.
    src = work / onnx_path.name
    shutil.copyfile(onnx_path, src)
    name = "x:1,12" if x.dtype.kind in "iu" else "x:1,12,4"
    env = dict(os.environ, PATH=f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [exe, "-i", str(src), "-o", str(out), "-ois", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    tfl = out / f"{onnx_path.stem}_float32.tflite"
    if proc.returncode != 0 or not tfl.is_file():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Error" in ln]
        return {"ok": False, "error": (lines[-1] if lines else f"exit {proc.returncode}")[:160]}
    res = {"ok": True, **_describe(tfl, x, ref)}
    res["streaming"] = False  # one input (x): no state in or out
    return res


def markdown(version: str | None, rows: list[dict[str, Any]]) -> str:
    """The comparison table."""
    lines = [
        f"# edgelstm vs onnx2tf {version or '(not installed)'} on tests/data/onnx (T={T}, float32, "
        f"LiteRT 1 thread, median of {REPEATS})",
        "",
        "| model | tool | ok | fused LSTM | WHILE | streaming | ops | size (B) | latency (us) | max abs vs ORT |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        for tool in ("edgelstm", "onnx2tf"):
            v = r[tool]
            if not v["ok"]:
                lines.append(f"| {r['model']} | {tool} | no: {v['error']} | | | | | | | |")
                continue
            err = "n/a" if v["max_abs_vs_ort"] is None else f"{v['max_abs_vs_ort']:.2g}"
            lines.append(
                f"| {r['model']} | {tool} | yes | {v['fused']} | {v['while']} | "
                f"{'yes' if v['streaming'] else 'no'} | {v['ops']} | {v['size']} | "
                f"{v['latency_us']:.0f} | {err} |"
            )
    lines += [
        "",
        "edgelstm: the sequence artifact (its step sibling is what `streaming` refers to). "
        "onnx2tf: `onnx2tf -i FILE -ois x:1,12,4`, its float32 .tflite, run in its own venv on "
        "this repository's TensorFlow/tf_keras 2.21 (not a TensorFlow onnx2tf pins), so its "
        "failures may be specific to that pairing. TFLite has no fused GRU op: both tools lower "
        "a GRU to plain ops (edgelstm unrolled, onnx2tf in a WHILE loop).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx2tf", default=shutil.which("onnx2tf"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--models", default=",".join(FILES), help="comma-separated fixture names")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    version = None
    if args.onnx2tf:
        pip = Path(args.onnx2tf).parent / "pip"
        show = subprocess.run([str(pip), "show", "onnx2tf"], capture_output=True, text=True)
        version = next(
            (ln.split()[-1] for ln in show.stdout.splitlines() if ln.startswith("Version")), None
        )
    rows = []
    for name in args.models.split(","):
        path = DATA / f"{name}.onnx"
        rng = np.random.default_rng(0)
        x = (
            rng.integers(0, 20, (1, T)).astype(np.int64)
            if name.startswith("embed")
            else rng.standard_normal((1, T, D)).astype(np.float32)
        )
        ref = np.asarray(ort.InferenceSession(str(path)).run(None, {"x": x})[0], np.float64)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            xe = x.astype(np.int32) if x.dtype.kind in "iu" else x
            rows.append(
                {
                    "model": name,
                    "edgelstm": _edgelstm(path, work, xe, ref),
                    "onnx2tf": _onnx2tf(args.onnx2tf, path, work, x, ref),
                }
            )
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx2tf.json").write_text(
        json.dumps({"onnx2tf_version": version, "rows": rows}, indent=2) + "\n"
    )
    text = markdown(version, rows)
    (args.out / "onnx2tf.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
