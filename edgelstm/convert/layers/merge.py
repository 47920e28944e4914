"""Layers that merge parallel branches: Concatenate, Add, Subtract, Multiply, Average, Maximum,
Minimum. They act on each time step on its own, so a branching model streams like a chain: the
step model runs every branch for the step, then merges."""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np

from edgelstm.convert.layers.base import Handler, LayerSpec, _cfg, register
from edgelstm.errors import UnsupportedLayerError

# kind -> (how two step tensors combine, with `m` the math namespace: tf.math or numpy)
_PAIRWISE = {
    "Add": lambda m, a, b: a + b,
    "Average": lambda m, a, b: a + b,  # then divided by the count
    "Multiply": lambda m, a, b: a * b,
    "Maximum": lambda m, a, b: m.maximum(a, b),
    "Minimum": lambda m, a, b: m.minimum(a, b),
}


class MergeHandler(Handler):
    args = "two or more branches of equal width"
    stream = "per step (every branch streams)"
    merges = True

    def parse(self, layer: Any, in_dim: Any) -> LayerSpec:
        kind = type(layer).__name__
        dims = list(in_dim)
        if len(dims) < 2:
            raise UnsupportedLayerError(f"layer '{layer.name}' ({kind}) merges fewer than 2 inputs")
        if kind == "Subtract" and len(dims) != 2:
            raise UnsupportedLayerError(f"layer '{layer.name}' (Subtract) takes exactly 2 inputs")
        config: dict[str, Any] = {}
        if kind == "Concatenate":
            axis = _cfg(layer).get("axis", -1)
            shape = getattr(layer, "output", None)
            rank = len(shape.shape) if shape is not None else 3
            if axis not in (-1, rank - 1):
                raise UnsupportedLayerError(
                    f"layer '{layer.name}' (Concatenate, axis={axis}): only the feature axis "
                    "(-1) is supported"
                )
            config["axis"] = -1
            out = sum(dims) if all(d is not None for d in dims) else None
        else:
            if len(set(dims)) != 1:
                raise UnsupportedLayerError(
                    f"layer '{layer.name}' ({kind}): inputs of {dims} features differ"
                )
            out = dims[0]
        return LayerSpec(kind, layer.name, config, [], out_dim=out)

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        return getattr(keras.layers, spec.kind)(name=spec.name, **spec.config)(list(x))

    def _merge(self, spec: LayerSpec, xs: list[Any], m: Any, concat: Any) -> Any:
        if spec.kind == "Concatenate":
            return concat(xs)
        if spec.kind == "Subtract":
            return xs[0] - xs[1]
        y = reduce(lambda a, b: _PAIRWISE[spec.kind](m, a, b), xs)
        return y * (1.0 / len(xs)) if spec.kind == "Average" else y

    def step(self, spec: LayerSpec, x: Any, states: list[Any], tf: Any) -> tuple[Any, list[Any]]:
        return self._merge(spec, list(x), tf.math, lambda xs: tf.concat(xs, axis=-1)), []

    def step_numpy(self, spec: LayerSpec, x: Any, states: list[np.ndarray]):
        return self._merge(spec, list(x), np, lambda xs: np.concatenate(xs, axis=-1)), []


@register("Concatenate")
class ConcatenateHandler(MergeHandler):
    args = "axis=-1 (the feature axis), two or more branches"


@register("Subtract")
class SubtractHandler(MergeHandler):
    args = "two branches of equal width"


@register("Add", "Multiply", "Average", "Maximum", "Minimum")
class ElementwiseMergeHandler(MergeHandler):
    pass
