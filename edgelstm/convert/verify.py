"""Parity of converted artifacts against the source Keras model, run in LiteRT.

Bounds (max abs error over all outputs, as a fraction of the reference outputs' range where noted)
are the documented contract of `edgelstm convert`; exceeding one fails the conversion unless the
user passes --no-verify-fail.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.runtime.litert import LiteRTRunner
from edgelstm.tflite_info import TFLiteInfo
from edgelstm.types import OutputKind, Parity, Quantization, Variant

# Absolute bound for float; for the rest, a fraction of the reference range (at least 1.0 wide).
PARITY_BOUNDS: dict[Quantization, tuple[str, float]] = {
    Quantization.FLOAT: ("abs", 1e-4),
    Quantization.FLOAT16: ("range", 2e-2),
    Quantization.DYNAMIC: ("range", 5e-2),
    Quantization.INT16X8: ("range", 2e-2),
    Quantization.INT8: ("range", 1e-1),
}


def bound_for(quant: Quantization, reference: np.ndarray) -> float:
    kind, value = PARITY_BOUNDS[quant]
    if kind == "abs":
        return value
    span = float(np.max(reference) - np.min(reference)) if reference.size else 1.0
    return value * max(span, 1.0)


def run_sequence(model: bytes, info: TFLiteInfo, xs: np.ndarray) -> np.ndarray:
    """Outputs for each sequence, resetting the fused LSTM's variable state in between."""
    runner = LiteRTRunner(model, info)
    outs = []
    for x in xs:
        runner.reset()
        outs.append(runner.invoke({"x": x[None]})["y"][0])
    return np.stack(outs)


def run_step(model: bytes, info: TFLiteInfo, xs: np.ndarray, token_input: bool) -> np.ndarray:
    """Outputs at every step [N, T, ...], state carried step to step and reset per sequence."""
    runner = LiteRTRunner(model, info)
    states = info.states()
    outs = []
    for seq in xs:
        state_vals = {s.input: np.full(s.shape, s.reset_value, np.float64) for s in states}
        ys = []
        for t in range(seq.shape[0]):
            x = seq[t : t + 1].reshape(1) if token_input else seq[t : t + 1]
            res = runner.invoke({"x": x, **state_vals})
            for s in states:
                state_vals[s.input] = res[s.output]
            ys.append(res["y"][0])
        outs.append(np.stack(ys))
    return np.stack(outs)


def keras_reference(model: Any, xs: np.ndarray) -> np.ndarray:
    """The source model's outputs, one sequence at a time (stateful layers reset each time)."""
    outs = []
    for x in xs:
        for layer in getattr(model, "layers", []):
            for meth in ("reset_states", "reset_state"):
                if getattr(layer, "stateful", False) and hasattr(layer, meth):
                    getattr(layer, meth)()
                    break
        y = model(x[None], training=False)
        outs.append(np.asarray(y)[0])
    return np.stack(outs).astype(np.float64)


def compare(
    reference: np.ndarray,
    got: np.ndarray,
    quant: Quantization,
    variant: Variant,
    output_kind: OutputKind,
    classifier: bool,
) -> Parity:
    """Max/mean abs error, cosine and (for classifiers) argmax agreement."""
    if variant == Variant.STEP and output_kind == OutputKind.MANY_TO_ONE:
        got = got[:, -1]
    got = got.reshape(reference.shape)
    err = np.abs(got - reference)
    bound = bound_for(quant, reference)
    a, b = reference.ravel(), got.ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom else 1.0
    agreement = None
    if classifier:
        agreement = float(np.mean(np.argmax(got, -1) == np.argmax(reference, -1)))
    max_abs = float(err.max()) if err.size else 0.0
    return Parity(
        reference="keras",
        runtime="litert",
        samples=int(reference.shape[0]),
        max_abs=max_abs,
        mean_abs=float(err.mean()) if err.size else 0.0,
        bound=bound,
        passed=bool(max_abs <= bound),
        argmax_agreement=agreement,
        cosine=cosine,
    )
