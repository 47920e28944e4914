"""The runtime side: load and run .tflite models without TensorFlow.

`load_backend` gives one float-in/float-out interface over LiteRT, tflite-runtime, TensorFlow
and TFLite Micro; `StepRunner` (alias `Stream`) streams a step model one sample at a time;
`SequenceRunner` runs whole sequences with the fused-LSTM state reset in between; `StreamBatch`
runs B independent streams on the native runtime (the C engine compiled here, `runtime="native"`).
"""

from edgelstm.runtime.backends import (
    AUTO_ORDER,
    Backend,
    Runtime,
    available_runtimes,
    is_available,
    load_backend,
    resolve_runtime,
)
from edgelstm.runtime.native import StreamBatch
from edgelstm.runtime.stream import SequenceRunner, StepRunner, Stream, model_variant

__all__ = [
    "AUTO_ORDER",
    "Backend",
    "Runtime",
    "SequenceRunner",
    "StepRunner",
    "Stream",
    "StreamBatch",
    "available_runtimes",
    "is_available",
    "load_backend",
    "model_variant",
    "resolve_runtime",
]
