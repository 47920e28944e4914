"""Recurrent layers: LSTM, GRU, SimpleRNN, their RNN(cell) forms and Bidirectional."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from edgelstm.convert.layers import cells
from edgelstm.convert.layers.activations import (
    activation_name,
    keras_activation,
    np_activation,
    tf_activation,
)
from edgelstm.convert.layers.base import (
    REGISTRY,
    Handler,
    LayerSpec,
    StateSpec,
    _cfg,
    _framework,
    _lambda_layer,
    handler_for,
    register,
)
from edgelstm.convert.layers.configs import (
    BidirectionalConfig,
    RecurrentConfig,
    StateOutputConfig,
)
from edgelstm.errors import UnsupportedLayerError

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
        config = RecurrentConfig(
            units=int(cfg["units"]),
            activation=activation_name(cfg.get("activation", "tanh"), fw, name, "activation"),
            recurrent_activation=activation_name(
                cfg.get("recurrent_activation", "sigmoid"),
                fw,
                name,
                "recurrent_activation",
            ),
            use_bias=bool(cfg.get("use_bias", True)),
            return_sequences=bool(cfg.get("return_sequences", False)),
            go_backwards=bool(cfg.get("go_backwards", False)),
            stateful=bool(cfg.get("stateful", False)),
            reset_after=bool(cfg.get("reset_after", True)),
            in_dim=in_dim,
        )
        spec = LayerSpec(
            kind=self.kind,
            name=name,
            config=config,
            weights=[np.asarray(w, np.float32) for w in weights],
            out_dim=config.units,
        )
        if cfg.get("return_state"):
            # An encoder: its final states are model outputs (sequence model only; a step model
            # carries its state as I/O already). Its consumers are checked in parse_model.
            if cfg.get("return_sequences") or cfg.get("go_backwards") or cfg.get("stateful"):
                raise UnsupportedLayerError(
                    f"layer '{name}': return_state=True is supported with return_sequences, "
                    "go_backwards and stateful off (an encoder returning its final state)"
                )
            config = spec.config = replace(config, return_state=True)
            spec.blockers.append(
                f"{name}: return_state=True: its final states are outputs of the sequence model "
                "(a step model carries the state as its own I/O)"
            )
        if cfg.get("time_major"):
            raise UnsupportedLayerError(f"layer '{name}': time_major=True is not supported")
        if config.go_backwards:
            spec.blockers.append(f"{name}: go_backwards=True reads the sequence from its end")
            spec.notes.append(
                f"{name}: go_backwards=True lowered as REVERSE_V2 + forward layer so the LSTM stays fused"
            )
        if self.kind == "LSTM" and not config.fusable_activations:
            spec.notes.append(
                f"{name}: activation={config.activation}, recurrent_activation="
                f"{config.recurrent_activation}: the fused LSTM op computes tanh/sigmoid "
                "only, so the sequence model unrolls this layer into plain ops"
            )
        if config.stateful:
            spec.notes.append(
                f"{name}: stateful=True: the sequence model starts each sequence from zero state; "
                "use the step model to carry state across chunks"
            )
        if not config.use_bias:
            spec.weights.append(
                np.zeros(self.bias_shape(config.units, config.reset_after), np.float32)
            )
        return spec

    def bias_shape(self, units: int, reset_after: bool = True) -> tuple[int, ...]:
        """The bias a layer without one gets (zeros), e.g. for use_bias=False."""
        raise NotImplementedError

    @staticmethod
    def config_of(spec: LayerSpec) -> RecurrentConfig:
        assert isinstance(spec.config, RecurrentConfig), spec.name
        return spec.config

    def states(self, spec: LayerSpec) -> list[StateSpec]:
        return [StateSpec(role, (self.config_of(spec).units,)) for role in self.state_roles]

    def parse_many(self, layer: Any, in_dim: int | None) -> list[tuple[Handler, LayerSpec]]:
        """One spec; with return_state=True also one per final state (the layer's outputs
        1, 2, ...: h, then c for an LSTM), each reading the layer's spec."""
        spec = self.parse(layer, in_dim)
        config = self.config_of(spec)
        if not config.return_state:
            return [(self, spec)]
        spec.config = replace(config, output=0)
        out: list[tuple[Handler, LayerSpec]] = [(self, spec)]
        for k, role in enumerate(self.state_roles, 1):
            st = LayerSpec(
                kind="RecurrentState",
                name=f"{layer.name}_state_{role}",
                config=StateOutputConfig(of=spec, output=k, role=role, units=config.units),
                weights=[],
                out_dim=config.units,
            )
            out.append((STATE_OUTPUT, st))
        return out

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        raise NotImplementedError

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        import tensorflow as tf

        c = self.config_of(spec)
        if c.go_backwards:
            x = _lambda_layer(keras, lambda v: tf.reverse(v, axis=[1]), f"{spec.name}_reverse")(x)
        # return_state: the fused op has no final cell state output, so the layer is unrolled
        unroll = not self.fusable or spec.masked or not c.fusable_activations or c.return_state
        layer = self._keras_layer(spec, keras, tf, unroll)
        if c.return_state:
            layer.return_state = True
            y, *states = layer(x)
            c.state_tensors[:] = states  # read by the RecurrentState specs
        else:
            y = layer(x)
        layer.set_weights(self._keras_weights(spec))
        return y

    def _keras_weights(self, spec: LayerSpec) -> list[np.ndarray]:
        return spec.weights

    def _cell_step(
        self, spec: LayerSpec, x: Any, states: list[Any], ops: cells.CellOps, activation: Any
    ) -> Any:
        c = self.config_of(spec)
        reset_after = c.reset_after
        xk = cells.input_projection(self.kind, ops, spec.weights, x, reset_after)
        act, ract = activation(c.activation), activation(c.recurrent_activation)
        return cells.CELLS[self.kind](ops, spec.weights, xk, states, act, ract, reset_after)

    def step(self, spec, x, states, tf):
        return self._cell_step(spec, x, states, cells.tf_ops(tf), lambda n: tf_activation(n, tf))

    def step_numpy(self, spec, x, states):
        return self._cell_step(spec, x, states, cells.NUMPY_OPS, np_activation)


