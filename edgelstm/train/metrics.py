"""What is measured on a trained model: the recipe's metric, the architecture line, anomaly F1."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.train.model import RECURRENT
from edgelstm.zoo import Recipe
from edgelstm.zoo import data as zdata
from edgelstm.zoo.metrics import anomaly_scores, best_threshold, f1


def evaluate(recipe: Recipe, predictions: np.ndarray, y: np.ndarray) -> float:
    """The recipe's metric, scored as every stage scores it (edgelstm.evaluate)."""
    from edgelstm.evaluate import score

    return score(recipe.metric, predictions, y)


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
