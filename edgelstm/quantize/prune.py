"""Magnitude pruning of a trained Keras model's weight matrices (recurrent kernels included),
with tensorflow-model-optimization.

tfmot works on tf_keras models, so the model is rebuilt in tf_keras (the converter's own
rebuild, weights copied), every layer tfmot's registry supports is wrapped with
`prune_low_magnitude` (LSTM/GRU/SimpleRNN: kernel and recurrent kernel), one mask update at
step 0 of a constant-sparsity schedule sets the masks, `strip_pruning` removes the wrappers, and
the masked weights are copied back into the source model — which then converts as usual.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError


def check_sparsity(sparsity: float) -> float:
    """Validate a --prune value: a fraction strictly between 0 and 1."""
    if not 0.0 < float(sparsity) < 1.0:
        raise BadInputError(f"--prune SPARSITY must be in (0, 1), got {sparsity}")
    return float(sparsity)


@dataclass
class PruneResult:
    """What pruning did: requested vs reached sparsity over the pruned matrices."""

    requested: float
    reached: float
    pruned_params: int
    total_params: int
    per_weight: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tfmot_pruned_weights(model: Any, framework: str, sparsity: float) -> dict[str, list]:
    """Layer name -> weights after tfmot magnitude pruning of the tf_keras rebuild."""
    from edgelstm._tf import import_tf, import_tf_keras
    from edgelstm.convert.build import build_sequence_model
    from edgelstm.convert.graph import parse_model

    tf = import_tf()
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    sparsity_api = tfmot.sparsity.keras
    schedule = sparsity_api.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    tfk = build_sequence_model(parse_model(model, framework))

    def wrap(layer: Any) -> Any:
        # clone_model hands over the original layer, so the wrapper keeps its trained weights
        if layer.weights and PruneRegistry.supports(layer):
            return sparsity_api.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    wrapped = import_tf_keras().models.clone_model(tfk, clone_function=wrap)
    for layer in wrapped.layers:
        if hasattr(layer, "pruning_step"):
            layer.pruning_step.assign(0)  # what UpdatePruningStep does before the first batch
    dtype = "int32" if tfk.inputs[0].dtype == tf.int32 else "float32"
    wrapped(tf.zeros(tfk.inputs[0].shape, dtype), training=True)  # masks from |w| alone
    stripped = sparsity_api.strip_pruning(wrapped)
    return {layer.name: layer.get_weights() for layer in stripped.layers if layer.weights}


def prune_model(model: Any, sparsity: float, framework: str = "keras3") -> PruneResult:
    """Prune every weight matrix of `model` (in place) to `sparsity` with tfmot."""
    sparsity = check_sparsity(sparsity)
    pruned = _tfmot_pruned_weights(model, framework, sparsity)
    zeros = total = 0
    per: dict[str, float] = {}
    for layer in model.layers:
        new = pruned.get(layer.name)
        old = layer.get_weights()
        if new is None or [w.shape for w in new] != [w.shape for w in old]:
            continue  # not prunable by tfmot (or laid out differently): left dense
        layer.set_weights(new)
        for w, a in zip(layer.weights, new, strict=True):
            name = getattr(w, "path", None) or w.name
            if a.ndim >= 2 and "bias" not in name.rsplit("/", 1)[-1]:
                z = int(np.count_nonzero(a == 0))
                zeros += z
                total += a.size
                per[name] = z / a.size
    reached = zeros / total if total else 0.0
    return PruneResult(sparsity, reached, zeros, total, per)


def finetune_pruned(
    model: Any,
    per_weight: dict[str, float],
    x: np.ndarray,
    y: np.ndarray,
    *,
    loss: str,
    sample_weight: np.ndarray | None,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    max_steps: int | None = None,
) -> list[float]:
    """Fine-tune a pruned model with its zero pattern held (the mask re-applied after every
    batch, as tfmot's wrapper does in training); returns the loss per epoch."""
    import keras

    keras.utils.set_random_seed(seed)
    masked = [(w, (np.asarray(w.numpy()) != 0).astype(np.float32)) for w in model.weights
              if (getattr(w, "path", None) or w.name) in per_weight]  # fmt: skip

    class HoldMask(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            for w, m in masked:
                w.assign(w * m)

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    steps = None
    if max_steps is not None:
        steps = max(1, min(max_steps, -(-len(x) // batch_size)))
    hist = model.fit(
        x, y, sample_weight=sample_weight, epochs=epochs, batch_size=batch_size,
        steps_per_epoch=steps, shuffle=True, verbose=0, callbacks=[HoldMask()],
    )  # fmt: skip
    return [float(v) for v in hist.history["loss"]]


def prune_file(
    src: str | Path, dst: str | Path, sparsity: float, *, unsafe: bool = False
) -> PruneResult:
    """Load a Keras model file, prune it, save it atomically to dst (.keras)."""
    from edgelstm.convert.load import load_keras_model

    dst = Path(dst)
    if dst.suffix != ".keras":
        raise BadInputError(f"pruned model path must end in .keras, got {dst}")
    model, framework = load_keras_model(src, unsafe=unsafe)
    result = prune_model(model, sparsity, framework)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".keras", dir=dst.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return result


@dataclass
class SizeReport:
    """Raw vs zlib-compressed size of a .tflite file."""

    file: str
    raw_bytes: int
    zlib_bytes: int
    zero_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_report(path: str | Path) -> SizeReport:
    """Sizes of one .tflite; zero_fraction counts zero bytes in the whole flatbuffer."""
    data = Path(path).read_bytes()
    arr = np.frombuffer(data, dtype=np.uint8)
    return SizeReport(
        Path(path).name,
        len(data),
        len(zlib.compress(data, 9)),
        float(np.count_nonzero(arr == 0) / max(len(arr), 1)),
    )


SIZE_NOTE = (
    "unstructured sparsity does not make a .tflite smaller: zeros are stored like any other "
    "weight; only a compressed copy (zlib column) shrinks"
)
