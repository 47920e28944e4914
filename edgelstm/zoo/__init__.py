"""The model zoo: recipes are data (models/<name>/recipe.json), generators are registered code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import BadInputError
from edgelstm.paths import bundled_dir

MODELS_DIR = bundled_dir("models")


@dataclass(frozen=True)
class Recipe:
    """One zoo entry: data generator, architecture, training settings and metric."""

    name: str
    task: str
    generator: str
    seq_len: int
    features: int
    layers: tuple[dict[str, Any], ...]
    loss: str
    metric: str
    target: float
    train: dict[str, Any]
    quick: dict[str, Any]
    generator_args: dict[str, Any] = field(default_factory=dict)
    tokens: bool = False  # input is [T] int32 ids (Embedding front-end), not [T, features]
    description: str = ""
    search: dict[str, Any] = field(default_factory=dict)  # `edgelstm search` space overrides

    @property
    def higher_is_better(self) -> bool:
        from edgelstm.zoo.metrics import get_metric

        return get_metric(self.metric).higher_is_better

    @property
    def dir(self) -> Path:
        return MODELS_DIR / self.name

    def fit_targets(self, y: Any) -> tuple[Any, Any]:
        """Targets and sample weights for fitting: unscored labels (< 0) get weight 0."""
        import numpy as np

        if self.metric.endswith("after_delay"):
            return np.maximum(y, 0), (y[..., 0] >= 0).astype(np.float32)
        return y, None


def list_recipes() -> list[Recipe]:
    """Every recipe under models/, sorted by name."""
    return [load_recipe(p.parent.name) for p in sorted(MODELS_DIR.glob("*/recipe.json"))]


def load_recipe(name: str) -> Recipe:
    """The recipe models/<name>/recipe.json."""
    path = MODELS_DIR / name / "recipe.json"
    if not path.exists():
        known = ", ".join(p.parent.name for p in sorted(MODELS_DIR.glob("*/recipe.json")))
        raise BadInputError(f"unknown recipe '{name}' (known: {known})")
    try:
        data = json.loads(path.read_text())
        data["layers"] = tuple(data["layers"])
        return Recipe(**data)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path}: not a valid recipe ({type(exc).__name__}: {exc})") from None
