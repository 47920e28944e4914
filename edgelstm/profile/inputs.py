"""Inputs for the timing runs and labelled data: loading, shape checks, synthetic inputs, accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.arrays import load_xy
from edgelstm.errors import BadInputError
from edgelstm.runtime.stream import (
    embedding_rows,
)
from edgelstm.tflite_info import TFLiteInfo
from edgelstm.types import STEP_INPUT, Variant


def load_data(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y or None) from .npz (keys `x`, optional `y`) or .npy (x only)."""
    return load_xy(path, "--data")


def sequence_shape(info: TFLiteInfo, variant: Variant, seq_len: int | None) -> tuple[int, ...]:
    """Shape of one input sequence without the batch axis: (T, D) or (T,) for tokens."""
    x = next((t for t in info.inputs if t.name == STEP_INPUT), info.inputs[0])
    if variant == Variant.SEQUENCE:
        return tuple(x.shape[1:])
    step = tuple(x.shape[1:]) if len(x.shape) > 1 else ()
    return (seq_len or 16, *step)


def check_data(x: np.ndarray, shape: tuple[int, ...], variant: Variant, source: str) -> np.ndarray:
    """x as [N, *shape]; for step models any length T is fine."""
    want = list(shape)
    ok = x.ndim == len(shape) + 1 and (
        list(x.shape[1:]) == want if variant == Variant.SEQUENCE else list(x.shape[2:]) == want[1:]
    )
    if not ok:
        shown = ["N", *want] if variant == Variant.SEQUENCE else ["N", "T", *want[1:]]
        raise BadInputError(
            f"{source}: x shaped {list(x.shape)} does not fit the model (needs {shown})"
        )
    if len(x) == 0:
        raise BadInputError(f"{source}: x is empty")
    return x


def synthetic_x(info: TFLiteInfo, shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Seeded inputs for timing when no --data is given (token ids when the input is int)."""
    rng = np.random.default_rng(seed)
    x = next((t for t in info.inputs if t.name == STEP_INPUT), info.inputs[0])
    if x.dtype.startswith("int") and not x.scale:
        return rng.integers(0, embedding_rows(info) or 2, (n, *shape)).astype(np.int32)
    return rng.standard_normal((n, *shape)).astype(np.float32)


def _predictions(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out)
    if out.shape[-1] == 1:  # a single sigmoid unit: binary
        return (out[..., 0] > 0.5).astype(np.int64)
    return out.argmax(-1)


def accuracy(outputs: np.ndarray, y: np.ndarray) -> float:
    """Argmax (or >0.5 for one unit) accuracy; y holds class ids or one-hot rows.

    outputs: [N, T, C] (per step) or [N, C]; y: [N], [N, T], or one-hot [..., C]. Per-sequence
    labels against per-step outputs compare the last step.
    """
    y = np.asarray(y)
    pred = _predictions(outputs)
    if y.ndim == pred.ndim + 1 or (y.dtype.kind == "f" and y.ndim >= 2 and y.shape[-1] > 1):
        y = y.argmax(-1) if y.shape[-1] > 1 else (y[..., 0] > 0.5)
    if pred.ndim == 2 and y.ndim == 1:
        pred = pred[:, -1]
    if pred.shape != y.shape:
        raise BadInputError(
            f"labels y shaped {list(y.shape)} do not match the model's predictions "
            f"shaped {list(pred.shape)}"
        )
    return float(np.mean(pred == y.astype(pred.dtype)))
