"""The layer registry: one handler per Keras layer kind.

A handler knows how to read the layer from a Keras 3 or tf_keras model into a framework-neutral
`LayerSpec`, how to rebuild it in tf_keras for the *sequence* model (where the converter fuses
LSTMs), and how to express one time step of it with plain TensorFlow ops for the *step* model
(state as explicit tensors). Adding a layer kind means adding one handler here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from edgelstm.errors import UnsupportedLayerError


@dataclass
class LayerSpec:
    """A Keras layer, framework-neutral: its kind, settings and weights."""

    kind: str
    name: str
    config: dict[str, Any]
    weights: list[np.ndarray]
    out_dim: int | None = None  # features per time step after this layer
    blockers: list[str] = field(default_factory=list)  # why it cannot be streamed
    notes: list[str] = field(default_factory=list)


@dataclass
class StateSpec:
    """One state tensor a layer carries between steps (shape without the batch dim)."""

    role: str
    shape: tuple[int, ...]


class Handler:
    """Base class; subclasses register with @register("KerasClassName", ...)."""

    kind: str = ""
    recurrent: bool = False
    per_step: bool = True  # applies to each time step independently (Dense, Dropout, ...)
    args: str = ""  # the supported arguments, for the README table
    stream: str = ""  # how it streams, when not obvious from recurrent/per_step

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        raise NotImplementedError

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        """Apply the tf_keras rebuild of this layer to tensor x (sequence model)."""
        raise NotImplementedError

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        return []

    def step(self, spec: LayerSpec, x: Any, states: list[Any], tf: Any) -> tuple[Any, list[Any]]:
        """One time step with TF ops: x is [1, features]; returns (y, next states)."""
        raise NotImplementedError

    def step_numpy(self, spec: LayerSpec, x: np.ndarray, states: list[np.ndarray]):
        """The same step in NumPy (float64), used to gather calibration states cheaply."""
        raise NotImplementedError

    def step_mask(self, spec: LayerSpec, x: Any, tf: Any | None) -> Any | None:
        """A [1, 1] mask (1 = a real step, 0 = masked) when this layer starts a mask, else None.

        tf=None: NumPy. Recurrent layers behind a mask keep their state and repeat their output
        at a masked step, as Keras does."""
        return None


_REGISTRY: dict[str, Handler] = {}


def register(*class_names: str) -> Callable[[type[Handler]], type[Handler]]:
    def wrap(cls: type[Handler]) -> type[Handler]:
        inst = cls()
        for name in class_names:
            _REGISTRY[name] = inst
        return cls

    return wrap


def handler_for(class_name: str, layer_name: str) -> Handler:
    """The handler for a Keras class, or UnsupportedLayerError naming the layer."""
    try:
        return _REGISTRY[class_name]
    except KeyError:
        raise UnsupportedLayerError(
            f"layer '{layer_name}' ({class_name}) is not supported; supported: "
            + ", ".join(sorted(_REGISTRY))
        ) from None


def supported_layers() -> list[str]:
    return sorted(_REGISTRY)


def support_table() -> str:
    """The README's table of supported Keras layers, generated from the registry."""
    rows = ["| Keras layer | arguments | step model |", "| --- | --- | --- |"]
    for name in sorted(_REGISTRY, key=str.lower):
        h = _REGISTRY[name]
        stream = h.stream or (
            "state as explicit I/O" if h.recurrent else "per step" if h.per_step else "-"
        )
        rows.append(f"| {name} | {h.args} | {stream} |")
    acts = ", ".join(_ACTIVATIONS[:-2]) + " (softmax, log_softmax: not as recurrent activations)"
    return "\n".join(rows) + f"\n\nActivations: {acts}.\n"


# --- activations -------------------------------------------------------------------------------

