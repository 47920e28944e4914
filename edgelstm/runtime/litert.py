"""LiteRT (ai-edge-litert) helpers kept for the converter's verify step and the pipeline.

New code should use `edgelstm.runtime.backends.load_backend` (any runtime, same interface).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.runtime.backends import LiteRTBackend, Runtime, _import, dequantize, quantize
from edgelstm.tflite_info import TFLiteInfo

__all__ = ["LiteRTRunner", "dequantize", "make_interpreter", "quantize"]


def make_interpreter(model: bytes, threads: int = 1) -> Any:
    """A raw LiteRT interpreter with tensors allocated (XNNPACK on, as LiteRT ships)."""
    mod = _import(Runtime.LITERT)
    from edgelstm._tf import stderr_silenced

    with stderr_silenced():  # LiteRT prints "INFO: Created XNNPACK delegate" from C++
        interp = mod.Interpreter(model_content=model, num_threads=threads)
        interp.allocate_tensors()
    return interp


class LiteRTRunner:
    """Float-in, float-out runner over a .tflite by tensor name (quantizes I/O as needed)."""

    def __init__(self, model: bytes, info: TFLiteInfo) -> None:
        self.info = info
        self.backend = LiteRTBackend(model, info, threads=1)
        self.interp = self.backend.interp

    def reset(self) -> None:
        self.backend.reset()

    def invoke(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.backend.run(feeds)
