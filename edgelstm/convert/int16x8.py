"""int16x8 fused-LSTM sequence models, the convert side: the float cell's state ranges that the
requantization needs, and running the result in TFLite Micro (LiteRT has no int16 fused-LSTM
kernel). The flatbuffer rewrite itself is ground level: `edgelstm.tflite.int16x8`."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.arrays import Named
from edgelstm.convert.layers import handler_for
from edgelstm.tflite.int16x8 import (
    CELL_HEADROOM,
    PATH_NOTE,
    LstmRange,
    has_fused_lstm,
    requantize_int8_to_int16x8,
)


def lstm_state_ranges(ms: Any, xs: np.ndarray) -> list[LstmRange] | None:
    """max|h| and max|c| of every LSTM layer, from the float cell run over calibration sequences.

    Returns None when the model has a layer the step math cannot run (e.g. Bidirectional): the
    caller then keeps the converter's calibrated ranges.
    """
    from edgelstm.convert import build

    layout = [(k, spec) for k, spec, _ in ms.state_layout()]
    if not layout or any(
        handler_for(spec.kind, spec.name).state_roles != ("h", "c") for _, spec in layout
    ):
        return None
    try:
        m = build.state_abs_max(ms, xs)
        return [LstmRange(m[f"state{k}_h"], m[f"state{k}_c"]) for k, _spec in layout]
    except (KeyError, ValueError, NotImplementedError):
        return None


def run_sequence_tflm(model: bytes, info: Any, xs: np.ndarray | Named) -> np.ndarray | Named:
    """Outputs of each sequence in TFLite Micro's interpreter, state reset in between.

    LiteRT cannot run it: its fused-LSTM kernel has no int16-activation path (it rejects the
    int64 gate bias), so the TFLM reference kernels are the verifying runtime.
    """
    from edgelstm.runtime.backends import load_backend

    backend = load_backend(model, "tflm", info=info)
    if isinstance(xs, Named) or len(info.outputs) > 1:  # several inputs / outputs: by name
        many = []
        for x in xs if isinstance(xs, Named) else Named({"x": xs}):
            backend.reset()
            res = backend.run({k: v[None] for k, v in x.arrays.items()})
            many.append({t.name: res[t.name][0] for t in info.outputs})
        return Named({t.name: np.stack([m[t.name] for m in many]) for t in info.outputs})
    outs = []
    for x in xs:
        backend.reset()
        outs.append(backend.run({"x": x[None]})["y"][0])
    return np.stack(outs)


__all__ = [
    "CELL_HEADROOM",
    "PATH_NOTE",
    "LstmRange",
    "has_fused_lstm",
    "lstm_state_ranges",
    "requantize_int8_to_int16x8",
    "run_sequence_tflm",
]