# Every Keras activation whose math maps onto TFLite builtins. Recurrent layers with anything but
# tanh/sigmoid are unrolled in the sequence model (the fused LSTM op takes only those).
_ACTIVATIONS = (
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
    if name not in _ACTIVATIONS:
        raise UnsupportedLayerError(
            f"layer '{layer_name}': {arg}='{name}' is not supported (supported: "
            + ", ".join(_ACTIVATIONS)
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


def fusable_activations(cfg: dict[str, Any]) -> bool:
    """The fused UNIDIRECTIONAL_SEQUENCE_LSTM op computes tanh cells and sigmoid gates only."""
    return cfg.get("activation") == "tanh" and cfg.get("recurrent_activation") == "sigmoid"


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


def _lambda_layer(keras: Any, fn: Callable[[Any], Any], name: str) -> Any:
    """A tf_keras Lambda layer whose function runs as written: autograph would re-read this
    file's source at trace time, and the functions are straight-line TF ops anyway."""
    import tensorflow as tf

    return keras.layers.Lambda(tf.autograph.experimental.do_not_convert(fn), name=name)


def _framework(layer: Any) -> str:
    return "tf_keras" if type(layer).__module__.startswith("tf_keras") else "keras3"


def _cfg(layer: Any) -> dict[str, Any]:
    return layer.get_config()


# --- recurrent layers --------------------------------------------------------------------------


class _Recurrent(Handler):
    recurrent = True
    per_step = False

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        return self.parse_config(layer, _cfg(layer), layer.get_weights(), in_dim)

    def parse_config(
        self, layer: Any, cfg: dict[str, Any], weights: list[Any], in_dim: int | None
    ) -> LayerSpec:
        """The spec from a layer config (an RNN(cell) passes the cell's merged with its own)."""
        fw = _framework(layer)
        name = layer.name
        spec = LayerSpec(
            kind=self.kind,
            name=name,
            config={
                "units": int(cfg["units"]),
                "activation": activation_name(
                    cfg.get("activation", "tanh"), fw, name, "activation"
                ),
                "recurrent_activation": activation_name(
                    cfg.get("recurrent_activation", "sigmoid"),
                    fw,
                    name,
                    "recurrent_activation",
                ),
                "use_bias": bool(cfg.get("use_bias", True)),
                "return_sequences": bool(cfg.get("return_sequences", False)),
                "go_backwards": bool(cfg.get("go_backwards", False)),
                "stateful": bool(cfg.get("stateful", False)),
                "reset_after": bool(cfg.get("reset_after", True)),
                "in_dim": in_dim,
            },
            weights=[np.asarray(w, np.float32) for w in weights],
            out_dim=int(cfg["units"]),
        )
        if cfg.get("return_state"):
            raise UnsupportedLayerError(
                f"layer '{name}': return_state=True is not supported (the step model returns "
                "the state explicitly; remove return_state from the deploy model)"
            )
        if cfg.get("time_major"):
            raise UnsupportedLayerError(f"layer '{name}': time_major=True is not supported")
        if spec.config["go_backwards"]:
            spec.blockers.append(f"{name}: go_backwards=True reads the sequence from its end")
            spec.notes.append(
                f"{name}: go_backwards=True lowered as REVERSE_V2 + forward layer so the LSTM stays fused"
            )
        if self.kind == "LSTM" and not fusable_activations(spec.config):
            spec.notes.append(
                f"{name}: activation={spec.config['activation']}, recurrent_activation="
                f"{spec.config['recurrent_activation']}: the fused LSTM op computes tanh/sigmoid "
                "only, so the sequence model unrolls this layer into plain ops"
            )
        if spec.config["stateful"]:
            spec.notes.append(
                f"{name}: stateful=True: the sequence model starts each sequence from zero state; "
                "use the step model to carry state across chunks"
            )
        if not spec.config["use_bias"]:
            h = spec.config["units"]
            spec.weights.append(np.zeros(self._bias_shape(h, spec.config), np.float32))
        return spec

    def _bias_shape(self, h: int, cfg: dict[str, Any]) -> tuple[int, ...]:
        raise NotImplementedError

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        raise NotImplementedError

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        import tensorflow as tf

        if spec.config["go_backwards"]:
            x = _lambda_layer(keras, lambda v: tf.reverse(v, axis=[1]), f"{spec.name}_reverse")(x)
        unroll = (
            self.kind != "LSTM"
            or spec.config.get("masked", False)
            or not fusable_activations(spec.config)
        )
        layer = self._keras_layer(spec, keras, tf, unroll)
        y = layer(x)
        layer.set_weights(self._keras_weights(spec))
        return y

    def _keras_weights(self, spec: LayerSpec) -> list[np.ndarray]:
        return spec.weights


@register("LSTM")
class LSTMHandler(_Recurrent):
    args = "units, return_sequences, go_backwards, stateful, use_bias, every activation / recurrent_activation below (tanh/sigmoid fuse; others unroll)"
    kind = "LSTM"

    def _bias_shape(self, h: int, cfg: dict[str, Any]) -> tuple[int, ...]:
        return (4 * h,)

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        c = spec.config
        return keras.layers.LSTM(
            c["units"],
            activation=keras_activation(c["activation"], tf),
            recurrent_activation=keras_activation(c["recurrent_activation"], tf),
            use_bias=True,
            return_sequences=c["return_sequences"],
            unroll=unroll,
            name=spec.name,
        )

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        h = spec.config["units"]
        return [StateSpec("h", (h,)), StateSpec("c", (h,))]

    def step(self, spec, x, states, tf):
        kernel, rec, bias = spec.weights[:3]
        h, c = states
        act = tf_activation(spec.config["activation"], tf)
        ract = tf_activation(spec.config["recurrent_activation"], tf)
        # Two FULLY_CONNECTEDs (x.K + h.R), not one over concat([x, h]): in int8 a CONCATENATION
        # forces x and h onto one scale, which starves h of resolution when x's range is wide.
        z = tf.matmul(x, tf.constant(kernel)) + tf.constant(bias) + tf.matmul(h, tf.constant(rec))
        i, f, g, o = tf.split(z, 4, axis=1)
        c2 = ract(f) * c + ract(i) * act(g)
        h2 = ract(o) * act(c2)
        return h2, [h2, c2]

    def step_numpy(self, spec, x, states):
        kernel, rec, bias = spec.weights[:3]
        h, c = states
        act = np_activation(spec.config["activation"])
        ract = np_activation(spec.config["recurrent_activation"])
        z = x @ kernel + h @ rec + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c2 = ract(f) * c + ract(i) * act(g)
        h2 = ract(o) * act(c2)
        return h2, [h2, c2]


@register("GRU")
class GRUHandler(_Recurrent):
    args = "units, return_sequences, go_backwards, stateful, use_bias, reset_after both ways, every activation / recurrent_activation below"
    kind = "GRU"

    def _bias_shape(self, h: int, cfg: dict[str, Any]) -> tuple[int, ...]:
        return (2, 3 * h) if cfg["reset_after"] else (3 * h,)

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        c = spec.config
        return keras.layers.GRU(
            c["units"],
            activation=keras_activation(c["activation"], tf),
            recurrent_activation=keras_activation(c["recurrent_activation"], tf),
            use_bias=True,
            reset_after=c["reset_after"],
            return_sequences=c["return_sequences"],
            unroll=unroll,
            name=spec.name,
        )

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        return [StateSpec("h", (spec.config["units"],))]

    def _step(self, spec, x, h, ops):
        kernel, rec, bias = spec.weights[:3]
        units = spec.config["units"]
        act, ract, matmul, const, split = ops
        if spec.config["reset_after"]:
            xz = matmul(x, const(kernel)) + const(bias[0])
            hz = matmul(h, const(rec)) + const(bias[1])
            xz_z, xz_r, xz_h = split(xz)
            hz_z, hz_r, hz_h = split(hz)
            z = ract(xz_z + hz_z)
            r = ract(xz_r + hz_r)
            hh = act(xz_h + r * hz_h)
        else:
            xz = matmul(x, const(kernel)) + const(bias)
            xz_z, xz_r, xz_h = split(xz)
            hz = matmul(h, const(rec[:, : 2 * units]))
            hz_z, hz_r = hz[:, :units], hz[:, units:]
            z = ract(xz_z + hz_z)
            r = ract(xz_r + hz_r)
            hh = act(xz_h + matmul(r * h, const(rec[:, 2 * units :])))
        h2 = z * h + (1.0 - z) * hh
        return h2, [h2]

    def step(self, spec, x, states, tf):
        ops = (
            tf_activation(spec.config["activation"], tf),
            tf_activation(spec.config["recurrent_activation"], tf),
            tf.matmul,
            tf.constant,
            lambda v: tf.split(v, 3, axis=1),
        )
        return self._step(spec, x, states[0], ops)

    def step_numpy(self, spec, x, states):
        ops = (
            np_activation(spec.config["activation"]),
            np_activation(spec.config["recurrent_activation"]),
            np.matmul,
            lambda v: v,
            lambda v: np.split(v, 3, axis=1),
        )
        return self._step(spec, x, states[0], ops)


@register("SimpleRNN")
class SimpleRNNHandler(_Recurrent):
    args = "units, return_sequences, go_backwards, stateful, use_bias, every activation below"
    kind = "SimpleRNN"

    def _bias_shape(self, h: int, cfg: dict[str, Any]) -> tuple[int, ...]:
        return (h,)

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        c = spec.config
        return keras.layers.SimpleRNN(
            c["units"],
            activation=keras_activation(c["activation"], tf),
            use_bias=True,
            return_sequences=c["return_sequences"],
            unroll=unroll,
            name=spec.name,
        )

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        return [StateSpec("h", (spec.config["units"],))]

    def step(self, spec, x, states, tf):
        kernel, rec, bias = spec.weights[:3]
        z = (
            tf.matmul(x, tf.constant(kernel))
            + tf.constant(bias)
            + tf.matmul(states[0], tf.constant(rec))
        )
        h2 = tf_activation(spec.config["activation"], tf)(z)
        return h2, [h2]

    def step_numpy(self, spec, x, states):
        kernel, rec, bias = spec.weights[:3]
        h2 = np_activation(spec.config["activation"])(x @ kernel + states[0] @ rec + bias)
        return h2, [h2]


@register("Bidirectional")
class BidirectionalHandler(Handler):
    args = "merge_mode concat/sum/mul/ave around LSTM/GRU/SimpleRNN (not None)"
    stream = "sequence model only"
    kind = "Bidirectional"
    recurrent = True
    per_step = False

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        fwd_layer = layer.forward_layer
        bwd_layer = layer.backward_layer
        fwd = handler_for(type(fwd_layer).__name__, fwd_layer.name).parse(fwd_layer, in_dim)
        bwd = handler_for(type(bwd_layer).__name__, bwd_layer.name).parse(bwd_layer, in_dim)
        merge = cfg.get("merge_mode", "concat")
        if merge not in ("concat", "sum", "mul", "ave"):
            raise UnsupportedLayerError(
                f"layer '{layer.name}': merge_mode={merge!r} is not supported"
            )
        units = fwd.config["units"]
        spec = LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={
                "merge_mode": merge,
                "forward": fwd,
                "backward": bwd,
                "units": units,
            },
            weights=[],
            out_dim=2 * units if merge == "concat" else units,
        )
        spec.blockers.append(
            f"{layer.name}: Bidirectional needs the whole sequence (its backward half reads it from the end)"
        )
        return spec

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        import tensorflow as tf

        c = spec.config
        fwd, bwd = c["forward"], c["backward"]
        fh, bh = handler_for(fwd.kind, fwd.name), handler_for(bwd.kind, bwd.name)
        # Each half keeps its own go_backwards (lowered as REVERSE_V2 + a forward layer, so both
        # stay fused): with an explicit backward_layer the *forward* half may be the reversed one.
        # As in Keras, the backward half's sequence output is flipped whatever its direction.
        yf = fh.sequence(fwd, x, keras)
        yb = bh.sequence(bwd, x, keras)
        if bwd.config["return_sequences"]:
            yb = _lambda_layer(keras, lambda v: tf.reverse(v, axis=[1]), f"{spec.name}_unreverse")(
                yb
            )
        merge = {
            "concat": keras.layers.Concatenate(axis=-1, name=f"{spec.name}_concat"),
            "sum": keras.layers.Add(name=f"{spec.name}_sum"),
            "mul": keras.layers.Multiply(name=f"{spec.name}_mul"),
            "ave": keras.layers.Average(name=f"{spec.name}_ave"),
        }[c["merge_mode"]]
        return merge([yf, yb])


# --- per-step layers ---------------------------------------------------------------------------


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
        h = _REGISTRY.get(cls)
        if h is None or not h.per_step or h.recurrent or isinstance(h, TimeDistributedHandler):
            raise UnsupportedLayerError(
                f"layer '{layer.name}': TimeDistributed({cls}) is not supported (only layers "
                "that act on each step alone: "
                + ", ".join(
                    n for n, v in sorted(_REGISTRY.items()) if v.per_step and not v.recurrent
                )
                + ")"
            )
        spec = h.parse(inner, in_dim)
        spec.name = layer.name
        spec.config["_inner"] = cls
        return spec

    def _inner(self, spec: LayerSpec) -> Handler:
        return _REGISTRY[spec.config["_inner"]]

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
        return LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={},
            weights=[scale.astype(np.float32), shift.astype(np.float32)],
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


@register("Embedding")
class EmbeddingHandler(Handler):
    args = "input_dim, output_dim, mask_zero (the step model masks as Keras does)"
    kind = "Embedding"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        table = np.asarray(layer.get_weights()[0], np.float32)
        spec = LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={
                "input_dim": int(cfg["input_dim"]),
                "output_dim": int(cfg["output_dim"]),
                "mask_zero": bool(cfg.get("mask_zero", False)),
            },
            weights=[table],
            out_dim=int(cfg["output_dim"]),
        )
        if spec.config["mask_zero"]:
            spec.notes.append(
                f"{layer.name}: mask_zero=True: the step model treats token 0 as Keras does "
                "(the recurrent state is kept and the last output repeated)"
            )
        return spec

    def sequence(self, spec, x, keras):
        layer = keras.layers.Embedding(
            spec.config["input_dim"],
            spec.config["output_dim"],
            mask_zero=spec.config["mask_zero"],
            name=spec.name,
        )
        y = layer(x)
        layer.set_weights(spec.weights)
        return y

    def step(self, spec, x, states, tf):
        return tf.gather(tf.constant(spec.weights[0]), x), []

    def step_numpy(self, spec, x, states):
        return spec.weights[0][np.asarray(x, np.int64)], []

    def step_mask(self, spec, x, tf):
        if not spec.config["mask_zero"]:
            return None
        # A second GATHER from a 0/1 table (not a NOT_EQUAL + CAST): it quantizes exactly and
        # every runtime, the C engine included, has GATHER.
        table = (np.arange(spec.config["input_dim"]) != 0).astype(np.float32)[:, None]
        if tf is None:
            return table[np.asarray(x, np.int64)]
        return tf.gather(tf.constant(table), x)


