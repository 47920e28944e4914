"""The benchmark suites: step latency, sequence latency, size/accuracy, Cortex-M4, pipeline
(one module each; `common` holds the run context, row records and the conversions they share).

Every row is a plain dict (JSON-able). Rows that could not be measured carry `status` other than
"measured" and a note saying why; nothing is ever filled in from elsewhere.
"""

from benchmarks.suites.common import (
    Context,
    Log,
    edgelstm_artifacts,
    fused_t1_artifacts,
    plain_jobs,
    row,
)
from benchmarks.suites.device import PUBLISHED, mcu_suite, pipeline_suite
from benchmarks.suites.sequence import sequence_suite
from benchmarks.suites.size import ALL_QUANTS, eval_set, size_suite
from benchmarks.suites.step import _load, step_suite

__all__ = [
    "ALL_QUANTS",
    "PUBLISHED",
    "Context",
    "Log",
    "_load",
    "edgelstm_artifacts",
    "eval_set",
    "fused_t1_artifacts",
    "mcu_suite",
    "pipeline_suite",
    "plain_jobs",
    "row",
    "sequence_suite",
    "size_suite",
    "step_suite",
]
