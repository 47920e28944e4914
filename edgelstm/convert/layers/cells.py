"""One definition per recurrent cell (LSTM, GRU, SimpleRNN), written once over an ops namespace.

The TF step graph (`Handler.step`, what the converter turns into the step `.tflite`), the NumPy
reference step (`Handler.step_numpy`: calibration feeds and parity) and the fake-quant training
pass (`edgelstm.quantize.qat`) all run these functions; they differ only in the `CellOps` they
pass. `q(point, t)` marks a tensor the int8 step graph quantizes (QAT observes or fake-quantizes
it; elsewhere it is the identity) and `fixed(t, lo, hi)` an activation output with a fixed int8
range. The statement order is the TF step graph's op order, which the converter keeps: moving a
line changes the step `.tflite` bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Act = Callable[[Any], Any]


def _same(_point: str, t: Any) -> Any:
    return t


def _same_range(t: Any, _lo: float, _hi: float) -> Any:
    return t


@dataclass(frozen=True)
class CellOps:
    """The operations a cell is written in (see the module docstring)."""

    matmul: Callable[[Any, Any], Any]
    const: Callable[[Any], Any]
    split: Callable[[Any, int], Sequence[Any]]
    q: Callable[[str, Any], Any] = _same
    fixed: Callable[[Any, float, float], Any] = _same_range


def tf_ops(tf: Any) -> CellOps:
    """Graph ops: the step model the converter quantizes."""
    return CellOps(tf.matmul, tf.constant, lambda v, n: tf.split(v, n, axis=1))


NUMPY_OPS = CellOps(np.matmul, lambda v: v, lambda v, n: np.split(v, n, axis=1))


def input_projection(
    kind: str, ops: CellOps, weights: Sequence[Any], x: Any, reset_after: bool = True
) -> Any:
    """x . kernel + the input-side bias: the part of a step that does not depend on the state
    (QAT computes it for the whole sequence at once)."""
    kernel, bias = weights[0], weights[2]
    b = bias[0] if kind == "GRU" and reset_after else bias
    return ops.matmul(x, ops.const(kernel)) + ops.const(b)


def lstm(
    ops: CellOps,
    weights: Sequence[Any],
    xk: Any,
    states: Sequence[Any],
    act: Act,
    ract: Act,
    reset_after: bool = True,
) -> tuple[Any, list[Any]]:
    """Keras LSTM (gates i, f, g, o). Two FULLY_CONNECTEDs (x.K and h.R), not one over
    concat([x, h]): in int8 a CONCATENATION forces x and h onto one scale, which starves h of
    resolution when x's range is wide."""
    rec = weights[1]
    h, c = states
    xk = ops.q("xk", xk)
    z = ops.q("z", xk + ops.q("hr", ops.matmul(h, ops.const(rec))))
    i, f, g, o = ops.split(z, 4)
    fc = ops.q("fc", ops.fixed(ract(f), 0.0, 1.0) * c)
    ig = ops.q("ig", ops.fixed(ract(i), 0.0, 1.0) * ops.fixed(act(g), -1.0, 1.0))
    c2 = ops.q("c", fc + ig)
    h2 = ops.q("h", ops.fixed(ract(o), 0.0, 1.0) * ops.fixed(act(c2), -1.0, 1.0))
    return h2, [h2, c2]


def gru(
    ops: CellOps,
    weights: Sequence[Any],
    xk: Any,
    states: Sequence[Any],
    act: Act,
    ract: Act,
    reset_after: bool = True,
) -> tuple[Any, list[Any]]:
    """Keras GRU (gates z, r, candidate), reset_after both ways."""
    rec, bias = weights[1], weights[2]
    (h,) = states
    units = int(rec.shape[0])
    xk = ops.q("xk", xk)
    if reset_after:
        hr = ops.q("hr", ops.matmul(h, ops.const(rec)) + ops.const(bias[1]))
        x_z, x_r, x_h = ops.split(xk, 3)
        h_z, h_r, h_h = ops.split(hr, 3)
        zg = ops.fixed(ract(ops.q("zsum", x_z + h_z)), 0.0, 1.0)
        rg = ops.fixed(ract(ops.q("rsum", x_r + h_r)), 0.0, 1.0)
        cand = x_h + ops.q("rh", rg * h_h)
    else:
        x_z, x_r, x_h = ops.split(xk, 3)
        hr = ops.q("hr", ops.matmul(h, ops.const(rec[:, : 2 * units])))
        h_z, h_r = hr[:, :units], hr[:, units:]
        zg = ops.fixed(ract(ops.q("zsum", x_z + h_z)), 0.0, 1.0)
        rg = ops.fixed(ract(ops.q("rsum", x_r + h_r)), 0.0, 1.0)
        rh = ops.matmul(ops.q("rhin", rg * h), ops.const(rec[:, 2 * units :]))
        cand = x_h + ops.q("rh", rh)
    hh = ops.fixed(act(ops.q("hsum", cand)), -1.0, 1.0)
    h2 = ops.q("h", ops.q("zh", zg * h) + ops.q("zhh", (1.0 - zg) * hh))
    return h2, [h2]


def simple_rnn(
    ops: CellOps,
    weights: Sequence[Any],
    xk: Any,
    states: Sequence[Any],
    act: Act,
    ract: Act,
    reset_after: bool = True,
) -> tuple[Any, list[Any]]:
    """Keras SimpleRNN: h' = act(x.K + b + h.R)."""
    (h,) = states
    z = ops.q("z", ops.q("xk", xk) + ops.q("hr", ops.matmul(h, ops.const(weights[1]))))
    h2 = ops.q("h", act(z))
    return h2, [h2]


Cell = Callable[..., tuple[Any, list[Any]]]
CELLS: dict[str, Cell] = {"LSTM": lstm, "GRU": gru, "SimpleRNN": simple_rnn}