@register("Masking")
class MaskingHandler(Handler):
    args = "mask_value (the step model masks as Keras does)"
    kind = "Masking"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        spec = LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={"mask_value": float(cfg.get("mask_value", 0.0))},
            weights=[],
            out_dim=in_dim,
        )
        spec.notes.append(
            f"{layer.name}: Masking: the recurrent layers behind it are unrolled in the sequence model "
            "(a masked LSTM cannot use the fused op); the step model computes the mask itself "
            "(a masked step keeps the state and repeats the last output, as Keras does)"
        )
        spec.config["in_dim"] = in_dim
        return spec

    def sequence(self, spec, x, keras):
        return keras.layers.Masking(mask_value=spec.config["mask_value"], name=spec.name)(x)

    def step(self, spec, x, states, tf):
        return x, []

    def step_numpy(self, spec, x, states):
        return x, []

    def step_mask(self, spec, x, tf):
        # 1 unless every feature equals mask_value, exactly as Keras tests it (NOT_EQUAL + ANY +
        # CAST; a steep arithmetic ramp instead would need scales int8 kernels refuse).
        v = spec.config["mask_value"]
        if tf is None:
            return np.any(x != v, axis=-1, keepdims=True).astype(np.float64)
        return tf.cast(tf.reduce_any(tf.not_equal(x, v), axis=-1, keepdims=True), tf.float32)


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
        spec = LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={
                "filters": int(cfg["filters"]),
                "kernel_size": k,
                "strides": stride,
                "dilation_rate": dil,
                "padding": cfg.get("padding", "valid"),
                "activation": activation_name(
                    cfg.get("activation"), _framework(layer), layer.name, "activation"
                ),
                "in_dim": in_dim,
            },
            weights=w,
            out_dim=int(cfg["filters"]),
        )
        if spec.config["padding"] != "causal" and k > 1:
            spec.blockers.append(
                f"{layer.name}: Conv1D padding='{spec.config['padding']}' looks ahead or shortens the "
                "sequence; use padding='causal' to stream it"
            )
        if stride != 1:
            spec.blockers.append(f"{layer.name}: Conv1D strides={stride} changes the time rate")
        return spec

    def sequence(self, spec, x, keras):
        import tensorflow as tf

        c = spec.config
        layer = keras.layers.Conv1D(
            c["filters"],
            c["kernel_size"],
            strides=c["strides"],
            dilation_rate=c["dilation_rate"],
            padding=c["padding"],
            activation=keras_activation(c["activation"], tf),
            name=spec.name,
        )
        y = layer(x)
        layer.set_weights(spec.weights)
        return y

    def _window(self, spec: LayerSpec) -> int:
        return (spec.config["kernel_size"] - 1) * spec.config["dilation_rate"]

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        win = self._window(spec)
        return [StateSpec("win", (win, spec.config["in_dim"]))] if win else []

    def step(self, spec, x, states, tf):
        kernel, bias = spec.weights
        k, d = spec.config["kernel_size"], spec.config["dilation_rate"]
        w = tf.constant(kernel.reshape(-1, kernel.shape[-1]))
        act = tf_activation(spec.config["activation"], tf)
        if not states:
            return act(tf.matmul(x, w) + tf.constant(bias)), []
        full = tf.concat([states[0], tf.expand_dims(x, 1)], axis=1)  # [1, win+1, C]
        taps = full[:, ::d, :] if d > 1 else full
        flat = tf.reshape(taps, [1, k * kernel.shape[1]])
        return act(tf.matmul(flat, w) + tf.constant(bias)), [full[:, 1:, :]]

    def step_numpy(self, spec, x, states):
        kernel, bias = spec.weights
        d = spec.config["dilation_rate"]
        w = kernel.reshape(-1, kernel.shape[-1])
        act = np_activation(spec.config["activation"])
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
)
class SequenceOnlyHandler(Handler):
    args = "pool_size, strides, padding, n, static target_shape"
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
            if k in ("pool_size", "strides", "padding", "keepdims", "n", "target_shape")
        }
        if cls == "Flatten":
            return keras.layers.Flatten(name=spec.name)(x)
        return getattr(keras.layers, cls)(name=spec.name, **cfg)(x)


