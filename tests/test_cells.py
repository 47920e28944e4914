"""convert.layers.cells: one cell definition per kind, run over TF and NumPy ops, against Keras."""

from __future__ import annotations

import numpy as np
import pytest

from edgelstm.convert.layers import cells
from edgelstm.convert.layers.activations import np_activation, tf_activation

CASES = [
    ("LSTM", {}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ("GRU", {"reset_after": True}),
    ("GRU", {"reset_after": False}),
    ("SimpleRNN", {"activation": "tanh"}),
]


@pytest.mark.parametrize(
    "kind, kwargs",
    CASES,
    ids=["lstm", "lstm_relu_hard_sigmoid", "gru_reset_after", "gru_reset_before", "rnn"],
)
def test_one_definition_matches_keras_in_tf_and_numpy(kind: str, kwargs: dict) -> None:
    import keras
    import tensorflow as tf

    from edgelstm.convert.layers.activations import activation_name

    units, d = 5, 3
    keras.utils.set_random_seed(4)
    cell = getattr(keras.layers, f"{kind}Cell")(units, **kwargs)
    cell.build((1, d))
    weights = [np.asarray(w, np.float32) for w in cell.get_weights()]
    rng = np.random.default_rng(0)
    weights[-1] = rng.standard_normal(weights[-1].shape).astype(np.float32)  # non-zero bias
    cell.set_weights(weights)
    n_states = 2 if kind == "LSTM" else 1
    x = rng.standard_normal((1, d)).astype(np.float32)
    states = [rng.standard_normal((1, units)).astype(np.float32) for _ in range(n_states)]
    want, _ = cell(x, states if n_states > 1 else states[0])

    reset_after = kwargs.get("reset_after", True)
    act_name = activation_name(kwargs.get("activation", "tanh"), "keras3", "c", "activation")
    ract_name = activation_name(
        kwargs.get("recurrent_activation", "sigmoid"), "keras3", "c", "recurrent_activation"
    )
    fn = cells.CELLS[kind]
    ops = cells.tf_ops(tf)
    xk = cells.input_projection(kind, ops, weights, tf.constant(x), reset_after)
    got_tf, st_tf = fn(
        ops,
        weights,
        xk,
        [tf.constant(s) for s in states],
        tf_activation(act_name, tf),
        tf_activation(ract_name, tf),
        reset_after,
    )
    xk_np = cells.input_projection(kind, cells.NUMPY_OPS, weights, x, reset_after)
    got_np, st_np = fn(
        cells.NUMPY_OPS,
        weights,
        xk_np,
        states,
        np_activation(act_name),
        np_activation(ract_name),
        reset_after,
    )
    assert len(st_tf) == len(st_np) == n_states
    np.testing.assert_allclose(np.asarray(got_tf), np.asarray(want), atol=1e-5)
    np.testing.assert_allclose(got_np, np.asarray(want), atol=1e-5)


def test_fake_quant_hooks_see_every_quantized_point() -> None:
    """The q hook is where QAT observes the int8 step graph's tensors: LSTM names them all."""
    rng = np.random.default_rng(1)
    units, d = 3, 2
    weights = [
        rng.standard_normal((d, 4 * units)),
        rng.standard_normal((units, 4 * units)),
        rng.standard_normal(4 * units),
    ]
    seen: list[str] = []
    fixed: list[tuple[float, float]] = []

    def q(point: str, t: np.ndarray) -> np.ndarray:
        seen.append(point)
        return t

    def fix(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
        fixed.append((lo, hi))
        return t

    ops = cells.CellOps(np.matmul, lambda v: v, cells.NUMPY_OPS.split, q=q, fixed=fix)
    x = rng.standard_normal((1, d))
    xk = cells.input_projection("LSTM", ops, weights, x)
    zeros = [np.zeros((1, units)), np.zeros((1, units))]
    cells.lstm(ops, weights, xk, zeros, np.tanh, np_activation("sigmoid"))
    assert seen == ["xk", "hr", "z", "fc", "ig", "c", "h"]
    assert fixed == [(0.0, 1.0), (0.0, 1.0), (-1.0, 1.0), (0.0, 1.0), (-1.0, 1.0)]
