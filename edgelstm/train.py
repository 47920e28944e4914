"""Train a zoo recipe (Keras 3). GPU when present; tf.distribute.MirroredStrategy over >1 device.

Recipes whose `train` settings say `"tbptt": true` train with truncated backpropagation through
time: long streams are cut into chunks, laid out so each batch row continues the same stream
(`zoo.data.tbptt_layout`), and a stateful copy of the model carries the state from chunk to chunk.
The saved model is the ordinary (stateless, fixed-length) architecture with the trained weights.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm._tf import import_tf
from edgelstm.errors import BadInputError
from edgelstm.fsutil import publish, reproducible_keras_zip
from edgelstm.zoo import Recipe
from edgelstm.zoo import data as zdata
from edgelstm.zoo.metrics import anomaly_scores, best_threshold, f1, get_metric

RECURRENT = ("LSTM", "GRU", "SimpleRNN")


@dataclass
class TrainResult:
    """A trained model and what was measured on it."""

    model: Any
    metrics: dict[str, Any]
    calibration: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    eval_extra: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # extra text files (e.g. vocab.json)


def build_model(
    recipe: Recipe,
    *,
    cell: str | None = None,
    batch_size: int | None = None,
    stateful: bool = False,
) -> Any:
    """The recipe's architecture as a Keras 3 model (fixed length; batch free unless stateful).

    cell replaces every recurrent layer's kind (e.g. SimpleRNN for a comparison run).
    """
    import keras

    shape = (recipe.seq_len,) if recipe.tokens else (recipe.seq_len, recipe.features)
    dtype = "int32" if recipe.tokens else "float32"
    # Explicit names: Keras' automatic ones count up per process (lstm, lstm_1, ...), which would
    # make the second model trained in one process save different bytes.
    if stateful:
        inp = keras.Input(batch_shape=(batch_size, *shape), dtype=dtype, name="input_layer")
    else:
        inp = keras.Input(shape, dtype=dtype, name="input_layer")
    layers = [inp]
    used: dict[str, int] = {}
    for spec in recipe.layers:
        spec = dict(spec)
        kind = spec.pop("kind")
        if kind in RECURRENT:
            kind = cell or kind
            if stateful:
                spec["stateful"] = True
        base = kind.lower()
        used[base] = used.get(base, 0) + 1
        spec.setdefault("name", base if used[base] == 1 else f"{base}_{used[base] - 1}")
        layers.append(getattr(keras.layers, kind)(**spec))
    return keras.Sequential(layers, name=recipe.name)


def init_remember_bias(model: Any, value: float) -> None:
    """Start LSTM forget gates (GRU update gates) at bias `value` so the state is kept over long
    spans from the first step: with Keras' default (+1) the gradient from 50-100 steps back
    vanishes and long-lag tasks such as temporal-order plateau at chance. SimpleRNN has no gate."""
    import keras

    for layer in model.layers:
        cell = getattr(layer, "cell", None)
        if cell is None or not getattr(cell, "use_bias", False):
            continue
        units = cell.units
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.LSTM):  # bias order: input, forget, cell, output
            weights[2][units : 2 * units] = value
        elif isinstance(layer, keras.layers.GRU):  # bias order: update, reset, candidate
            weights[2][..., :units] = value / weights[2].ndim  # reset_after: two bias rows
        else:
            continue
        layer.set_weights(weights)


def _cell_state_view(model: Any) -> Any:
    """A training twin of a chain model whose first LSTM also outputs its final cell state.

    TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM, as the converter emits it from Keras, clips the
    cell state to +-10 (the step model does not); a long-memory LSTM whose cell state integrates
    its inputs past that bound converts to a sequence model that disagrees with Keras. Training
    against the final cell state's excess over a limit (`cell_limit`) keeps it inside.
    """
    import keras

    inp = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    y, c = inp, None
    for layer in model.layers:
        if c is None and isinstance(layer, keras.layers.LSTM):
            twin = keras.layers.LSTM.from_config({**layer.get_config(), "return_state": True})
            y, _, c = twin(y)
        else:
            y = type(layer).from_config(layer.get_config())(y)
    if c is None:
        raise BadInputError("cell_limit needs an LSTM layer")
    return keras.Model(inp, [y, c])


def _cell_penalty(limit: float) -> Any:
    """Loss on the cell state: mean squared excess of |c| over `limit` (targets are ignored)."""
    import keras

    def cell_excess(_target: Any, c: Any) -> Any:
        return keras.ops.mean(keras.ops.square(keras.ops.relu(keras.ops.abs(c) - limit)), -1)

    return cell_excess


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
            if spec["kind"] == "GRU" and spec.get("reset_after") is False:
                out.append("GRU reset_after=False is not cuDNN-compatible")
            if spec.get("use_bias") is False:
                out.append(f"{spec['kind']} use_bias=False is not cuDNN-compatible")
        elif spec["kind"] == "SimpleRNN":
            out.append("SimpleRNN has no cuDNN kernel")
    return out


def _strategy(tf: Any, single: bool = False) -> tuple[Any, str]:
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    kind = devices[0].device_type if devices else "CPU"
    if len(devices) > 1 and not single:
        return tf.distribute.MirroredStrategy([d.name for d in devices]), f"{len(devices)}x{kind}"
    return tf.distribute.get_strategy(), kind


def evaluate(recipe: Recipe, predictions: np.ndarray, y: np.ndarray) -> float:
    """The recipe's metric, scored as every stage scores it (edgelstm.evaluate)."""
    from edgelstm.evaluate import score

    return score(recipe.metric, predictions, y)


