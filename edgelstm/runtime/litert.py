"""LiteRT (ai-edge-litert) runner: float in, float out, quantization handled. No TensorFlow."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.tflite_info import TFLiteInfo


def make_interpreter(model: bytes, threads: int = 1) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from edgelstm.errors import MissingDependencyError

        raise MissingDependencyError(
            "ai-edge-litert", "running a .tflite model", extra="runtime"
        ) from None

    from edgelstm._tf import stderr_silenced

    with stderr_silenced():  # LiteRT prints "INFO: Created XNNPACK delegate" from C++
        interp = Interpreter(model_content=model, num_threads=threads)
        interp.allocate_tensors()
    return interp


def quantize(x: np.ndarray, dtype: str, scale: float, zp: int) -> np.ndarray:
    if not scale or dtype.startswith("float"):
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    if not scale:
        return x.astype(np.float64)
    return (x.astype(np.float64) - zp) * scale


class LiteRTRunner:
    """Float-in, float-out runner over a .tflite, by tensor index (quantizes I/O as needed)."""

    def __init__(self, model: bytes, info: TFLiteInfo) -> None:
        self.info = info
        self.interp = make_interpreter(model)

    def reset(self) -> None:
        self.interp.reset_all_variables()

    def invoke(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for t in self.info.inputs:
            value = np.asarray(feeds[t.name]).reshape(t.shape)
            self.interp.set_tensor(t.tensor_index, quantize(value, t.dtype, t.scale, t.zero_point))
        self.interp.invoke()
        return {
            t.name: dequantize(self.interp.get_tensor(t.tensor_index), t.scale, t.zero_point)
            for t in self.info.outputs
        }