@register("RNN")
class RNNHandler(Handler):
    args = "RNN(LSTMCell/GRUCell/SimpleRNNCell) and RNN([cells]) with the layer arguments above"
    """RNN(LSTMCell/GRUCell/SimpleRNNCell) and RNN([cells]): the same math as the layer
    forms; a stack of cells becomes one recurrent layer per cell."""

    kind = "RNN"
    recurrent = True
    per_step = False
    _CELLS: ClassVar[dict[str, str]] = {
        "LSTMCell": "LSTM",
        "GRUCell": "GRU",
        "SimpleRNNCell": "SimpleRNN",
    }

    def parse_many(self, layer: Any, in_dim: int | None) -> list[tuple[Handler, LayerSpec]]:
        cfg = _cfg(layer)
        cell = layer.cell
        cells = list(cell.cells) if type(cell).__name__ == "StackedRNNCells" else [cell]
        out: list[tuple[Handler, LayerSpec]] = []
        dim = in_dim
        for i, c in enumerate(cells):
            kind = self._CELLS.get(type(c).__name__)
            if kind is None:
                raise UnsupportedLayerError(
                    f"layer '{layer.name}': RNN({type(c).__name__}) is not supported "
                    f"(cells: {', '.join(self._CELLS)})"
                )
            last = i == len(cells) - 1
            merged = {
                **c.get_config(),
                "return_sequences": cfg.get("return_sequences", False) if last else True,
                "return_state": cfg.get("return_state", False),
                "go_backwards": cfg.get("go_backwards", False) and i == 0,
                "stateful": cfg.get("stateful", False),
                "time_major": cfg.get("time_major", False),
            }
            h = _REGISTRY[kind]
            assert isinstance(h, _Recurrent)
            spec = h.parse_config(layer, merged, c.get_weights(), dim)
            if len(cells) > 1:
                spec.name = f"{layer.name}_cell{i}"
            out.append((h, spec))
            dim = spec.out_dim
        return out


