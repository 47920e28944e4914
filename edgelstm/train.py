"""Train a zoo recipe (Keras 3). GPU when present; tf.distribute.MirroredStrategy over >1 device."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm._tf import import_tf
from edgelstm.zoo import Recipe
from edgelstm.zoo.data import GENERATORS


@dataclass
class TrainResult:
    """A trained model and what was measured on it."""

    model: Any
    metrics: dict[str, Any]
    calibration: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray


def build_model(recipe: Recipe) -> Any:
    """The recipe's architecture as a Keras 3 model (batch size free, fixed length)."""
    import keras

    layers = [keras.Input((recipe.seq_len, recipe.features))]
    for spec in recipe.layers:
        spec = dict(spec)
        kind = spec.pop("kind")
        layers.append(getattr(keras.layers, kind)(**spec))
    return keras.Sequential(layers, name=recipe.name)


def cudnn_warnings(recipe: Recipe) -> list[str]:
    """Recurrent settings that leave the fast cuDNN kernels (default: none)."""
    out = []
    for spec in recipe.layers:
        if spec["kind"] in ("LSTM", "GRU"):
            for key, ok in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
                if spec.get(key, ok) != ok:
                    out.append(f"{spec['kind']} {key}={spec[key]} is not cuDNN-compatible")
            if spec.get("recurrent_dropout"):
                out.append(f"{spec['kind']} recurrent_dropout disables cuDNN")
            if spec.get("unroll"):
                out.append(f"{spec['kind']} unroll=True disables cuDNN")
    return out


def _strategy(tf: Any) -> tuple[Any, str]:
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(
            [d.name for d in devices]
        ), f"{len(devices)}x{devices[0].device_type}"
    return tf.distribute.get_strategy(), devices[0].device_type if devices else "CPU"


def evaluate(recipe: Recipe, predictions: np.ndarray, y: np.ndarray) -> float:
    """The recipe's metric."""
    if recipe.metric == "per_step_accuracy_after_delay":
        scored = y >= 0
        return float(np.mean((predictions[scored] > 0.5) == (y[scored] > 0.5)))
    if recipe.metric == "accuracy":
        return float(np.mean(np.argmax(predictions, -1) == y.reshape(-1)))
    raise ValueError(f"unknown metric {recipe.metric}")


def train_recipe(
    recipe: Recipe,
    *,
    epochs: int | None = None,
    seed: int = 0,
    quick: bool = False,
    verbose: int = 0,
) -> TrainResult:
    """Generate data, train, and measure; deterministic for a seed on one machine."""
    tf = import_tf()
    import keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    settings = {**recipe.train, **(recipe.quick if quick else {})}
    n = int(settings["samples"])
    gen = GENERATORS[recipe.generator]
    x, y = gen(n, recipe.seq_len, seed, **recipe.generator_args)
    xv, yv = gen(max(n // 8, 32), recipe.seq_len, seed + 1, **recipe.generator_args)
    xt, yt = gen(max(n // 8, 64), recipe.seq_len, seed + 2, **recipe.generator_args)
    strategy, device = _strategy(tf)
    with strategy.scope():
        model = build_model(recipe)
        model.compile(
            optimizer=keras.optimizers.Adam(settings.get("learning_rate", 1e-3)), loss=recipe.loss
        )
    weights = (y[..., 0] >= 0).astype(np.float32) if recipe.metric.endswith("after_delay") else None
    start = time.perf_counter()
    history = model.fit(
        x,
        np.maximum(y, 0),
        sample_weight=weights,
        epochs=epochs or int(settings["epochs"]),
        batch_size=int(settings["batch_size"]),
        validation_data=(xv, np.maximum(yv, 0)),
        verbose=verbose,
        shuffle=True,
    )
    wall = time.perf_counter() - start
    metrics = {
        "recipe": recipe.name,
        "seed": seed,
        "quick": quick,
        "epochs": len(history.history["loss"]),
        "loss_first": float(history.history["loss"][0]),
        "loss_last": float(history.history["loss"][-1]),
        "train_metric": evaluate(recipe, model.predict(x[:512], verbose=0), y[:512]),
        "val_metric": evaluate(recipe, model.predict(xv, verbose=0), yv),
        "test_metric": evaluate(recipe, model.predict(xt, verbose=0), yt),
        "metric": recipe.metric,
        "target": recipe.target,
        "wall_time_s": round(wall, 2),
        "device": device,
    }
    return TrainResult(
        model=model, metrics=metrics, calibration=x[:128], eval_x=xt[:256], eval_y=yt[:256]
    )


def save_training(result: TrainResult, outdir: Path) -> None:
    """model.keras, metrics.json, calibration.npz, eval.npz; written atomically."""
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        result.model.save(stage / "model.keras")
        (stage / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        np.savez_compressed(stage / "calibration.npz", x=result.calibration)
        np.savez_compressed(stage / "eval.npz", x=result.eval_x, y=result.eval_y)
        outdir.mkdir(exist_ok=True)
        for f in sorted(stage.iterdir()):
            os.replace(f, outdir / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


__all__ = [
    "TrainResult",
    "asdict",
    "build_model",
    "save_training",
    "train_and_save",
    "train_recipe",
]


def train_and_save(
    recipe_name: str,
    outdir: Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    quick: bool = False,
    verbose: int = 0,
) -> TrainResult:
    """Load a recipe, train it and save the results into outdir."""
    from edgelstm.zoo import load_recipe

    result = train_recipe(
        load_recipe(recipe_name), epochs=epochs, seed=seed, quick=quick, verbose=verbose
    )
    save_training(result, outdir)
    return result
