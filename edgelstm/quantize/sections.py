"""The pipeline report's quantization sections (int8 step model against float)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgelstm.quantize.metrics import _set_metric
from edgelstm.types import Manifest, Quantization, Variant


def pipeline_sections(
    manifest: Manifest,
    files: Mapping[str, bytes],
    eval_x: np.ndarray,
    scores: dict[str, float],
    metric: str,
    *,
    stream_len: int = 512,
    layer_steps: int = 100,
) -> list[Any]:
    """The pipeline report's quantization sections: its int8 step model against the float step
    model over the eval sequences run back to back (drift, per-output and per-layer error), with
    the metric the pipeline measured on each (`scores`: artifact file -> metric); `files`: the
    artifacts' bytes by file name."""
    from edgelstm.quantize.report import compare_step_models, quantization_section

    step = {a.quantization: a for a in manifest.artifacts if a.variant == Variant.STEP}
    if Quantization.FLOAT not in step or Quantization.INT8 not in step:
        return []
    f, q = step[Quantization.FLOAT], step[Quantization.INT8]
    x = np.asarray(eval_x)
    stream = x.reshape(-1) if x.ndim == 2 else x.reshape(-1, x.shape[-1])
    rep = compare_step_models(f, q, stream[:stream_len], layer_steps=layer_steps, files=files)
    if f.file in scores and q.file in scores:
        _set_metric(rep, metric, scores[f.file], scores[q.file])
    return quantization_section(rep)
