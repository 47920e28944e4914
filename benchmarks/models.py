"""The models measured, and their conversions (edgelstm convert and the plain TFLite converter)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# The model zoo; EDGELSTM_BENCH_ZOO points elsewhere (e.g. to try the suite on other models).
ZOO = Path(os.environ.get("EDGELSTM_BENCH_ZOO", REPO / "models"))


@dataclass
class BenchModel:
    """A Keras model file plus the data to calibrate it with."""

    key: str  # short id used in result rows
    title: str  # what the table calls it
    path: Path
    seq_len: int
    in_dim: int
    units: int
    calibration: Path  # .npz with key x, shape (N, T, D)
    origin: str  # "zoo: models/echo" or "random weights (edgelstm benchmarks)"
    notes: list[str] = field(default_factory=list)


def _keras() -> Any:
    from edgelstm._tf import import_tf

    import_tf()
    import keras

    return keras


def _lstm_units(model: Any) -> int:
    for layer in model.layers:
        inner = getattr(layer, "forward_layer", None) or layer
        if type(inner).__name__ in ("LSTM", "GRU", "SimpleRNN"):
            return int(inner.units)
    return 0


def _calibration_from(model_dir: Path, work: Path, key: str, shape: tuple[int, int]) -> Path:
    """A calibration .npz (key x) for a zoo model: its own file, else inputs of eval.npz."""
    for name in ("calibration.npz", "calib.npz", "train.npz"):
        if (model_dir / name).exists():
            with np.load(model_dir / name) as data:
                if "x" in data:
                    return model_dir / name
    out = work / f"{key}_cal.npz"
    if (model_dir / "eval.npz").exists():
        with np.load(model_dir / "eval.npz") as data:
            np.savez(out, x=data["x"][:128])
    else:
        rng = np.random.default_rng(0)
        np.savez(out, x=rng.standard_normal((64, *shape)).astype(np.float32))
    return out


def zoo_model(name: str, key: str, title: str, work: Path) -> BenchModel | None:
    """models/<name>/model.keras as a BenchModel, or None if it is not there."""
    path = ZOO / name / "model.keras"
    if not path.exists():
        return None
    keras = _keras()
    model = keras.saving.load_model(path, compile=False)
    t, d = model.input_shape[1], model.input_shape[-1]
    notes = []
    if t is None:
        t = 100
        notes.append("model has no fixed length: measured at T=100")
    cal = _calibration_from(path.parent, work, key, (t, d))
    return BenchModel(
        key, title, path, int(t), int(d), _lstm_units(model), cal, f"zoo: models/{name}", notes
    )


def random_lstm(
    key: str,
    title: str,
    work: Path,
    *,
    units: int,
    in_dim: int,
    seq_len: int,
    out_dim: int,
    many_to_many: bool,
    one_hot: bool = False,
    seed: int = 0,
) -> BenchModel:
    """A Keras 3 LSTM with seeded random weights (and seeded calibration data)."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    head = layers.Dense(out_dim) if many_to_many else layers.Dense(out_dim, activation="softmax")
    model = keras.Sequential(
        [
            keras.Input((seq_len, in_dim)),
            layers.LSTM(units, return_sequences=many_to_many),
            head,
        ]
    )
    path = work / f"{key}.keras"
    model.save(path)
    rng = np.random.default_rng(seed)
    if one_hot:
        x = np.eye(in_dim, dtype=np.float32)[rng.integers(0, in_dim, size=(64, seq_len))]
    else:
        x = rng.standard_normal((64, seq_len, in_dim)).astype(np.float32)
    cal = work / f"{key}_cal.npz"
    np.savez(cal, x=x)
    return BenchModel(
        key, title, path, seq_len, in_dim, units, cal, "random weights (seeded, Keras 3)"
    )


