"""Lower a step .tflite to a static schedule of C kernel calls (see `core`): one module per op
family (`fc`, `elementwise`, `layout`) with the handlers `core.HANDLERS` dispatches to, and
`program` for the result and the helpers they share."""

from edgelstm.codegen.engine.lower.core import HANDLERS, ROUNDINGS, Lowering, lower
from edgelstm.codegen.engine.lower.elementwise import _add_fast
from edgelstm.codegen.engine.lower.fc import _paired_layout, fc_rows_stream, fc_stream
from edgelstm.codegen.engine.lower.program import Program, _c_float_list, _c_int_list

__all__ = [
    "HANDLERS",
    "ROUNDINGS",
    "Lowering",
    "Program",
    "_add_fast",
    "_c_float_list",
    "_c_int_list",
    "_paired_layout",
    "fc_rows_stream",
    "fc_stream",
    "lower",
]
