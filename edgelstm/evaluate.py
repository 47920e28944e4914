"""Run a converted artifact over labelled data and score it: the one copy the pipeline, `quantize`,
`search` and the benchmarks share.

`predict` runs an artifact where its parity was measured (the manifest's `parity.runtime`: LiteRT,
or TFLite Micro for the int16x8 fused sequence models LiteRT has no kernel for), resets the state
for each sequence and carries it step to step inside one; a many-to-one step model answers with
its last step. `score` applies a zoo metric to the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgelstm.tflite_info import read_tflite
from edgelstm.types import Artifact, Manifest, OutputKind, Variant


def predict(
    data: bytes,
    xs: np.ndarray,
    *,
    variant: Variant = Variant.STEP,
    token_input: bool | None = None,
    many_to_one: bool | None = None,
    runtime: str = "litert",
) -> np.ndarray:
    """Outputs of the model `data` for each sequence of `xs`: [N, ...] (sequence models, and
    many-to-one step models), [N, T, ...] (step models otherwise).

    token_input: None infers it from `xs` (integer [N, T]); many_to_one: None keeps every step.
    """
    from edgelstm.convert.verify import run_sequence, run_step

    info = read_tflite(data)
    if variant == Variant.SEQUENCE:
        if runtime == "tflm":
            from edgelstm.convert.int16x8 import run_sequence_tflm

            return run_sequence_tflm(data, info, xs)
        return run_sequence(data, info, xs)
    tokens = xs.ndim == 2 if token_input is None else token_input
    out = run_step(data, info, xs, tokens)
    return out[:, -1] if many_to_one else out


def predict_artifact(manifest: Manifest, art: Artifact, data: bytes, xs: np.ndarray) -> np.ndarray:
    """`predict` with what the manifest says of the artifact and its model."""
    return predict(
        data,
        xs,
        variant=art.variant,
        token_input=manifest.model.token_input,
        many_to_one=manifest.model.output_kind == OutputKind.MANY_TO_ONE,
        runtime=art.parity.runtime if art.parity else "litert",
    )


def score(metric: str, pred: np.ndarray, y: np.ndarray) -> float:
    """The zoo metric `metric` of predictions against labels; per-step outputs [N, T, ...] are
    scored on their last step when the labels have one per sequence."""
    from edgelstm.zoo.metrics import metric_value

    pred = np.asarray(pred)
    if (pred.ndim == 3 and y.ndim == 1) or (y.ndim == 2 and pred.shape[:2] != y.shape):
        pred = pred[:, -1]
    return metric_value(metric, pred, y)


def evaluate(
    manifest: Manifest,
    files: Mapping[str, bytes] | Path,
    x: np.ndarray,
    y: np.ndarray,
    metric: str,
) -> dict[str, float]:
    """The metric of every artifact in the manifest (file name -> value); `files` holds their
    bytes by file name, or is the directory they were saved in."""
    scores = {}
    for art in manifest.artifacts:
        data = (
            files[art.file] if isinstance(files, Mapping) else (Path(files) / art.file).read_bytes()
        )
        scores[art.file] = score(metric, predict_artifact(manifest, art, data, x), y)
    return scores


def evaluate_step(path: str | Path, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    """The metric of one step model file without its manifest (token input inferred from x)."""
    return score(metric, predict(Path(path).read_bytes(), x), y)