@register("LSTM")
class LSTMHandler(_Recurrent):
    args = "units, return_sequences, go_backwards, stateful, use_bias, every activation / recurrent_activation below (tanh/sigmoid fuse; others unroll), return_state (final states as outputs; unrolled)"
    kind = "LSTM"
    fusable = True
    state_roles = ("h", "c")

    def bias_shape(self, units: int, reset_after: bool = True) -> tuple[int, ...]:
        return (4 * units,)

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        c = self.config_of(spec)
        return keras.layers.LSTM(
            c.units,
            activation=keras_activation(c.activation, tf),
            recurrent_activation=keras_activation(c.recurrent_activation, tf),
            use_bias=True,
            return_sequences=c.return_sequences,
            unroll=unroll,
            name=spec.name,
        )


@register("GRU")
class GRUHandler(_Recurrent):
    args = "units, return_sequences, go_backwards, stateful, use_bias, reset_after both ways, every activation / recurrent_activation below, return_state (final state as an output)"
    kind = "GRU"
    state_roles = ("h",)

    def bias_shape(self, units: int, reset_after: bool = True) -> tuple[int, ...]:
        return (2, 3 * units) if reset_after else (3 * units,)

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        c = self.config_of(spec)
        return keras.layers.GRU(
            c.units,
            activation=keras_activation(c.activation, tf),
            recurrent_activation=keras_activation(c.recurrent_activation, tf),
            use_bias=True,
            reset_after=c.reset_after,
            return_sequences=c.return_sequences,
            unroll=unroll,
            name=spec.name,
        )


@register("SimpleRNN")
class SimpleRNNHandler(_Recurrent):
    args = "units, return_sequences, go_backwards, stateful, use_bias, every activation below, return_state (final state as an output)"
    kind = "SimpleRNN"
    state_roles = ("h",)

    def bias_shape(self, units: int, reset_after: bool = True) -> tuple[int, ...]:
        return (units,)

    def _keras_layer(self, spec: LayerSpec, keras: Any, tf: Any, unroll: bool) -> Any:
        c = self.config_of(spec)
        return keras.layers.SimpleRNN(
            c.units,
            activation=keras_activation(c.activation, tf),
            use_bias=True,
            return_sequences=c.return_sequences,
            unroll=unroll,
            name=spec.name,
        )


class StateOutputHandler(Handler):
    """A recurrent layer's final state k as a tensor of its own (return_state=True): built
    with the layer in the sequence model. Not registered: parse_many creates its specs."""

    kind = "RecurrentState"
    per_step = False

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        c = spec.config
        assert isinstance(c, StateOutputConfig), spec.name
        of = c.of.config
        assert isinstance(of, RecurrentConfig), c.of.name
        return of.state_tensors[c.output - 1]


