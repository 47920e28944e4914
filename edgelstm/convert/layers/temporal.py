"""Layers that mix time steps: Conv1D (causal ones stream with a window state), pooling and shape layers."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from edgelstm.convert.layers.activations import (
    activation_name,
    keras_activation,
    np_activation,
    tf_activation,
)
from edgelstm.convert.layers.base import Handler, LayerSpec, StateSpec, _cfg, _framework, register
from edgelstm.convert.layers.configs import Conv1DConfig
from edgelstm.errors import UnsupportedLayerError


@register("Conv1D")
class Conv1DHandler(Handler):
    args = "filters, kernel_size, dilation_rate, padding, strides, activation"
    stream = "padding='causal', strides 1 (window as state)"
    """Conv1D; streamable when causal: its last (k-1)*dilation inputs are carried as state."""

    kind = "Conv1D"
    per_step = False

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        w = [np.asarray(v, np.float32) for v in layer.get_weights()]
        if len(w) == 1:
            w.append(np.zeros(w[0].shape[-1], np.float32))
        k = int(
            cfg["kernel_size"][0]
            if isinstance(cfg["kernel_size"], (list, tuple))
            else cfg["kernel_size"]
        )
        stride = cfg.get("strides", 1)
        stride = int(stride[0] if isinstance(stride, (list, tuple)) else stride)
        dil = cfg.get("dilation_rate", 1)
        dil = int(dil[0] if isinstance(dil, (list, tuple)) else dil)
        if cfg.get("groups", 1) != 1:
            raise UnsupportedLayerError(f"layer '{layer.name}': grouped Conv1D is not supported")
        config = Conv1DConfig(
            filters=int(cfg["filters"]),
            kernel_size=k,
            strides=stride,
            dilation_rate=dil,
            padding=cfg.get("padding", "valid"),
            activation=activation_name(
                cfg.get("activation"), _framework(layer), layer.name, "activation"
            ),
            in_dim=in_dim,
        )
        spec = LayerSpec(
            kind=self.kind, name=layer.name, config=config, weights=w, out_dim=config.filters
        )
        if config.padding != "causal" and k > 1:
            spec.blockers.append(
                f"{layer.name}: Conv1D padding='{config.padding}' looks ahead or shortens the "
                "sequence; use padding='causal' to stream it"
            )
        if stride != 1:
            spec.blockers.append(f"{layer.name}: Conv1D strides={stride} changes the time rate")
        return spec

    @staticmethod
    def config_of(spec: LayerSpec) -> Conv1DConfig:
        assert isinstance(spec.config, Conv1DConfig), spec.name
        return spec.config

    def sequence(self, spec, x, keras):
        import tensorflow as tf

        c = self.config_of(spec)
        layer = keras.layers.Conv1D(
            c.filters,
            c.kernel_size,
            strides=c.strides,
            dilation_rate=c.dilation_rate,
            padding=c.padding,
            activation=keras_activation(c.activation, tf),
            name=spec.name,
        )
        y = layer(x)
        layer.set_weights(spec.weights)
        return y

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        c = self.config_of(spec)
        return [StateSpec("win", (c.window, c.in_dim))] if c.window else []

    def step(self, spec, x, states, tf):
        kernel, bias = spec.weights
        c = self.config_of(spec)
        k, d = c.kernel_size, c.dilation_rate
        w = tf.constant(kernel.reshape(-1, kernel.shape[-1]))
        act = tf_activation(c.activation, tf)
        if not states:
            return act(tf.matmul(x, w) + tf.constant(bias)), []
        full = tf.concat([states[0], tf.expand_dims(x, 1)], axis=1)  # [1, win+1, C]
        taps = full[:, ::d, :] if d > 1 else full
        flat = tf.reshape(taps, [1, k * kernel.shape[1]])
        return act(tf.matmul(flat, w) + tf.constant(bias)), [full[:, 1:, :]]

    def step_numpy(self, spec, x, states):
        kernel, bias = spec.weights
        c = self.config_of(spec)
        d = c.dilation_rate
        w = kernel.reshape(-1, kernel.shape[-1])
        act = np_activation(c.activation)
        if not states:
            return act(x @ w + bias), []
        full = np.concatenate([states[0], x[:, None, :]], axis=1)
        taps = full[:, ::d, :]
        return act(taps.reshape(1, -1) @ w + bias), [full[:, 1:, :]]


@register(
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "RepeatVector",
    "Reshape",
    "ZeroPadding1D",
    "Cropping1D",
    "UpSampling1D",
)
class SequenceOnlyHandler(Handler):
    args = MappingProxyType(
        {
            "Flatten": "to a static shape",
            "GlobalAveragePooling1D": "keepdims",
            "GlobalMaxPooling1D": "keepdims",
            "MaxPooling1D": "pool_size, strides, padding",
            "AveragePooling1D": "pool_size, strides, padding",
            "RepeatVector": "n",
            "Reshape": "static target_shape",
            "ZeroPadding1D": "padding",
            "Cropping1D": "cropping",
            "UpSampling1D": "size",
        }
    )
    stream = "sequence model only"
    """Layers that mix time steps: fine in the sequence model, block streaming."""

    kind = "SequenceOnly"
    per_step = False

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        cls = type(layer).__name__
        out_dim = in_dim
        shape = getattr(layer, "output_shape", None)
        if cls in ("Flatten", "Reshape") and shape is not None:
            if any(d is None for d in list(shape)[1:]):
                raise UnsupportedLayerError(
                    f"layer '{layer.name}': {cls} to a shape that is not static ({tuple(shape)})"
                )
            out_dim = int(list(shape)[-1])
        spec = LayerSpec(kind=cls, name=layer.name, config=cfg, weights=[], out_dim=out_dim)
        spec.config["_class"] = cls
        spec.blockers.append(f"{layer.name}: {type(layer).__name__} mixes time steps")
        return spec

    def sequence(self, spec, x, keras):
        cls = spec.config["_class"]
        cfg = {
            k: v
            for k, v in spec.config.items()
            if k
            in (
                "pool_size",
                "strides",
                "padding",
                "keepdims",
                "n",
                "target_shape",
                "cropping",
                "size",
            )
        }
        if cls == "Flatten":
            return keras.layers.Flatten(name=spec.name)(x)
        return getattr(keras.layers, cls)(name=spec.name, **cfg)(x)
