"""LiteRT (ai-edge-litert) helpers kept for the converter's verify step and the pipeline.

New code should use `edgelstm.runtime.backends.load_backend` (any runtime, same interface).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.runtime.backends import LiteRTBackend, Runtime, _import, dequantize, quantize
from edgelstm.tflite_info import TFLiteInfo

__all__ = ["LiteRTRunner", "dequantize", "make_interpreter", "preserving_backend", "quantize"]


def make_interpreter(model: bytes, threads: int = 1) -> Any:
    """A raw LiteRT interpreter with tensors allocated (XNNPACK on, as LiteRT ships)."""
    mod = _import(Runtime.LITERT)
    from edgelstm._tf import stderr_silenced

    with stderr_silenced():  # LiteRT prints "INFO: Created XNNPACK delegate" from C++
        interp = mod.Interpreter(model_content=model, num_threads=threads)
        interp.allocate_tensors()
    return interp


def preserving_backend(model: str | Path | bytes) -> LiteRTBackend:
    """LiteRT keeping every intermediate tensor readable after invoke (`backend.interp`): for
    per-tensor error reports and `explain`. No XNNPACK: it would fuse the intermediates away."""
    import warnings

    from edgelstm._tf import stderr_silenced
    from edgelstm.tflite_info import read_tflite

    class Preserving(LiteRTBackend):
        def _load(self) -> None:
            mod = _import(Runtime.LITERT)
            with stderr_silenced(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "intended for debugging"
                self.interp = mod.Interpreter(
                    model_content=self.model,
                    num_threads=1,
                    experimental_preserve_all_tensors=True,
                    experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                )
                self.interp.allocate_tensors()
            self._in_idx = {t.name: t.tensor_index for t in self.info.inputs}
            self._out_idx = {t.name: t.tensor_index for t in self.info.outputs}

    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return Preserving(data, read_tflite(data), threads=1)


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
