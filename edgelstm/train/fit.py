"""The training run: data splits, fit (plain, TBPTT or with the cell-state penalty), metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm._tf import import_tf
from edgelstm.errors import BadInputError
from edgelstm.train.callbacks import _progress_callback, _ResetStates
from edgelstm.train.device import _strategy
from edgelstm.train.metrics import _anomaly_metrics, _architecture, evaluate
from edgelstm.train.model import _cell_penalty, _cell_state_view, build_model, init_remember_bias
from edgelstm.train.save import TrainResult, save_training, vocab_json
from edgelstm.zoo import Recipe
from edgelstm.zoo import data as zdata
from edgelstm.zoo.metrics import get_metric


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
