"""Magnitude pruning of a trained Keras model's weight matrices (recurrent kernels included).

tfmot's prune_low_magnitude wraps layers for pruning *during* training; for a one-shot prune of
a trained model the result is the same as zeroing the smallest-magnitude weights per matrix,
which works for every recurrent layer without wrappers to strip before conversion.
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


def prune_model(model: Any, sparsity: float) -> PruneResult:
    """Zero the smallest |w| in every weight matrix (ndim >= 2) of `model`, in place."""
    sparsity = check_sparsity(sparsity)
    zeros = total = 0
    per: dict[str, float] = {}
    for layer in model.layers:
        new = []
        for w in layer.weights:
            a = np.asarray(w.numpy())
            name = getattr(w, "path", None) or w.name
            # kernels and recurrent kernels; biases (2-D in a reset_after GRU) stay dense
            if a.ndim >= 2 and "bias" not in name.rsplit("/", 1)[-1]:
                k = round(sparsity * a.size)
                if k:
                    # stable argsort so equal magnitudes prune deterministically
                    idx = np.argsort(np.abs(a).reshape(-1), kind="stable")[:k]
                    flat = a.reshape(-1).copy()
                    flat[idx] = 0.0
                    a = flat.reshape(a.shape)
                z = int(np.count_nonzero(a == 0))
                zeros += z
                total += a.size
                per[name] = z / a.size
            new.append(a)
        if new:
            layer.set_weights(new)
    reached = zeros / total if total else 0.0
    return PruneResult(sparsity, reached, zeros, total, per)


def prune_file(
    src: str | Path, dst: str | Path, sparsity: float, *, unsafe: bool = False
) -> PruneResult:
    """Load a Keras model file, prune it, save it atomically to dst (.keras)."""
    from edgelstm.convert.load import load_keras_model

    dst = Path(dst)
    if dst.suffix != ".keras":
        raise BadInputError(f"pruned model path must end in .keras, got {dst}")
    model, _ = load_keras_model(src, unsafe=unsafe)
    result = prune_model(model, sparsity)
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
