"""`edgelstm profile`: latency, memory and accuracy of .tflite models on the installed runtimes.

Pure measurement over in-memory results (`profile_model` -> `ProfileResult`); the CLI formats and
writes them. No TensorFlow here (the `tf` runtime imports it lazily when asked for).

What is timed: `interpreter.invoke()` alone (the "latency" statistics), and separately the whole
call an application makes (`call`: for step models StepRunner.push = quantize the sample, set the
state, invoke, copy the state back, dequantize y; for sequence models reset + set x + invoke + read
y). Sequence latency is also given per time step (÷ T) so step and sequence variants compare.
"""

from __future__ import annotations

from edgelstm.profile.compare import comparison, environment, profile_all
from edgelstm.profile.inputs import accuracy, check_data, load_data, sequence_shape, synthetic_x
from edgelstm.profile.measure import CHUNK, profile_model
from edgelstm.profile.report import TEXT_BLOCKS, format_table, table_rows, to_json
from edgelstm.profile.results import LatencyStats, ProfileConfig, ProfileResult, Progress

__all__ = [
    "CHUNK",
    "TEXT_BLOCKS",
    "LatencyStats",
    "ProfileConfig",
    "ProfileResult",
    "Progress",
    "accuracy",
    "check_data",
    "comparison",
    "environment",
    "format_table",
    "load_data",
    "profile_all",
    "profile_model",
    "sequence_shape",
    "synthetic_x",
    "table_rows",
    "to_json",
]
