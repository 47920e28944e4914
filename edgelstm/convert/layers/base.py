"""The handler protocol and the registry: what every layer family module plugs into."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgelstm.convert.layers.configs import LayerConfig
from edgelstm.errors import UnsupportedLayerError


@dataclass
class LayerSpec:
    """A Keras layer, framework-neutral: its kind, settings and weights."""

    kind: str
    name: str
    config: LayerConfig | dict[str, Any]  # typed for the recurrent families (see configs.py)
    weights: list[np.ndarray]
    out_dim: int | None = None  # features per time step after this layer
    inputs: list[int] = field(default_factory=lambda: [-1])  # specs it reads; -1: model input
    masked: bool = False  # a recurrent layer fed a masked sequence: it skips the masked steps
    blockers: list[str] = field(default_factory=list)  # why it cannot be streamed
    notes: list[str] = field(default_factory=list)

    # Typed reads that any layer answers, whatever the form of its config.

    def _setting(self, key: str, default: Any) -> Any:
        c = self.config
        return c.get(key, default) if isinstance(c, dict) else getattr(c, key, default)

    @property
    def units(self) -> int | None:
        u = self._setting("units", None)
        return u if isinstance(u, int) else None

    @property
    def activation(self) -> str | None:
        return self._setting("activation", None)

    @property
    def returns_sequences(self) -> bool:
        """False for a recurrent layer that returns its last output only; True for any other
        (a Bidirectional's halves say for it: see its config)."""
        return bool(self._setting("return_sequences", True))

    @property
    def go_backwards(self) -> bool:
        return bool(self._setting("go_backwards", False))

    @property
    def stateful(self) -> bool:
        return bool(self._setting("stateful", False))

    @property
    def return_state(self) -> bool:
        return bool(self._setting("return_state", False))

    @property
    def output_index(self) -> int | None:
        """Which output of its Keras layer this spec is, for a layer with several; else None."""
        return self._setting("output", None) if not isinstance(self.config, dict) else None

    def details(self) -> dict[str, Any]:
        """The layer's plain settings, as the manifest lists them."""
        c = self.config
        items = c.items() if isinstance(c, dict) else c.details()
        return {
            k: v
            for k, v in items
            if isinstance(v, (int, float, str, bool)) and not k.startswith("_")
        }


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
    args: str | Mapping[str, str] = ""  # the supported arguments (per class name), README table
    stream: str = ""  # how it streams, when not obvious from recurrent/per_step
    fusable: bool = False  # its sequence form may become the fused UNIDIRECTIONAL_SEQUENCE_LSTM
    state_roles: tuple[str, ...] = ()  # the step model's state inputs per layer, in order
    merges: bool = False  # takes a list of inputs (Concatenate, Add, ...): parse gets their dims

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        raise NotImplementedError

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        """Apply the tf_keras rebuild of this layer to tensor x (sequence model)."""
        raise NotImplementedError

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        return []

    def cells(self, spec: LayerSpec) -> list[LayerSpec]:
        """The recurrent layers this layer runs (itself, or a wrapper's halves)."""
        return [spec] if self.recurrent else []

    def starts_mask(self, spec: LayerSpec) -> bool:
        """Whether the layers after this one see a Keras mask it computes (see step_mask)."""
        return False

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


class FormulaHandler(Handler):
    """A per-step layer written once as `_apply(spec, x, tf)` (tf=None: the NumPy form): the
    sequence model wraps it in a Lambda, the step model calls it on one step."""

    def _apply(self, spec: LayerSpec, x: Any, tf: Any | None) -> Any:
        raise NotImplementedError

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        import tensorflow as tf

        return _lambda_layer(keras, lambda v: self._apply(spec, v, tf), spec.name)(x)

    def step(self, spec: LayerSpec, x: Any, states: list[Any], tf: Any) -> tuple[Any, list[Any]]:
        return self._apply(spec, x, tf), []

    def step_numpy(self, spec: LayerSpec, x: np.ndarray, states: list[np.ndarray]):
        return self._apply(spec, x, None), []


REGISTRY: dict[str, Handler] = {}


def register(*class_names: str) -> Callable[[type[Handler]], type[Handler]]:
    def wrap(cls: type[Handler]) -> type[Handler]:
        inst = cls()
        for name in class_names:
            REGISTRY[name] = inst
        return cls

    return wrap


def handler_for(class_name: str, layer_name: str) -> Handler:
    """The handler for a Keras class, or UnsupportedLayerError naming the layer."""
    try:
        return REGISTRY[class_name]
    except KeyError:
        raise UnsupportedLayerError(
            f"layer '{layer_name}' ({class_name}) is not supported; supported: "
            + ", ".join(sorted(REGISTRY))
        ) from None


def supported_layers() -> list[str]:
    return sorted(REGISTRY)


def support_table() -> str:
    """The README's table of supported Keras layers, generated from the registry."""
    rows = ["| Keras layer | arguments | step model |", "| --- | --- | --- |"]
    for name in sorted(REGISTRY, key=str.lower):
        h = REGISTRY[name]
        stream = h.stream or (
            "state as explicit I/O" if h.recurrent else "per step" if h.per_step else "-"
        )
        args = h.args.get(name, "") if isinstance(h.args, Mapping) else h.args
        rows.append(f"| {name} | {args} | {stream} |")
    from edgelstm.convert.layers.activations import ACTIVATIONS

    acts = ", ".join(ACTIVATIONS[:-2]) + " (softmax, log_softmax: not as recurrent activations)"
    return "\n".join(rows) + f"\n\nActivations: {acts}.\n"


def _lambda_layer(keras: Any, fn: Callable[[Any], Any], name: str) -> Any:
    """A tf_keras Lambda layer whose function runs as written: autograph would re-read this
    file's source at trace time, and the functions are straight-line TF ops anyway."""
    import tensorflow as tf

    return keras.layers.Lambda(tf.autograph.experimental.do_not_convert(fn), name=name)


def _framework(layer: Any) -> str:
    return "tf_keras" if type(layer).__module__.startswith("tf_keras") else "keras3"


def _cfg(layer: Any) -> dict[str, Any]:
    return layer.get_config()
