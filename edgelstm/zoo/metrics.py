"""Recipe metrics, one registry shared by training (`edgelstm train`) and the pipeline.

Each metric maps (predictions, labels) to one float; labels < 0 are not scored where that applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgelstm.errors import BadInputError

# int8 softmax outputs can be exactly 0; bits per character clips at this probability (≈ 17 bits)
# so one unlucky quantized zero gives a large, finite penalty instead of infinity.
BPC_FLOOR = 1e-5


@dataclass(frozen=True)
class Metric:
    """A named metric and which direction is better."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool

    def __call__(self, pred: np.ndarray, y: np.ndarray) -> float:
        return float(self.fn(np.asarray(pred, np.float64), np.asarray(y)))

    def meets(self, value: float, target: float) -> bool:
        return value >= target if self.higher_is_better else value <= target


METRICS: dict[str, Metric] = {}


def _register(name: str, higher_is_better: bool) -> Callable:
    def wrap(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable:
        METRICS[name] = Metric(name, fn, higher_is_better)
        return fn

    return wrap


@_register("per_step_accuracy_after_delay", higher_is_better=True)
def per_step_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Binary per-step accuracy over scored steps (y >= 0), threshold 0.5."""
    pred = pred.reshape(y.shape)
    scored = y >= 0
    return float(np.mean((pred[scored] > 0.5) == (y[scored] > 0.5)))


@_register("accuracy", higher_is_better=True)
def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Argmax accuracy against integer class labels."""
    return float(np.mean(np.argmax(pred, -1) == y.reshape(pred.shape[:-1])))


@_register("bits_per_char", higher_is_better=False)
def bits_per_char(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean -log2 p(next char) under the predicted distributions [.., vocab]."""
    probs = pred.reshape(-1, pred.shape[-1])
    ids = y.reshape(-1).astype(np.int64)
    if ids.size != probs.shape[0]:
        raise BadInputError(f"{ids.size} labels for {probs.shape[0]} predicted distributions")
    # Renormalise: quantized softmax outputs need not sum to exactly 1.
    p = probs[np.arange(ids.size), ids] / np.maximum(probs.sum(-1), 1e-12)
    return float(np.mean(-np.log2(np.maximum(p, BPC_FLOOR))))


@_register("mae", higher_is_better=False)
def mae(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error (forecasting)."""
    return float(np.mean(np.abs(pred.reshape(y.shape) - y)))


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise BadInputError(f"unknown metric '{name}' (known: {', '.join(sorted(METRICS))})")
    return METRICS[name]


def metric_value(name: str, pred: np.ndarray, y: np.ndarray) -> float:
    """The named metric of predictions against labels."""
    return get_metric(name)(pred, y)


# --- anomaly scoring (sensor) ---------------------------------------------------------------


def anomaly_scores(forecast: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per sample: the largest absolute forecast error over channels."""
    return np.max(np.abs(np.asarray(forecast).reshape(observed.shape) - observed), axis=-1)


def f1(pred: np.ndarray, label: np.ndarray) -> float:
    tp = float(np.sum(pred & (label == 1)))
    fp = float(np.sum(pred & (label == 0)))
    fn = float(np.sum(~pred & (label == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def best_threshold(scores: np.ndarray, label: np.ndarray) -> float:
    """The score threshold with the best F1 (chosen on validation data, then held fixed)."""
    candidates = np.unique(scores)
    best, best_f1 = float(candidates[-1]), -1.0
    for c in candidates:
        value = f1(scores >= c, label)
        if value > best_f1:
            best, best_f1 = float(c), value
    return best
