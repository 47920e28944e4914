"""Layers applied to each time step on its own: Dense, normalisation (Batch/Layer/Normalization,
Rescaling), identity, TimeDistributed."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.convert.layers.activations import (
    activation_name,
    keras_activation,
    np_activation,
    tf_activation,
)
from edgelstm.convert.layers.base import (
    REGISTRY,
    FormulaHandler,
    Handler,
    LayerSpec,
    _cfg,
    _framework,
    _lambda_layer,
    register,
)
from edgelstm.errors import UnsupportedLayerError

# --- per-step layers ---


@register("Dense")
class DenseHandler(Handler):
    args = "units, use_bias, every activation below"
    kind = "Dense"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        w = [np.asarray(v, np.float32) for v in layer.get_weights()]
        if len(w) == 1:
            w.append(np.zeros(w[0].shape[-1], np.float32))
        return LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={
                "units": int(cfg["units"]),
                "activation": activation_name(
                    cfg.get("activation"), _framework(layer), layer.name, "activation"
                ),
            },
            weights=w,
            out_dim=int(cfg["units"]),
        )

    def sequence(self, spec, x, keras):
        import tensorflow as tf

        layer = keras.layers.Dense(
            spec.config["units"],
            activation=keras_activation(spec.config["activation"], tf),
            name=spec.name,
        )
        y = layer(x)
        layer.set_weights(spec.weights)
        return y

    def step(self, spec, x, states, tf):
        w, b = spec.weights
        return tf_activation(spec.config["activation"], tf)(
            tf.matmul(x, tf.constant(w)) + tf.constant(b)
        ), []

    def step_numpy(self, spec, x, states):
        w, b = spec.weights
        return np_activation(spec.config["activation"])(x @ w + b), []


@register("TimeDistributed")
class TimeDistributedHandler(Handler):
    args = "around any per-step layer of this table"
    kind = "TimeDistributed"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        inner = layer.layer
        cls = type(inner).__name__
        h = REGISTRY.get(cls)
        if h is None or not h.per_step or h.recurrent or isinstance(h, TimeDistributedHandler):
            raise UnsupportedLayerError(
                f"layer '{layer.name}': TimeDistributed({cls}) is not supported (only layers "
                "that act on each step alone: "
                + ", ".join(
                    n for n, v in sorted(REGISTRY.items()) if v.per_step and not v.recurrent
                )
                + ")"
            )
        spec = h.parse(inner, in_dim)
        spec.name = layer.name
        spec.config["_inner"] = cls
        return spec

    def _inner(self, spec: LayerSpec) -> Handler:
        return REGISTRY[spec.config["_inner"]]

    def sequence(self, spec, x, keras):
        return self._inner(spec).sequence(spec, x, keras)

    def step(self, spec, x, states, tf):
        return self._inner(spec).step(spec, x, states, tf)

    def step_numpy(self, spec, x, states):
        return self._inner(spec).step_numpy(spec, x, states)


@register(
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
)
class IdentityHandler(Handler):
    args = "identity at inference"
    """Layers that do nothing at inference time."""

    kind = "Identity"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        return LayerSpec(kind=self.kind, name=layer.name, config={}, weights=[], out_dim=in_dim)

    def sequence(self, spec, x, keras):
        return x

    def step(self, spec, x, states, tf):
        return x, []

    def step_numpy(self, spec, x, states):
        return x, []


@register("BatchNormalization")
class BatchNormHandler(Handler):
    args = "axis -1 (folded into scale + shift)"
    """Inference-time batch norm: a per-feature affine map, streamable."""

    kind = "BatchNormalization"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) else axis
        if axis not in (-1, 2):
            raise UnsupportedLayerError(
                f"layer '{layer.name}': BatchNormalization over axis {axis} is not supported"
            )
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        vals = dict(
            zip(
                names,
                [np.asarray(v, np.float64) for v in layer.get_weights()],
                strict=True,
            )
        )
        gamma = vals.get("gamma", np.ones_like(vals["moving_mean"]))
        beta = vals.get("beta", np.zeros_like(vals["moving_mean"]))
        scale = gamma / np.sqrt(vals["moving_variance"] + cfg.get("epsilon", 1e-3))
        shift = beta - vals["moving_mean"] * scale
        return self._affine(layer, scale, shift, in_dim)

    def _affine(self, layer: Any, scale: Any, shift: Any, in_dim: int | None) -> LayerSpec:
        """The spec of x * scale + shift per feature (float32 weights)."""
        return LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={},
            weights=[np.asarray(scale, np.float32), np.asarray(shift, np.float32)],
            out_dim=in_dim,
        )

    def sequence(self, spec, x, keras):
        import tensorflow as tf

        scale, shift = spec.weights
        return _lambda_layer(
            keras, lambda v: v * tf.constant(scale) + tf.constant(shift), spec.name
        )(x)

    def step(self, spec, x, states, tf):
        scale, shift = spec.weights
        return x * tf.constant(scale) + tf.constant(shift), []

    def step_numpy(self, spec, x, states):
        scale, shift = spec.weights
        return x * scale + shift, []


def _per_feature(layer: Any, what: str, v: Any, d: int | None) -> np.ndarray:
    """A scalar or per-feature vector (any shape that broadcasts over the feature axis alone)
    as float32 of length d."""
    a = np.asarray(v, np.float64)
    if a.size != 1 and (d is None or a.size != d or a.shape[-1] != d):
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({type(layer).__name__}): {what} of shape {a.shape} is not "
            f"per feature (only the feature axis, -1, is supported)"
        )
    return np.broadcast_to(a.reshape(-1), (d or 1,)).astype(np.float32)


@register("Normalization")
class NormalizationHandler(BatchNormHandler):
    args = "axis -1 or None, mean/variance adapted or given, invert (folded into scale + shift)"
    """The preprocessing layer inside a model: (x - mean) / sqrt(variance), per feature."""

    kind = "Normalization"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        mean, var = getattr(layer, "mean", None), getattr(layer, "variance", None)
        if mean is None or var is None:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' (Normalization) has no mean/variance: adapt() it first"
            )
        mean = _per_feature(layer, "mean", mean, in_dim).astype(np.float64)
        var = _per_feature(layer, "variance", var, in_dim).astype(np.float64)
        # Keras divides by max(sqrt(variance), epsilon) (1e-7 in both Keras 3 and tf_keras).
        std = np.maximum(np.sqrt(var), 1e-7)
        if _cfg(layer).get("invert"):
            scale, shift = std, mean
        else:
            scale, shift = 1.0 / std, -mean / std
        return self._affine(layer, scale, shift, in_dim)


@register("Rescaling")
class RescalingHandler(BatchNormHandler):
    args = "scale, offset (scalars or per feature)"
    """x * scale + offset, per feature."""

    kind = "Rescaling"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        scale = _per_feature(layer, "scale", cfg.get("scale", 1.0), in_dim)
        shift = _per_feature(layer, "offset", cfg.get("offset", 0.0), in_dim)
        return self._affine(layer, scale, shift, in_dim)


@register("LayerNormalization")
class LayerNormHandler(FormulaHandler):
    args = "axis -1, epsilon, center, scale (not rms_scaling)"
    """LayerNormalization over the feature axis: per step, so streamable."""

    kind = "LayerNormalization"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        axis = cfg.get("axis", -1)
        axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if axis not in ([-1], [2]):
            raise UnsupportedLayerError(
                f"layer '{layer.name}': LayerNormalization over axis {axis} is not supported "
                "(only the feature axis, -1)"
            )
        if cfg.get("rms_scaling"):
            raise UnsupportedLayerError(
                f"layer '{layer.name}': LayerNormalization(rms_scaling=True) is not supported"
            )
        w = [np.asarray(v, np.float32) for v in layer.get_weights()]
        d = in_dim or 1
        gamma = w.pop(0) if cfg.get("scale", True) else np.ones(d, np.float32)
        beta = w.pop(0) if cfg.get("center", True) else np.zeros(d, np.float32)
        return LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={"epsilon": float(cfg.get("epsilon", 1e-3))},
            weights=[gamma, beta],
            out_dim=in_dim,
        )

    def _apply(self, spec: LayerSpec, x: Any, tf: Any) -> Any:
        gamma, beta = spec.weights
        eps = spec.config["epsilon"]
        if tf is None:
            mean = x.mean(axis=-1, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
            return (x - mean) / np.sqrt(var + eps) * gamma + beta
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        d = x - mean
        var = tf.reduce_mean(d * d, axis=-1, keepdims=True)
        return d * tf.math.rsqrt(var + eps) * tf.constant(gamma) + tf.constant(beta)
