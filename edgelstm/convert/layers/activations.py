"""Activations: the functions (TF, Keras, NumPy) and the activation layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgelstm.convert.layers.base import (
    FormulaHandler,
    Handler,
    LayerSpec,
    _cfg,
    _framework,
    register,
)
from edgelstm.errors import UnsupportedLayerError

# --- activations -------------------------------------------------------------------------------

# Every Keras activation whose math maps onto TFLite builtins. Recurrent layers with anything but
# tanh/sigmoid are unrolled in the sequence model (the fused LSTM op takes only those).
ACTIVATIONS = (
    "linear",
    "tanh",
    "sigmoid",
    "relu",
    "relu6",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "silu",
    "gelu",
    "exponential",
    "leaky_relu",
    "hard_sigmoid",
    "hard_silu",
    "hard_tanh",
    "mish",
    "log_sigmoid",
    "tanh_shrink",
    "softmax",
    "log_softmax",
)
_ALIASES = {"None": "linear", "swish": "silu", "hard_swish": "hard_silu"}


def activation_name(act: Any, framework: str, layer_name: str, arg: str) -> str:
    """Neutral activation name; 'hard_sigmoid' differs between Keras 3 and Keras 2."""
    if isinstance(act, dict):  # a serialized activation object (Keras 3 with custom config)
        act = act.get("config", {}).get("name", act.get("class_name", "?"))
    name = act if isinstance(act, str) else getattr(act, "__name__", str(act))
    name = _ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise UnsupportedLayerError(
            f"layer '{layer_name}': {arg}='{name}' is not supported (supported: "
            + ", ".join(ACTIVATIONS)
            + ")"
        )
    if name == "hard_sigmoid":
        # Keras 3: relu6(x + 3) / 6; Keras 2: clip(0.2x + 0.5, 0, 1).
        return "hard_sigmoid_k3" if framework == "keras3" else "hard_sigmoid_k2"
    return name


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def tf_activation(name: str, tf: Any) -> Callable[[Any], Any]:
    def softplus(v: Any) -> Any:
        return tf.nn.softplus(v)

    return {
        "linear": lambda v: v,
        "tanh": tf.tanh,
        "sigmoid": tf.sigmoid,
        "relu": tf.nn.relu,
        "relu6": tf.nn.relu6,
        "elu": tf.nn.elu,
        "selu": lambda v: _SELU_SCALE * tf.where(v > 0, v, _SELU_ALPHA * (tf.exp(v) - 1.0)),
        "softplus": softplus,
        "softsign": lambda v: v / (1.0 + tf.abs(v)),
        "silu": lambda v: v * tf.sigmoid(v),
        "gelu": lambda v: tf.nn.gelu(v, approximate=False),
        "exponential": tf.exp,
        "leaky_relu": lambda v: tf.nn.leaky_relu(v, alpha=0.2),
        "hard_silu": lambda v: v * tf.nn.relu6(v + 3.0) / 6.0,
        "hard_tanh": lambda v: tf.clip_by_value(v, -1.0, 1.0),
        "mish": lambda v: v * tf.tanh(softplus(v)),
        "log_sigmoid": lambda v: -softplus(-v),
        "tanh_shrink": lambda v: v - tf.tanh(v),
        "softmax": lambda v: tf.nn.softmax(v, axis=-1),
        "log_softmax": lambda v: tf.nn.log_softmax(v, axis=-1),
        "hard_sigmoid_k3": lambda v: tf.nn.relu6(v + 3.0) / 6.0,
        "hard_sigmoid_k2": lambda v: tf.clip_by_value(0.2 * v + 0.5, 0.0, 1.0),
    }[name]


def keras_activation(name: str, tf: Any) -> Any:
    """What to pass as `activation=` to a tf_keras layer (names tf_keras may spell differently
    go as functions)."""
    if name in ("linear", "tanh", "sigmoid", "relu", "softmax", "elu"):
        return name
    return tf_activation(name, tf)


def np_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    from math import erf

    def softmax(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def softplus(v: np.ndarray) -> np.ndarray:
        return np.logaddexp(0.0, v)

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    return {
        "linear": lambda v: v,
        "tanh": np.tanh,
        "sigmoid": sigmoid,
        "relu": lambda v: np.maximum(v, 0),
        "relu6": lambda v: np.clip(v, 0, 6),
        "elu": lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))),
        "selu": lambda v: (
            _SELU_SCALE * np.where(v > 0, v, _SELU_ALPHA * np.expm1(np.minimum(v, 0)))
        ),
        "softplus": softplus,
        "softsign": lambda v: v / (1.0 + np.abs(v)),
        "silu": lambda v: v * sigmoid(v),
        "gelu": lambda v: 0.5 * v * (1.0 + np.vectorize(erf)(v / np.sqrt(2.0))),
        "exponential": np.exp,
        "leaky_relu": lambda v: np.where(v > 0, v, 0.2 * v),
        "hard_silu": lambda v: v * np.clip(v + 3.0, 0, 6) / 6.0,
        "hard_tanh": lambda v: np.clip(v, -1.0, 1.0),
        "mish": lambda v: v * np.tanh(softplus(v)),
        "log_sigmoid": lambda v: -softplus(-v),
        "tanh_shrink": lambda v: v - np.tanh(v),
        "softmax": softmax,
        "log_softmax": lambda v: np.log(softmax(v)),
        "hard_sigmoid_k3": lambda v: np.clip(v + 3.0, 0, 6) / 6.0,
        "hard_sigmoid_k2": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
    }[name]


@register("Activation", "ReLU", "Softmax")
class ActivationHandler(Handler):
    args = "every activation below; ReLU(max_value None/6)"
    kind = "Activation"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cls = type(layer).__name__
        cfg = _cfg(layer)
        if cls == "ReLU":
            if cfg.get("negative_slope") or cfg.get("threshold"):
                raise UnsupportedLayerError(
                    f"layer '{layer.name}': leaky/thresholded ReLU is not supported"
                )
            act = "relu6" if cfg.get("max_value") == 6 else "relu"
            if cfg.get("max_value") not in (None, 6, 6.0):
                raise UnsupportedLayerError(
                    f"layer '{layer.name}': ReLU(max_value={cfg['max_value']}) is not supported"
                )
        elif cls == "Softmax":
            act = "softmax"
        else:
            act = activation_name(
                cfg.get("activation"), _framework(layer), layer.name, "activation"
            )
        return LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={"activation": act},
            weights=[],
            out_dim=in_dim,
        )

    def sequence(self, spec, x, keras):
        import tensorflow as tf

        return keras.layers.Activation(
            keras_activation(spec.config["activation"], tf), name=spec.name
        )(x)

    def step(self, spec, x, states, tf):
        return tf_activation(spec.config["activation"], tf)(x), []

    def step_numpy(self, spec, x, states):
        return np_activation(spec.config["activation"])(x), []


@register("LeakyReLU", "ELU", "PReLU")
class ParamActivationHandler(FormulaHandler):
    args = "LeakyReLU(negative_slope), ELU(alpha), PReLU(shared_axes=[1])"
    """Activation layers with a parameter: LeakyReLU(negative_slope), ELU(alpha), PReLU(alpha)."""

    kind = "ParamActivation"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cls = type(layer).__name__
        cfg = _cfg(layer)
        if cls == "LeakyReLU":
            slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
            alpha = np.full((in_dim or 1,), float(slope), np.float32)
        elif cls == "ELU":
            alpha = np.full((in_dim or 1,), float(cfg.get("alpha", 1.0)), np.float32)
        else:
            w = np.asarray(layer.get_weights()[0], np.float32)
            if w.ndim == 2 and w.shape[0] != 1:
                raise UnsupportedLayerError(
                    f"layer '{layer.name}': PReLU with a slope per time step is not supported; "
                    "use PReLU(shared_axes=[1])"
                )
            alpha = w.reshape(-1)
            if alpha.size == 1:
                alpha = np.full((in_dim or 1,), alpha[0], np.float32)
        return LayerSpec(
            kind=cls,
            name=layer.name,
            config={"op": "elu" if cls == "ELU" else "leaky"},
            weights=[alpha],
            out_dim=in_dim,
        )

    def _apply(self, spec: LayerSpec, x: Any, tf: Any | None) -> Any:
        alpha = spec.weights[0]
        if tf is None:
            neg = alpha * (np.expm1(np.minimum(x, 0)) if spec.config["op"] == "elu" else x)
            return np.where(x > 0, x, neg)
        if spec.config["op"] == "elu":
            if np.all(alpha == 1.0):
                return tf.nn.elu(x)
            return tf.nn.relu(x) + tf.constant(alpha) * (tf.exp(tf.minimum(x, 0.0)) - 1.0)
        # (1 - alpha) * relu(x) + alpha * x: RELU/MUL/ADD, ops every runtime (and the C engine)
        # has; no NEG, no LEAKY_RELU/PRELU.
        return tf.constant(1.0 - alpha) * tf.nn.relu(x) + tf.constant(alpha) * x
