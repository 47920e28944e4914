"""Building the Keras model from the traced chain of layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgelstm.convert.onnx_import.trace import _Tracer


def _build_keras(tracer: _Tracer) -> Any:
    from edgelstm._tf import import_tf

    import_tf()
    import keras

    t = tracer.seq_len
    if tracer.token_input:
        x = keras.Input(shape=(t,), dtype="int32", name="x")
    else:
        x = keras.Input(shape=(t, tracer.in_dim), name="x")
    y = x
    for layer in tracer.layers:
        c = layer.cfg
        if layer.kind in ("LSTM", "GRU", "SimpleRNN"):
            kw: dict[str, Any] = {
                "return_sequences": c["return_sequences"],
                "activation": c["activation"],
            }
            if layer.kind != "SimpleRNN":
                kw["recurrent_activation"] = c["recurrent_activation"]
            if layer.kind == "GRU":
                kw["reset_after"] = c["reset_after"]
            if c.get("go_backwards"):
                kw["go_backwards"] = True
            cls = getattr(keras.layers, layer.kind)
            if layer.bidirectional:
                k = keras.layers.Bidirectional(
                    cls(c["units"], **kw), merge_mode="concat", name=layer.name
                )
                y = k(y)
                k.set_weights([*layer.weights, *layer.backward_weights])
            else:
                k = cls(c["units"], name=layer.name, **kw)
                y = k(y)
                k.set_weights(layer.weights)
            continue
        if layer.kind == "Dense":
            k = keras.layers.Dense(c["units"], name=layer.name)
        elif layer.kind == "Activation":
            k = keras.layers.Activation(c["activation"], name=layer.name)
        elif layer.kind == "Embedding":
            k = keras.layers.Embedding(c["input_dim"], c["output_dim"], name=layer.name)
        elif layer.kind == "Conv1D":
            k = keras.layers.Conv1D(
                c["filters"],
                c["kernel_size"],
                strides=c["strides"],
                dilation_rate=c["dilation_rate"],
                padding=c["padding"],
                name=layer.name,
            )
        elif layer.kind == "LayerNormalization":
            k = keras.layers.LayerNormalization(epsilon=c["epsilon"], name=layer.name)
        elif layer.kind == "BatchNormalization":
            k = keras.layers.BatchNormalization(epsilon=c["epsilon"], name=layer.name)
        elif layer.kind == "LeakyReLU":
            k = keras.layers.LeakyReLU(negative_slope=c["negative_slope"], name=layer.name)
        elif layer.kind == "Flatten":
            k = keras.layers.Flatten(name=layer.name)
        else:  # pragma: no cover - every Layer kind made above is listed
            raise AssertionError(layer.kind)
        y = k(y)
        if layer.weights:
            k.set_weights(layer.weights)
    return keras.Model(x, y, name="onnx_import")
