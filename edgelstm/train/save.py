"""A trained model and its measurements (TrainResult), and saving them as a training directory."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.fsutil import publish, reproducible_keras_zip


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