def _progress_callback(total_epochs: int, stream: Any = None) -> Any:
    """A progress bar on stderr (stdout carries the command's JSON): a redrawn bar per batch on a
    terminal, one line per epoch otherwise."""
    import keras

    out = stream or sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.start = time.perf_counter()
            self.steps = self.params.get("steps") or 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if tty and self.steps:
                done = int(30 * (batch + 1) / self.steps)
                loss = (logs or {}).get("loss", float("nan"))
                out.write(
                    f"\r  epoch {self.epoch + 1}/{total_epochs} [{'#' * done:<30}] "
                    f"loss {float(loss):.4f}"
                )
                out.flush()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            vals = " ".join(f"{k} {float(v):.4f}" for k, v in logs.items())
            elapsed = time.perf_counter() - self.start
            done = int(30 * (epoch + 1) / total_epochs)
            out.write(
                f"{chr(13) if tty else ''}  epoch {epoch + 1}/{total_epochs} "
                f"[{'#' * done:<30}] {vals} ({elapsed:.1f} s)\n"
            )
            out.flush()

    return Progress()


class _ResetStates:
    """Keras callback factory: reset stateful layers at every epoch start (streams restart)."""

    @staticmethod
    def make() -> Any:
        import keras

        class Reset(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                _reset_states(self.model)

        return Reset()


def _reset_states(model: Any) -> None:
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()


def _splits(recipe: Recipe, n: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    gen = zdata.GENERATORS[recipe.generator]
    args = recipe.generator_args
    sizes = {"train": n, "val": max(n // 8, 32), "test": max(n // 8, 64)}
    return {
        split: gen(size, recipe.seq_len, seed + i, split=split, **args)
        for i, (split, size) in enumerate(sizes.items())
    }


def train_recipe(
    recipe: Recipe,
    *,
    epochs: int | None = None,
    seed: int = 0,
    quick: bool = False,
    verbose: int = 0,
    cell: str | None = None,
    progress: bool = False,
    epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Generate data, train, and measure; deterministic for a seed on one machine.

    cell swaps the recurrent layers' kind (e.g. "SimpleRNN") for comparison runs; progress
    draws a bar on stderr; epoch_end(logs) is called after every epoch (search reports the
    validation loss to its early-stopping scheduler through it).
    """
    tf = import_tf()
    import keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    settings = {**recipe.train, **(recipe.quick if quick else {})}
    n = int(settings["samples"])
    batch = int(settings["batch_size"])
    n_epochs = epochs or int(settings["epochs"])
    tbptt = bool(settings.get("tbptt"))
    data = _splits(recipe, n, seed)
    (x, y), (xv, yv), (xt, yt) = data["train"], data["val"], data["test"]
    # Stateful TBPTT needs the whole batch on one device: every row's state lives in one place.
    strategy, device = _strategy(tf, single=tbptt)
    callbacks = [_progress_callback(n_epochs)] if progress else []
    if epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda _epoch, logs: epoch_end(dict(logs or {}))))  # fmt: skip
    loss = recipe.loss
    with strategy.scope():
        model = build_model(recipe, cell=cell)
        optimizer = keras.optimizers.Adam(
            settings.get("learning_rate", 1e-3), clipnorm=settings.get("clipnorm")
        )
        if settings.get("forget_bias"):
            init_remember_bias(model, float(settings["forget_bias"]))
        cell_limit = settings.get("cell_limit")
        if tbptt and cell_limit:
            raise BadInputError(f"recipe '{recipe.name}': tbptt and cell_limit do not combine")
        if tbptt:
            trainer = build_model(recipe, cell=cell, batch_size=batch, stateful=True)
            trainer.set_weights(model.get_weights())
            trainer.compile(optimizer=optimizer, loss=loss)
        elif cell_limit and any(isinstance(la, keras.layers.LSTM) for la in model.layers):
            # (a SimpleRNN/GRU swap has no cell state to bound: trains as usual)
            trainer = _cell_state_view(model)
            trainer.set_weights(model.get_weights())
            trainer.compile(
                optimizer=optimizer,
                loss=[loss, _cell_penalty(float(cell_limit))],
                loss_weights=[1.0, float(settings.get("cell_penalty", 0.1))],
            )
        else:
            trainer = model
            trainer.compile(optimizer=optimizer, loss=loss)
    start = time.perf_counter()
    if tbptt:
        rows_len = n * recipe.seq_len // batch
        if recipe.generator not in zdata.STREAMS:
            raise BadInputError(f"recipe '{recipe.name}': no stream generator for TBPTT")
        sx, sy = zdata.STREAMS[recipe.generator](batch, rows_len, seed, **recipe.generator_args)
        fx, fy = zdata.tbptt_layout(sx, recipe.seq_len), zdata.tbptt_layout(sy, recipe.seq_len)
        ty, tw = recipe.fit_targets(fy)
        history = trainer.fit(
            fx,
            ty,
            sample_weight=tw,
            epochs=n_epochs,
            batch_size=batch,
            shuffle=False,  # batch k+1 row r continues batch k row r
            verbose=verbose,
            callbacks=[_ResetStates.make(), *callbacks],
        )
        model.set_weights(trainer.get_weights())
    else:
        ty, tw = recipe.fit_targets(y)
        vy, vw = recipe.fit_targets(yv)
        if trainer is not model:  # the cell-state view: its second target is "no excess" (0)
            units = int(trainer.outputs[1].shape[-1])
            ty, vy = (ty, np.zeros((len(x), units), np.float32)), (vy, np.zeros((len(xv), units)))
        history = trainer.fit(
            x,
            ty,
            sample_weight=tw,
            epochs=n_epochs,
            batch_size=batch,
            validation_data=(xv, vy, vw) if vw is not None else (xv, vy),
            verbose=verbose,
            shuffle=True,
            callbacks=callbacks,
        )
        if trainer is not model:
            model.set_weights(trainer.get_weights())
    wall = time.perf_counter() - start
    n_eval = int(settings.get("eval_samples", 256))

    def predict(a: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(a, batch_size=256, verbose=0))

    metrics: dict[str, Any] = {
        "recipe": recipe.name,
        "architecture": _architecture(recipe, cell),
        "seed": seed,
        "quick": quick,
        "epochs": len(history.history["loss"]),
        "samples": n,
        "tbptt": tbptt,
        "loss_first": float(history.history["loss"][0]),
        "loss_last": float(history.history["loss"][-1]),
        "train_metric": evaluate(recipe, predict(x[:512]), y[:512]),
        "val_metric": evaluate(recipe, predict(xv), yv),
        "test_metric": evaluate(recipe, predict(xt), yt),
        "eval_metric": evaluate(recipe, predict(xt[:n_eval]), yt[:n_eval]),
        "metric": recipe.metric,
        "target": recipe.target,
        "parameters": int(model.count_params()),
        "wall_time_s": round(wall, 2),
        "device": device,
    }
    metrics["target_met"] = get_metric(recipe.metric).meets(metrics["test_metric"], recipe.target)
    eval_extra: dict[str, np.ndarray] = {}
    if recipe.generator in zdata.EXTRAS:
        eval_extra = _anomaly_metrics(recipe, seed, n, predict, xv, xt, metrics)
        eval_extra = {k: v[:n_eval] for k, v in eval_extra.items()}
    files = {}
    if recipe.generator == "char_lm":
        vocab, _ = zdata.char_data(
            recipe.generator_args.get("vocab_size", 64),
            recipe.generator_args.get("max_chars", 2_000_000),
        )
        files["vocab.json"] = vocab_json(list(vocab))
    return TrainResult(
        model=model,
        metrics=metrics,
        calibration=x[:128],
        eval_x=xt[:n_eval],
        eval_y=yt[:n_eval],
        eval_extra=eval_extra,
        files=files,
    )


def _architecture(recipe: Recipe, cell: str | None) -> str:
    parts = []
    for spec in recipe.layers:
        kind = (cell or spec["kind"]) if spec["kind"] in RECURRENT else spec["kind"]
        size = spec.get("units", spec.get("output_dim", ""))
        parts.append(f"{kind}({size})")
    return " -> ".join(parts)


def _anomaly_metrics(
    recipe: Recipe,
    seed: int,
    n: int,
    predict: Any,
    xv: np.ndarray,
    xt: np.ndarray,
    metrics: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Anomaly F1 on test with the threshold that maximises F1 on validation."""
    args = recipe.generator_args
    ev = zdata.extras(recipe.generator, len(xv), recipe.seq_len, seed + 1, split="val", **args)
    et = zdata.extras(recipe.generator, len(xt), recipe.seq_len, seed + 2, split="test", **args)
    sv = anomaly_scores(predict(xv), ev["observed"])
    st = anomaly_scores(predict(xt), et["observed"])
    threshold = best_threshold(sv, ev["anomaly"])
    metrics["anomaly_threshold"] = threshold
    metrics["anomaly_f1_val"] = f1(sv >= threshold, ev["anomaly"])
    metrics["anomaly_f1_test"] = f1(st >= threshold, et["anomaly"])
    return et


def vocab_json(vocab: list[str]) -> str:
    """The vocabulary file stored beside a char-lm model (id -> character; id 0 is OOV)."""
    return json.dumps({"chars": vocab, "oov": 0}, ensure_ascii=True) + "\n"


def _plain_copy(model: Any) -> Any:
    """The model without its optimizer (Adam's two moment slots would triple the file)."""
    clone = type(model).from_config(model.get_config())  # clone_model would keep the compile
    clone.set_weights(model.get_weights())
    return clone


def save_training(result: TrainResult, outdir: Path) -> None:
    """model.keras, metrics.json, calibration.npz, eval.npz (+ extra files); written atomically."""
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        _plain_copy(result.model).save(stage / "model.keras")
        reproducible_keras_zip(stage / "model.keras")
        (stage / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        np.savez_compressed(stage / "calibration.npz", x=result.calibration)
        np.savez_compressed(
            stage / "eval.npz", x=result.eval_x, y=result.eval_y, **result.eval_extra
        )
        for name, text in result.files.items():
            (stage / name).write_text(text)
        publish(stage, outdir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


__all__ = [
    "TrainResult",
    "asdict",
    "build_model",
    "cudnn_warnings",
    "evaluate",
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
    cell: str | None = None,
    progress: bool = False,
) -> TrainResult:
    """Load a recipe, train it and save the results into outdir."""
    from edgelstm.zoo import load_recipe

    result = train_recipe(
        load_recipe(recipe_name),
        epochs=epochs,
        seed=seed,
        quick=quick,
        verbose=verbose,
        cell=cell,
        progress=progress,
    )
    save_training(result, outdir)
    return result