@register("LeakyReLU", "ELU", "PReLU")
class ParamActivationHandler(Handler):
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

    def _apply(self, spec: LayerSpec, x: Any, lib: Any) -> Any:
        alpha = spec.weights[0]
        if lib is np:
            neg = alpha * (np.expm1(np.minimum(x, 0)) if spec.config["op"] == "elu" else x)
            return np.where(x > 0, x, neg)
        import tensorflow as tf

        if spec.config["op"] == "elu":
            if np.all(alpha == 1.0):
                return tf.nn.elu(x)
            return tf.nn.relu(x) + tf.constant(alpha) * (tf.exp(tf.minimum(x, 0.0)) - 1.0)
        # (1 - alpha) * relu(x) + alpha * x: RELU/MUL/ADD, ops every runtime (and the C engine)
        # has; no NEG, no LEAKY_RELU/PRELU.
        return tf.constant(1.0 - alpha) * tf.nn.relu(x) + tf.constant(alpha) * x

    def sequence(self, spec, x, keras):
        return _lambda_layer(keras, lambda v: self._apply(spec, v, None), spec.name)(x)

    def step(self, spec, x, states, tf):
        return self._apply(spec, x, tf), []

    def step_numpy(self, spec, x, states):
        return self._apply(spec, x, np), []


@register("LayerNormalization")
class LayerNormHandler(Handler):
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

    def sequence(self, spec, x, keras):
        import tensorflow as tf

        return _lambda_layer(keras, lambda v: self._apply(spec, v, tf), spec.name)(x)

    def step(self, spec, x, states, tf):
        return self._apply(spec, x, tf), []

    def step_numpy(self, spec, x, states):
        return self._apply(spec, x, None), []


if __name__ == "__main__":  # prints the README's support table
    print(support_table(), end="")