STATE_OUTPUT = StateOutputHandler()


@register("Bidirectional")
class BidirectionalHandler(Handler):
    args = (
        "merge_mode concat/sum/mul/ave/None around LSTM/GRU/SimpleRNN (None: two outputs, the "
        "forward and backward halves)"
    )
    stream = "sequence model only"
    kind = "Bidirectional"
    recurrent = True
    per_step = False

    def _parse(
        self, layer: Any, in_dim: int | None, merge: Any, output: int | None = None
    ) -> LayerSpec:
        fwd_layer = layer.forward_layer
        bwd_layer = layer.backward_layer
        fwd = handler_for(type(fwd_layer).__name__, fwd_layer.name).parse(fwd_layer, in_dim)
        bwd = handler_for(type(bwd_layer).__name__, bwd_layer.name).parse(bwd_layer, in_dim)
        if merge not in ("concat", "sum", "mul", "ave", "forward", "backward"):
            raise UnsupportedLayerError(
                f"layer '{layer.name}': merge_mode={merge!r} is not supported"
            )
        units = fwd.units
        assert units is not None, fwd.name
        spec = LayerSpec(
            kind=self.kind,
            name=layer.name,
            config=BidirectionalConfig(
                merge_mode=merge, forward=fwd, backward=bwd, units=units, output=output
            ),
            weights=[],
            out_dim=2 * units if merge == "concat" else units,
        )
        spec.blockers.append(
            f"{layer.name}: Bidirectional needs the whole sequence (its backward half reads it from the end)"
        )
        return spec

    def parse_many(self, layer: Any, in_dim: int | None) -> list[tuple[Handler, LayerSpec]]:
        """One spec; with merge_mode=None two, one per half (the layer's outputs 0 and 1), each
        reading the layer's input (`config.output` = which output it is)."""
        if _cfg(layer).get("merge_mode", "concat") is not None:
            return [(self, self.parse(layer, in_dim))]
        out = []
        for k, half in enumerate(("forward", "backward")):
            spec = self._parse(layer, in_dim, half, output=k)
            if k:
                spec.name = f"{layer.name}_backward_half"
            out.append((self, spec))
        return out

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        return self._parse(layer, in_dim, _cfg(layer).get("merge_mode", "concat"))

    @staticmethod
    def config_of(spec: LayerSpec) -> BidirectionalConfig:
        assert isinstance(spec.config, BidirectionalConfig), spec.name
        return spec.config

    def cells(self, spec: LayerSpec) -> list[LayerSpec]:
        return list(self.config_of(spec).halves)

    def sequence(self, spec: LayerSpec, x: Any, keras: Any) -> Any:
        import tensorflow as tf

        c = self.config_of(spec)
        fwd, bwd = c.forward, c.backward
        fh, bh = handler_for(fwd.kind, fwd.name), handler_for(bwd.kind, bwd.name)
        # Each half keeps its own go_backwards (lowered as REVERSE_V2 + a forward layer, so both
        # stay fused): with an explicit backward_layer the *forward* half may be the reversed one.
        # As in Keras, the backward half's sequence output is flipped whatever its direction.
        half = c.merge_mode if c.merge_mode in ("forward", "backward") else None
        yf = fh.sequence(fwd, x, keras) if half != "backward" else None
        if half == "forward":  # merge_mode=None: this spec is the layer's output 0 alone
            return yf
        yb = bh.sequence(bwd, x, keras)
        if bwd.returns_sequences:
            yb = _lambda_layer(keras, lambda v: tf.reverse(v, axis=[1]), f"{spec.name}_unreverse")(
                yb
            )
        if half == "backward":  # ... and output 1
            return yb
        merge = {
            "concat": keras.layers.Concatenate(axis=-1, name=f"{spec.name}_concat"),
            "sum": keras.layers.Add(name=f"{spec.name}_sum"),
            "mul": keras.layers.Multiply(name=f"{spec.name}_mul"),
            "ave": keras.layers.Average(name=f"{spec.name}_ave"),
        }[c.merge_mode]
        return merge([yf, yb])


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
            h = REGISTRY[kind]
            assert isinstance(h, _Recurrent)
            spec = h.parse_config(layer, merged, c.get_weights(), dim)
            if len(cells) > 1:
                spec.name = f"{layer.name}_cell{i}"
            out.append((h, spec))
            dim = spec.out_dim
        return out