def reshaped_copy(
    bm: BenchModel, work: Path, seq_len: int | None, batch: int | None, stateful: bool = False
) -> Path:
    """The same model and weights with input (batch, seq_len, D): None means variable.

    stateful=True also turns every recurrent layer stateful: how a Keras user streams.
    """
    keras = _keras()
    model = keras.saving.load_model(bm.path, compile=False)
    inp = keras.Input(batch_shape=(batch, seq_len, bm.in_dim), dtype=model.inputs[0].dtype)

    def clone_layer(layer: Any) -> Any:
        cfg = layer.get_config()
        if stateful and "stateful" in cfg:
            cfg["stateful"] = True
        return type(layer).from_config(cfg)

    clone = keras.models.clone_model(model, input_tensors=inp, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    tag = f"{'b' + str(batch) if batch else 'bN'}_t{seq_len if seq_len else 'N'}"
    out = work / f"{bm.key}_{tag}{'_stateful' if stateful else ''}.keras"
    clone.save(out)
    return out


def sliced_calibration(bm: BenchModel, work: Path, seq_len: int) -> Path:
    """Calibration windows of length seq_len cut from the model's calibration sequences."""
    with np.load(bm.calibration) as data:
        x = data["x"][:64]
    wins = x[:, : (x.shape[1] // seq_len) * seq_len].reshape(-1, seq_len, x.shape[-1])
    out = work / f"{bm.key}_cal_t{seq_len}.npz"
    np.savez(out, x=wins[:256].astype(np.float32))
    return out


def convert(
    model_path: Path,
    outdir: Path,
    *,
    quants: list[str],
    variants: list[str] | None,
    calibration: Path | None,
    seq_len: int | None = None,
) -> Any:
    """edgelstm.convert.convert_model, keeping artifacts that miss parity (we record it)."""
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    if outdir.exists():
        shutil.rmtree(outdir)
    cfg = ConvertConfig(
        variants=[Variant(v) for v in variants] if variants else None,
        quantizations=[Quantization(q) for q in quants],
        calibration=str(calibration) if calibration else None,
        seq_len=seq_len,
        verify_fail=False,
        verify_samples=8,
        calibration_samples=64,
    )
    return convert_model(model_path, outdir, cfg)


@dataclass
class PlainResult:
    """What TFLiteConverter.from_keras_model made of a Keras file (or how it failed)."""

    id: str
    quant: str
    ok: bool
    path: Path | None
    message: str
    crashed: bool


def plain_convert(
    jobs: list[tuple[str, Path, str, Path | None]], work: Path
) -> dict[str, PlainResult]:
    """Convert (id, keras_file, quant, calibration) with the plain converter, crash-isolated.

    Reuses edgelstm's isolated worker (source_kind="keras_file" = TFLiteConverter.from_keras_model
    with batch 1 and nothing else), so a converter segfault is recorded instead of killing us.
    """
    from edgelstm.convert.isolate import ConvertJob, run_jobs

    work.mkdir(parents=True, exist_ok=True)
    cjobs = []
    for job_id, keras_file, quant, cal in jobs:
        cal_file = None
        if cal is not None:
            # The keras_file path yields [x[i]] per sample: store x with its batch axis of 1.
            with np.load(cal) as data:
                x = data["x"][:64]
            cal_file = work / f"{job_id.replace('/', '_')}_cal.npz"
            np.savez(cal_file, x=x[:, None].astype(np.float32))
        cjobs.append(
            ConvertJob(
                id=job_id,
                saved_model=str(keras_file),
                out=str(work / f"{job_id.replace('/', '_')}.tflite"),
                quantization=quant,
                calibration=str(cal_file) if cal_file else None,
                source_kind="keras_file",
            )
        )
    results = run_jobs(cjobs, work, timeout=600)
    out = {}
    for job in cjobs:
        res = results[job.id]
        out[job.id] = PlainResult(
            job.id,
            job.quantization,
            res.ok,
            Path(job.out) if res.ok else None,
            res.message,
            res.crashed,
        )
    return out
