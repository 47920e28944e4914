"""The recipe metric on a Keras model, and on a step-model comparison (percent for accuracies)."""

from __future__ import annotations

from typing import Any

import numpy as np


def keras_metric(model: Any, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    from edgelstm.evaluate import score

    return score(metric, np.asarray(model.predict(x, batch_size=256, verbose=0)), y)


PERCENT_METRICS = ("accuracy", "per_step_accuracy_after_delay")


def _set_metric(r: Any, metric: str, f: float, q: float) -> None:
    """Accuracy metrics are shown in percent (tolerances are in points); others as they are."""
    from edgelstm.quantize.report import assess
    from edgelstm.zoo.metrics import get_metric

    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    r.metric_name = f"{metric} (%)" if scale == 100.0 else metric
    r.metric_float, r.metric_quant = f * scale, q * scale
    r.higher_is_better = get_metric(metric).higher_is_better
    r.verdict = assess(r)[1]
