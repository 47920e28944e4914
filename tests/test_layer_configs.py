"""The typed layer configs (recurrent, Conv1D) list the same manifest details the dict form did."""

from __future__ import annotations

import dataclasses

import pytest

from edgelstm.convert.layers import (
    BidirectionalConfig,
    Conv1DConfig,
    RecurrentConfig,
    StateOutputConfig,
)


def _recurrent(units: int, in_dim: int, **over: object) -> list[tuple[str, object]]:
    """The details of a recurrent layer as the dict config listed them, in its key order."""
    d: dict[str, object] = {
        "units": units,
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
        "use_bias": True,
        "return_sequences": False,
        "go_backwards": False,
        "stateful": False,
        "reset_after": True,
        "in_dim": in_dim,
    }
    d.update(over)
    return list(d.items())


def test_manifest_details_keep_their_keys_order_and_values() -> None:
    import keras

    from edgelstm.convert.graph import parse_model

    L = keras.layers
    a = keras.Input((6, 3))
    x = L.Conv1D(5, 3, padding="causal", dilation_rate=2, name="conv")(a)
    x = L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode="sum", name="bi")(x)
    x = L.GRU(3, reset_after=False, use_bias=False, return_sequences=True, name="gru")(x)
    x = L.RNN(
        [L.SimpleRNNCell(2, activation="relu"), L.LSTMCell(2)], go_backwards=True, name="rnn"
    )(x)
    _, h, c = L.LSTM(2, return_state=True, name="enc")(L.RepeatVector(4)(x))
    model = keras.Model(a, L.Dense(1, name="head")(L.Concatenate()([h, c])))
    ms = parse_model(model, "keras3")
    got = {s.name: list(s.details.items()) for s in ms.summary().layers}
    assert got["conv"] == [
        ("filters", 5),
        ("kernel_size", 3),
        ("strides", 1),
        ("dilation_rate", 2),
        ("padding", "causal"),
        ("activation", "linear"),
        ("in_dim", 3),
    ]
    assert got["bi"] == [("merge_mode", "sum"), ("units", 4)]
    assert got["gru"] == _recurrent(3, 4, return_sequences=True, use_bias=False, reset_after=False)
    assert got["rnn_cell0"] == _recurrent(
        2, 3, activation="relu", return_sequences=True, go_backwards=True
    )
    assert got["rnn_cell1"] == _recurrent(2, 2)
    assert got["enc"] == [*_recurrent(2, 2), ("return_state", True)]
    assert got["enc_state_h"] == [("role", "h"), ("units", 2)]
    assert got["enc_state_c"] == [("role", "c"), ("units", 2)]
    assert got["head"][0] == ("units", 1)  # a dict config, read the same way

    by_name = {s.name: s for s in ms.layers}
    conv = by_name["conv"].config
    assert isinstance(conv, Conv1DConfig) and conv.window == 4
    bi = by_name["bi"].config
    assert isinstance(bi, BidirectionalConfig)
    assert isinstance(bi.forward.config, RecurrentConfig) and bi.halves == (bi.forward, bi.backward)
    assert by_name["enc"].output_index == 0 and by_name["enc"].return_state
    st = by_name["enc_state_c"].config
    assert isinstance(st, StateOutputConfig) and st.of is by_name["enc"] and st.output == 2
    assert by_name["gru"].returns_sequences
    assert not by_name["enc"].returns_sequences and by_name["head"].returns_sequences
    assert by_name["rnn_cell0"].go_backwards and not by_name["rnn_cell1"].go_backwards
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_name["gru"].config.units = 5  # type: ignore[misc]
