"""The recipe's Keras architecture, its gate-bias start and the cell-state training twin."""

from __future__ import annotations

from typing import Any

from edgelstm.errors import BadInputError
from edgelstm.zoo import Recipe

RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def build_model(
    recipe: Recipe,
    *,
    cell: str | None = None,
    batch_size: int | None = None,
    stateful: bool = False,
) -> Any:
    """The recipe's architecture as a Keras 3 model (fixed length; batch free unless stateful).

    cell replaces every recurrent layer's kind (e.g. SimpleRNN for a comparison run).
    """
    import keras

    shape = (recipe.seq_len,) if recipe.tokens else (recipe.seq_len, recipe.features)
    dtype = "int32" if recipe.tokens else "float32"
    # Explicit names: Keras' automatic ones count up per process (lstm, lstm_1, ...), which would
    # make the second model trained in one process save different bytes.
    if stateful:
        inp = keras.Input(batch_shape=(batch_size, *shape), dtype=dtype, name="input_layer")
    else:
        inp = keras.Input(shape, dtype=dtype, name="input_layer")
    layers = [inp]
    used: dict[str, int] = {}
    for spec in recipe.layers:
        spec = dict(spec)
        kind = spec.pop("kind")
        if kind in RECURRENT:
            kind = cell or kind
            if stateful:
                spec["stateful"] = True
        base = kind.lower()
        used[base] = used.get(base, 0) + 1
        spec.setdefault("name", base if used[base] == 1 else f"{base}_{used[base] - 1}")
        layers.append(getattr(keras.layers, kind)(**spec))
    return keras.Sequential(layers, name=recipe.name)


def init_remember_bias(model: Any, value: float) -> None:
    """Start LSTM forget gates (GRU update gates) at bias `value` so the state is kept over long
    spans from the first step: with Keras' default (+1) the gradient from 50-100 steps back
    vanishes and long-lag tasks such as temporal-order plateau at chance. SimpleRNN has no gate."""
    import keras

    for layer in model.layers:
        cell = getattr(layer, "cell", None)
        if cell is None or not getattr(cell, "use_bias", False):
            continue
        units = cell.units
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.LSTM):  # bias order: input, forget, cell, output
            weights[2][units : 2 * units] = value
        elif isinstance(layer, keras.layers.GRU):  # bias order: update, reset, candidate
            weights[2][..., :units] = value / weights[2].ndim  # reset_after: two bias rows
        else:
            continue
        layer.set_weights(weights)


def _cell_state_view(model: Any) -> Any:
    """A training twin of a chain model whose first LSTM also outputs its final cell state.

    TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM, as the converter emits it from Keras, clips the
    cell state to +-10 (the step model does not); a long-memory LSTM whose cell state integrates
    its inputs past that bound converts to a sequence model that disagrees with Keras. Training
    against the final cell state's excess over a limit (`cell_limit`) keeps it inside.
    """
    import keras

    inp = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    y, c = inp, None
    for layer in model.layers:
        if c is None and isinstance(layer, keras.layers.LSTM):
            twin = keras.layers.LSTM.from_config({**layer.get_config(), "return_state": True})
            y, _, c = twin(y)
        else:
            y = type(layer).from_config(layer.get_config())(y)
    if c is None:
        raise BadInputError("cell_limit needs an LSTM layer")
    return keras.Model(inp, [y, c])


def _cell_penalty(limit: float) -> Any:
    """Loss on the cell state: mean squared excess of |c| over `limit` (targets are ignored)."""
    import keras

    def cell_excess(_target: Any, c: Any) -> Any:
        return keras.ops.mean(keras.ops.square(keras.ops.relu(keras.ops.abs(c) - limit)), -1)

    return cell_excess
