"""Regenerate the tiny committed .tflite fixtures used by the runtime tests and the TF-free CI check.

    .venv/bin/python tests/data/make_tflite_fixtures.py   # writes into tests/data/

A seeded Keras model (LSTM(8, return_sequences=True) -> Dense(3, softmax), T=8, D=3) goes through
the real `edgelstm convert` (step + sequence, float + int8). Kept: the float step model, the int8
step model, the float sequence model (fused UNIDIRECTIONAL_SEQUENCE_LSTM), their manifest.json
(source path and hash made reproducible) and tiny_eval.npz: `x`
[16, T, D] float32 and `y` [16, T] int labels = the Keras model's own per-step argmax, so accuracy
on it measures agreement with the source model. Needs TensorFlow (the `convert` extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
T, D, UNITS, CLASSES = 8, 3, 8, 3
KEEP = ("tiny_step_float.tflite", "tiny_step_int8.tflite", "tiny_sequence_float.tflite")


def main(outdir: Path = HERE) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from edgelstm._tf import import_tf
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    import_tf()
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((T, D)),
            keras.layers.LSTM(UNITS, return_sequences=True),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(3)
    cal_x = rng.standard_normal((64, T, D)).astype(np.float32)
    eval_x = rng.standard_normal((16, T, D)).astype(np.float32)
    eval_y = model.predict(eval_x, verbose=0).argmax(-1).astype(np.int32)

    with tempfile.TemporaryDirectory(prefix="edgelstm-fixtures-") as tmp:
        tmp_path = Path(tmp)
        keras_path = tmp_path / "tiny.keras"
        model.save(keras_path)
        np.savez(tmp_path / "cal.npz", x=cal_x)
        out = tmp_path / "out"
        cfg = ConvertConfig(
            variants=[Variant.STEP, Variant.SEQUENCE],
            quantizations=[Quantization.FLOAT, Quantization.INT8],
            calibration=str(tmp_path / "cal.npz"),
            name="tiny",
        )
        manifest = convert_model(keras_path, out, cfg).to_dict()
        # The .keras zip carries timestamps: hash the weights instead so the file is reproducible.
        digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights()))
        manifest["source"].update(path="tiny.keras", sha256=digest.hexdigest())
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["file"] in KEEP]
        outdir.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            shutil.copyfile(out / name, outdir / name)
        (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        with open(outdir / "tiny_eval.npz", "wb") as f:
            np.savez(f, x=eval_x, y=eval_y)
    total = sum((outdir / n).stat().st_size for n in KEEP)
    print(f"wrote {len(KEEP)} models ({total} bytes) + manifest.json + tiny_eval.npz to {outdir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
